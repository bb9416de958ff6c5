"""The README's Python example and the one in dpi_jax's docstring run as they stand, on the demo weights."""

import os
import re

import numpy as np
import pytest

import dpi_jax
from tests.reference import ROOT


def run_example(code: str):
    namespace = {}
    cwd = os.getcwd()
    os.chdir(ROOT)  # the example's paths are relative to the repository
    try:
        exec(compile(code, "<example>", "exec"), namespace)
    finally:
        os.chdir(cwd)
    x0 = np.asarray(namespace["x0"])
    assert x0.shape == (1, 64, 64, 3) and np.isfinite(x0).all() and np.abs(x0).max() <= 1.5
    return x0


@pytest.mark.slow
def test_readme_example_runs():
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert "dpi_jax.sample(" in code
    run_example(code)


@pytest.mark.slow
def test_docstring_example_runs_and_matches_the_readme():
    lines = []
    for line in dpi_jax.__doc__.split("::\n", 1)[1].splitlines():  # the indented block after "::"
        if line.strip() and not line.startswith("    "):
            break
        lines.append(line[4:])
    code = "\n".join(lines)
    docstring_x0 = run_example(code)
    readme = (ROOT / "README.md").read_text()
    np.testing.assert_array_equal(docstring_x0, run_example(re.search(r"```python\n(.*?)```", readme, re.S).group(1)))


def test_the_package_exports_the_sampling_api():
    assert {"sample", "sample_seeds", "Settings", "Networks", "make_schedule", "load_module"} <= set(dpi_jax.__all__)
    assert all(hasattr(dpi_jax, name) for name in dpi_jax.__all__)
