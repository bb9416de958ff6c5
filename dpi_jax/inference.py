"""The inference engine under ``sample.py``, photo mode and the evaluation: load the networks (checking every
checkpoint's kind, size and scale before a parameter is read), list and prepare the inputs, and run DPI over them in
batches.

Inputs (:func:`list_inputs`): the images of the folder ``config.input_dir``, or with
``config.input_dir = "synthfaces:heldout"`` (or ``"synthfaces:train"``) the procedural faces of
:mod:`dpi_jax.demo.synthfaces` for ``split_seeds(split, config.num_images or 16)``, named ``<split>_<seed>`` (synthetic
mode only). ``config.num_images > 0`` keeps the first N inputs (sorted file names, or the first N seeds). An input is an
:class:`Input`: its name, the LR, I_L^bc, the ground truth (or None) and its index in the sorted list.

Randomness (:func:`sample_batches`): seed n of input i uses ``fold_in(fold_in(PRNGKey(config.seed), i), n)``, so
an image's result depends neither on the batch size nor on the number of devices or processes, and adding seeds
keeps the first ones. Batches are padded to ``config.batch_size`` (no larger than the number of inputs, rounded up
to a multiple of the device count) so that one compilation serves the whole folder, and are split over all devices
of all processes (:mod:`dpi_jax.sharding`). Over several processes each reads only its share of the inputs
(:func:`dpi_jax.distributed.share`), supplies them as its rows of the batches and receives their results.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from dpi_jax import checkpoint, diffusion, distributed, folders, images, sampler, sharding, validation
from dpi_jax.errors import SetupError

log = logging.getLogger(__name__)


PRIOR_HELP = """\
The pretrained prior checkpoint {path} does not exist.
DPI uses the FFHQ 256x256 DDPM `ffhq_10m.pt` of DPS (Chung et al., 2022), linked from the READMEs of the DPS and
DPI (JerryYann/DPI) repositories. Download it yourself, then convert it once with
    python -m dpi_jax.port ffhq_10m.pt {path} --model ffhq_10m
or point --config.prior_checkpoint at a converted checkpoint."""

CRT_HELP = """\
The CRT checkpoint {path} does not exist. Train one with
    python train.py --config configs/crt.py:x8   (see the README)
or convert a PyTorch CRT with
    python -m dpi_jax.port crt.pt {path} --model crt
or sample without the corrector: --config.crt_checkpoint=''"""


class Input(NamedTuple):
    """One input of a run (:func:`list_inputs`)."""
    name: str  # the output's file stem
    lr: np.ndarray  # the LR face, uint8 (h, w, 3)
    condition: np.ndarray  # I_L^bc, the LR resized bicubically to the condition grid, uint8
    gt: np.ndarray | None  # the HR face in synthetic mode, else None
    index: int  # the place in the sorted input list: the image's random draws derive from it


def model_configs(config: ml_collections.ConfigDict) -> tuple[dict, dict]:
    """The model configs of the prior and the CRT (``{}`` without one) from their model.json, no parameter read:
    both checkpoints must exist and be of the right kind (an adm prior, a crt corrector), and k, scale and the CRT's
    size must fit the prior's image size."""
    if not Path(config.prior_checkpoint).exists():
        raise SetupError(PRIOR_HELP.format(path=config.prior_checkpoint))
    if config.crt_checkpoint and not Path(config.crt_checkpoint).exists():
        raise SetupError(CRT_HELP.format(path=config.crt_checkpoint))
    _, prior_config = checkpoint.check_kind(config.prior_checkpoint, "adm", "prior_checkpoint")
    crt_config = {}
    if config.crt_checkpoint:
        crt_config = checkpoint.check_kind(config.crt_checkpoint, "crt", "crt_checkpoint")[1]
        check_crt_scale(config)
    if not isinstance(prior_config.get("image_size"), int):
        raise SetupError(f"prior_checkpoint {config.prior_checkpoint}: its model.json has no integer image_size")
    validation.check_sampling_sizes(config, prior_config["image_size"], crt_config.get("image_size"))
    return prior_config, crt_config


def check_crt_scale(config: ml_collections.ConfigDict) -> None:
    """A CRT corrects the LR pixels of one SR scale: one whose model.json stores another scale than ``config.scale``
    is refused; one that stores none (older exports and ports) is used with a warning."""
    trained = checkpoint.stored_scale(config.crt_checkpoint)
    if trained is None:
        log.warning("crt_checkpoint %s does not say which scale it was trained for (no 'scale' in its model.json): "
                    "make sure it is a x%s CRT", config.crt_checkpoint, config.scale)
    elif trained != config.scale:
        raise validation.ConfigError([f"config.scale = {config.scale}: crt_checkpoint {config.crt_checkpoint} was "
                                      f"trained for x{trained}; use a x{config.scale} CRT or --config.scale={trained}"])


