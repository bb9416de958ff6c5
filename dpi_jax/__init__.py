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
(:mod:`dpi_jax.xla_cpu`; ``DPI_JAX_XLA_DEFAULTS=1`` leaves XLA alone). The exported names are imported on first use
(PEP 562), so that ``import dpi_jax.cli`` and a tool's ``--help`` or flag error do not wait for JAX.
"""

import importlib

from dpi_jax import xla_cpu

xla_cpu.configure()  # before any JAX computation starts the CPU backend; see dpi_jax/xla_cpu.py

__version__ = "0.1.0"
# name -> the module that defines it
_EXPORTS = {"load_module": "checkpoint", "Schedule": "diffusion", "make_schedule": "diffusion",
            **{name: "sampler" for name in ("DEFAULT_SETTINGS", "Networks", "Settings", "compilation_count", "lower",
                                            "sample", "sample_prior", "sample_seeds", "sample_with_draws")}}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"dpi_jax.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'dpi_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
