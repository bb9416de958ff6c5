"""dpi-jax: Diffusion Prior Interpolation (DPI, AAAI 2025) in JAX/Flax.

The sampling API, runnable as it stands on the bundled demo weights (64x64 prior and x8 CRT)::

    import jax, numpy as np
    import dpi_jax
    from dpi_jax import images

    prior, prior_params = dpi_jax.load_module("weights/demo/prior")
    crt, crt_params = dpi_jax.load_module("weights/demo/crt_x8")
    nets = dpi_jax.Networks(prior, prior_params, crt, crt_params)      # Networks(prior, prior_params): prior only
    schedule = dpi_jax.make_schedule(1000, respacing="50")
    settings = dpi_jax.Settings(tau=300, s=1.2, omega=750, var_type="fixed_small")   # the paper's x8
    lr = np.full((8, 8, 3), 128, np.uint8)                                # an 8x8 LR face (uint8 RGB)
    lr_bicubic = images.to_model(images.condition_from_lr(lr, 64))[None]  # I_L^bc, (1, 32, 32, 3) in [-1, 1]
    x0 = dpi_jax.sample(jax.random.key(0), lr_bicubic, nets, schedule, settings)   # (1, 64, 64, 3) in [-1, 1]

Importing the package also sets one XLA:CPU option that makes these networks faster on CPU
(:mod:`dpi_jax.xla_cpu`; ``DPI_JAX_XLA_DEFAULTS=1`` leaves XLA alone).
"""

from dpi_jax import xla_cpu

xla_cpu.configure()  # before any JAX computation starts the CPU backend; see dpi_jax/xla_cpu.py

from dpi_jax.checkpoint import load_module  # noqa: E402  (after the XLA option)
from dpi_jax.diffusion import Schedule, make_schedule  # noqa: E402
from dpi_jax.sampler import (  # noqa: E402
    DEFAULT_SETTINGS,
    Networks,
    Settings,
    compilation_count,
    lower,
    sample,
    sample_prior,
    sample_seeds,
    sample_with_draws,
)

__version__ = "0.1.0"
__all__ = ["load_module", "Schedule", "make_schedule", "DEFAULT_SETTINGS", "Networks", "Settings",
           "compilation_count", "lower", "sample", "sample_prior", "sample_seeds", "sample_with_draws"]
