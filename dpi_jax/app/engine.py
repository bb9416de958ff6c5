"""What the page computes, without Gradio: the loaded networks of every scale, uploads decoded safely, DPI sampled one
seed at a time, the tau sweep, whole photos, and the files to download.

The networks are loaded once (:class:`Engine`); everything a visitor sends or gets back is passed in and out, so one
engine serves every browser tab. Sampling goes through :func:`dpi_jax.sampler.sample_seeds` with tau, s and omega
traced: moving a slider never recompiles (:func:`dpi_jax.sampler.compilation_count` stays put); the CRT switch,
refine/weight, the method and the number of steps are static and compile once per combination (another scale only
when its CRT has other shapes). Seeds are
sampled one by one, seed n from ``fold_in(fold_in(PRNGKey(config.seed), 0), n)`` (the key ``sample.py`` gives seed n
of its first input), so the number of seeds never recompiles either and each seed can be reported.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import shutil
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from dpi_jax import checkpoint, diffusion, images, inference, sample_lib, sampler, validation
from dpi_jax.errors import UploadError
from dpi_jax.evaluate import settings as eval_settings
from dpi_jax.evaluate import writers
from dpi_jax.metrics import pixel

log = logging.getLogger(__name__)

# The paper's (tau, s, omega) in timestep units: DDPM-1000 per scale (configs/paper.py:x4, x8, x16) and the authors'
# one DDIM-20 setting (configs/paper.py:x8_ddim20); tests/test_app.py checks them against those configs.
PAPER_DDPM = {4: (100.0, 1.4, 500.0), 8: (300.0, 1.2, 750.0), 16: (500.0, 1.0, 1000.0)}
PAPER_DDIM = (350.0, 1.4, 1500.0)
MAX_UPLOAD_MB = 20
DEMO_FACES = 8  # held-out procedural faces offered on the page
SWEEP_TAUS = "0,100,200,300,500,700"
MAX_SWEEP = 12  # tau values in one sweep
KEEP_RUNS = 32  # run folders kept for downloads
ProgressFn = Callable[[float, int, str], None]  # (done, total, what): done may be fractional (a seed part done)


def paper_values(scale: int, method: str) -> tuple[float, float, float] | None:
    """The paper's (tau, s, omega) for a scale and method, or None where the paper has none."""
    return PAPER_DDIM if method == "ddim" else PAPER_DDPM.get(int(scale))


