"""Evaluate DPI on faces with ground truth: fidelity, LR consistency and diversity, for several settings.

    python -m dpi_jax.evaluate --config configs/demo.py --out out/eval
    python -m dpi_jax.evaluate --config configs/demo.py --sweep tau=0,25,75,125 --out out/eval_tau

The config is a sampling config (``configs/default.py`` and the files built on it); any field can be overridden
(``--config.num_images=4 --config.num_seeds=3``). It must be in synthetic mode: the LR inputs are made from HR faces
(a folder, or ``synthfaces:heldout``) by bicubic downsampling, and the HR faces are the ground truth (GT).

Settings. By default: the config's (tau, s, omega) with its CRT (``dpi``) and without it (``dpi-no-crt``, the
ablation; ``--no_crt_ablation`` drops it), plus the ``bicubic`` baseline (I_L upsampled bicubically to the HR size).
``--sweep tau=0,25,75,125`` adds one setting per value (also ``s=...`` and ``omega=...``; repeat the flag for several
sweeps), with the CRT when the config has one. tau and omega count the sampler's own steps, as in the config. Every
setting sees the same inputs and the same noise (seed n of batch j: ``fold_in(fold_in(PRNGKey(config.seed), j), n)``).

Metrics, computed on the 8-bit results (as saved) scaled to [0, 1], per image, then averaged (mean and standard
deviation over images); the image metrics of a sampled setting are first averaged over the ``config.num_seeds`` seeds:

- ``psnr``: PSNR to the GT in dB, ``10 log10(1 / MSE)`` over all pixels and channels (higher = closer to the GT).
- ``ssim``: SSIM to the GT (``dm_pix.ssim``: 11x11 Gaussian window, sigma 1.5, k1 0.01, k2 0.03, averaged over the
  image and channels); 1 = identical structure.
- ``lr_psnr`` (LR consistency): the PSNR in dB between the result degraded back to LR by the bicubic downsampling that
  made the LR input (``images.lr_from_hr``) and the LR input itself. High = the result explains its input.
- ``diversity``: the per-pixel standard deviation over seeds (population std, on the [0, 1] scale), averaged over
  pixels and channels. 0 = every seed gives the same image; the bicubic baseline is deterministic (0).

The sweep shows the trade-off of the paper's Fig. 7: tau is the step where stage I (the condition imposed on its grid,
steps i > tau) gives way to stage II (RACM interpolation, i <= tau), so raising it gives the prior more freedom: more
diversity, less LR consistency; s and omega shape stage II. ``sweep.png`` plots LR-consistency PSNR against diversity,
one point per setting, the swept ones joined and labelled with their value.

LPIPS and FID are not computed by this version: they need pretrained networks (AlexNet/VGG, Inception) that this
project does not ship or download. ``--lpips_weights`` / ``--fid_weights`` exist so that a later version can take
local weights; today they only print that and exit with status 2.

Written to ``--out`` (existing files are kept unless ``--overwrite``): ``metrics.csv`` (one row per setting),
``metrics.md`` (the table, also printed), ``metrics.json`` (the rows with per-image values and the settings used),
``grid_<setting>.png`` per sampled setting (rows: LR (nearest) | bicubic | up to 4 seeds | GT), and with a sweep
``sweep.png``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import sys
from pathlib import Path
from typing import Sequence

import dm_pix
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from dpi_jax import images, sample_lib

log = logging.getLogger(__name__)

SWEEP_PARAMS = ("tau", "s", "omega")
METRICS = ("psnr", "ssim", "lr_psnr", "diversity")
NOT_COMPUTED = ("LPIPS and FID are not computed by this version (they need pretrained networks that are neither "
                "shipped nor downloaded).")
GRID_SEEDS = 4  # at most this many seeds per row of grid_<setting>.png


# ----------------------------------------------------------------------------------------------------------- metrics

def psnr(a, b) -> np.ndarray:
    """PSNR in dB between float images in [0, 1] (peak 1): NHWC batches give one value per image, (B,); one HWC image
    gives a scalar. Identical images give inf. Computed by ``dm_pix.psnr``."""
    return np.asarray(dm_pix.psnr(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)))


def ssim(a, b) -> np.ndarray:
    """SSIM between float images in [0, 1] (``dm_pix.ssim`` with its defaults: 11x11 Gaussian window, sigma 1.5,
    k1 0.01, k2 0.03, valid filtering, so images must be at least 11x11), one value per image of an NHWC batch."""
    return np.asarray(dm_pix.ssim(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), max_val=1.0))


def lr_consistency(sr_uint8, lr_uint8, scale: int) -> np.ndarray:
    """LR consistency in dB: the PSNR between the SR result degraded back to LR with the bicubic downsampling that made
    the LR (``images.lr_from_hr(sr, scale)``) and the LR input. uint8 (B, H, W, 3) and (B, H/scale, W/scale, 3) give
    (B,); single HWC images give a scalar."""
    sr, lr = np.asarray(sr_uint8), np.asarray(lr_uint8)
    if sr.dtype != np.uint8 or lr.dtype != np.uint8:
        raise TypeError(f"lr_consistency takes uint8 images, not {sr.dtype} and {lr.dtype}")
    single = sr.ndim == 3
    sr, lr = (sr[None], lr[None]) if single else (sr, lr)
    down = np.stack([images.lr_from_hr(x, scale) for x in sr])
    if down.shape != lr.shape:
        raise ValueError(f"SR {sr.shape[1:3]} downsampled by {scale} gives {down.shape[1:3]}, not the LR "
                         f"{lr.shape[1:3]}")
    value = psnr(down / 255.0, lr / 255.0)
    return value[0] if single else value


def diversity(samples) -> np.ndarray:
    """Diversity of S samples of each image, (S, B, H, W, 3) in [0, 1]: the per-pixel standard deviation over the
    seeds (population std, ddof 0), averaged over pixels and channels; (B,). 0 when all seeds agree."""
    samples = np.asarray(samples, np.float64)
    return samples.std(axis=0).mean(axis=(-3, -2, -1))


# ---------------------------------------------------------------------------------------------------------- settings

def default_settings(config: ml_collections.ConfigDict, crt_ablation: bool = True) -> list[dict]:
    """The config's (tau, s, omega) with its CRT ("dpi") and, when ``crt_ablation``, without it ("dpi-no-crt"). A
    config without a CRT checkpoint gives only "dpi-no-crt"."""
    base = dict(tau=float(config.tau), s=float(config.s), omega=float(config.omega))
    if not config.crt_checkpoint:
        return [dict(name="dpi-no-crt", crt=False, **base)]
    settings = [dict(name="dpi", crt=True, **base)]
    if crt_ablation:
        settings.append(dict(name="dpi-no-crt", crt=False, **base))
    return settings


def parse_sweep(spec: str, config: ml_collections.ConfigDict) -> list[dict]:
    """``"tau=0,25,75"`` -> one setting per value (the config's other settings, its CRT when it has one), named
    ``tau=0``, ... Also ``s=`` and ``omega=``."""
    param, sep, values = spec.partition("=")
    param = param.strip()
    if not sep or param not in SWEEP_PARAMS:
        raise ValueError(f"--sweep {spec!r}: expected <param>=<v1>,<v2>,... with param one of "
                         f"{', '.join(SWEEP_PARAMS)}")
    try:
        numbers = [float(v) for v in values.split(",") if v.strip()]
    except ValueError as err:
        raise ValueError(f"--sweep {spec!r}: the values must be numbers ({err})") from None
    if not numbers:
        raise ValueError(f"--sweep {spec!r}: no values")
    base = dict(tau=float(config.tau), s=float(config.s), omega=float(config.omega), crt=bool(config.crt_checkpoint))
    return [dict(base, name=f"{param}={v:g}", swept=param, value=v, **{param: v}) for v in numbers]


def _complete(setting: dict, config: ml_collections.ConfigDict, has_crt: bool) -> dict:
    """A setting with every field: missing tau/s/omega come from the config, crt defaults to "if there is one"."""
    out = dict(tau=float(config.tau), s=float(config.s), omega=float(config.omega), crt=has_crt, swept=None,
               value=None)
    out.update(setting)
    out["tau"], out["s"], out["omega"], out["crt"] = (float(out["tau"]), float(out["s"]), float(out["omega"]),
                                                      bool(out["crt"]))
    if out["crt"] and not has_crt:
        raise sample_lib.SetupError(f"setting {setting}: asks for the CRT but config.crt_checkpoint is empty")
    out.setdefault("name", f"tau={out['tau']:g},s={out['s']:g},omega={out['omega']:g}" + ("" if out["crt"]
                                                                                         else ",no-crt"))
    return out


def slug(name: str) -> str:
    """A setting name as a file-name part: ``tau=25`` -> ``tau_25``."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "setting"


# -------------------------------------------------------------------------------------------------------- evaluation

def _summary(name: str, per_image: dict[str, list[float]], names: list[str], **fields) -> dict:
    row = dict(setting=name, **fields, num_images=len(names))
    for metric in METRICS:
        values = np.asarray(per_image[metric], np.float64)
        row[metric], row[f"{metric}_std"] = float(values.mean()), float(values.std())
    row["per_image"] = {n: {m: float(per_image[m][i]) for m in METRICS} for i, n in enumerate(names)}
    return row


def evaluate(config: ml_collections.ConfigDict, settings: Sequence[dict], *, models=None, inputs=None,
             progress: bool = True) -> list[dict]:
    """Run DPI with each setting on the inputs of ``config`` and measure it; returns one row per setting, then a
    "bicubic" row.

    Args:
      config: a sampling config in synthetic mode (its num_seeds, batch_size, seed, respacing, ... are used).
      settings: dicts overriding ``tau``/``s``/``omega`` and choosing ``crt`` (True/False), with a ``name``; e.g.
        :func:`default_settings` and :func:`parse_sweep`. ``swept``/``value`` mark sweep points for the plot.
      models: ``(prior, prior_params, crt, crt_params)`` as from ``sample_lib.load_models(config)`` (loaded when None).
      inputs: items of ``sample_lib.list_inputs`` (listed from the config when None).
    Returns:
      rows: dicts with ``setting``, ``tau``/``s``/``omega``/``crt`` (None for bicubic), ``num_images``,
      ``num_seeds``, each metric of :data:`METRICS` (mean over images) and ``<metric>_std`` (std over images),
      ``per_image`` ({input name: {metric: value}}) and ``grid`` (a uint8 image; None for bicubic).
    """
    if config.mode != "synthetic":
        raise sample_lib.SetupError(f"evaluation needs ground-truth faces: config.mode must be 'synthetic', not "
                                    f"{config.mode!r}")
    prior, prior_params, crt, crt_params = models if models is not None else sample_lib.load_models(config)
    image_size = prior.image_size
    todo = list(inputs) if inputs is not None else sample_lib.list_inputs(config, image_size)
    if not todo:
        raise sample_lib.SetupError(f"no usable inputs in {config.input_dir}")
    settings = [_complete(s, config, crt is not None) for s in settings]
    scale, num_seeds = int(config.scale), int(config.num_seeds)
    names = [item[0] for item in todo]
    rows = []
    for setting in tqdm(settings, desc="settings", unit="setting", disable=not progress):
        per_image = {m: [] for m in METRICS}
        grid = []
        batches = sample_lib.sample_batches(
            todo, config, prior, prior_params, crt if setting["crt"] else None, crt_params, tau=setting["tau"],
            s=setting["s"], omega=setting["omega"], progress=progress, desc=setting["name"], leave=False)
        for batch, sr in batches:
            sr = images.to_uint8(sr)  # (S, B, H, W, 3), as it would be saved
            num, b = sr.shape[:2]
            flat = sr.reshape((num * b,) + sr.shape[2:])
            lr = np.stack([item[1] for item in batch])
            hr = np.stack([item[3] for item in batch])
            hr_rep = np.broadcast_to(hr[None], sr.shape).reshape(flat.shape)
            lr_rep = np.broadcast_to(lr[None], (num,) + lr.shape).reshape((num * b,) + lr.shape[1:])
            per_image["psnr"] += list(psnr(flat / 255.0, hr_rep / 255.0).reshape(num, b).mean(0))
            per_image["ssim"] += list(ssim(flat / 255.0, hr_rep / 255.0).reshape(num, b).mean(0))
            per_image["lr_psnr"] += list(lr_consistency(flat, lr_rep, scale).reshape(num, b).mean(0))
            per_image["diversity"] += list(diversity(sr / 255.0))
            for n, (_, lr_n, _, hr_n) in enumerate(batch):
                if len(grid) < config.grid_rows:
                    grid.append([images.nearest_up(lr_n, image_size), images.resize(lr_n, image_size),
                                 *sr[:GRID_SEEDS, n], hr_n])
        row = _summary(setting["name"], per_image, names, tau=setting["tau"], s=setting["s"],
                       omega=setting["omega"], crt=setting["crt"], num_seeds=num_seeds, swept=setting["swept"],
                       value=setting["value"])
        row["grid"] = images.make_grid(grid)
        rows.append(row)

    lr = np.stack([item[1] for item in todo])
    hr = np.stack([item[3] for item in todo])
    bicubic = np.stack([images.resize(x, image_size) for x in lr])
    per_image = dict(psnr=psnr(bicubic / 255.0, hr / 255.0), ssim=ssim(bicubic / 255.0, hr / 255.0),
                     lr_psnr=lr_consistency(bicubic, lr, scale), diversity=np.zeros(len(todo)))
    row = _summary("bicubic", per_image, names, tau=None, s=None, omega=None, crt=None, num_seeds=1, swept=None,
                   value=None)
    row["grid"] = None
    rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------------- outputs

CSV_FIELDS = ("setting", "tau", "s", "omega", "crt", "num_images", "num_seeds", "psnr", "psnr_std", "ssim",
              "ssim_std", "lr_psnr", "lr_psnr_std", "diversity", "diversity_std")


def output_paths(out_dir, settings: Sequence[dict]) -> list[Path]:
    """The files that :func:`write_outputs` writes for these settings."""
    out_dir = Path(out_dir)
    paths = [out_dir / n for n in ("metrics.csv", "metrics.md", "metrics.json")]
    paths += [out_dir / f"grid_{slug(s['name'])}.png" for s in settings]
    if any(s.get("swept") for s in settings):
        paths.append(out_dir / "sweep.png")
    return paths


def _cell(row: dict, metric: str, digits: int) -> str:
    mean, std = row[metric], row[f"{metric}_std"]
    if not math.isfinite(mean):
        return str(mean)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def describe(row: dict) -> str:
    """The setting column of the table: name and values."""
    if row["tau"] is None:
        return row["setting"]
    return (f"{row['setting']} (tau={row['tau']:g}, s={row['s']:g}, omega={row['omega']:g}, "
            f"{'CRT' if row['crt'] else 'no CRT'})")


def markdown_table(rows: Sequence[dict]) -> str:
    """The metrics as a markdown table (mean ± std over images) with a note on what was measured."""
    lines = ["| setting | PSNR (dB) | SSIM | LR-consistency PSNR (dB) | diversity |",
             "| --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {describe(row)} | {_cell(row, 'psnr', 2)} | {_cell(row, 'ssim', 4)} | "
                     f"{_cell(row, 'lr_psnr', 2)} | {_cell(row, 'diversity', 4)} |")
    seeds = max((r["num_seeds"] for r in rows), default=1)
    lines += ["", f"Mean ± std over {rows[0]['num_images'] if rows else 0} images; {seeds} seed(s) per image, "
              "PSNR/SSIM/LR consistency averaged over seeds, diversity = mean per-pixel std over seeds ([0, 1] "
              f"scale). {NOT_COMPUTED}"]
    return "\n".join(lines)


def plot_sweep(rows: Sequence[dict], path) -> Path:
    """LR-consistency PSNR against diversity, one point per sampled setting; sweep points are joined per swept
    parameter and labelled with their value (the paper's Fig. 7)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    sampled = [r for r in rows if r["tau"] is not None and math.isfinite(r["lr_psnr"])]
    for param in dict.fromkeys(r["swept"] for r in sampled if r["swept"]):
        group = [r for r in sampled if r["swept"] == param]
        ax.plot([r["diversity"] for r in group], [r["lr_psnr"] for r in group], "o-", label=f"{param} sweep")
        for r in group:
            ax.annotate(f"{param}={r['value']:g}", (r["diversity"], r["lr_psnr"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
    for r in (r for r in sampled if not r["swept"]):
        ax.plot([r["diversity"]], [r["lr_psnr"]], "s", color="gray")
        ax.annotate(r["setting"], (r["diversity"], r["lr_psnr"]), textcoords="offset points", xytext=(4, -10),
                    fontsize=8, color="gray")
    ax.set_xlabel("diversity (mean per-pixel std over seeds, [0, 1] scale)")
    ax.set_ylabel("LR-consistency PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    if any(r["swept"] for r in sampled):
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=150)
    return path


def write_outputs(rows: Sequence[dict], out_dir, *, overwrite: bool = False, meta: dict | None = None) -> list[Path]:
    """Write metrics.csv, metrics.md, metrics.json, grid_<setting>.png and (with sweep rows) sweep.png; existing
    files are refused (FileExistsError naming them) unless ``overwrite``. Returns the paths written."""
    out_dir = Path(out_dir)
    sampled = [r for r in rows if r["grid"] is not None]
    paths = output_paths(out_dir, [dict(name=r["setting"], swept=r["swept"]) for r in sampled])
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(map(str, existing))} already exist(s): pass --overwrite to replace")
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path, json_path = paths[:3]
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_FIELDS})
    plain = [{k: v for k, v in r.items() if k != "grid"} for r in rows]
    texts = {csv_path: table.getvalue(), md_path: markdown_table(rows) + "\n",
             json_path: json.dumps(dict(meta or {}, rows=plain, not_computed=["lpips", "fid"]), indent=1, default=str)}
    for path, text in texts.items():  # atomic, and an existing file is never replaced without overwrite
        images.write_atomic(path, text, overwrite=overwrite)
    written = [csv_path, md_path, json_path]
    for row in sampled:
        written.append(images.save_png(out_dir / f"grid_{slug(row['setting'])}.png", row["grid"], overwrite=overwrite))
    if any(r["swept"] for r in sampled):
        written.append(plot_sweep(rows, out_dir / "sweep.png"))
    return written


# --------------------------------------------------------------------------------------------------------------- CLI

def run(config: ml_collections.ConfigDict, out_dir, *, sweeps: Sequence[str] = (), crt_ablation: bool = True,
        overwrite: bool = False, progress: bool = True) -> list[dict]:
    """What the command does: settings, refusal of existing outputs (before any sampling), evaluation, files, and the
    table printed. Returns the rows."""
    settings = default_settings(config, crt_ablation)
    for spec in sweeps:
        settings += parse_sweep(spec, config)
    unique = {}
    for setting in settings:
        unique.setdefault(setting["name"], setting)  # the first of each name, in order
    settings = list(unique.values())
    existing = [p for p in output_paths(out_dir, settings) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]}{f' (and {len(existing) - 1} more)' if len(existing) > 1 else ''} "
                              f"already exists in {out_dir}: pass --overwrite to replace, or choose another --out")
    rows = evaluate(config, settings, progress=progress)
    meta = dict(config=config.to_dict(), settings=settings)
    write_outputs(rows, out_dir, overwrite=overwrite, meta=meta)
    print(markdown_table(rows))
    return rows


def _define_flags():
    from absl import flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", "configs/demo.py", "Sampling configuration file.")
    flags.DEFINE_string("out", "out/eval", "Folder for metrics.{csv,md,json}, the grids and sweep.png.")
    flags.DEFINE_multi_string("sweep", [], "A sweep, e.g. tau=0,25,75,125 (also s=..., omega=...); repeatable.")
    flags.DEFINE_bool("no_crt_ablation", False, "Skip the setting without the CRT.")
    flags.DEFINE_bool("overwrite", False, "Replace existing outputs in --out.")
    flags.DEFINE_string("lpips_weights", "", "Local LPIPS weights (not supported yet: the metric is omitted).")
    flags.DEFINE_string("fid_weights", "", "Local Inception weights for FID (not supported yet: omitted).")
    return config, flags.FLAGS


def main(argv=None):
    """The command line (see the module docstring); exits with 0, or 2 on a setup error or an unsupported flag."""
    from absl import app, flags

    from dpi_jax import validation

    config_holder, FLAGS = _define_flags()
    flags.DEFINE_bool("verbose", False, "Print the traceback of an error, not only its one-line message.")

    def _main(args):
        if len(args) > 1:
            print(f"error: unexpected arguments: {args[1:]}", file=sys.stderr)
            return 2
        for name, metric in (("lpips_weights", "LPIPS"), ("fid_weights", "FID")):
            if FLAGS[name].value:
                print(f"error: --{name} given, but this version of dpi_jax.evaluate does not compute {metric} yet "
                      f"(nothing is downloaded or computed). Run without --{name}; the table then omits {metric}.",
                      file=sys.stderr)
                return 2

        def validated_run():  # the config is checked before any model is loaded
            validation.check_sampling(config_holder.value)
            images.check_output_dir(FLAGS.out)
            run(config_holder.value, FLAGS.out, sweeps=FLAGS.sweep, crt_ablation=not FLAGS.no_crt_ablation,
                overwrite=FLAGS.overwrite)

        return validation.run_cli(validated_run, verbose=FLAGS.verbose, setup_errors=(sample_lib.SetupError,))

    app.run(_main, argv=argv, flags_parser=validation.parse_flags)  # exits with _main's status


if __name__ == "__main__":
    main()
