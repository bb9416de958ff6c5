"""Unconditional samples of a prior checkpoint as one PNG grid: what the prior has learned, without DPI.

    python -m dpi_jax.demo.prior_samples weights/demo/prior docs/demo/prior_samples.png --count 16 --respacing 1000

Ancestral DDPM sampling (:func:`dpi_jax.sampler.sample_prior`) with ``--var_type`` (``fixed_small`` for priors
trained with ``learn_sigma=False``, like the demo's); ``--count`` samples from ``PRNGKey(--seed)``, in rows of
``--per_row``. An existing PNG is kept unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import jax
import numpy as np

from dpi_jax import checkpoint, cli, diffusion, images, sampler
from dpi_jax.errors import InputError


def prior_samples(prior_dir, count: int, *, respacing: str = "1000", var_type: str = "fixed_small",
                  seed: int = 0) -> np.ndarray:
    """``count`` uint8 (count, H, W, 3) unconditional samples of the prior in ``prior_dir``."""
    module, params = checkpoint.load_module(prior_dir, expected_kind="adm", role="prior_samples")
    schedule = diffusion.make_schedule(1000, "linear", respacing)
    settings = sampler.Settings(var_type=var_type).validate(schedule.num_timesteps)
    shape = (count, module.image_size, module.image_size, 3)
    run = jax.jit(lambda key, params: sampler.sample_prior(key, shape, sampler.Networks(module, params), schedule,
                                                           settings))
    return images.to_uint8(np.asarray(run(jax.random.PRNGKey(seed), params)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpi_jax.demo.prior_samples", description=__doc__.split("\n")[0])
    parser.add_argument("prior", help="a prior (adm) checkpoint directory, e.g. weights/demo/prior")
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--per_row", type=int, default=8)
    parser.add_argument("--respacing", default="1000", help="steps of the 1000-step schedule: '1000', '250', ...")
    parser.add_argument("--var_type", default="fixed_small", choices=diffusion.VAR_TYPES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    parser.add_argument("--verbose", action="store_true", help="print the traceback of an error")
    args = parser.parse_args(argv)

    def write():
        if args.count < 1 or args.per_row < 1:
            raise InputError(f"--count {args.count} and --per_row {args.per_row} must be >= 1")
        samples = prior_samples(args.prior, args.count, respacing=args.respacing, var_type=args.var_type,
                                seed=args.seed)
        rows = [list(samples[i:i + args.per_row]) for i in range(0, args.count, args.per_row)]
        path = images.save_png(args.out, images.make_grid(rows), overwrite=args.overwrite)
        print(f"wrote {path}")

    return cli.run_cli(write, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
