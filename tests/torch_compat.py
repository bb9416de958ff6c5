"""Import torchvision on this project's CPU build of PyTorch (see :mod:`dpi_jax.metrics.torch_reference`)."""

from dpi_jax.metrics.torch_reference import import_torchvision

__all__ = ["import_torchvision"]
