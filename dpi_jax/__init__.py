"""dpi-jax: Diffusion Prior Interpolation (DPI, AAAI 2025) in JAX/Flax."""

__version__ = "0.1.0"