def load_models(config: ml_collections.ConfigDict, *, checked: bool = False):
    """(prior, prior_params, crt or None, crt_params or None) from the configured checkpoints. Before any parameter
    is read, both checkpoints must exist and be of the right kind (an adm prior, a crt corrector), and k, scale and
    the CRT's size must fit the prior's image size (all from their model.json: :func:`model_configs`, skipped when
    the caller has ``checked`` them already, so that its warnings appear once)."""
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.dtype]
    if not checked:
        model_configs(config)
    roles = {"adm": "prior_checkpoint", "crt": "crt_checkpoint"}
    prior, prior_params = checkpoint.load_module(config.prior_checkpoint, dtype, "adm", roles["adm"])
    crt, crt_params = (checkpoint.load_module(config.crt_checkpoint, dtype, "crt", roles["crt"])
                       if config.crt_checkpoint else (None, None))
    if crt is None:
        log.info(PRIOR_ONLY_NOTE)
    return prior, prior_params, crt, crt_params


PRIOR_ONLY_NOTE = (
    "prior-only run: no CRT is configured (crt_checkpoint=''). This is a valid mode, the paper's Table 4 \"w/o CRT\": "
    "the condition stays the LR input's own pixels at every step, noised to each step's level (Eqs. 6-7), and is "
    "never corrected. Expect results close to the CRT's in consistency, grainier in detail; a CRT (train.py "
    "--config configs/crt.py:x8, or a ported one) repairs the degraded condition pixels.")


SYNTHFACES_PREFIX = "synthfaces:"
SYNTHFACES_SPLITS = ("train", "heldout")
SYNTHFACES_DEFAULT_COUNT = 16


def prepare_input(path: Path, config, image_size: int):
    """(LR uint8, I_L^bc uint8, ground truth uint8 or None) for one file; raises ImageReadError when unusable
    (``config.max_image_pixels``, when the config has it, replaces :data:`dpi_jax.images.MAX_IMAGE_PIXELS`)."""
    return prepare_image(images.read_rgb(path, config.get("max_image_pixels")), config, image_size, str(path))


def prepare_image(image: np.ndarray, config, image_size: int, label: str = "image"):
    """(LR uint8, I_L^bc uint8, ground truth uint8 or None) for one uint8 RGB image: an HR face in synthetic mode (the
    LR is made by bicubic downsampling; a wrong size is centre-cropped and resized, with a message naming ``label``),
    the LR input itself in real mode."""
    if config.mode == "synthetic":
        hr = image
        if hr.shape[:2] != (image_size, image_size):
            log.warning("%s: %dx%d, centre-cropped and resized to %dx%d", label, *hr.shape[:2], image_size, image_size)
            hr = images.fit_square(hr, image_size)
        lr = images.lr_from_hr(hr, config.scale)
    elif config.mode == "real":
        hr, lr = None, image
    else:
        raise ValueError(f"config.mode must be 'synthetic' or 'real', not {config.mode!r}")
    return lr, images.condition_from_lr(lr, image_size, config.dpi.k), hr


def synthfaces_split(input_dir: str) -> str | None:
    """The split named by ``"synthfaces:<split>"``, or None for a folder."""
    input_dir = str(input_dir)
    if not input_dir.startswith(SYNTHFACES_PREFIX):
        return None
    split = input_dir[len(SYNTHFACES_PREFIX):]
    if split not in SYNTHFACES_SPLITS:
        raise SetupError(f"input_dir {input_dir!r}: the synthfaces split must be one of "
                         f"{', '.join(SYNTHFACES_PREFIX + s for s in SYNTHFACES_SPLITS)}")
    return split


