"""Fault injection: a training run killed with SIGKILL at random points always leaves a workdir that resumes, and a
``model/`` export that loads (the previous complete export or the new one, never a half-written one).

One workdir is trained by a chain of subprocesses: each resumes what the previous one left and is killed at a random
moment (seeded) after its first model export began, while checkpoints and exports are being written every step; the
last one runs to the end. The subprocesses share a persistent JAX compilation cache, so only the first compiles.
"""

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time

import ml_collections
import pytest

from dpi_jax import checkpoint, train_lib
from tests.reference import ROOT

NUM_STEPS = 20
KILL_SEEDS = (0, 1, 2)
MAX_DELAY_S = 2.0

CHILD = """
import sys
from dpi_jax import checkpoint, train_lib
from tests.test_faults import fault_config

write = checkpoint.write_checkpoint


def announced(*args, **kwargs):  # tells the parent that exports have begun (training is compiled and running)
    print("export", flush=True)
    return write(*args, **kwargs)


checkpoint.write_checkpoint = announced
train_lib.train(fault_config(), sys.argv[1])
print("done", flush=True)
"""


def fault_config() -> ml_collections.ConfigDict:
    """A very small CRT run that checkpoints and exports at every step."""
    from tests.test_train import tiny_config

    config = tiny_config(num_steps=NUM_STEPS, batch_size=2, eval_images=2)
    config.model.config = ml_collections.ConfigDict(dict(
        image_size=16, num_channels=8, num_res_blocks=1, channel_mult=(1,), learn_sigma=False,
        attention_resolutions="", num_heads=1, num_head_channels=8, use_scale_shift_norm=True,
        resblock_updown=False, dropout=0.0))  # one level, no attention: quick to compile
    config.log_every = config.checkpoint_every = 1
    config.eval_every = 1000  # held-out metrics only at the last step
    config.keep_checkpoints = 2
    return config


def start(workdir, cache, log):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(workdir)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=log, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in proc.stdout] + [lines.put(None)],
                     daemon=True).start()
    return proc, lines


def wait_for(lines, timeout=300):
    """The next marker line of the child ("export", "done"), or None when it exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=deadline - time.monotonic())
        except queue.Empty:
            break
        if line in ("export", "done", None):
            return line
    raise AssertionError("the training subprocess produced no export within the time limit")


def check_export(model_dir):
    """model/ loads and holds a step; returns it."""
    kind, _, _ = checkpoint.load_model(model_dir, "crt")
    step = json.loads((model_dir / checkpoint.MODEL_FILE).read_text())["step"]
    assert kind == "crt" and 1 <= step <= NUM_STEPS
    return step


@pytest.mark.slow
def test_sigkill_at_random_points_always_resumes(tmp_path):
    workdir, cache = tmp_path / "run", tmp_path / "jax_cache"
    log_path = tmp_path / "stderr.log"
    steps, leftovers = [], []
    with open(log_path, "w") as log:
        for seed in KILL_SEEDS:
            proc, lines = start(workdir, cache, log)
            marker = wait_for(lines)
            assert marker is not None, f"run {seed} failed to resume:\n{log_path.read_text()[-3000:]}"
            if marker == "export":
                time.sleep(random.Random(seed).uniform(0, MAX_DELAY_S))
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            steps.append(check_export(workdir / "model"))  # always loadable, never half-written
            leftovers.append(sorted(p.name for p in [*workdir.glob(".model.*"), *workdir.glob("checkpoints/*tmp*")]))
        proc, lines = start(workdir, cache, log)
        while (marker := wait_for(lines)) == "export":
            pass
        assert proc.wait(timeout=120) == 0 and marker == "done", log_path.read_text()[-3000:]
    assert check_export(workdir / "model") == NUM_STEPS
    assert train_lib.exported_step(workdir / "model") == NUM_STEPS
    assert not list(workdir.glob(".model.*")), "a resumed run removes what a crash left beside model/"
    print(f"exported step after each SIGKILL: {steps}; unfinished writes it interrupted: {leftovers}")
