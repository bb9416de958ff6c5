"""JAX's persistent compilation cache for the command-line tools, so that a second run of the same program loads
XLA's compiled executable instead of compiling it again (the full-size sampler takes about 12 s to compile on CPU).

Every command-line tool (``sample.py``, also in photo mode, ``train.py``, ``python -m dpi_jax.evaluate`` /
``metrics`` / ``bench`` / ``app`` ...) calls :func:`enable` before its work starts, in :mod:`dpi_jax.cli`'s
templates. The cache lives in ``$DPI_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/dpi_jax/xla``, else
``~/.cache/dpi_jax/xla``; ``DPI_JAX_CACHE_DIR=off`` switches it off. Programs that compile in under
:data:`MIN_COMPILE_SECONDS` are not written (the many tiny helper programs), unless ``$DPI_JAX_CACHE_MIN_COMPILE_S``
says otherwise (the test session sets 0: its many short-lived processes each compiled about a hundred of them, ~7 s
per process). A library user who wants it calls
:func:`enable` too; importing dpi_jax does not. The test session uses one fresh cache folder for itself and every
tool it launches (tests/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "DPI_JAX_CACHE_DIR"
OFF = ("off", "0", "none", "")
MIN_COMPILE_SECONDS = 0.5
MIN_ENV = "DPI_JAX_CACHE_MIN_COMPILE_S"


def cache_dir(environ=None) -> Path | None:
    """Where the cache goes under ``environ`` (default ``os.environ``), or None when switched off."""
    environ = os.environ if environ is None else environ
    if ENV in environ:
        value = environ[ENV].strip()
        return None if value.lower() in OFF else Path(value).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "dpi_jax" / "xla"


def enable(environ=None) -> Path | None:
    """Switch JAX's persistent compilation cache on at :func:`cache_dir` (created if needed); returns the folder, or
    None when switched off. A folder that cannot be created leaves the cache off (the run goes on, uncached)."""
    import jax

    environ = os.environ if environ is None else environ
    directory = cache_dir(environ)
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    try:
        min_seconds = float(environ.get(MIN_ENV, MIN_COMPILE_SECONDS))
    except ValueError:
        min_seconds = MIN_COMPILE_SECONDS
    jax.config.update("jax_persistent_cache_min_compile_time_secs", max(0.0, min_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
