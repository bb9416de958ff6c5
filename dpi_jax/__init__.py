"""dpi-jax: Diffusion Prior Interpolation (DPI, AAAI 2025) in JAX/Flax."""

from dpi_jax import xla_cpu

xla_cpu.configure()  # faster XLA:CPU convolutions for these networks; see dpi_jax/xla_cpu.py

__version__ = "0.1.0"