def decode_upload(data: bytes | None, *, max_bytes: int, max_pixels: int | None = None, photo: bool = False
                  ) -> np.ndarray:
    """An uploaded file's bytes as uint8 RGB, decoded by :func:`dpi_jax.images.read_rgb` (photos: with their EXIF
    orientation, :func:`dpi_jax.photo.pipeline.read_photo`) from a private temporary file, so that its guards
    apply: more than ``max_pixels`` (a decompression bomb) or anything undecodable raises :class:`UploadError`, as
    do an empty file and one over ``max_bytes``. Only bytes come in: no path from the client is opened."""
    if data is None:
        raise UploadError("no file was uploaded")
    if len(data) == 0:
        raise UploadError("the uploaded file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise UploadError(f"the uploaded file has {len(data):,} bytes, more than the limit of {max_bytes:,}")
    with tempfile.TemporaryDirectory(prefix="dpi-upload-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        try:
            if photo:
                from dpi_jax.photo import pipeline
                return pipeline.read_photo(path)
            return images.read_rgb(path, max_pixels)
        except images.ImageReadError as err:
            raise UploadError(str(err).replace(str(path), "the uploaded file")) from None


@dataclasses.dataclass(frozen=True)
class Controls:
    """The page's controls: tau, s, omega (traced) and the static choices."""

    scale: int
    tau: float
    s: float
    omega: float
    seeds: int = 3
    method: str = "ddpm"
    steps: int = 50
    crt: bool = True
    refine: bool = True
    weight: bool = True

    def describe(self, tau: bool = True) -> str:
        """One line for the page (without tau for a sweep)."""
        switches = ["CRT" if self.crt else "no CRT"] + ([] if self.refine else ["no refine"])
        switches += [] if self.weight else ["w = 1"]
        knobs = ([f"tau = {self.tau:g}"] if tau else []) + [f"s = {self.s:g}", f"omega = {self.omega:g}"]
        return (f"x{self.scale}, {self.method.upper()} {self.steps} steps, {', '.join(knobs + switches)}, "
                f"{self.seeds} seed(s)")


def respacing(method: str, steps: int, num_timesteps: int) -> str:
    """The config's respacing for a method and a number of steps: ``"ddimN"`` or ``"N"`` (``""`` for all)."""
    if method == "ddim":
        return f"ddim{int(steps)}"
    return "" if int(steps) == num_timesteps else str(int(steps))


def config_steps(config: ml_collections.ConfigDict) -> int:
    """The number of steps a config's respacing gives."""
    return len(diffusion.space_timesteps(int(config.diffusion.num_timesteps), config.diffusion.respacing))


@dataclasses.dataclass
class Face:
    """One input: the LR face, I_L^bc, the ground truth (None in real mode) and a note for the page."""

    name: str
    lr: np.ndarray
    condition: np.ndarray
    gt: np.ndarray | None
    note: str = ""


class Engine:
    """The networks of every scale of a sampling config (its ``runs``, or the config itself), loaded once."""

    def __init__(self, config: ml_collections.ConfigDict, *, max_upload_mb: float = MAX_UPLOAD_MB):
        self.config = config
        self.max_bytes = int(max_upload_mb * 2**20)
        self.runs: dict[int, ml_collections.ConfigDict] = {}
        for name, run_config in sample_lib.expand_runs(config):
            try:
                validation.check_sampling(run_config)
            except validation.ConfigError as err:
                raise validation.ConfigError([f"{p} (in run {name})" if name else p for p in err.problems]) from None
            self.runs.setdefault(int(run_config.scale), run_config)
        first = next(iter(self.runs.values()))
        priors = {str(c.prior_checkpoint) for c in self.runs.values()}
        if len(priors) > 1:
            raise inference.SetupError(f"the runs of the config use several priors ({', '.join(sorted(priors))}); "
                                       "the page serves one prior")
        for run_config in self.runs.values():
            inference.model_configs(run_config)  # kinds, sizes and scales fit, before any parameter is read
        dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[first.dtype]
        self.prior, self.prior_params = checkpoint.load_module(first.prior_checkpoint, dtype, "adm",
                                                               "prior_checkpoint")
        self.crts = {scale: checkpoint.load_module(c.crt_checkpoint, dtype, "crt", "crt_checkpoint")
                     for scale, c in self.runs.items() if c.crt_checkpoint}
        self.image_size = int(self.prior.image_size)
        self.workdir = Path(tempfile.mkdtemp(prefix="dpi-app-"))
        self.demo = self._demo_faces()

    def close(self):
        """Remove the files written for downloads."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------------------------------------ inputs
    @property
    def scales(self) -> list[int]:
        return sorted(self.runs)

    def defaults(self, scale: int) -> Controls:
        """The controls of a scale as its config sets them."""
        c = self.runs[scale]
        dpi = c.dpi
        return Controls(scale, float(dpi.tau), float(dpi.s), float(dpi.omega), max(1, int(c.num_seeds)), dpi.method,
                        config_steps(c), scale in self.crts, bool(dpi.refine), bool(dpi.weight))

    def _demo_faces(self) -> dict[str, np.ndarray]:
        from dpi_jax.demo import synthfaces
        return {f"heldout_{seed}": np.asarray(synthfaces.face(int(seed), self.image_size), np.uint8)
                for seed in synthfaces.split_seeds("heldout", DEMO_FACES)}

    def face(self, image: np.ndarray, scale: int, *, synthetic: bool, name: str = "upload") -> Face:
        """The input of one face: in synthetic mode ``image`` is the HR face (centre-cropped and resized to the
        prior's size when it is not) and the LR is made from it; in real mode it is the LR face (resized to the
        scale's LR size when it is not)."""
        config = self.runs[scale].copy_and_resolve_references()
        config.mode = "synthetic" if synthetic else "real"
        size, lr_size, note = self.image_size, self.image_size // scale, ""
        h, w = image.shape[:2]
        if synthetic and (h, w) != (size, size):
            note = f"the HR face ({w}x{h}) was centre-cropped and resized to {size}x{size}"
        if not synthetic and (h, w) != (lr_size, lr_size):
            note = f"the LR face ({w}x{h}) was centre-cropped and resized to {lr_size}x{lr_size} (x{scale})"
            image = images.fit_square(image, lr_size)
        lr, condition, gt = inference.prepare_image(image, config, size, name)
        return Face(name, lr, condition, gt, note)

    # ------------------------------------------------------------------------------------------------ sampling
    def check(self, controls: Controls) -> tuple[ml_collections.ConfigDict, diffusion.Schedule, sampler.Settings]:
        """The config, schedule and settings of ``controls``; ValueError naming what is wrong."""
        if controls.scale not in self.runs:
            raise ValueError(f"x{controls.scale}: no CRT or run is loaded for it (scales: {self.scales})")
        if controls.crt and controls.scale not in self.crts:
            raise ValueError(f"x{controls.scale} has no CRT loaded: switch the CRT off")
        if not 1 <= int(controls.seeds) <= 64:
            raise ValueError(f"seeds = {controls.seeds}: must be in [1, 64]")
        config = self.runs[controls.scale].copy_and_resolve_references()
        config.dpi.method = controls.method
        config.diffusion.respacing = respacing(controls.method, controls.steps, int(config.diffusion.num_timesteps))
        schedule = diffusion.make_schedule(**config.diffusion)
        settings = sampler.Settings(**config.dpi).replace(
            tau=float(controls.tau), s=float(controls.s), omega=float(controls.omega), refine=bool(controls.refine),
            weight=bool(controls.weight))
        return config, schedule, settings.validate(schedule.num_timesteps)

    def sample(self, face: Face, controls: Controls, progress: ProgressFn | None = None) -> np.ndarray:
        """DPI's results for ``face``, (seeds, H, W, 3) float in [-1, 1]: seed n uses the key ``sample.py`` gives
        seed n of its first input, whatever the settings, so a sweep compares settings on the same noise.
        ``progress(done, total, what)`` is called before each seed and, from inside the sampler's ``lax.scan``
        (:func:`dpi_jax.sampler.watch_steps`), every 1/50 of its steps."""
        config, schedule, settings = self.check(controls)
        crt, crt_params = self.crts[controls.scale] if controls.crt else (None, None)
        nets = sampler.Networks(self.prior, self.prior_params, crt, crt_params)
        condition = jnp.asarray(images.to_model(face.condition)[None])
        batch_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0)
        seeds, steps = int(controls.seeds), schedule.num_steps
        report_every = max(1, steps // inference.REPORTS_PER_RUN) if progress else 0
        results = []
        for n in range(seeds):
            what = f"sampling seed {n + 1} of {seeds}"
            if progress:  # before each seed, then as its steps go (i counts down from steps - 1 to 0)
                progress(n, seeds, what)
            on_step = (lambda i, n=n, what=what: progress(n + (steps - i) / steps, seeds, what)) if progress else (
                lambda i: None)
            key = jax.random.fold_in(batch_key, n)[None]
            with sampler.watch_steps(on_step):
                sr = sampler.sample_seeds(key, condition, nets, schedule, settings, report_every=report_every)
                results.append(np.asarray(sr)[0, 0])
                jax.effects_barrier()
        return np.stack(results)

    def measure(self, face: Face, results: np.ndarray, scale: int) -> dict:
        """LR consistency (dB; the result downsampled like the LR, against it) per seed and for bicubic, diversity
        (mean per-pixel std over seeds, [0, 1] scale) and, with a ground truth, PSNR per seed and for bicubic."""
        sr = images.to_uint8(results)
        bicubic = images.resize(face.lr, self.image_size)
        lr = np.broadcast_to(face.lr, (len(sr),) + face.lr.shape)
        out = {"lr_psnr": [float(v) for v in pixel.lr_consistency(sr, lr, scale)],
               "lr_psnr_bicubic": float(pixel.lr_consistency(bicubic, face.lr, scale)),
               "diversity": float(pixel.diversity(sr[:, None] / 255.0)[0])}
        if face.gt is not None:
            gt = np.broadcast_to(face.gt, sr.shape) / 255.0
            out["psnr"] = [float(v) for v in pixel.psnr(sr / 255.0, gt)]
            out["psnr_bicubic"] = float(pixel.psnr(bicubic / 255.0, face.gt / 255.0))
        return out

    def tiles(self, face: Face, results: np.ndarray) -> list[tuple[np.ndarray, str]]:
        """The row the page shows: LR (enlarged pixel for pixel) | bicubic | each seed | std map | ground truth."""
        sr = images.to_uint8(results)
        row = [(images.nearest_up(face.lr, self.image_size), f"LR {face.lr.shape[1]}x{face.lr.shape[0]}"),
               (images.resize(face.lr, self.image_size), "bicubic")]
        row += [(image, f"DPI seed {n}") for n, image in enumerate(sr)]
        row += [(images.diversity_map(results), "per-pixel std")]
        return row + ([(face.gt, "ground truth")] if face.gt is not None else [])

    def sweep(self, face: Face, controls: Controls, taus: str = SWEEP_TAUS, progress: ProgressFn | None = None
              ) -> tuple[Path, Path, list[dict]]:
        """tau swept over ``taus`` ("0,100,300") at the other controls, on the same noise: the paper's Fig. 7 as a
        strip (rows: up to 3 seeds; columns LR | bicubic | each tau | GT) and the LR consistency / diversity plot;
        returns (strip PNG, plot PNG, rows)."""
        config, _, _ = self.check(controls)
        with config.unlocked():
            config.dpi.update(dict(s=float(controls.s), omega=float(controls.omega), refine=bool(controls.refine),
                                   weight=bool(controls.weight)))
        swept = eval_settings.parse_sweep(f"tau={taus}", config)
        if len(swept) > MAX_SWEEP:
            raise ValueError(f"{len(swept)} tau values: at most {MAX_SWEEP} in one sweep")
        for setting in swept:
            self.check(dataclasses.replace(controls, tau=setting.value))  # every value is valid before any sampling
        folder = self.new_folder()
        rows, total = [], len(swept) * int(controls.seeds)
        for j, setting in enumerate(swept):
            def step(done, _, what, j=j, tau=setting.value):
                if progress:
                    progress(j * int(controls.seeds) + done, total, f"tau = {tau:g}, {what}")
            results = self.sample(face, dataclasses.replace(controls, tau=setting.value), step)
            sr = images.to_uint8(results)
            measured = self.measure(face, results, controls.scale)
            rows.append(dict(setting.row(config), lr_psnr=float(np.mean(measured["lr_psnr"])),
                             diversity=measured["diversity"], grid=images.make_grid([sr[:3]]), shown=sr[:3]))
        bicubic = images.resize(face.lr, self.image_size)
        count = len(rows[0]["shown"])
        rows.append(dict(eval_settings.unsampled_row("bicubic"), grid=None,
                         lr_psnr=float(pixel.lr_consistency(bicubic, face.lr, controls.scale)), diversity=0.0,
                         shown=np.stack([bicubic] * count),
                         lr_shown=np.stack([images.nearest_up(face.lr, self.image_size)] * count),
                         gt_shown=None if face.gt is None else np.stack([face.gt] * count)))
        strip = writers.plot_compare(rows, folder / "sweep_strip.png")
        plot = writers.plot_sweep(rows, folder / "sweep_plot.png")
        return strip, plot, rows

    # ------------------------------------------------------------------------------------------------ photos
    def find_faces(self, photo: np.ndarray) -> list:
        """The faces detected in a photo (:func:`dpi_jax.photo.pipeline.find_faces`), left to right."""
        from dpi_jax.photo import pipeline
        return pipeline.find_faces(photo, self.config, "the uploaded photo")

    def photo_faces(self, photo: np.ndarray, landmarks: list, scale: int) -> list[tuple[Face, np.ndarray]]:
        """Each face's aligned LR crop at ``scale`` (real mode) and its photo -> crop transform."""
        from dpi_jax.photo import pipeline
        out = []
        for i, points in enumerate(landmarks):
            lr, transform = pipeline.face_input(photo, np.asarray(points), self.image_size, self.image_size // scale,
                                                f"face {i}")
            out.append((self.face(lr, scale, synthetic=False, name=f"face{i}"), transform))
        return out

    def paste(self, photo: np.ndarray, restored: list[np.ndarray], transforms: list[np.ndarray]
              ) -> tuple[np.ndarray, np.ndarray]:
        """(the photo upscaled by the background upsampler, the same with the restored faces pasted in)."""
        from dpi_jax.photo import paste, pipeline
        config = self.config
        background = paste.background_upsampler(photo, float(pipeline.setting(config, "upscale")),
                                                pipeline.setting(config, "background_upsampler"))
        result = paste.paste_faces(background, photo.shape, restored, transforms,
                                   erode=pipeline.setting(config, "mask_erode"),
                                   blur=pipeline.setting(config, "mask_blur"))
        return background, result

    # ------------------------------------------------------------------------------------------------ files
    def new_folder(self) -> Path:
        """A fresh folder for one run's files, under the engine's own temporary folder (Gradio serves copies, so only
        the newest :data:`KEEP_RUNS` are kept)."""
        for old in sorted(self.workdir.iterdir(), key=lambda p: p.stat().st_mtime)[:-KEEP_RUNS]:
            shutil.rmtree(old, ignore_errors=True)
        folder = self.workdir / f"{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        return folder

    def archive(self, named: dict[str, np.ndarray], folder: Path | None = None) -> Path:
        """Every image of ``named`` (file stem -> uint8 RGB) as PNG in one zip file; returns its path."""
        folder = folder or self.new_folder()
        path = folder / "dpi_results.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for stem, image in named.items():
                buffer = io.BytesIO()
                Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
                archive.writestr(f"{stem}.png", buffer.getvalue())
        return path

