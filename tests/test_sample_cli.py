"""sample.py end to end on the tiny reference models, converted with the port command."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.reference import FIXTURES, TRAJ_ADM, TRAJ_CRT
from tests.reference import run_python as run


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    for name, config, kind in [("adm", TRAJ_ADM, "adm"), ("crt", TRAJ_CRT, "crt")]:
        (root / f"{name}.json").write_text(json.dumps(config))
        run(["-m", "dpi_jax.port", str(FIXTURES / f"traj_ddpm1000_0_{name}.pt"), str(root / name),
             "--model", str(root / f"{name}.json"), "--kind", kind])
    return root


def face_like(seed, size=32):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    base = np.stack([np.sin(6 * xx + seed), np.cos(5 * yy), xx * yy], -1) * 0.5 + 0.5
    return (255 * np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1)).astype(np.uint8)


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    Image.fromarray(face_like(0)).save(folder / "a.png")
    Image.fromarray(face_like(1)[..., 0]).save(folder / "b_gray.png")
    Image.fromarray(np.concatenate([face_like(2), np.full((32, 32, 1), 128, np.uint8)], -1)).save(folder / "c.png")
    Image.fromarray(np.resize(face_like(3), (40, 48, 3))).save(folder / "d_wrong_size.jpg")
    (folder / "e_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return folder


def sample_args(checkpoints, inputs, out, *extra):
    # x8's (300, 1.2, 750) apply to any respacing
    return ["sample.py", "--config", "configs/paper.py:x8", f"--config.input_dir={inputs}",
            f"--config.output_dir={out}", f"--config.prior_checkpoint={checkpoints / 'adm'}",
            f"--config.crt_checkpoint={checkpoints / 'crt'}", "--config.diffusion.respacing=6", "--config.batch_size=3",
            *extra]


@pytest.mark.slow
def test_sample_writes_pngs_and_grid_and_skips_bad_files(checkpoints, inputs, tmp_path):
    out = tmp_path / "out"
    proc = run(sample_args(checkpoints, inputs, out))
    written = sorted(p.name for p in out.iterdir())
    assert written == ["a.png", "b_gray.png", "c.png", "d_wrong_size.png", "grid.png"], proc.stderr
    assert "e_corrupt.png" in proc.stderr  # reported by name, not fatal
    sr = np.asarray(Image.open(out / "a.png"))
    assert sr.shape == (32, 32, 3) and sr.std() > 0
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape == (4 * 34 + 2, 4 * 34 + 2, 3)  # 4 rows (LR | bicubic | DPI | GT), 2-pixel padding

    # A second run keeps what exists.
    before = (out / "a.png").read_bytes()
    proc = run(sample_args(checkpoints, inputs, out))
    assert "exists" in proc.stderr and (out / "a.png").read_bytes() == before
    assert not (out / "grid-1.png").exists()
    # Unless asked to overwrite; then the same seed gives the same images.
    run(sample_args(checkpoints, inputs, out, "--config.overwrite=True"))
    assert (out / "a.png").read_bytes() == before


def test_missing_prior_explains_the_port(tmp_path, inputs):
    proc = run(["sample.py", "--config", "configs/paper.py:x8", f"--config.input_dir={inputs}",
                f"--config.output_dir={tmp_path / 'out'}", f"--config.prior_checkpoint={tmp_path / 'nope'}"],
               check=False)
    assert proc.returncode != 0
    assert "python -m dpi_jax.port ffhq_10m.pt" in proc.stderr and str(tmp_path / "nope") in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_num_seeds_writes_every_seed_and_a_diversity_map(checkpoints, inputs, tmp_path):
    out = tmp_path / "seeds"
    run(sample_args(checkpoints, inputs, out, "--config.num_seeds=3", "--config.seed_chunk=2"))
    names = {p.name for p in out.iterdir()}
    assert {"a_s0.png", "a_s1.png", "a_s2.png", "a_std.png", "grid.png"} <= names
    seeds = [np.asarray(Image.open(out / f"a_s{n}.png"), np.float32) for n in range(3)]
    assert not np.array_equal(seeds[0], seeds[1])
    assert np.asarray(Image.open(out / "a_std.png")).max() > 0


@pytest.mark.slow
def test_learn_omega_example_moves_omega_and_improves_consistency(checkpoints, inputs):
    """The example differentiates through the whole sampler: omega moves away from the paper's 750 and the LR
    consistency error (its loss, with the draws held fixed) falls."""
    proc = run(["examples/learn_omega.py", f"--prior={checkpoints / 'adm'}", f"--crt={checkpoints / 'crt'}",
                f"--input_dir={inputs}", "--steps=6", "--iterations=3", "--max_images=2"])
    lines = [line for line in proc.stdout.splitlines() if line.startswith("iter")]
    assert len(lines) == 3 and "nan" not in proc.stdout
    numbers = lambda line, name: [float(v) for v in line.split(name)[1].split("[")[1].split("]")[0].split()]
    first_mse, last_mse = sum(numbers(lines[0], "LR MSE")), sum(numbers(lines[-1], "LR MSE"))
    print(proc.stdout)
    assert numbers(lines[0], "omega") == [750.0, 750.0]
    assert all(abs(o - 750.0) > 1.0 for o in numbers(lines[-1], "omega"))
    assert last_mse < first_mse


def test_missing_input_dir_fails_before_loading_anything(checkpoints, tmp_path):
    proc = run(sample_args(checkpoints, tmp_path / "no_such_folder", tmp_path / "out"), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no_such_folder is not a folder" in proc.stderr
    assert not (tmp_path / "out").exists()
