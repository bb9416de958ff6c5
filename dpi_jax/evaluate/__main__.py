"""``python -m dpi_jax.evaluate``: see :mod:`dpi_jax.evaluate.cli`."""

from dpi_jax.evaluate.cli import main

main()
