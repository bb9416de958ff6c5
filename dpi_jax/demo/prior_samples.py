"""Unconditional samples of a prior checkpoint as one PNG grid: what the prior has learned, without DPI.

    python -m dpi_jax.demo.prior_samples weights/demo/prior docs/demo/prior_samples.png --count 16 --respacing 1000

Ancestral DDPM sampling (:func:`dpi_jax.sampler.sample_prior`) with ``--var_type`` (``fixed_small`` for priors
trained with ``learn_sigma=False``, like the demo's); ``--count`` samples from ``PRNGKey(--seed)``, in rows of
``--per_row``. An existing PNG is kept unless ``--overwrite``.
"""

from __future__ import annotations

import sys
from typing import Sequence

import jax
import numpy as np

from dpi_jax import checkpoint, cli, diffusion, images, sampler


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


def _define_flags(fv):
    from absl import flags

    flags.DEFINE_integer("count", 16, "the number of samples", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("per_row", 8, "samples per row of the grid", lower_bound=1, flag_values=fv)
    flags.DEFINE_string("respacing", "1000", "steps of the 1000-step schedule: '1000', '250', ...", flag_values=fv)
    flags.DEFINE_enum("var_type", "fixed_small", diffusion.VAR_TYPES, "the reverse process variance", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "samples from PRNGKey(seed)", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "replace an existing PNG", flag_values=fv)


def _write(fv, prior: str, out: str):
    samples = prior_samples(prior, fv.count, respacing=fv.respacing, var_type=fv.var_type, seed=fv.seed)
    rows = [list(samples[i:i + fv.per_row]) for i in range(0, fv.count, fv.per_row)]
    print(f"wrote {images.save_png(out, images.make_grid(rows), overwrite=fv.overwrite)}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dpi_jax.demo.prior_samples PRIOR OUT [flags]`` (``argv``: the arguments after the program name);
    the exit status."""
    return cli.main_with_args(argv, _define_flags, _write, prog="python -m dpi_jax.demo.prior_samples",
                              description=__doc__.strip(), positional=("PRIOR", "OUT"))


if __name__ == "__main__":
    sys.exit(main())
