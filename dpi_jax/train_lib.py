"""What ``train.py`` does: train the condition corrector (CRT) or a small DDPM prior.

One loop serves both (``config.model.kind`` "crt" or "adm"):

- loss: L_crt = Ω L_prior + (1 - Ω) L_gap (Eqs. 15, 17, 18; :mod:`dpi_jax.losses`) for the CRT, over grid pixels;
  L_simple (epsilon prediction) for a prior.
- optimiser: optax AdamW, linear warm-up then cosine decay (or constant), global-norm gradient clipping, and an EMA
  of the parameters (the EMA is what gets exported).
- one ``jit``-ted train step; the batch is split over all devices along the mesh's data axis, the state replicated.
  Every random draw of step n comes from ``fold_in(PRNGKey(seed), n)`` and the data of step n from (seed, n)
  (:mod:`dpi_jax.data`), so a resumed run repeats an uninterrupted one.
- orbax ``CheckpointManager`` under ``<workdir>/checkpoints`` every ``checkpoint_every`` steps (keeping
  ``keep_checkpoints``), at the end, and when the process gets SIGTERM or SIGINT; a rerun of the same command resumes
  from the latest one.
- ``<workdir>/model``: the EMA parameters in the checkpoint format of :mod:`dpi_jax.checkpoint`, rewritten at every
  checkpoint: this is what ``sample.py`` loads (``--config.crt_checkpoint=<workdir>/model``).
- ``<workdir>/metrics.csv``: loss, its terms, gradient norm, learning rate and steps/s every ``log_every`` steps, and
  the held-out metrics every ``eval_every`` steps; a tqdm bar shows the same.
- ``<workdir>/samples/step_<n>.png`` every ``eval_every`` steps on a fixed held-out batch: for a CRT, the grid
  pixels (H/k x H/k, enlarged) of y_T | CRT(y) | GT per row; for a prior, unconditional samples of the EMA model.
"""

from __future__ import annotations

import csv
import functools
import json
import signal
import time
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec
from tqdm import tqdm

from dpi_jax import checkpoint, data, diffusion, images, losses, masks, sampler, sharding
from dpi_jax.models import CRT, count_params, make_model



