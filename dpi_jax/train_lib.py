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
- ``<workdir>/config.json``: the config the workdir's checkpoints were trained with. A rerun whose config differs in
  a field that changes what is trained (anything but :data:`HARMLESS_CHANGES`) is refused before any step,
  listing the differing fields (:class:`ConfigChangedError`), unless the change is forced (``allow_config_change``;
  config.json then holds the new config).
- The workdir is locked for the whole run (:func:`dpi_jax.folders.locked`), so a second training in the same workdir
  fails at once; the OS releases the lock when the process ends, however it ends.
- Several processes (``train.py --coordinator_address ... --num_processes N --process_id i``, or ``--distributed``;
  :mod:`dpi_jax.distributed`): the global batch is split over the devices of all processes, each process makes only
  its rows of it (:func:`dpi_jax.data.batch_at`'s ``rows``), every process takes part in orbax's checkpoint save and
  restore (orbax writes from process 0), and process 0 holds the lock and writes config.json, the export, the
  metrics and the sample PNGs. The workdir must be one shared folder.

A run stopped by SIGINT/SIGTERM checkpoints and returns; :attr:`StopRequest.exit_status` is then 128 + the signal's
number (130, 143), what ``train.py`` exits with.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
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

from dpi_jax import checkpoint, data, diffusion, distributed, folders, images, sharding, tasks
from dpi_jax.errors import ConfigChangedError, InputError
from dpi_jax.models import abstract_params, count_params, make_model

INIT_FOLD = 2**31 - 1  # the parameters' initialisation key: fold_in(PRNGKey(seed), INIT_FOLD); steps use 0, 1, ...
HELDOUT_SEED_OFFSET = 1  # the held-out batch draws its degradations from seed + 1, apart from the training batches
CONFIG_FILE = "config.json"
# The config fields a rerun may change in a workdir: where things are, how long, and the bookkeeping. Any other change
# (model, data, task, diffusion, loss, seed, optimiser, batch size, EMA, init_from) changes what is trained.
# num_steps extends (or shortens) a run; with the cosine schedule it also stretches the decay from then on.
HARMLESS_CHANGES = frozenset({
    "workdir", "num_steps", "log_every", "eval_every", "eval_images", "sample_images", "sample_respacing", "var_type",
    "checkpoint_every", "keep_checkpoints", "data.workers", "data.data_dir", "data.manual_dir", "allow_config_change"})


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
    raise InputError(f"unknown learning-rate schedule {config.optim.schedule!r}: 'cosine' or 'constant'")


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    o = config.optim
    adamw = optax.adamw(learning_rate_schedule(config), b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay)
    return optax.chain(optax.clip_by_global_norm(o.grad_clip), adamw) if o.grad_clip > 0 else adamw


def make_schedule(config: ml_collections.ConfigDict) -> diffusion.Schedule:
    return diffusion.make_schedule(config.diffusion.num_timesteps, config.diffusion.beta_schedule)


def build_model(config: ml_collections.ConfigDict):
    return make_model(config.model.kind, dict(config.model.config))


def initial_params(config: ml_collections.ConfigDict, model):
    """The parameters a run starts from: ``config.init_from``'s (fine-tuning) or a random initialisation from
    ``fold_in(PRNGKey(seed), INIT_FOLD)``."""
    if not config.get("init_from"):
        key = jax.random.fold_in(jax.random.PRNGKey(config.seed), INIT_FOLD)
        # One compiled program: op by op, a UNet's initialisation dispatches (and compiles) hundreds of small ops.
        return jax.jit(model.init)(key, *model.example_inputs())["params"]
    _, stored, params = checkpoint.load_model(config.init_from, config.model.kind, "config.init_from")
    wanted = checkpoint.json_config(dict(config.model.config))
    differing = sorted(k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k))
    if differing:
        raise checkpoint.CheckpointError(
            f"config.init_from={config.init_from}: its model config differs from config.model.config in "
            + ", ".join(f"{k} ({stored.get(k)!r} there, {wanted.get(k)!r} here)" for k in differing))
    return params


