"""XLA:CPU options that make the DPI networks faster, set when dpi_jax is imported.

Measured on a 2-core AVX2 CPU (docs/bench/cpu_side_by_side.jsonl): jaxlib 0.10 hands every convolution to
YNNPACK by default; for the ADM UNet's shapes XLA's own (Eigen) convolutions are faster, the full FFHQ prior forward
taking about 0.8x the time. :func:`configure` therefore appends ``--xla_cpu_experimental_ynn_fusion_type=
-individual_convolution`` to ``XLA_FLAGS``:

- only for the jaxlib versions it was measured on (:data:`TESTED_JAXLIB`): an XLA that does not know a flag aborts
  the process, so other versions are left alone;
- only when the user's ``XLA_FLAGS`` does not already set that option (theirs wins), and not at all with
  ``DPI_JAX_XLA_DEFAULTS=1`` in the environment;
- it takes effect only if JAX's CPU backend has not started yet (import dpi_jax before running any JAX computation);
  GPU and TPU backends ignore it.

The flag changes the order of the convolutions' sums, not what they compute (float32 rounding only).
"""

from __future__ import annotations

import os

FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
TESTED_JAXLIB = ((0, 10),)  # (major, minor) of the jaxlib versions the flag was measured on
OPT_OUT = "DPI_JAX_XLA_DEFAULTS"


def _jaxlib_version() -> tuple[int, ...] | None:
    try:
        from importlib.metadata import version

        return tuple(int(part) for part in version("jaxlib").split(".")[:2])
    except Exception:  # not installed, or an unusual version string: leave XLA alone
        return None


def flags_with_defaults(xla_flags: str, jaxlib_version: tuple[int, ...] | None, opt_out: bool = False) -> str:
    """``xla_flags`` with :data:`FLAG` appended when it applies (see the module docstring)."""
    name = FLAG.split("=")[0]
    if opt_out or jaxlib_version not in TESTED_JAXLIB or name in xla_flags:
        return xla_flags
    return f"{xla_flags} {FLAG}".strip()


def configure() -> None:
    """Set ``XLA_FLAGS`` for this process as :func:`flags_with_defaults` says."""
    flags = flags_with_defaults(os.environ.get("XLA_FLAGS", ""), _jaxlib_version(), os.environ.get(OPT_OUT) == "1")
    if flags:
        os.environ["XLA_FLAGS"] = flags
