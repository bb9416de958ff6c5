"""The benchmark's command line: its JSON line and what its figures must satisfy (not how fast they are)."""

import json
import os
from pathlib import Path

import jax
import pytest

from tests.reference import run_python


@pytest.mark.slow
def test_bench_tiny_figures_and_sweep():
    proc = run_python(["-m", "dpi_jax.bench", "--config", "configs/paper.py:x8", "--tiny", "--steps", "2",
                       "--batch", "1", "--repeats", "1", "--sweep", "--sweep_batches", "1", "--seeds", "2"])
    lines = proc.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    for key in ("compile_s", "temp_mib", "sampler_s", "forwards_s", "s_per_step_per_image", "images_per_s",
                "gflop_per_prior_crt_call_per_image", "sampler_tflops", "forwards_tflops", "overhead",
                "peak_host_mib", "cpus"):
        assert figures[key] > 0, key
    steps, batch = figures["steps"], figures["batch"]
    assert (steps, batch, figures["model"]) == (2, 1, "tiny-64")
    # The reported ratios are those of the reported timings.
    assert figures["overhead"] == pytest.approx(figures["sampler_s"] / figures["forwards_s"])
    assert figures["s_per_step_per_image"] == pytest.approx(figures["sampler_s"] / (steps * batch))
    assert figures["images_per_s"] == pytest.approx(batch / figures["sampler_s"])
    assert figures["forwards_tflops"] / figures["sampler_tflops"] == pytest.approx(figures["overhead"])
    # Changing tau, s, omega and the seed reuses the compiled sampler.
    assert figures["recompilations_on_tau_s_omega_seed"] == 0
    # CPU: no device memory statistics (null); elsewhere a positive peak.
    assert figures["device_peak_mib"] is None or figures["device_peak_mib"] > 0
    rows = figures["sweep"]
    assert [(r["batch"], r["seeds"]) for r in rows] == [(1, 1), (1, 2)]
    for row in rows:
        assert row["images"] == row["batch"] * row["seeds"]
        assert row["images_per_s"] > 0
        seconds = row["images"] / row["images_per_s"]
        assert row["s_per_step_per_image"] == pytest.approx(seconds / (steps * row["images"]))


def test_reference_that_is_not_a_checkout_is_a_setup_error(tmp_path):
    proc = run_python(["-m", "dpi_jax.bench", "--reference", str(tmp_path)], check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "guided_diffusion" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DPI_REFERENCE"), reason="DPI_REFERENCE (a checkout of the authors' repository) "
                    "not set")
def test_side_by_side_tiny():
    pytest.importorskip("torch")
    pytest.importorskip("kornia")
    proc = run_python(["-m", "dpi_jax.bench", "--reference", str(Path(os.environ["DPI_REFERENCE"])), "--tiny",
                       "--steps", "2", "--repeats", "1"])
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["reference_s_per_image_step"] > 0 and figures["project_s_per_image_step"] > 0
    assert figures["speedup"] == pytest.approx(
        figures["reference_s_per_image_step"] / figures["project_s_per_image_step"], rel=1e-2)
    assert figures["torch_threads"] >= 1 and figures["cpus"] >= 1


@pytest.mark.slow
def test_dtype_agreement_compares_bfloat16_with_float32(monkeypatch):
    """--dtype_check on 16x16 models: both dtypes run on the same float32 parameters (random in every layer: with
    guided-diffusion's zero-initialised output convolutions both would return zeros), so the outputs differ by
    bfloat16's rounding alone: a small, nonzero difference. One call: within the 5e-2 bound of tests/test_models.py
    (measured 1.9e-2). The sampled images: mean difference 5.9e-3 of the [-1, 1] range, PSNR 28 dB (bounds 2e-2 and
    20 dB): random networks with no zero layer amplify rounding, and a value pushed across the sampler's clip at +-1
    or a RACM draw's threshold moves a few pixels by up to the whole range, so the largest difference is not bounded."""
    import jax.numpy as jnp
    import numpy as np

    from configs import paper
    from dpi_jax import bench

    small = dict(image_size=16, num_channels=16, channel_mult=(1, 2), attention_resolutions="8", num_head_channels=8)
    monkeypatch.setattr(bench, "TINY_PRIOR", dict(bench.TINY_PRIOR, **small))
    monkeypatch.setattr(bench, "TINY_CRT", dict(bench.TINY_CRT, **small))
    prior = bench.make_networks(True, jnp.float32).prior_params
    for path, leaf in jax.tree_util.tree_leaves_with_path(prior):  # no layer at zero: every one counts
        assert np.asarray(leaf).std() > 0 or path[-1].key == "scale", path

    check = bench.dtype_agreement(paper.get_config("x4"), steps=2, batch=1, tiny=True)
    assert 0 < check["one_call_relative_error"] < 5e-2
    assert 0 < check["mean_abs_diff"] < 2e-2 and check["mean_abs_diff"] <= check["max_abs_diff"]
    assert check["psnr_db"] > 20