def image_paths(config: ml_collections.ConfigDict) -> list[Path]:
    """The image files of the folder ``config.input_dir`` (sorted; the first ``config.num_images`` when > 0), for the
    folder inputs and photo mode alike. Files of other types are named in the log; a folder without an image file is
    a :class:`SetupError`."""
    paths = images.list_images(config.input_dir)
    others = sorted(p.name for p in Path(config.input_dir).iterdir() if p.is_file() and p not in set(paths))
    if others:
        log.warning("%s: %d file(s) skipped, not of an image type read here (%s): %s", config.input_dir, len(others),
                    " ".join(images.IMAGE_SUFFIXES), ", ".join(others[:10]) + (" ..." if len(others) > 10 else ""))
    if not paths:
        raise SetupError(f"input_dir {config.input_dir} holds no image files ({' '.join(images.IMAGE_SUFFIXES)})")
    num_images = int(config.get("num_images", 0) or 0)
    return paths[:num_images] if num_images > 0 else paths


def list_inputs(config: ml_collections.ConfigDict, image_size: int, output_dir=None) -> list[Input]:
    """This process's inputs of ``config``, as :class:`Input` values: all of them in a single-process run.

    ``config.input_dir`` is a folder (unreadable files are reported by name and skipped) or ``"synthfaces:<split>"``
    (HR faces ``synthfaces.face(seed, image_size)``, synthetic mode only). ``config.num_images > 0`` keeps the first N
    files (sorted) or seeds. With ``output_dir``, inputs whose first output (``<name>.png``, or ``<name>_s0.png`` for
    several seeds) exists there are skipped unless ``config.overwrite``. Over several processes every process lists
    the same files (checked), then decodes only its :func:`dpi_jax.distributed.share` of them; :func:`all_inputs`
    gives every process all of them.
    """
    num_images = int(config.get("num_images", 0) or 0)
    num_seeds = int(config.get("num_seeds", 1))

    def done(name: str) -> bool:
        if output_dir is None or config.overwrite:
            return False
        target = Path(output_dir) / (f"{name}.png" if num_seeds == 1 else f"{name}_s0.png")
        if target.exists():
            log.warning("%s exists: skipped (set --config.overwrite=True to replace it)", target)
            return True
        return False

    split = synthfaces_split(config.input_dir)
    if split is not None:
        if config.mode != "synthetic":
            raise SetupError(f"input_dir {config.input_dir!r} gives HR faces: it needs config.mode='synthetic', "
                             f"not {config.mode!r}")
        from dpi_jax.demo import synthfaces  # only this input source needs it

        def prepare(seed, name):
            return prepare_image(np.asarray(synthfaces.face(int(seed), image_size), np.uint8), config, image_size, name)

        sources = [(f"{split}_{seed}", seed) for seed in synthfaces.split_seeds(split, num_images or
                                                                                SYNTHFACES_DEFAULT_COUNT)]
    else:
        def prepare(path, name):
            return prepare_input(path, config, image_size)

        paths = image_paths(config)
        sources = list(zip(folders.unique_names(paths), paths, strict=True))
    candidates = [(index, name, source) for index, (name, source) in enumerate(sources) if not done(name)]
    names = [name for _, name, _ in candidates]
    distributed.assert_same(names, "the inputs (every process must list the same files)")
    inputs = []
    for index, name, source in candidates[distributed.share(len(candidates))]:
        try:
            inputs.append(Input(name, *prepare(source, name), index))
        except images.ImageReadError as err:
            log.error("skipped %s", err)
        except Exception as err:  # any failure to prepare one file skips that file, by name; the run goes on
            log.error("skipped %s: cannot prepare it (%s: %s)", source, type(err).__name__, err)
    if jax.process_count() > 1:
        log.info("process %d: read %d of the %d inputs", jax.process_index(), len(inputs), len(candidates))
    if candidates and len(candidates) == len(sources) and not sum(distributed.counts(len(inputs))):
        raise SetupError(f"input_dir {config.input_dir}: none of its {len(candidates)} image file(s) could be read "
                         "(each is named above)")
    return inputs


def all_inputs(local: list[Input]) -> list[Input]:
    """Every process's inputs (:func:`list_inputs`), in input order, on every process (every process must call it;
    ``local`` itself in a single-process run)."""
    return [item for part in distributed.gather_objects(list(local)) for item in part]


def image_keys(seed: int, indices, num_seeds: int) -> np.ndarray:
    """The PRNG keys (num_seeds, len(indices), 2) of inputs ``indices``: seed n of input i is
    ``fold_in(fold_in(PRNGKey(seed), i), n)``."""
    per_image = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(seed), jnp.asarray(indices))
    return np.asarray(jax.vmap(lambda n: jax.vmap(jax.random.fold_in, (0, None))(per_image, n))(
        jnp.arange(num_seeds)))


REPORTS_PER_RUN = 50  # step reports per sampling call (the bar's granularity; each is one host callback)


