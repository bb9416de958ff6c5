"""The inference engine's batch loop: when the compiled sampler reports its steps (to the step bar)."""

import io

import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from dpi_jax import checkpoint, images, inference, sampler


class Stderr(io.StringIO):
    def __init__(self, terminal: bool):
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.mark.parametrize("terminal, progress, reports", [(True, True, True), (False, True, False),
                                                         (True, False, False)])
def test_steps_are_reported_only_to_a_terminals_step_bar(ckpts, monkeypatch, terminal, progress, reports):
    """A program with host callbacks (the step reports) never enters the persistent compilation cache, so the
    sampler reports its steps only when the step bar is shown: progress on and stderr a terminal."""
    config = default.get_config()
    config.update(dict(num_seeds=2, batch_size=2, respacing="10"))
    prior, prior_params = checkpoint.load_module(ckpts / "adm")
    lr = np.full((4, 4, 3), 128, np.uint8)
    todo = [inference.Input(f"f{n}", lr, images.condition_from_lr(lr, prior.image_size, config.dpi.k), None, n)
            for n in range(3)]
    calls = []

    def recorded(keys, cond, nets, schedule, settings, *, chunk_size=None, report_every=0):
        calls.append(report_every)
        return jnp.zeros((2, cond.shape[0], prior.image_size, prior.image_size, 3))

    monkeypatch.setattr(sampler, "sample_seeds", recorded)
    monkeypatch.setattr("sys.stderr", Stderr(terminal))
    results = list(inference.sample_batches(todo, config, prior, prior_params, progress=progress))
    assert [len(batch) for batch, _ in results] == [2, 1] and len(calls) == 2
    assert all(every > 0 for every in calls) if reports else calls == [0, 0]
