"""The benchmark runs and prints its JSON line (a smoke test: the figures themselves are not asserted)."""

import json

import pytest

from tests.reference import run_python


@pytest.mark.slow
def test_bench_tiny_prints_one_json_line():
    proc = run_python(["-m", "dpi_jax.bench", "--config", "configs/x8.py", "--tiny", "--steps", "2", "--batch", "1",
                       "--repeats", "1"])
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("compile_s", "s_per_step_per_image", "images_per_s", "gflop_per_prior_crt_call_per_image",
                "sampler_tflops", "forwards_tflops", "overhead", "temp_mib"):
        assert figures[key] > 0, key
    assert figures["recompilations_on_tau_s_omega_seed"] == 0
