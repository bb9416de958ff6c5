"""Training faults: a rerun with another config, Ctrl-C/SIGTERM's exit status, two trainings in one workdir.

The runs use the very small CRT of tests/test_faults.py (quick to compile), in-process or through train.py.
"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dpi_jax import cli, folders, train_lib
from tests.reference import ROOT, run_python
from tests.test_faults import fault_config


def small_config(**overrides):
    """tests.test_faults.fault_config (a checkpoint and an export every step), with ``overrides``."""
    config = fault_config()
    config.update(overrides)
    return config


def checkpoint_steps(workdir) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


# --- a rerun with another config ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_rerun_with_another_config_is_refused_before_any_step(tmp_path):
    """A rerun whose model, task, diffusion or seed differs from config.json is refused before any step, naming
    config.json and each differing field (there -> now); the workdir is left as it was. Bookkeeping changes (more
    steps, logging, checkpointing, data workers, the workdir's spelling) pass; a forced change trains on and
    config.json then holds the new config. (Two compilations, no held-out evaluation: ~20 s each on 2 busy cores.)"""
    workdir = tmp_path / "run"
    train_lib.train(small_config(num_steps=2), workdir, stop_after=1)
    stored = (workdir / "config.json").read_text()
    changed = small_config(num_steps=2, seed=1, scale=2)
    changed.model.config.num_channels = 16
    changed.diffusion.beta_schedule = "cosine"
    with pytest.raises(train_lib.ConfigChangedError) as info:
        train_lib.train(changed, workdir)
    message = str(info.value)
    assert isinstance(info.value, cli.SETUP_ERRORS)  # train.py: "error: ..." and exit status 2
    assert str(workdir / "config.json") in message
    for change in ("model.config.num_channels: 8 -> 16", "scale: 4 -> 2", "seed: 0 -> 1",
                   "diffusion.beta_schedule: 'linear' -> 'cosine'"):
        assert change in message, message
    assert "num_steps" not in message
    assert checkpoint_steps(workdir) == [1] and train_lib.exported_step(workdir / "model") == 1
    assert (workdir / "config.json").read_text() == stored

    harmless = small_config(num_steps=30, log_every=2, checkpoint_every=2, keep_checkpoints=3, workdir="elsewhere")
    harmless.data.workers = 2
    assert train_lib.check_rerun_config(workdir, harmless) == []

    reseeded = small_config(num_steps=4, seed=1)
    assert int(train_lib.train(reseeded, workdir, allow_config_change=True, stop_after=1).step) == 2
    assert checkpoint_steps(workdir) == [1, 2]
    assert json.loads((workdir / "config.json").read_text())["seed"] == 1
    assert train_lib.check_rerun_config(workdir, reseeded) == []  # the next rerun needs no flag


def test_config_changes_lists_absent_fields_and_ignores_harmless_ones():
    stored = json.loads(small_config().to_json())
    del stored["init_from"]
    config = small_config(num_steps=99, eval_every=7, sample_respacing="2")
    config.data.source, config.data.workers, config.loss.posterior_from = "folder", 4, "condition"
    assert train_lib.config_changes(stored, config) == [
        "data.source: 'synthetic' -> 'folder'", "init_from: absent -> ''",
        "loss.posterior_from: 'gt' -> 'condition'"]


# --- SIGINT / SIGTERM -----------------------------------------------------------------------------------------------

def test_stop_request_exit_status_is_128_plus_the_signal():
    assert train_lib.StopRequest().exit_status == 0
    for sig, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        with train_lib.StopRequest() as stop:
            os.kill(os.getpid(), sig)
        assert stop.signal == sig.name and stop.exit_status == status


CLI_CONFIG = """
from tests.test_train_faults import small_config


def get_config():
    return small_config(num_steps=100_000, checkpoint_every=100_000, eval_every=100_000)
"""


@pytest.mark.slow
def test_train_cli_checkpoints_on_sigint_exits_130_and_refuses_another_config(tmp_path):
    """Ctrl-C during the steps of train.py: a checkpoint and export of the step it stopped at, exit status 130. A
    rerun with another seed then exits with status 2 and one line naming config.json and the field."""
    config_file, workdir, log = tmp_path / "tiny.py", tmp_path / "run", tmp_path / "output.txt"
    config_file.write_text(CLI_CONFIG)
    args = [sys.executable, "train.py", "--config", str(config_file), f"--config.workdir={workdir}"]
    with log.open("w") as output:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while not (workdir / "metrics.csv").exists():  # written after the first step: the loop is running
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            status = proc.wait(timeout=120)
        finally:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert status == 130, text
    step = checkpoint_steps(workdir)[-1]
    assert f"SIGINT: checkpointed step {step}" in text and 0 < step < 100_000
    assert train_lib.exported_step(workdir / "model") == step

    rerun = run_python(["train.py", "--config", str(config_file), f"--config.workdir={workdir}", "--config.seed=1"],
                       check=False)
    error = rerun.stderr.strip().splitlines()[-1]
    assert rerun.returncode == 2, rerun.stderr
    assert error.startswith("error: ") and str(workdir / "config.json") in error and "seed: 0 -> 1" in error


# --- two trainings in one workdir ---------------------------------------------------------------------------------

def test_second_training_in_a_locked_workdir_fails_at_once(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)  # what a running training holds
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        start = time.perf_counter()
        with pytest.raises(OSError, match="another training is writing there") as info:
            train_lib.train(small_config(num_steps=2), workdir)
        assert time.perf_counter() - start < 5
        assert str(workdir) in str(info.value) and isinstance(info.value, cli.SETUP_ERRORS)
        assert list(workdir.iterdir()) == []  # nothing written
    finally:
        os.close(fd)
    with folders.locked(workdir, "training"):  # free again once the holder closed it
        pass


HOLDER = """
import sys, time
from pathlib import Path
from dpi_jax import folders
with folders.locked(Path(sys.argv[1]), "training"):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_workdir_lock_dies_with_its_holder(tmp_path):
    """A process holding the lock keeps others out; killed (SIGKILL: no clean-up), it leaves no stale lock."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(folders.FolderError, match="another training is writing there"):
            with folders.locked(tmp_path, "training"):
                pass
    finally:
        proc.kill()
        proc.wait()
    with folders.locked(tmp_path, "training"):
        pass
