"""dpi_jax.evaluate: the metrics against direct NumPy computations, the synthfaces input source of sample_lib, and an
end-to-end evaluation with a sweep on tiny random checkpoints."""

import csv
import json
import sys
import types

import jax
import numpy as np
import pytest
from PIL import Image

import dpi_jax.demo
from configs import default
from dpi_jax import checkpoint, evaluate, images, models, sample_lib
from tests.reference import TRAJ_ADM, TRAJ_CRT, random_vggface_params, run_python


def np_psnr(a, b):
    mse = ((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).mean(axis=(-3, -2, -1))
    return 10 * np.log10(1.0 / mse)


def np_ssim(a, b, size=11, sigma=1.5, k1=0.01, k2=0.03):
    """SSIM of HWC images in [0, 1] written out: separable Gaussian window, valid filtering, per channel, averaged."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    g /= g.sum()

    def blur(z):  # valid separable filtering of (H, W, C)
        z = np.lib.stride_tricks.sliding_window_view(z, size, axis=0) @ g
        return np.lib.stride_tricks.sliding_window_view(z, size, axis=1) @ g

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    c1, c2 = k1 ** 2, k2 ** 2
    ssim_map = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return ssim_map.mean()


def pil_resize(image, size):
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))


def face_like(seed, size=32):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    base = np.stack([np.sin(6 * xx + seed), np.cos(5 * yy), xx * yy], -1) * 0.5 + 0.5
    return (255 * np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1)).astype(np.uint8)


def test_settings_and_sweeps():
    config = default.get_config()
    assert [s.name for s in evaluate.default_settings(config)] == ["dpi", "dpi-no-crt"]
    assert [s.name for s in evaluate.default_settings(config, crt_ablation=False)] == ["dpi"]
    config.crt_checkpoint = ""
    assert [(s.name, s.crt) for s in evaluate.default_settings(config)] == [("dpi-no-crt", False)]
    sweep = evaluate.parse_sweep("omega=1000,500.5", config)
    assert [(s.name, s.overrides, s.swept, s.value) for s in sweep] == [
        ("omega=1000", {"omega": 1000.0}, "omega", 1000.0), ("omega=500.5", {"omega": 500.5}, "omega", 500.5)]
    row = sweep[1].row(config)  # the config's other values, the swept one replaced
    assert (row["setting"], row["tau"], row["s"], row["omega"], row["k"]) == (
        "omega=500.5", config.dpi.tau, config.dpi.s, 500.5, config.dpi.k)
    for bad in ("eta=1,2", "tau", "tau=", "tau=a,b"):
        with pytest.raises(ValueError, match="--sweep"):
            evaluate.parse_sweep(bad, config)
    assert evaluate.slug("tau=2.5") == "tau_2.5" and evaluate.slug("dpi-no-crt") == "dpi-no-crt"


def test_metric_names_are_parsed_and_checked():
    assert evaluate.parse_metrics("fid,psnr, lpips") == ("psnr", "lpips", "fid")  # canonical order
    assert evaluate.parse_metrics("is,fid,diversity", "real") == ("fid", "is", "diversity")
    assert evaluate.parse_metrics("clipiqa,musiq,is,fid", "real") == ("fid", "is", "musiq", "clipiqa")  # Table 2
    with pytest.raises(ValueError, match="unknown.*niqe"):
        evaluate.parse_metrics("psnr,niqe")
    with pytest.raises(ValueError, match="psnr, lpips need ground-truth"):
        evaluate.parse_metrics("psnr,lpips,fid", "real")


# ---------------------------------------------------------------------------------------------------- synthfaces input

@pytest.fixture
def fake_synthfaces(monkeypatch):
    """A stand-in for dpi_jax.demo.synthfaces with its API (the tests must not depend on its pictures)."""
    fake = types.ModuleType("dpi_jax.demo.synthfaces")
    fake.face = lambda seed, size=64: face_like(seed, size)
    fake.faces = lambda seeds, size=64: np.stack([face_like(s, size) for s in seeds])
    fake.split_seeds = lambda split, count, start=0: [(1000 if split == "heldout" else 0) + start + i
                                                      for i in range(count)]
    monkeypatch.setitem(sys.modules, "dpi_jax.demo.synthfaces", fake)
    monkeypatch.setattr(dpi_jax.demo, "synthfaces", fake, raising=False)
    return fake


def test_list_inputs_from_synthfaces(fake_synthfaces, tmp_path):
    config = default.get_config()
    config.input_dir, config.num_images, config.scale = "synthfaces:heldout", 3, 8
    inputs = sample_lib.list_inputs(config, 32)
    assert [item[0] for item in inputs] == ["heldout_1000", "heldout_1001", "heldout_1002"]
    name, lr, cond, hr, index = inputs[1]
    assert index == 1  # its place in the list: its random keys derive from it
    np.testing.assert_array_equal(hr, face_like(1001, 32))
    np.testing.assert_array_equal(lr, images.lr_from_hr(hr, 8))
    assert lr.shape == (4, 4, 3) and cond.shape == (16, 16, 3)
    config.num_images = 0
    assert len(sample_lib.list_inputs(config, 32)) == 16  # the default count
    config.input_dir, config.num_images = "synthfaces:train", 2
    Image.fromarray(face_like(0)).save(tmp_path / "train_0.png")  # an existing output skips its input
    assert [i[0] for i in sample_lib.list_inputs(config, 32, tmp_path)] == ["train_1"]
    config.overwrite = True
    assert [i[0] for i in sample_lib.list_inputs(config, 32, tmp_path)] == ["train_0", "train_1"]
    config.mode = "real"
    with pytest.raises(sample_lib.SetupError, match="synthetic"):
        sample_lib.list_inputs(config, 32)
    config.mode, config.input_dir = "synthetic", "synthfaces:test"
    with pytest.raises(sample_lib.SetupError, match="synthfaces:heldout"):
        sample_lib.list_inputs(config, 32)


def test_list_inputs_folder_honours_num_images(tmp_path, caplog):
    for n in range(3):
        Image.fromarray(face_like(n, 40)).save(tmp_path / f"f{n}.png")
    (tmp_path / "a_corrupt.png").write_bytes(b"not an image")
    config = default.get_config()
    config.input_dir = str(tmp_path)
    inputs = sample_lib.list_inputs(config, 32)
    assert [i[0] for i in inputs] == ["f0", "f1", "f2"] and "a_corrupt.png" in caplog.text
    assert [i.index for i in inputs] == [1, 2, 3]  # places in the sorted list, the unreadable file's counted
    assert inputs[0][3].shape == (32, 32, 3)  # wrong size: cropped and resized
    config.num_images = 2  # the first two files, the unreadable one included
    assert [i[0] for i in sample_lib.list_inputs(config, 32)] == ["f0"]


# -------------------------------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def random_checkpoints(tmp_path_factory):
    """The 32x32 reference-trajectory architectures with random parameters (drawn in NumPy: initialising through
    Flax would compile the whole network, tens of seconds on 2 cores)."""
    root = tmp_path_factory.mktemp("random_ckpt")
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        name = getattr(path[-1], "key", "")
        if name == "scale":
            return np.ones(leaf.shape, np.float32)
        if name == "bias":
            return np.zeros(leaf.shape, np.float32)
        fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 1
        return rng.normal(scale=fan_in ** -0.5, size=leaf.shape).astype(np.float32)

    for name, config, kind in [("adm", TRAJ_ADM, "adm"), ("crt", TRAJ_CRT, "crt")]:
        abstract = models.abstract_params(models.make_model(kind, config))
        checkpoint.save_model(root / name, jax.tree_util.tree_map_with_path(draw, abstract), config, kind=kind)
    return root


def tiny_config(checkpoints):
    config = default.get_config()
    config.input_dir, config.num_images, config.scale = "synthfaces:heldout", 2, 8
    config.prior_checkpoint, config.crt_checkpoint = str(checkpoints / "adm"), str(checkpoints / "crt")
    config.diffusion.respacing = "4"  # t = 0, 333, 666, 999: two steps of stage II
    config.dpi.tau, config.dpi.omega = 400.0, 1000.0
    config.num_seeds, config.batch_size = 2, 2
    return config


@pytest.mark.slow
def test_evaluate_end_to_end_with_a_sweep(random_checkpoints, fake_synthfaces, tmp_path, capsys):
    config = tiny_config(random_checkpoints)
    out = tmp_path / "eval"
    rows = evaluate.run(config, out, sweeps=["tau=0,700"], progress=False)

    names = ["dpi", "dpi-no-crt", "tau=0", "tau=700", "bicubic"]
    assert [r["setting"] for r in rows] == names
    expected_files = {"metrics.csv", "metrics.md", "metrics.json", "sweep.png", "compare.png", "grid_dpi.png",
                      "grid_dpi-no-crt.png", "grid_tau_0.png", "grid_tau_700.png"}
    assert {p.name for p in out.iterdir()} == expected_files
    for row in rows:
        assert row["num_images"] == 2
        for metric in evaluate.DEFAULT:
            assert np.isfinite(row[metric]) and np.isfinite(row[f"{metric}_std"]), (row["setting"], metric)
        assert -1 <= row["ssim"] <= 1
        assert "lpips" not in row and "fid" not in row  # only what was asked for
    for row in rows[:-1]:  # two different seeds never give the same image
        assert row["diversity"] > 0 and row["num_seeds"] == 2
    assert rows[-1]["diversity"] == 0
    assert [r["crt"] for r in rows] == [True, False, True, True, None]
    assert (rows[2]["tau"], rows[3]["tau"]) == (0.0, 700.0)

    # The bicubic baseline, computed directly.
    hrs = [face_like(seed, 32) for seed in (1000, 1001)]
    lrs = [pil_resize(hr, 4) for hr in hrs]
    bic = [pil_resize(lr, 32) for lr in lrs]
    consistency = [np_psnr(pil_resize(b, 4) / 255.0, lr / 255.0) for b, lr in zip(bic, lrs, strict=True)]
    np.testing.assert_allclose(rows[-1]["lr_psnr"], np.mean(consistency), rtol=1e-4)
    fidelity = [np_psnr(b / 255.0, h / 255.0) for b, h in zip(bic, hrs, strict=True)]
    np.testing.assert_allclose(rows[-1]["psnr"], np.mean(fidelity), rtol=1e-4)
    assert set(rows[-1]["per_image"]) == {"heldout_1000", "heldout_1001"}

    table = (out / "metrics.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert lines[0] == "| setting | PSNR (dB) | SSIM | LR-consistency PSNR (dB) | diversity |"
    assert [line.split(" | ")[0][2:].split(" (")[0] for line in lines[1:]] == names
    assert "2 seed(s) per image" in table and table.strip() in capsys.readouterr().out
    with open(out / "metrics.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["setting"] for r in csv_rows] == names
    np.testing.assert_allclose(float(csv_rows[-1]["lr_psnr"]), rows[-1]["lr_psnr"])
    saved = json.loads((out / "metrics.json").read_text())
    assert [r["setting"] for r in saved["rows"]] == names and saved["metrics"] == list(evaluate.DEFAULT)
    grid = np.asarray(Image.open(out / "grid_dpi.png"))
    assert grid.shape == (2 * 34 + 2, 5 * 34 + 2, 3)  # 2 inputs; LR | bicubic | 2 seeds | GT
    assert np.asarray(Image.open(out / "sweep.png")).ndim == 3

    # Existing outputs are kept: refused before any sampling.
    before = (out / "metrics.md").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        evaluate.run(config, out, sweeps=["tau=0,700"], progress=False)
    assert (out / "metrics.md").read_bytes() == before


def torch_state(state_dict: dict) -> dict:
    """A torch state_dict as NumPy arrays, as the port reads it."""
    return {k: v.numpy() for k, v in state_dict.items()}


@pytest.mark.slow
def test_evaluate_the_paper_columns_with_random_metric_networks(random_checkpoints, fake_synthfaces, tmp_path,
                                                                monkeypatch):
    """--metrics=psnr,ssim,lpips,fid,is,id on ported (random) LPIPS, FID Inception and VGG-Face checkpoints: every
    column is filled, and the values are those of the metric functions applied to the saved results (FID: the
    statistics the evaluation hands to pytorch-fid's distance are those of the images, and the row holds what the
    distance returned; its matrix square root takes about 13 s on 2048-d statistics, so it is not run again)."""
    from dpi_jax.metrics import fid, identity, inception, lpips, torch_reference

    distances = []  # (the statistics given, the distance returned) of each FID the evaluation computes
    frechet_distance = fid.frechet_distance

    def recorded_frechet_distance(*stats):
        distances.append((stats, frechet_distance(*stats)))
        return distances[-1][1]

    monkeypatch.setattr(fid, "frechet_distance", recorded_frechet_distance)

    weights = {"lpips": tmp_path / "lpips", "fid": tmp_path / "inception", "id": tmp_path / "vggface"}
    # Random trunks as the references initialise them (LPIPS with the lpips package's own heads); VGG-Face random.
    lpips_params = lpips.params_from_state_dicts(torch_state(torch_reference.random_alexnet_state_dict()), None, "alex")
    lpips.save(weights["lpips"], lpips_params, "alex")
    inception_params = inception.params_from_state_dict(torch_state(torch_reference.random_fid_inception_state_dict()))
    inception.save(weights["fid"], inception_params)
    identity.save(weights["id"], random_vggface_params())
    config = tiny_config(random_checkpoints)
    config.num_seeds = 1
    out = tmp_path / "eval"
    rows = evaluate.run(config, out, metrics="psnr,ssim,lpips,fid,is,id", crt_ablation=False, weights=weights,
                        progress=False)
    assert [r["setting"] for r in rows] == ["dpi", "bicubic"]
    for row in rows:
        for column in ("psnr", "ssim", "lpips", "fid", "is", "id_acc", "id_cs"):
            assert row[column] is not None and np.isfinite(row[column]), (row["setting"], column)
        assert 0 <= row["id_acc"] <= 1 and row["lpips"] > 0
    # The bicubic row's LPIPS and FID recomputed from its images.
    hrs = np.stack([face_like(seed, 32) for seed in (1000, 1001)])
    bic = np.stack([pil_resize(pil_resize(hr, 4), 32) for hr in hrs])
    want_lpips = lpips.lpips_images(lpips_params, bic, hrs, "alex", progress=False).mean()
    np.testing.assert_allclose(rows[-1]["lpips"], want_lpips, rtol=1e-5)
    stats = [fid.statistics(fid.image_activations(inception_params, x)) for x in (bic, hrs)]
    assert len(distances) == 2 and rows[-1]["fid"] == distances[-1][1]  # the dpi row's, then the bicubic row's
    for given, want in zip(distances[-1][0], (*stats[0], *stats[1]), strict=True):
        np.testing.assert_allclose(given, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())  # float32 activations
    table = (out / "metrics.md").read_text()
    assert table.startswith("| setting | PSNR (dB) | SSIM | LPIPS | FID | IS | ID ACC | ID CS |")
    assert "VGG-Face (fc8)" in table and "0.4" in table


def test_ablation_settings_are_table4s_columns():
    config = default.get_config()
    settings = evaluate.ablation_settings(config)
    assert [s.name for s in settings] == ["dpi", "dpi-no-crt", "dpi-no-refine", "dpi-no-stage2", "dpi-no-weight",
                                          "dpi-k4"]
    rows = [s.row(config) for s in settings]
    switches = [(r["crt"], r["refine"], r["tau"] == 0, r["weight"], r["k"]) for r in rows]
    assert switches == [(True, True, False, True, 2), (False, True, False, True, 2),
                        (True, False, False, True, 2), (True, True, True, True, 2),
                        (True, True, False, False, 2), (True, True, False, True, 4)]
    assert [s.overrides for s in settings] == [{}, {}, {"refine": False}, {"tau": 0.0}, {"weight": False}, {"k": 4}]
    with pytest.raises(ValueError, match="must differ"):
        evaluate.ablation_settings(config, k=2)
    config.crt_checkpoint = ""
    with pytest.raises(ValueError, match="needs a CRT"):
        evaluate.ablation_settings(config)


@pytest.mark.slow
def test_evaluate_ablation_end_to_end(random_checkpoints, fake_synthfaces, tmp_path):
    """--ablation: one row per Table 4 column and the bicubic row, each sampled with its switch (so its results differ
    from full DPI's on the same noise), the switches in the table, and compare.png with every column."""
    config = tiny_config(random_checkpoints)
    # 6 steps (t = 999, 799, 599, 400, 200, 0), stage II from t = 400: a refined condition reaches a later step's x.
    config.num_seeds, config.diffusion.respacing, config.dpi.tau = 1, "6", 500.0
    out = tmp_path / "ablation"
    rows = evaluate.run(config, out, metrics="psnr,ssim,lr_psnr", ablation=True, progress=False)
    names = ["dpi", "dpi-no-crt", "dpi-no-refine", "dpi-no-stage2", "dpi-no-weight", "dpi-k4", "bicubic"]
    assert [r["setting"] for r in rows] == names
    full = rows[0]["shown"].astype(int)
    for row in rows[1:-1]:
        assert np.abs(row["shown"].astype(int) - full).max() > 0, row["setting"]
        assert np.isfinite(row["psnr"]) and np.isfinite(row["lr_psnr"])
    table = (out / "metrics.md").read_text()
    for text in ("no CRT", "no refine", "w = 1", "k=4", "tau=0,"):
        assert text in table, text
    with open(out / "metrics.csv") as f:
        assert [r["k"] for r in csv.DictReader(f)] == ["2", "2", "2", "2", "2", "4", ""]  # bicubic: none
    compare = np.asarray(Image.open(out / "compare.png"))
    assert compare.ndim == 3 and compare.shape[1] > compare.shape[0]  # 2 inputs x 10 columns
    assert "shown" not in json.loads((out / "metrics.json").read_text())["rows"][0]


def test_cli_ablation_asks_for_table4s_metrics(tmp_path):
    """--ablation without --metrics measures SSIM / LPIPS / FID (Table 4's rows): a missing LPIPS network is named
    before anything is sampled."""
    proc = run_python(["-m", "dpi_jax.evaluate", "--config", "configs/demo.py", f"--out={tmp_path / 'eval'}",
                       "--ablation", f"--lpips_weights={tmp_path / 'nowhere'}"], check=False)
    assert proc.returncode == 2, proc.stderr
    assert "alexnet-owt-7be5be79.pth" in proc.stderr and not (tmp_path / "eval").exists()


def test_cli_names_a_missing_metric_network_before_sampling(tmp_path):
    proc = run_python(["-m", "dpi_jax.evaluate", "--config", "configs/default.py", f"--out={tmp_path / 'eval'}",
                       "--config.input_dir=synthfaces:heldout", "--metrics=psnr,lpips",
                       f"--lpips_weights={tmp_path / 'nowhere'}"], check=False)
    assert proc.returncode == 2, proc.stderr
    assert "alexnet-owt-7be5be79.pth" in proc.stderr and "python -m dpi_jax.port" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "eval").exists()