def init_state(params, optimizer) -> TrainState:
    """Step 0 of a run from ``params`` (the EMA starts equal to them)."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=jax.tree.map(jnp.copy, params),
                      opt_state=optimizer.init(params))


def make_train_step(config: ml_collections.ConfigDict, model, schedule, optimizer, mesh):
    """A jitted ``(state, batch) -> (state, metrics)``: the batch split over ``mesh``, the state replicated."""
    lr_schedule = learning_rate_schedule(config)
    decay = config.ema_decay

    def train_step(state: TrainState, batch: dict):
        key = jax.random.fold_in(jax.random.PRNGKey(config.seed), state.step)
        loss_fn = functools.partial(tasks.task_for(model).loss, model=model, schedule=schedule, config=config)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
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
                           seed=config.seed + HELDOUT_SEED_OFFSET)


def evaluate(state: TrainState, batch: dict, *, model, schedule, config) -> tuple[dict, np.ndarray]:
    """Held-out metrics of the EMA parameters, and the PNG to write (uint8)."""
    return tasks.task_for(model).heldout(jax.device_get(state.ema_params), batch, model=model, schedule=schedule,
                                         config=config)


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
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fields)
        writer.writeheader()
        writer.writerows(self.rows)
        images.write_atomic(self.path, text.getvalue())  # a crash never leaves a truncated metrics.csv


class StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step (it then checkpoints and returns)."""

    def __init__(self):
        self.signal = None  # the name of the signal received, e.g. "SIGINT"
        self.signum = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum
        self.signal = signal.Signals(signum).name

    @property
    def exit_status(self) -> int:
        """The process's exit status: 128 + the signal's number when one was received (SIGINT 130, SIGTERM 143),
        else 0."""
        return 0 if self.signum is None else 128 + int(self.signum)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def export_model(workdir: Path, state: TrainState, config: ml_collections.ConfigDict) -> Path:
    """The EMA parameters as a :mod:`dpi_jax.checkpoint` model directory, ``<workdir>/model``, with the step (and a
    CRT's SR scale, see :func:`dpi_jax.checkpoint.stored_scale`) in its model.json. Atomic
    (:func:`dpi_jax.checkpoint.write_checkpoint`): a crash leaves the previous export or this one."""
    extra = {"step": int(state.step)}
    if config.model.kind == "crt":
        extra["scale"] = int(config.scale)
    return checkpoint.save_model(workdir / "model", jax.device_get(state.ema_params), dict(config.model.config),
                                 kind=config.model.kind, overwrite=True, extra=extra)


def exported_step(model_dir: Path) -> int | None:
    """The step of a complete export in ``model_dir``, or None (missing, unfinished, or without a step)."""
    if not checkpoint.is_complete(model_dir):
        return None
    step = json.loads((model_dir / checkpoint.MODEL_FILE).read_text()).get("step")
    return step if isinstance(step, int) else None


def repair_export(workdir: Path, state: TrainState, config: ml_collections.ConfigDict) -> None:
    """On resuming: remove what a crash left beside ``<workdir>/model`` (:func:`dpi_jax.checkpoint.repair`), and
    export the restored state again when ``model/`` is missing, unfinished or of another step."""
    model_dir = workdir / "model"
    for action in checkpoint.repair(model_dir):
        tqdm.write(action)
    if exported_step(model_dir) != int(state.step):
        export_model(workdir, state, config)
        tqdm.write(f"exported {model_dir} again from the checkpoint of step {int(state.step)}")


def flat_config(tree: dict, prefix: str = "") -> dict:
    """The leaves of a config's JSON form by dotted name, e.g. ``{"model.config.num_channels": 128, ...}``."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(stored: dict, config: ml_collections.ConfigDict) -> list[str]:
    """``"name: old -> new"`` for each field outside :data:`HARMLESS_CHANGES` where ``config`` differs from the
    ``stored`` JSON form of a config ("absent" for a field only one of them has)."""
    old, new = flat_config(stored), flat_config(json.loads(config.to_json()))

    def shown(flat, name):
        return repr(flat[name]) if name in flat else "absent"

    return [f"{name}: {shown(old, name)} -> {shown(new, name)}" for name in sorted(old.keys() | new.keys())
            if name not in HARMLESS_CHANGES and (name in old, old.get(name)) != (name in new, new.get(name))]


def check_rerun_config(workdir: Path, config: ml_collections.ConfigDict, allow_change: bool = False) -> list[str]:
    """Compare ``config`` with the ``<workdir>/config.json`` of the runs before (none: nothing to compare) and return
    the differing fields (:func:`config_changes`); raises :class:`ConfigChangedError` listing them unless
    ``allow_change``."""
    path = workdir / CONFIG_FILE
    if not path.exists():
        return []
    try:
        stored = json.loads(path.read_text())
    except ValueError as err:
        raise ConfigChangedError(f"{path}: unreadable ({err}); move it away to start afresh from this config") from None
    changes = config_changes(stored, config)
    if changes and not allow_change:
        raise ConfigChangedError(
            f"{path}: this workdir was trained with another config; differing fields (there -> now): "
            + "; ".join(changes) + ". Rerun with that config, use another --config.workdir, or pass "
            "--allow_config_change to continue anyway")
    return changes


def train(config: ml_collections.ConfigDict, workdir, *, stop_after: int | None = None,
          stop: StopRequest | None = None, allow_config_change: bool = False) -> TrainState:
    """Train (or resume training) in ``workdir``, holding its lock (:func:`dpi_jax.folders.locked`); returns the
    final state.
    A config that differs from the workdir's config.json is refused (:func:`check_rerun_config`) unless
    ``allow_config_change`` (or ``config.allow_config_change``). ``stop``: the :class:`StopRequest` the loop uses
    (the caller reads the signal from it afterwards). ``stop_after`` ends the run after that many steps of this call,
    checkpointing as a signal would (for tests of resumption)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    # Several processes (dpi_jax.distributed): process 0 holds the lock and writes the files besides orbax's.
    with folders.locked(workdir, "training") if distributed.is_main() else contextlib.nullcontext():
        allow = allow_config_change or bool(config.get("allow_config_change", False))
        changes = check_rerun_config(workdir, config, allow)
        for change in changes:
            tqdm.write(f"config changed (allowed): {change}")
        return _train_locked(config, workdir, stop_after=stop_after, stop=stop or StopRequest(),
                             write_config=bool(changes) or not (workdir / CONFIG_FILE).exists())


