"""Training: data determinism and robustness, resumption, multi-device equality, and a tiny CRT that learns."""

import json
import logging
import os
import signal

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from configs import train_default
from dpi_jax import checkpoint, data, tasks, train_lib
from dpi_jax.demo import synthfaces
from tests.reference import run_python

TINY_CRT = dict(image_size=32, num_channels=16, num_res_blocks=1, channel_mult=(1, 2), learn_sigma=False,
                attention_resolutions="8", num_heads=2, num_head_channels=16, use_scale_shift_norm=True,
                resblock_updown=False, dropout=0.0)
TINY_ADM = dict(TINY_CRT, channel_mult=(1, 2, 2))


def tiny_config(kind="crt", **overrides) -> ml_collections.ConfigDict:
    config = train_default.get_config()
    config.model.kind = kind
    config.model.config = ml_collections.ConfigDict(TINY_CRT if kind == "crt" else TINY_ADM)
    config.scale = 4
    config.batch_size = 8
    config.num_steps = 6
    config.optim.warmup_steps = 2
    config.log_every = config.eval_every = config.checkpoint_every = 3
    config.eval_images = 4
    config.sample_images = 4
    config.sample_respacing = "4"
    config.data.workers = 1
    config.update(overrides)
    return config


# --- data -------------------------------------------------------------------------------------------------------

def test_batches_depend_only_on_seed_and_step():
    source = data.SynthSource("train", 32, count=20)
    a = data.batch_at(source, 7, 8, seed=3, scale=4)
    b = data.batch_at(source, 7, 8, seed=3, scale=4)
    c = data.batch_at(source, 8, 8, seed=3, scale=4)
    assert sorted(a) == ["hr", "lr_bicubic"]  # y_T is made inside the train step (dpi_jax.tasks)
    for key in ("hr", "lr_bicubic"):
        np.testing.assert_array_equal(a[key], b[key])
    assert np.abs(a["hr"] - c["hr"]).mean() > 0.01
    assert a["hr"].shape == (8, 32, 32, 3) and a["lr_bicubic"].shape == (8, 16, 16, 3)
    # The stream from step n yields batch_at(n), batch_at(n + 1), ...
    stream = data.batches(source, 7, 8, seed=3, scale=4, workers=2, ahead=2)
    np.testing.assert_array_equal(next(stream)["hr"], a["hr"])
    np.testing.assert_array_equal(next(stream)["hr"], c["hr"])


def test_batch_indices_cover_each_epoch_once():
    n, b = 10, 4
    first_epoch = np.concatenate([data.batch_indices(n, b, 0, step) for step in range(5)])  # 20 = two epochs
    assert sorted(first_epoch[:10]) == list(range(10)) and sorted(first_epoch[10:]) == list(range(10))
    assert list(first_epoch[:10]) != list(first_epoch[10:])  # a new permutation per epoch


def test_degraded_batches_are_deterministic():
    source = data.SynthSource("train", 32, count=8)
    a = data.batch_at(source, 2, 4, seed=1, scale=4, degradation="codeformer")
    b = data.batch_at(source, 2, 4, seed=1, scale=4, degradation="codeformer")
    np.testing.assert_array_equal(a["lr_bicubic"], b["lr_bicubic"])


def test_folder_source_recursive_odd_and_corrupt_images(tmp_path, caplog):
    (tmp_path / "sub").mkdir()
    face = synthfaces.face(5, 48)
    Image.fromarray(face).save(tmp_path / "a.png")
    Image.fromarray(face[..., 0]).save(tmp_path / "sub" / "gray.jpg")
    Image.fromarray(np.concatenate([face, np.full(face.shape[:2] + (1,), 200, np.uint8)], -1)).save(
        tmp_path / "sub" / "rgba.webp")
    Image.fromarray(face[:, :40]).save(tmp_path / "wide.png")
    (tmp_path / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (tmp_path / "notes.txt").write_text("not an image, not listed")
    source = data.FolderSource(tmp_path, 32)
    assert len(source) == 5
    with caplog.at_level(logging.WARNING):
        got = [source[i] for i in range(len(source))]
    assert all(g.shape == (32, 32, 3) and g.dtype == np.uint8 for g in got)
    assert "broken.png" in caplog.text  # reported by name, and skipped
    batch = data.make_batch(source, range(5), scale=4)
    assert np.isfinite(batch["hr"]).all()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no png"):
        data.FolderSource(tmp_path / "empty", 32)


def test_tfds_source_by_name_without_download():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        source = data.TFDSSource("celeb_a_hq/128", "train", 32)
        assert len(source) == 6
        assert source[0].shape == (32, 32, 3) and source[0].dtype == np.uint8


def test_tfds_source_reports_a_missing_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="not available"):
        data.TFDSSource("mnist", "train", 32, data_dir=str(tmp_path))


