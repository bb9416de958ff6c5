"""What ``sample.py`` does: read a folder of faces, run DPI on them in batches, write PNGs and a grid.

Outputs in ``config.output_dir``: ``<input stem>.png`` for each SR result (with ``config.num_seeds = S > 1``:
``<stem>_s0.png`` ... ``<stem>_s{S-1}.png`` and ``<stem>_std.png``, the per-pixel standard deviation over the seeds)
and ``grid.png`` with one row per input: LR (nearest, enlarged) | bicubic | DPI (up to 4 seeds) | std map | ground
truth (synthetic mode). Existing files are never overwritten unless ``config.overwrite``: an input whose output
exists is skipped, and a new grid goes to ``grid-N.png``.

Randomness: seed n of batch j uses ``fold_in(fold_in(PRNGKey(config.seed), j), n)``, so adding seeds keeps the
first ones. Batches are padded to ``config.batch_size`` (rounded up to a multiple of the device count) so that one
compilation serves the whole folder, and are split over all devices.
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

from dpi_jax import checkpoint, diffusion, images, sampler, sharding

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
    """(prior, prior_params, crt or None, crt_params or None) from the configured checkpoints."""
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.dtype]
    if not Path(config.prior_checkpoint).exists():
        raise SetupError(PRIOR_HELP.format(path=config.prior_checkpoint))
    if config.crt_checkpoint and not Path(config.crt_checkpoint).exists():
        raise SetupError(CRT_HELP.format(path=config.crt_checkpoint))
    prior, prior_params = checkpoint.load_module(config.prior_checkpoint, dtype)
    crt, crt_params = checkpoint.load_module(config.crt_checkpoint, dtype) if config.crt_checkpoint else (None, None)
    return prior, prior_params, crt, crt_params


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
    prior, prior_params, crt, crt_params = load_models(config)
    image_size = prior.image_size
    schedule = diffusion.make_schedule(config.num_timesteps, config.beta_schedule, config.respacing)
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    num_seeds = int(config.num_seeds)
    todo = []
    for path in images.list_images(config.input_dir):
        target = out_dir / (f"{path.stem}.png" if num_seeds == 1 else f"{path.stem}_s0.png")
        if target.exists() and not config.overwrite:
            log.warning("%s exists: skipped (set --config.overwrite=True to replace it)", target)
            continue
        try:
            todo.append((path,) + prepare_input(path, config, image_size))
        except images.ImageReadError as err:
            log.error("skipped %s", err)
    if not todo:
        log.warning("nothing to do in %s", config.input_dir)
        return []

    mesh = sharding.data_mesh()
    batch_size = -(-config.batch_size // mesh.size) * mesh.size  # a multiple of the device count
    params = sharding.replicate(dict(prior_params=prior_params, crt_params=crt_params), mesh)
    written, rows = [], []
    batches = [todo[j:j + batch_size] for j in range(0, len(todo), batch_size)]
    for j, batch in enumerate(tqdm(batches, desc="DPI", unit="batch")):
        cond = np.stack([images.to_model(item[2]) for item in batch])
        pad = batch_size - len(batch)
        cond = np.concatenate([cond, np.repeat(cond[-1:], pad, axis=0)]) if pad else cond
        batch_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), j)
        keys = jax.vmap(jax.random.fold_in, (None, 0))(batch_key, jnp.arange(num_seeds))
        sr = sampler.sample_seeds(
            keys, sharding.shard_batch(jnp.asarray(cond), mesh), prior=prior, crt=crt, **params,
            schedule=schedule, tau=config.tau, s=config.s, omega=config.omega, k=config.k, method=config.method,
            eta=config.eta, var_type=config.var_type, clip_denoised=config.clip_denoised,
            chunk_size=config.seed_chunk or None)
        sr = np.asarray(jax.device_get(sr))[:, : len(batch)]  # (seeds, batch, H, W, 3) in [-1, 1]
        for n, (path, lr, _, hr) in enumerate(batch):
            results = images.to_uint8(sr[:, n])
            extra = []
            if num_seeds == 1:
                written.append(images.save_png(out_dir / f"{path.stem}.png", results[0]))
            else:
                for m, result in enumerate(results):
                    written.append(images.save_png(out_dir / f"{path.stem}_s{m}.png", result))
                extra = [images.diversity_map(sr[:, n])]
                written.append(images.save_png(out_dir / f"{path.stem}_std.png", extra[0]))
            if len(rows) < config.grid_rows:
                row = [images.nearest_up(lr, image_size), images.resize(lr, image_size), *results[:4], *extra]
                rows.append(row + ([hr] if hr is not None else []))

    grid_path = out_dir / "grid.png"
    grid_path = grid_path if config.overwrite else images.free_path(grid_path)
    written.append(images.save_png(grid_path, images.make_grid(rows)))
    log.info("wrote %d images and %s", len(written) - 1, grid_path)
    return written


def main(config: ml_collections.ConfigDict) -> int:
    """Run and turn setup errors into a message and exit status 2."""
    try:
        run(config)
    except (SetupError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
