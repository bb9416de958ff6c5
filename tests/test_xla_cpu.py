"""dpi_jax.xla_cpu: the XLA:CPU flag is added only where it was measured and never over the user's own setting."""

import json

from dpi_jax import xla_cpu
from tests.reference import run_python

NAME = xla_cpu.FLAG.split("=")[0]


def test_flag_added_for_a_tested_jaxlib_only():
    tested = xla_cpu.TESTED_JAXLIB[0]
    assert xla_cpu.flags_with_defaults("", tested) == xla_cpu.FLAG
    assert xla_cpu.flags_with_defaults("--xla_force_host_platform_device_count=4", tested) == (
        "--xla_force_host_platform_device_count=4 " + xla_cpu.FLAG)
    # An XLA that does not know a flag aborts the process: other versions (or an unknown one) are left alone.
    assert xla_cpu.flags_with_defaults("", (0, 4)) == ""
    assert xla_cpu.flags_with_defaults("--a=1", None) == "--a=1"


def test_the_users_setting_and_the_opt_out_win():
    tested = xla_cpu.TESTED_JAXLIB[0]
    own = f"{NAME}=individual_convolution"
    assert xla_cpu.flags_with_defaults(own, tested) == own
    assert xla_cpu.flags_with_defaults("", tested, opt_out=True) == ""


def test_importing_dpi_jax_sets_it_and_convolutions_stay_correct():
    """In a fresh process: XLA_FLAGS after `import dpi_jax`, and a convolution under it against NumPy."""
    code = """
import json, os
import numpy as np
import dpi_jax, jax
from jax import lax
rng = np.random.default_rng(0)
x, w = rng.standard_normal((2, 12, 12, 8), np.float32), rng.standard_normal((3, 3, 8, 5), np.float32)
y = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))).astype(np.float64)
ref = sum(np.einsum("bhwc,cd->bhwd", xp[:, a:a + 12, b:b + 12], w[a, b]) for a in range(3) for b in range(3))
print(json.dumps({"flags": os.environ.get("XLA_FLAGS", ""), "err": float(np.abs(np.asarray(y) - ref).max())}))
"""
    out = json.loads(run_python(["-c", code], env={"XLA_FLAGS": "", "DPI_JAX_XLA_DEFAULTS": "0"}).stdout)
    expected = xla_cpu.flags_with_defaults("", xla_cpu._jaxlib_version())
    assert out["flags"] == expected
    assert out["err"] < 1e-4  # float32 sums of 72 products of unit normals: rounding ~1e-6 relative