# --- optimisation pieces ----------------------------------------------------------------------------------------

def test_learning_rate_schedules():
    config = tiny_config(num_steps=100)
    config.optim.warmup_steps, config.optim.learning_rate, config.optim.final_lr_fraction = 10, 1e-3, 0.1
    lr = train_lib.learning_rate_schedule(config)
    assert float(lr(0)) == 0 and np.isclose(float(lr(5)), 5e-4) and np.isclose(float(lr(10)), 1e-3)
    assert np.isclose(float(lr(100)), 1e-4, rtol=1e-5)
    assert np.isclose(float(lr(55)), 1e-4 + 0.5 * (1e-3 - 1e-4), rtol=1e-4)  # half-way down the cosine
    config.optim.schedule = "constant"
    assert np.isclose(float(train_lib.learning_rate_schedule(config)(90)), 1e-3)


def test_stop_request_turns_sigterm_into_a_flag():
    before = signal.getsignal(signal.SIGTERM)
    with train_lib.StopRequest() as stop:
        assert signal.getsignal(signal.SIGTERM) != before  # its own handler is installed ...
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == "SIGTERM"  # ... and turned the signal into a flag (the process lives on)
    assert signal.getsignal(signal.SIGTERM) == before  # the handler from before is back


# --- the loop -----------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    """Stopped after 2 steps (as on SIGTERM) and resumed, a run reaches bitwise the parameters of one that ran the
    6 steps at once: the draws of step n and its batch are functions of (seed, n) only, and the resumed state is the
    saved one. Bitwise, because the same program runs on the same machine (XLA CPU is deterministic)."""
    config = tiny_config()
    whole = train_lib.train(config, tmp_path / "whole")
    partial = train_lib.train(config, tmp_path / "resumed", stop_after=2)
    assert int(partial.step) == 2
    resumed = train_lib.train(config, tmp_path / "resumed")
    assert int(resumed.step) == 6
    for a, b in zip(jax.tree.leaves(jax.device_get(whole)), jax.tree.leaves(jax.device_get(resumed)), strict=True):
        np.testing.assert_array_equal(a, b)
    rows = (tmp_path / "resumed" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["3", "6"]  # no duplicated rows after resuming
    assert sorted(p.name for p in (tmp_path / "resumed" / "samples").iterdir()) == ["step_0000003.png",
                                                                                  "step_0000006.png"]
    # The exported model is the EMA, in the format sample.py loads.
    module, params = checkpoint.load_module(tmp_path / "resumed" / "model")
    assert type(module).__name__ == "CRT" and module.image_size == 32
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(jax.device_get(resumed.ema_params)), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_prior_training_runs_and_exports(tmp_path):
    config = tiny_config("adm", num_steps=3)
    state = train_lib.train(config, tmp_path)
    assert int(state.step) == 3
    module, _ = checkpoint.load_module(tmp_path / "model")
    assert type(module).__name__ == "ADM"
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "grad_norm", "lr", "steps_per_s", "heldout_l_simple"} <= set(header)
    assert Image.open(tmp_path / "samples" / "step_0000003.png").size[0] > 32


@pytest.mark.slow
def test_init_from_starts_a_run_from_a_model_directory(tmp_path):
    """config.init_from: the run starts (params and EMA) from another run's export, resumes from its own checkpoint
    afterwards, and refuses a model directory of another kind or config, naming the differing fields."""
    source = tiny_config(num_steps=2)
    train_lib.train(source, tmp_path / "source")
    _, _, exported = checkpoint.load_model(tmp_path / "source" / "model")
    config = tiny_config(num_steps=2, init_from=str(tmp_path / "source" / "model"))
    model = train_lib.build_model(config)
    for a, b in zip(jax.tree.leaves(train_lib.initial_params(config, model)), jax.tree.leaves(exported), strict=True):
        np.testing.assert_array_equal(a, b)
    random_start = train_lib.initial_params(tiny_config(), model)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(jax.tree.leaves(random_start), jax.tree.leaves(exported),
                                                         strict=True))
    state = train_lib.train(config, tmp_path / "finetune", stop_after=1)
    assert int(state.step) == 1
    resumed = train_lib.train(config, tmp_path / "finetune")
    assert int(resumed.step) == 2
    wider = tiny_config(num_steps=2, init_from=str(tmp_path / "source" / "model"))
    wider.model.config.num_channels = 32
    with pytest.raises(checkpoint.CheckpointError, match=r"num_channels \(16 there, 32 here\)"):
        train_lib.initial_params(wider, train_lib.build_model(wider))
    prior = tiny_config("adm", init_from=str(tmp_path / "source" / "model"))
    with pytest.raises(checkpoint.CheckpointError, match="config.init_from"):
        train_lib.initial_params(prior, train_lib.build_model(prior))


ONE_STEP = """
import json, jax, numpy as np
from dpi_jax import data, sharding, train_lib
from tests.test_train import tiny_config
config = tiny_config()
model, schedule = train_lib.build_model(config), train_lib.make_schedule(config)
optimizer = train_lib.make_optimizer(config)
params = jax.device_get(train_lib.initial_params(config, model))  # on the host: the train step donates its state
batch = data.batch_at(data.SynthSource("train", 32, 50), 0, 8, seed=0, scale=4)
results = {}
for n in (1, 4):  # the first device alone, then all four (one process: one start-up and one initialisation)
    mesh = sharding.data_mesh(jax.devices()[:n])
    state = sharding.replicate(train_lib.init_state(params, optimizer), mesh)
    state, metrics = train_lib.make_train_step(config, model, schedule, optimizer, mesh)(
        state, sharding.shard_batch(batch, mesh))
    leaves = [np.asarray(x).ravel() for x in jax.tree.leaves(jax.device_get(state.params))]
    results[n] = {"devices": mesh.size, "loss": float(metrics["loss"]), "grad_norm": float(metrics["grad_norm"]),
                  "params": np.concatenate(leaves).tolist()}