def _train_locked(config: ml_collections.ConfigDict, workdir: Path, *, stop_after: int | None, stop: StopRequest,
                  write_config: bool) -> TrainState:
    """The body of :func:`train` once the workdir is locked and the config checked; ``write_config``: (re)write
    config.json once the state is set up."""
    model, schedule, optimizer = build_model(config), make_schedule(config), make_optimizer(config)
    mesh = sharding.data_mesh()
    if config.batch_size % mesh.size:
        raise InputError(f"batch_size {config.batch_size} does not split over {mesh.size} devices")

    options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True)
    with ocp.CheckpointManager((workdir / "checkpoints").resolve(), options=options) as manager:
        if manager.latest_step() is None:
            state = init_state(initial_params(config, model), optimizer)
            if config.get("init_from"):
                tqdm.write(f"started from the parameters of {config.init_from}")
        else:  # restored against the state's shapes only: no initialisation to throw away
            abstract = abstract_params(model)
            target = jax.eval_shape(lambda p: init_state(p, optimizer), abstract)
            state = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(target))
            tqdm.write(f"resumed from {workdir / 'checkpoints'} at step {int(state.step)}")
            if distributed.is_main():
                repair_export(workdir, state, config)
        if write_config and distributed.is_main():
            images.write_atomic(workdir / CONFIG_FILE, config.to_json(indent=1))
        start = int(state.step)
        state = sharding.replicate(state, mesh)
        tqdm.write(f"{config.model.kind}: {count_params(state.params):,} parameters, {mesh.size} device(s), steps "
                   f"{start}..{config.num_steps}, writing to {workdir}")
        train_step = make_train_step(config, model, schedule, optimizer, mesh)
        source = data.make_source(config.data, model.image_size, split="train")
        stream = data.prefetch_to_mesh(data.batches(source, start, config.batch_size, seed=config.seed,
                                                    scale=config.scale, k=config.k, degradation=config.degradation,
                                                    workers=config.data.workers,
                                                    rows=sharding.process_rows(config.batch_size, mesh)), mesh)
        heldout = heldout_batch(config, model.image_size)
        main = distributed.is_main()
        metrics_log = MetricsLog(workdir / "metrics.csv", start) if main else None
        (workdir / "samples").mkdir(exist_ok=True)

        def save(step):
            if manager.latest_step() != step:  # every process takes part in orbax's save
                manager.save(step, args=ocp.args.StandardSave(jax.device_get(state)), force=True)
                if main:
                    export_model(workdir, state, config)

        step, last_time, last_step = start, time.perf_counter(), start
        with stop, tqdm(total=config.num_steps, initial=start, desc="train", unit="step", dynamic_ncols=True,
                        disable=not main) as bar:
            while step < config.num_steps:
                state, metrics = train_step(state, next(stream))
                step += 1
                bar.update(1)
                if main and (step % config.log_every == 0 or step == config.num_steps):
                    metrics = jax.device_get(metrics)
                    now = time.perf_counter()
                    metrics["steps_per_s"] = (step - last_step) / (now - last_time)
                    last_time, last_step = now, step
                    metrics_log.add(step, metrics)
                    bar.set_postfix(loss=f"{float(metrics['loss']):.4g}")
                if main and (step % config.eval_every == 0 or step == config.num_steps):
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