class StepBar:
    """The progress of the sampler's steps: a tqdm bar (steps/s and ETA) fed from inside the jitted scan through
    :func:`dpi_jax.sampler.watch_steps`. Shown by process 0 only, and only when stderr is a terminal."""

    def __init__(self, num_steps: int, num_passes: int, enabled: bool, desc: str):
        self.num_steps, self.done_in_pass = num_steps, 0
        self.bar = tqdm(total=num_steps * num_passes, desc=f"{desc} steps", unit="step", leave=False,
                        disable=not (enabled and jax.process_index() == 0 and sys.stderr.isatty()))

    def on_step(self, i: int):
        """The report after step index i (counting down): steps N-1 ... i of the current pass are done."""
        done = self.num_steps - i
        if done <= self.done_in_pass:  # a new pass (the next seed chunk) has begun
            self.end_pass()
        self.bar.update(done - self.done_in_pass)
        self.done_in_pass = done

    def end_pass(self):
        self.bar.update(self.num_steps - self.done_in_pass)
        self.done_in_pass = 0

    def close(self):
        self.bar.close()


def sample_batches(todo: list[Input], config: ml_collections.ConfigDict, prior, prior_params, crt=None,
                   crt_params=None, *, overrides: dict | None = None, progress: bool = True, desc: str = "DPI",
                   leave: bool = True):
    """Run DPI on ``todo`` (this process's inputs of :func:`list_inputs`: all of them in a single-process run) in
    batches of ``config.batch_size``; yields ``(batch, sr)``: inputs of ``todo`` and their results, ``sr`` (num_seeds,
    len(batch), H, W, 3) float in [-1, 1]. Over several processes each supplies its own inputs as its rows of every
    batch (padded where it has fewer than the others) and receives their results. ``overrides`` replace fields of the
    config's :class:`~dpi_jax.sampler.Settings` (tau/omega in timestep units, as in the config; a ``k`` other than the
    config's remakes I_L^bc from the LR); ``crt=None`` samples without the corrector. Seed n of input i uses
    ``fold_in(fold_in(PRNGKey(config.seed), i), n)`` whatever the settings, so that settings are compared on the
    same noise. ``progress`` shows a bar over the batches and one over the sampler's steps (one log line per batch
    instead when stderr is not a terminal, and then the compiled sampler reports no steps)."""
    schedule = diffusion.make_schedule(**config.diffusion)
    settings = sampler.Settings(**config.dpi).replace(**(overrides or {})).validate(schedule.num_timesteps)
    if prior.image_size % settings.k:
        raise SetupError(f"k = {settings.k}: must divide the prior's image size {prior.image_size}")
    condition = (lambda item: item.condition) if settings.k == config.dpi.k else (
        lambda item: images.condition_from_lr(item.lr, prior.image_size, settings.k))
    num_seeds = int(config.num_seeds)
    mesh = sharding.data_mesh()
    # Every process's input indices (the random keys) and whether its stderr is a terminal, in one gather.
    gathered = distributed.gather_objects(([item.index for item in todo], sys.stderr.isatty()))
    indices = [part for part, _ in gathered]
    counts = [len(part) for part in indices]  # every process's number of inputs
    check_memory(config, prior.image_size, sum(counts))
    batch_size = effective_batch_size(config.batch_size, sum(counts), mesh.size)
    rows = sharding.process_rows(batch_size, mesh)
    per_process = [batch_size // mesh.size * sum(d.process_index == q for d in mesh.devices.flat)
                   for q in range(len(counts))]
    num_batches = max(-(-c // r) for c, r in zip(counts, per_process, strict=True))
    local_rows = rows.stop - rows.start
    # The global batches' input indices (every process's rows, padded with its last index or 0): the random keys.
    padded_indices = [(part + [part[-1] if part else 0] * (num_batches * r - len(part)))
                      for part, r in zip(indices, per_process, strict=True)]
    side = prior.image_size // settings.k
    blank = np.zeros((side, side, 3), np.uint8)  # the condition of a process's rows beyond its inputs
    nets = sharding.replicate(sampler.Networks(prior, prior_params, crt, crt_params if crt is not None else None),
                              mesh)
    chunk = int(config.seed_chunk) or num_seeds
    passes = -(-num_seeds // chunk)
    # The step bar shows on process 0's terminal only. Without one there, the sampler reports no steps: a program
    # with host callbacks is never kept in JAX's persistent compilation cache, so every run would compile the
    # sampler afresh (about 6 s of the demo's 29 s). Every process follows process 0, to compile the same program.
    step_bar = progress and gathered[0][1]
    report_every = max(1, schedule.num_steps // REPORTS_PER_RUN) if step_bar else 0
    shown = progress and jax.process_index() == 0
    steps = StepBar(schedule.num_steps, num_batches * passes, progress, desc)
    try:
        with sampler.watch_steps(steps.on_step):
            for j in tqdm(range(num_batches), desc=desc, unit="batch", leave=leave,
                          disable=not (shown and sys.stderr.isatty())):
                start = time.perf_counter()
                batch = todo[j * local_rows:(j + 1) * local_rows]
                local = [condition(item) for item in batch]
                local += [local[-1] if local else blank] * (local_rows - len(local))
                local = np.stack([images.to_model(c) for c in local])
                chex.assert_shape(local, (local_rows, side, side, 3))  # every process supplies the same shape
                cond = sharding.global_batch(local, mesh)
                keys = image_keys(config.seed, [i for part, r in zip(padded_indices, per_process, strict=True)
                                                for i in part[j * r:(j + 1) * r]], num_seeds)
                sr = sampler.sample_seeds(sharding.replicate(keys, mesh), cond, nets, schedule, settings,
                                          chunk_size=config.seed_chunk or None, report_every=report_every)
                sr_local = sharding.local_rows(sr, rows, axis=1)[:, :len(batch)]  # (seeds, len(batch), H, W, 3)
                if report_every:
                    jax.effects_barrier()  # the batch's last step reports have reached the bar
                    steps.end_pass()
                if shown and not sys.stderr.isatty():
                    log.info("%s: batch %d/%d (%d image(s) x %d seed(s)) in %.1f s", desc, j + 1, num_batches,
                             sum(min(max(c - j * r, 0), r) for c, r in zip(counts, per_process, strict=True)),
                             num_seeds, time.perf_counter() - start)
                yield batch, sr_local
    finally:
        steps.close()


def effective_batch_size(batch_size: int, num_inputs: int, num_devices: int = 1) -> int:
    """The batch the sampler runs: ``batch_size``, but no larger than the number of inputs (padding 3 inputs to a
    batch of 10**12 would be all padding), rounded up to a multiple of the device count."""
    batch = max(1, min(int(batch_size), int(num_inputs)))
    return -(-batch // num_devices) * num_devices


BYTES_PER_PIXEL_IN_FLIGHT = 3200  # the full-size sampler's working memory per image and seed (bench: ~200 MiB at 256²)


def memory_limit() -> int:
    """The bytes one sampling program may use: the first device's limit when it reports one (GPU/TPU), otherwise
    the host's physical memory."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(config: ml_collections.ConfigDict, image_size: int, num_inputs: int) -> None:
    """A rough up-front bound, before any sampling: the seeds sampled at once (``seed_chunk`` or all
    ``num_seeds``) times the batch, at about :data:`BYTES_PER_PIXEL_IN_FLIGHT` per pixel, plus the results kept on
    the host, must fit :func:`memory_limit`; otherwise a ConfigError says which fields to lower."""
    batch = effective_batch_size(config.batch_size, num_inputs)
    seeds = int(config.num_seeds)
    in_flight = min(int(config.seed_chunk) or seeds, seeds)
    need = image_size**2 * batch * (in_flight * BYTES_PER_PIXEL_IN_FLIGHT + seeds * 3 * 4)
    limit = memory_limit()
    if need > limit:
        raise validation.ConfigError([
            f"config.num_seeds = {seeds}, seed_chunk = {config.seed_chunk}, batch_size = {config.batch_size}: about "
            f"{need / 2**30:.1f} GiB for {batch} {image_size}x{image_size} image(s) at once, more than the "
            f"{limit / 2**30:.1f} GiB here; lower num_seeds or batch_size, or set seed_chunk (seeds sampled at once)"])


GRID_SEEDS = 4  # at most this many seeds per row of a grid


def grid_row(lr: np.ndarray, results: np.ndarray, image_size: int, *, extra=(), gt=None) -> list[np.ndarray]:
    """One row of a grid (sample.py's grid.png, the evaluation's grid_<setting>.png): the LR input enlarged pixel for
    pixel | bicubic | up to :data:`GRID_SEEDS` results (uint8 (S, H, W, 3)) | ``extra`` images | the ground truth."""
    row = [images.nearest_up(lr, image_size), images.resize(lr, image_size), *results[:GRID_SEEDS], *extra]
    return row + ([gt] if gt is not None else [])