class TrainState(flax.struct.PyTreeNode):
    step: jnp.ndarray
    params: Any
    ema_params: Any
    opt_state: Any


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warm-up to ``config.learning_rate`` over ``warmup_steps``, then cosine decay to
    ``final_lr_fraction`` of it at ``num_steps`` ("cosine"), or constant ("constant")."""
    peak, warmup = config.optim.learning_rate, config.optim.warmup_steps
    if config.optim.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(config.num_steps, warmup + 1),
                                                  end_value=peak * config.optim.final_lr_fraction)
    if config.optim.schedule == "constant":
        return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), optax.constant_schedule(peak)],
                                    [warmup])
    raise ValueError(f"unknown learning-rate schedule {config.optim.schedule!r}: 'cosine' or 'constant'")


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    o = config.optim
    adamw = optax.adamw(learning_rate_schedule(config), b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay)
    return optax.chain(optax.clip_by_global_norm(o.grad_clip), adamw) if o.grad_clip > 0 else adamw


def make_schedule(config: ml_collections.ConfigDict) -> diffusion.Schedule:
    return diffusion.make_schedule(config.diffusion.num_timesteps, config.diffusion.beta_schedule)


def build_model(config: ml_collections.ConfigDict):
    return make_model(config.model.kind, dict(config.model.config))


def init_state(config: ml_collections.ConfigDict, model, optimizer) -> TrainState:
    size, c = model.image_size, model.in_channels
    x, t = jnp.zeros((1, size, size, c)), jnp.zeros((1,), jnp.int32)
    args = (x, t, x) if isinstance(model, CRT) else (x, t)
    params = model.init(jax.random.fold_in(jax.random.PRNGKey(config.seed), -1 % 2**31), *args)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=jax.tree.map(jnp.copy, params),
                      opt_state=optimizer.init(params))


def loss_fn(params, batch: dict, key: jax.Array, *, model, schedule: diffusion.Schedule,
            config: ml_collections.ConfigDict):
    """(mean loss, metrics) of one batch; every draw from ``key``."""
    gt = batch["hr"]
    key_t, key_noise = jax.random.split(key)
    t = jax.random.randint(key_t, (gt.shape[0],), 0, schedule.num_steps)
    if isinstance(model, CRT):
        corrector = lambda x, ts, y: model.apply({"params": params}, x, ts, y)  # noqa: E731
        terms = losses.crt_loss_terms(corrector, gt, batch["y_T"], t, losses.draw_crt_noises(key_noise, gt.shape),
                                      schedule, config.k, config.loss.posterior_from)
        return terms["crt"].mean(), {"l_prior": terms["prior"].mean(), "l_gap": terms["gap"].mean()}
    eps_model = lambda x, ts: model.apply({"params": params}, x, ts)  # noqa: E731
    loss = losses.ddpm_simple_loss(eps_model, gt, t, jax.random.normal(key_noise, gt.shape), schedule).mean()
    return loss, {}


def make_train_step(config: ml_collections.ConfigDict, model, schedule, optimizer, mesh):
    """A jitted ``(state, batch) -> (state, metrics)``: the batch split over ``mesh``, the state replicated."""
    lr_schedule = learning_rate_schedule(config)
    decay = config.ema_decay

    def train_step(state: TrainState, batch: dict):
        key = jax.random.fold_in(jax.random.PRNGKey(config.seed), state.step)
        grad_fn = jax.value_and_grad(functools.partial(loss_fn, model=model, schedule=schedule, config=config),
                                     has_aux=True)
        (loss, metrics), grads = grad_fn(state.params, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, state.ema_params, params)
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads), lr=lr_schedule(state.step))
        return TrainState(state.step + 1, params, ema, opt_state), metrics

    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec(sharding.DATA_AXIS))
    return jax.jit(train_step, in_shardings=(replicated, split), out_shardings=(replicated, replicated),
                   donate_argnums=0)


def heldout_batch(config: ml_collections.ConfigDict, size: int) -> dict:
    """The fixed held-out batch of the metrics and PNGs: the first ``eval_images`` held-out images."""
    source = data.make_source(config.data, size, split="heldout")
    indices = np.arange(min(config.eval_images, len(source)))
    return data.make_batch(source, indices, scale=config.scale, k=config.k, degradation=config.degradation,
                           seed=config.seed + 1)


def _spread_timesteps_and_draws(batch_size: int, shape, schedule: diffusion.Schedule, count: int):
    """The fixed held-out timesteps (spread evenly over [0, T)) and ``count`` fixed Gaussian draws shaped ``shape``."""
    t = jnp.round(jnp.linspace(0, schedule.num_steps - 1, batch_size)).astype(jnp.int32)
    return t, jax.random.normal(jax.random.PRNGKey(1234), (count,) + tuple(shape))


@functools.partial(jax.jit, static_argnames=("model", "k"))
def crt_heldout_outputs(params, batch: dict, *, model, schedule: diffusion.Schedule, k: int):
    """The CRT as the sampler uses it, on held-out images: input = a posterior sample of y_T at timesteps spread
    over [0, T) (fixed draws), condition y_T. Returns (CRT output, per-image grid MSE of y_T and of the output to the
    ground truth)."""
    gt, y_T = batch["hr"], batch["y_T"]
    t, (q_noise, post_noise) = _spread_timesteps_and_draws(gt.shape[0], gt.shape, schedule, 2)
    m_f = masks.fixed_mask(gt.shape[1], gt.shape[2], k)
    x = losses.posterior_sample(schedule, y_T, t, q_noise, post_noise)
    out = model.apply({"params": params}, m_f * x, schedule.timestep_map[t], m_f * y_T)
    return out, losses.grid_mse(y_T, gt, m_f), losses.grid_mse(out, gt, m_f)


@functools.partial(jax.jit, static_argnames=("model",))
def prior_heldout_loss(params, batch: dict, *, model, schedule: diffusion.Schedule):
    """L_simple of a prior on held-out images at timesteps spread over [0, T), with fixed draws."""
    gt = batch["hr"]
    t, (noise,) = _spread_timesteps_and_draws(gt.shape[0], gt.shape, schedule, 1)
    eps_model = lambda x, ts: model.apply({"params": params}, x, ts)  # noqa: E731
    return losses.ddpm_simple_loss(eps_model, gt, t, noise, schedule).mean()


def evaluate(state: TrainState, batch: dict, *, model, schedule, config) -> tuple[dict, np.ndarray]:
    """Held-out metrics of the EMA parameters, and the PNG to write (uint8)."""
    params = jax.device_get(state.ema_params)
    if isinstance(model, CRT):
        out, mse_cond, mse_crt = crt_heldout_outputs(params, batch, model=model, schedule=schedule, k=config.k)
        size = model.image_size
        show = lambda x: images.nearest_up(images.to_uint8(np.asarray(x)[::config.k, ::config.k]), size)  # noqa
        rows = [[show(batch["y_T"][j]), show(out[j]), show(batch["hr"][j])] for j in range(out.shape[0])]
        return ({"heldout_mse_y_T": float(mse_cond.mean()), "heldout_mse_crt": float(mse_crt.mean())},
                images.make_grid(rows))
    heldout = prior_heldout_loss(params, batch, model=model, schedule=schedule)
    shape = (config.sample_images, model.image_size, model.image_size, model.in_channels)
    samples = sampler.sample_prior(jax.random.PRNGKey(config.seed), shape, prior=model, prior_params=params,
                                   schedule=diffusion.make_schedule(config.diffusion.num_timesteps,
                                                                    config.diffusion.beta_schedule,
                                                                    config.sample_respacing),
                                   var_type=config.var_type)
    per_row = max(1, int(np.sqrt(len(samples))))
    pictures = list(images.to_uint8(np.asarray(samples)))
    rows = [pictures[j:j + per_row] for j in range(0, len(pictures), per_row)]
    return {"heldout_l_simple": float(heldout)}, images.make_grid(rows)


class MetricsLog:
    """``metrics.csv``: one row per logged step; rows past the step a run resumes from are dropped."""

    def __init__(self, path: Path, start_step: int):
        self.path = path
        self.rows = []
        if path.exists():
            with path.open() as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]

    def add(self, step: int, values: dict):
        """Record ``values`` at ``step`` (merged into that step's row when there is one)."""
        if not self.rows or int(self.rows[-1]["step"]) != step:
            self.rows.append({"step": step})
        self.rows[-1].update({k: f"{float(v):.6g}" for k, v in values.items()})
        fields = ["step"] + sorted({k for r in self.rows for k in r} - {"step"})
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fields)
            writer.writeheader()
            writer.writerows(self.rows)


class StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step (it then checkpoints and returns)."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def export_model(workdir: Path, state: TrainState, config: ml_collections.ConfigDict) -> Path:
    """The EMA parameters as a :mod:`dpi_jax.checkpoint` model directory, ``<workdir>/model``."""
    return checkpoint.save_model(workdir / "model", jax.device_get(state.ema_params), dict(config.model.config),
                                 kind=config.model.kind, overwrite=True)


def train(config: ml_collections.ConfigDict, workdir, *, stop_after: int | None = None) -> TrainState:
    """Train (or resume training) in ``workdir``; returns the final state. ``stop_after`` ends the run after that
    many steps of this call, checkpointing as a signal would (for tests of resumption)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.json"
    if not config_path.exists():
        config_path.write_text(config.to_json(indent=1))
    model, schedule, optimizer = build_model(config), make_schedule(config), make_optimizer(config)
    mesh = sharding.data_mesh()
    if config.batch_size % mesh.size:
        raise ValueError(f"batch_size {config.batch_size} does not split over {mesh.size} devices")

    options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True)
    with ocp.CheckpointManager((workdir / "checkpoints").resolve(), options=options) as manager:
        if manager.latest_step() is None:
            state = init_state(config, model, optimizer)
        else:  # restored against the state's shapes only: no initialisation to throw away
            target = jax.eval_shape(lambda: init_state(config, model, optimizer))
            state = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(target))
            tqdm.write(f"resumed from {workdir / 'checkpoints'} at step {int(state.step)}")
        start = int(state.step)
        state = sharding.replicate(state, mesh)
        tqdm.write(f"{config.model.kind}: {count_params(state.params):,} parameters, {mesh.size} device(s), steps "
                   f"{start}..{config.num_steps}, writing to {workdir}")
        train_step = make_train_step(config, model, schedule, optimizer, mesh)
        source = data.make_source(config.data, model.image_size, split="train")
        stream = data.prefetch_to_mesh(data.batches(source, start, config.batch_size, seed=config.seed,
                                                    scale=config.scale, k=config.k, degradation=config.degradation,
                                                    workers=config.data.workers), mesh)
        heldout = heldout_batch(config, model.image_size)
        metrics_log = MetricsLog(workdir / "metrics.csv", start)
        (workdir / "samples").mkdir(exist_ok=True)

        def save(step):
            if manager.latest_step() != step:
                manager.save(step, args=ocp.args.StandardSave(jax.device_get(state)), force=True)
                export_model(workdir, state, config)

        step, last_time, last_step = start, time.perf_counter(), start
        with StopRequest() as stop, tqdm(total=config.num_steps, initial=start, desc="train", unit="step",
                                        dynamic_ncols=True) as bar:
            while step < config.num_steps:
                state, metrics = train_step(state, next(stream))
                step += 1
                bar.update(1)
                if step % config.log_every == 0 or step == config.num_steps:
                    metrics = jax.device_get(metrics)
                    now = time.perf_counter()
                    metrics["steps_per_s"] = (step - last_step) / (now - last_time)
                    last_time, last_step = now, step
                    metrics_log.add(step, metrics)
                    bar.set_postfix(loss=f"{float(metrics['loss']):.4g}")
                if step % config.eval_every == 0 or step == config.num_steps:
                    values, picture = evaluate(state, heldout, model=model, schedule=schedule, config=config)
                    metrics_log.add(step, values)
                    images.save_png(workdir / "samples" / f"step_{step:07d}.png", picture)
                    bar.write(f"step {step}: " + ", ".join(f"{k} {v:.5g}" for k, v in values.items()))
                if step % config.checkpoint_every == 0 or step == config.num_steps:
                    save(step)
                if stop.signal or (stop_after is not None and step - start >= stop_after):
                    save(step)
                    manager.wait_until_finished()
                    reason = stop.signal or f"stop_after={stop_after}"
                    bar.write(f"{reason}: checkpointed step {step} in {workdir}; rerun the same command to resume")
                    break
        manager.wait_until_finished()
    return state
