"""What ``sample.py`` does: read a folder of faces, run DPI on them in batches, write PNGs and a grid.

Outputs in ``config.output_dir``: ``<input stem>.png`` for each SR result and ``grid.png`` with one row per input:
LR (nearest, enlarged) | bicubic | DPI | ground truth (synthetic mode). Existing files are never overwritten unless
``config.overwrite``: an input whose output exists is skipped, and a new grid goes to ``grid-N.png``.

Randomness: batch j uses ``fold_in(PRNGKey(config.seed), j)``; batches are padded to ``config.batch_size`` so that one
compilation serves the whole folder.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from dpi_jax import checkpoint, diffusion, images, sampler

log = logging.getLogger(__name__)

PRIOR_HELP = """\
The pretrained prior checkpoint {path} does not exist.
DPI uses the FFHQ 256x256 DDPM `ffhq_10m.pt` of DPS (Chung et al., 2022), linked from the READMEs of the DPS and
DPI (JerryYann/DPI) repositories. Download it yourself, then convert it once with
    python -m dpi_jax.port ffhq_10m.pt {path} --model ffhq_10m
or point --config.prior_checkpoint at a converted checkpoint."""

CRT_HELP = """\
The CRT checkpoint {path} does not exist. Train one with
    python train.py --config configs/crt_x8.py   (see the README)
or convert a PyTorch CRT with
    python -m dpi_jax.port crt.pt {path} --model crt
or sample without the corrector: --config.crt_checkpoint=''"""


class SetupError(RuntimeError):
    """A missing checkpoint or folder, with instructions; sample.py prints it and exits non-zero."""


def load_models(config: ml_collections.ConfigDict):
    """(prior, prior_params, prior_config, crt or None, crt_params or None) from the configured checkpoints."""
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.dtype]
    prior_dir = Path(config.prior_checkpoint)
    if not prior_dir.exists():
        raise SetupError(PRIOR_HELP.format(path=prior_dir))
    kind, prior_config, prior_params = checkpoint.load_model(prior_dir)
    prior = checkpoint.build_module(kind, prior_config, dtype=dtype)
    crt = crt_params = None
    if config.crt_checkpoint:
        crt_dir = Path(config.crt_checkpoint)
        if not crt_dir.exists():
            raise SetupError(CRT_HELP.format(path=crt_dir))
        kind, crt_config, crt_params = checkpoint.load_model(crt_dir)
        crt = checkpoint.build_module(kind, crt_config, dtype=dtype)
    return prior, prior_params, prior_config, crt, crt_params


def prepare_input(path: Path, config, image_size: int):
    """(LR uint8, I_L^bc uint8, ground truth uint8 or None) for one file; raises ImageReadError when unusable."""
    image = images.read_rgb(path)
    if config.mode == "synthetic":
        hr = image
        if hr.shape[:2] != (image_size, image_size):
            log.warning("%s: %dx%d, centre-cropped and resized to %dx%d", path, *hr.shape[:2], image_size, image_size)
            hr = images.resize(images.center_square(hr), image_size)
        lr = images.lr_from_hr(hr, config.scale)
    elif config.mode == "real":
        hr, lr = None, image
    else:
        raise ValueError(f"config.mode must be 'synthetic' or 'real', not {config.mode!r}")
    return lr, images.condition_from_lr(lr, image_size, config.k), hr


def run(config: ml_collections.ConfigDict) -> list[Path]:
    """Super-resolve every image of ``config.input_dir``; returns the paths written."""
    prior, prior_params, prior_config, crt, crt_params = load_models(config)
    image_size = int(prior_config["image_size"])
    schedule = diffusion.make_schedule(config.num_timesteps, config.beta_schedule, config.respacing)
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    todo = []
    for path in images.list_images(config.input_dir):
        target = out_dir / f"{path.stem}.png"
        if target.exists() and not config.overwrite:
            log.warning("%s exists: skipped (set --config.overwrite=True to replace it)", target)
            continue
        try:
            todo.append((path, target) + prepare_input(path, config, image_size))
        except images.ImageReadError as err:
            log.error("skipped %s", err)
    if not todo:
        log.warning("nothing to do in %s", config.input_dir)
        return []

    written, rows = [], []
    batches = [todo[j:j + config.batch_size] for j in range(0, len(todo), config.batch_size)]
    for j, batch in enumerate(tqdm(batches, desc="DPI", unit="batch")):
        cond = np.stack([images.to_model(item[3]) for item in batch])
        pad = config.batch_size - len(batch)
        cond = np.concatenate([cond, np.repeat(cond[-1:], pad, axis=0)]) if pad else cond
        sr = sampler.sample(
            jax.random.fold_in(jax.random.PRNGKey(config.seed), j), jnp.asarray(cond), prior=prior,
            prior_params=prior_params, crt=crt, crt_params=crt_params, schedule=schedule, tau=config.tau, s=config.s,
            omega=config.omega, k=config.k, method=config.method, eta=config.eta, var_type=config.var_type,
            clip_denoised=config.clip_denoised)
        sr = images.to_uint8(jax.device_get(sr)[: len(batch)])
        for (path, target, lr, _, hr), result in zip(batch, sr):
            images.save_png(target, result)
            written.append(target)
            if len(rows) < config.grid_rows:
                row = [images.nearest_up(lr, image_size), images.resize(lr, image_size), result]
                rows.append(row + ([hr] if hr is not None else []))

    grid_path = out_dir / "grid.png"
    grid_path = grid_path if config.overwrite else images.free_path(grid_path)
    images.save_png(grid_path, images.make_grid(rows))
    written.append(grid_path)
    log.info("wrote %d SR images and %s", len(written) - 1, grid_path)
    return written


def main(config: ml_collections.ConfigDict) -> int:
    """Run and turn setup errors into a message and exit status 2."""
    try:
        run(config)
    except (SetupError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