print(json.dumps(results))
"""


@pytest.mark.slow
def test_train_step_on_4_devices_equals_1_device():
    """The batch split over 4 forced CPU devices gives the loss and the update of 1 device (both in one process
    with 4 devices: a mesh of the first device, then of all four). Tolerance: the per-device partial sums of the
    loss and gradients are added in another order, so float32 rounding (~1e-7 relative) is expected; 1e-5 leaves
    room for its growth through Adam's normalised update."""
    proc = run_python(["-c", ONE_STEP], env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4",
                                             "JAX_PLATFORMS": "cpu"})
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    one, four = results["1"], results["4"]
    assert one["devices"] == 1 and four["devices"] == 4
    np.testing.assert_allclose(four["loss"], one["loss"], rtol=1e-5)
    np.testing.assert_allclose(four["grad_norm"], one["grad_norm"], rtol=1e-5)
    assert len(one["params"]) == len(four["params"]) > 1000
    np.testing.assert_allclose(four["params"], one["params"], rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_tiny_crt_learns_to_correct_the_condition(tmp_path):
    """A tiny CRT trained for 150 steps on synthetic faces at x4 brings held-out conditions closer to the ground
    truth on the grid: MSE(m_f CRT(y), m_f GT) < MSE(m_f y_T, m_f GT) (tasks.crt_heldout_outputs, 16 held-out
    faces, timesteps spread over [0, T))."""
    config = tiny_config(num_steps=150, eval_images=16, ema_decay=0.9)
    config.optim.learning_rate = 2e-3
    config.log_every = config.eval_every = config.checkpoint_every = 50
    train_lib.train(config, tmp_path)
    kind, _ = checkpoint.read_model_config(tmp_path / "model")
    module, params = checkpoint.load_module(tmp_path / "model")
    batch = train_lib.heldout_batch(config, 32)
    _, _, mse_y_T, mse_crt = tasks.crt_heldout_outputs(params, batch, model=module,
                                                       schedule=train_lib.make_schedule(config), k=config.k)
    print(f"held-out grid MSE: y_T {float(mse_y_T.mean()):.5f}, CRT {float(mse_crt.mean()):.5f}")
    assert float(mse_crt.mean()) < 0.9 * float(mse_y_T.mean())
