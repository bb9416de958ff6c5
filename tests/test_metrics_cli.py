"""The metric networks end to end through the command lines: `python -m dpi_jax.port --model lpips_alex` on a
torchvision AlexNet state_dict file, then `python -m dpi_jax.metrics lpips / fid / stats` on folders."""

import numpy as np
import pytest
import torch
from PIL import Image

from dpi_jax.metrics import fid, inception
from dpi_jax.metrics.torch_reference import random_fid_inception_state_dict
from tests.reference import run_python
from tests.test_evaluate import face_like, torch_state
from tests.torch_compat import import_torchvision


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("metric_folders")
    for name, shift in (("a", 0), ("b", 7)):
        (root / name).mkdir()
        for n in range(3):
            Image.fromarray(face_like(n + shift, 64)).save(root / name / f"img{n}.png")
    return root


@pytest.mark.slow
def test_port_lpips_then_lpips_of_two_folders(folders, tmp_path):
    torchvision = import_torchvision()
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "alexnet-owt-7be5be79.pth")
    weights = tmp_path / "lpips_alex"
    run_python(["-m", "dpi_jax.port", str(tmp_path / "alexnet-owt-7be5be79.pth"), str(weights),
                "--model", "lpips_alex"])
    proc = run_python(["-m", "dpi_jax.metrics", "lpips", str(folders / "a"), str(folders / "b"),
                       f"--weights={weights}", "--json"])
    line = proc.stdout.splitlines()[0]
    assert line.startswith("LPIPS-alex: ") and line.endswith("over 3 pairs")
    assert float(line.split()[1]) > 0
    same = run_python(["-m", "dpi_jax.metrics", "lpips", str(folders / "a"), str(folders / "a"),
                       f"--weights={weights}"])
    assert abs(float(same.stdout.split()[1])) < 1e-9  # LPIPS(x, x) = 0 (to float rounding of the two sides)


@pytest.mark.slow
def test_fid_and_stats_commands(folders, tmp_path):
    weights = tmp_path / "fid_inception"
    params = inception.params_from_state_dict(torch_state(random_fid_inception_state_dict(3)))
    inception.save(weights, params)
    stats = tmp_path / "a.npz"
    run_python(["-m", "dpi_jax.metrics", "stats", str(folders / "a"), str(stats), f"--weights={weights}"])
    mu, sigma = fid.load_stats(stats)
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048)
    proc = run_python(["-m", "dpi_jax.metrics", "fid", str(folders / "a"), str(stats), f"--weights={weights}"])
    assert proc.stdout.startswith("FID: ") and abs(float(proc.stdout.split()[1])) < 1e-3  # a folder vs itself
    proc = run_python(["-m", "dpi_jax.metrics", "fid", str(folders / "a"), str(folders / "b"), f"--weights={weights}"])
    assert float(proc.stdout.split()[1]) > 1e-3
    np.testing.assert_allclose(mu, fid.folder_statistics(params, folders / "a", progress=False)[0], rtol=1e-6)


def test_missing_weights_name_the_file_and_the_port_command(folders, tmp_path):
    proc = run_python(["-m", "dpi_jax.metrics", "fid", str(folders / "a"), str(folders / "b"),
                       f"--weights={tmp_path / 'none'}"], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "pt_inception-2015-12-05-6726825d.pth" in proc.stderr and "python -m dpi_jax.port" in proc.stderr


@pytest.mark.slow
def test_metrics_bench_side_by_side_agrees():
    """The side-by-side benchmark runs both sides on the same weights and images, and they agree."""
    import json

    proc = run_python(["-m", "dpi_jax.metrics.bench", "--images=4", "--size=64", "--batch_size=2"])
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["lpips_max_rel_diff"] < 1e-4
    assert abs(figures["fid_ours"] - figures["fid_reference"]) <= 1e-3 * abs(figures["fid_reference"]) + 1e-6
    for key in ("lpips_ours_s", "lpips_reference_s", "fid_ours_s", "fid_reference_s"):
        assert figures[key] > 0
