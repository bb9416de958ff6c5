"""One sample.py run, and one evaluation, over two processes (jax.distributed on local CPU processes, gloo) against one
process. Each process holds one CPU device: the global batch of 4 is split 2 + 2, each process reads and writes the
images of its own share of the inputs and process 0 the grids. The images must equal the one-process run's (up to 1
of 255 on a few pixels: the float results agree within ~5e-6, and a value that close to a rounding boundary may round
either way)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.reference import random_vggface_params

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--config.diffusion.respacing=4", "--config.progress=False"]  # the demo (x4 and x8 runs), in 4 steps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(command: list[str], num_processes: int) -> list[str]:
    """Run ``command`` (from the repository root) as ``num_processes`` processes of one run; their stderr."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    address = f"127.0.0.1:{_free_port()}"
    procs = []
    for pid in range(num_processes):
        launch = (["--coordinator_address", address, "--num_processes", str(num_processes), "--process_id", str(pid)]
                  if num_processes > 1 else [])
        procs.append(subprocess.Popen([sys.executable, *command, *launch], cwd=ROOT, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    logs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * num_processes, "\n".join(log[-2000:] for log in logs)
    return logs


def _faces_folder(folder: Path) -> Path:
    """Five files f0 ... f4, f1 corrupt: over 2 processes, process 0 reads f0 and f1 (one usable face), process 1
    f2, f3 and f4 (three)."""
    from dpi_jax.demo import synthfaces

    folder.mkdir()
    for n in range(5):
        Image.fromarray(np.asarray(synthfaces.face(1_000_000 + n, 64), np.uint8)).save(folder / f"f{n}.png")
    (folder / "f1.png").write_bytes(b"not a png")
    return folder


def _sample(inputs: Path, out: Path, num_processes: int) -> list[str]:
    return _launch(["sample.py", f"--config.input_dir={inputs}", "--config.num_images=0",
                    f"--config.output_dir={out}", *ARGS], num_processes)


@pytest.mark.slow
def test_two_processes_write_what_one_process_writes(tmp_path):
    """Each process reads only its share of the files: process 0 has one usable face, process 1 three, so the global
    batch of 4 (2 rows each) runs twice, process 0 supplying blank rows the second time."""
    inputs = _faces_folder(tmp_path / "faces")
    one, two = tmp_path / "one", tmp_path / "two"
    _sample(inputs, one, 1)
    logs = _sample(inputs, two, 2)
    files = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    assert sorted(p.relative_to(two) for p in two.rglob("*.png")) == files
    assert len(files) == 2 * (4 * 4 + 1) + 1  # per run: 4 faces x (3 seeds + std) and a grid; the demo's grid
    for rel in files:
        a = np.asarray(Image.open(one / rel), np.int16)
        b = np.asarray(Image.open(two / rel), np.int16)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-3, rel
    # Each process read and wrote its own faces; only process 0 wrote the grids.
    for log, read, images in zip(logs, (1, 3), (4, 12), strict=True):
        assert f"read {read} of the 5 inputs" in log, log[-2000:]
        for run in ("x4", "x8"):
            assert f"wrote {images} images in {two / run}\n" in log, log[-2000:]
    assert "f1.png" in logs[0] and "f1.png" not in logs[1]  # the corrupt file, read (and named) by its reader alone
    for run in ("x4", "x8"):
        assert f"wrote {two / run / 'grid.png'}" in logs[0] and "grid.png" not in logs[1]


@pytest.mark.slow
def test_an_image_gets_the_same_pixels_in_any_batch():
    """Random keys are per image (its index in the sorted input list), so batch size 1 and 4 give each face the same
    result: within 1e-4 of [-1, 1] (measured 2.8e-5 on 0.6% of values: XLA:CPU blocks a batch-1 and a batch-4
    convolution differently, so float32 sums differ in their last bits; with per-batch keys the images differ
    completely)."""
    from configs import demo
    from dpi_jax import inference

    config = demo.get_config()
    config.diffusion.respacing, config.num_seeds = "4", 2
    models = inference.load_models(config)
    todo = inference.list_inputs(config, models[0].image_size)
    results = {}
    for batch_size in (1, 4):
        config.batch_size = batch_size
        parts = [sr for _, sr in inference.sample_batches(todo, config, *models, progress=False)]
        results[batch_size] = np.concatenate(parts, axis=1)
    assert results[1].shape == (2, 4, 64, 64, 3)
    np.testing.assert_allclose(results[1], results[4], atol=1e-4)
    assert not np.allclose(results[1][:, 0], results[1][:, 1])


@pytest.mark.slow
def test_an_evaluation_over_two_processes_equals_one(tmp_path):
    """python -m dpi_jax.evaluate over 2 processes: each measures its own rows, the values are gathered (images for
    FID, per-image values, identity distances) and process 0 writes metrics.json, equal to a 1-process run's
    (pixel metrics within 1e-3, FID within 1e-3 relative: the PNG-level agreement of the test above)."""
    import json

    from dpi_jax.metrics import identity, inception, torch_reference

    torch_state = lambda sd: {k: v.numpy() for k, v in sd.items()}  # noqa: E731
    inception.save(tmp_path / "inception",
                   inception.params_from_state_dict(torch_state(torch_reference.random_fid_inception_state_dict())))
    identity.save(tmp_path / "vggface", random_vggface_params())
    results = {}
    for n in (1, 2):
        out = tmp_path / f"eval{n}"
        _launch(["-m", "dpi_jax.evaluate", *ARGS, "--metrics=psnr,ssim,lr_psnr,diversity,fid,id",
                 f"--fid_weights={tmp_path / 'inception'}", f"--id_weights={tmp_path / 'vggface'}",
                 "--no_crt_ablation", "--config.num_seeds=2", "--config.num_images=2", f"--out={out}"], n)
        results[n] = json.loads((out / "metrics.json").read_text())
        assert (out / "grid_dpi.png").exists()
    one, two = (results[n]["rows"] for n in (1, 2))
    assert [r["setting"] for r in one] == [r["setting"] for r in two] == ["dpi", "bicubic"]
    for a, b in zip(one, two, strict=True):
        assert a["num_images"] == b["num_images"] == 2  # one input per process
        for column in ("psnr", "ssim", "lr_psnr", "diversity", "id_cs"):
            assert abs(a[column] - b[column]) <= 1e-3, (a["setting"], column, a[column], b[column])
        assert abs(a["fid"] - b["fid"]) <= 1e-3 * abs(a["fid"]) and a["id_acc"] == b["id_acc"]
        assert list(a["per_image"]) == list(b["per_image"])  # every input, in input order


TRAIN_CONFIG = """
from tests.test_train_faults import small_config


def get_config():
    return small_config(num_steps=3, checkpoint_every=3, eval_every=3)
"""


@pytest.mark.slow
def test_training_over_two_processes_gives_one_process_parameters(tmp_path):
    """train.py over 2 processes (one device each, each making its row of the batch of 2) and in 1 process, 3 steps
    of the very small CRT: the exported EMA parameters agree within 1e-5
    relative (the two halves' gradients are summed in another order), and process 0 alone wrote the export."""
    import jax

    from dpi_jax import checkpoint

    config_file = tmp_path / "tiny.py"
    config_file.write_text(TRAIN_CONFIG)
    params = {}
    for n in (1, 2):
        workdir = tmp_path / f"run{n}"
        _launch(["train.py", "--config", str(config_file), f"--config.workdir={workdir}"], n)
        params[n] = checkpoint.load_model(workdir / "model")[2]
        assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["3"]
        assert (workdir / "config.json").exists() and (workdir / "samples" / "step_0000003.png").exists()
    leaves = [jax.tree.leaves(params[n]) for n in (1, 2)]
    assert len(leaves[0]) == len(leaves[1]) > 0
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_photo_mode_over_two_processes_writes_what_one_process_writes(tmp_path):
    """Photo mode over 2 processes: each reads, restores and writes its own photos (process 0 the one without a face,
    supplying blank rows, process 1 the one with two); the files equal a 1-process run's (a face 1/255 apart may move
    a pasted pixel by as much after the blend)."""
    from skimage import data as skimage_data

    photos = tmp_path / "photos"
    photos.mkdir()
    pair = np.full((600, 1024, 3), 255, np.uint8)  # two portraits on white: two faces
    pair[:512, :512] = skimage_data.astronaut()
    from matplotlib import cbook
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        pair[:, 512:] = np.asarray(Image.open(f).convert("RGB"))
    Image.fromarray(pair).resize((512, 300)).save(photos / "pair.png")
    Image.fromarray(skimage_data.coffee()).resize((300, 200)).save(photos / "coffee.jpg")  # no face
    outs = {}
    for n in (1, 2):
        outs[n] = tmp_path / f"out{n}"
        _launch(["sample.py", "--config", "configs/photo.py", f"--config.input_dir={photos}",
                 f"--config.output_dir={outs[n]}", "--config.diffusion.respacing=4", "--config.num_seeds=2",
                 "--config.batch_size=2", "--config.upscale=1.5", "--config.progress=False"], n)
    files = sorted(p.name for p in outs[1].iterdir())
    assert files == sorted(p.name for p in outs[2].iterdir()) and "pair_face1_s1.png" in files
    for name in files:
        a = np.asarray(Image.open(outs[1] / name), np.int16)
        b = np.asarray(Image.open(outs[2] / name), np.int16)
        assert a.shape == b.shape and np.abs(a - b).max() <= 2 and (a != b).mean() < 1e-2, name
