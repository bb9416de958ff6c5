"""The DPI sampler: Algorithm 1 of the paper as one pure step function and a ``lax.scan`` over steps.

The sampler takes three values besides its inputs: :class:`Networks` (the prior and the optional corrector with their
parameter pytrees), a :class:`~dpi_jax.diffusion.Schedule` (its length is the number of steps) and :class:`Settings`
(tau, s, omega, eta traced; k, method, var_type, clip_denoised static). ``docs/algorithm.md`` gives the algorithm as
implemented, step by step, with every choice the paper leaves open.

One step (:func:`dpi_step`) at step index ``i``, with ``t = schedule.timestep_map[i]`` the original timestep:

1. the prior gives x̂0, the mean and variance of p(x_{t-1} | x_t), and x' is drawn with the step's Gaussian z;
2. the noisy condition y^n = sqrt(abar_t) y + sqrt(1 - abar_t) eps (Eq. 6), with the model's raw eps;
3. the condition posterior y' = posterior_mean(x0=y, x_t=y^n) + sigma z (Eq. 7), the same z and variance as x';
   under DDIM, both x' and y' are DDIM means with eps re-derived from the clipped x̂0 (x̂0 := y for y');
4. stage I (t > tau, Eq. 8): x = (1 - m_f) x' + m_f y';
   stage II (t <= tau, Eq. 9): m_a = Mask_gen(y, s), w = t / omega, x = (1 - m_a) x' + w m_a y' + (1 - w) m_a x',
   and y' := x (the refinement);
5. the corrector (Eq. 16): y = m_f CRT(m_f y', t, m_f y_T); without a CRT the condition is never updated: y stays
   y_T, the LR input's own pixels (the paper's Table 4 "w/o CRT");
6. at i == 0 the step returns x' and leaves y as it was (as the authors' code does).

Table 4's ablations are settings: no CRT is ``Networks`` without one, no refinement ``Settings(refine=False)`` (stage II
passes the CRT y' itself, not the mixed x), no stage II ``tau=0``, no weight ``Settings(weight=False)`` (w = 1 in
Eq. 9), another sparsity ``k``. The switches are static; tau, s, omega and eta stay traced.

tau and omega are in the paper's units, the original timestep t (Eq. 9: "when t < tau", w = t / omega), under any
respacing: the paper's x8 setting (300, 1.2, 750) means the same on 1000 DDPM steps, 250 respaced steps or DDIM-20.

Random draws: :func:`sample` derives, for step i, ``z`` and the RACM uniforms ``u`` from ``fold_in(key, i)``;
:func:`sample_with_draws` takes them as arrays, which is how the sampler is checked against the reference draw for draw.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from dpi_jax import diffusion, masks

ModelFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
CorrectorFn = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray], jnp.ndarray]
METHODS = ("ddpm", "ddim")


@flax.struct.dataclass
class Settings:
    """DPI's settings (Algorithm 1), one value for all the sampling functions.

    Traced (changing them never recompiles; scalars or (B,) arrays, one value per image):
      tau: the stage boundary in units of the original timestep t: stage I (fixed mask, Eq. 8) while t > tau,
        stage II (RACM interpolation, Eq. 9) for t <= tau. In [0, T).
      s: the RACM sharpness (Eq. 14), > 0.
      omega: the interpolation scale of stage II, w = t / omega (Eq. 9), in units of t; > 0.
      eta: DDIM's stochasticity (method "ddim" only), in [0, 1].
    Static (part of the compiled program):
      k: sparsity of the condition grid (every k-th pixel in each direction; 2 in the paper, Table 4 "w/o k = 2").
      method: "ddpm" (ancestral) or "ddim".
      refine: stage II's iterative refinement (Table 4 "w/ Refine"): the CRT corrects the mixed sample of Eq. 9
        (y' := x). False: it corrects the condition's own posterior sample y', so the corrected conditions are "used
        solely as conditions at each time step without participating in the iterative refinement".
      weight: the weight w = t / omega of Eq. 9 (Table 4 "w/ Weight"); False: w = 1, the condition's pixels replace
        the sample's wherever m_a is set.
      var_type, clip_denoised: the prior's variance parameterisation and x̂0 clipping
        (see :func:`dpi_jax.diffusion.p_mean_variance`).
    """

    tau: Any = 300.0
    s: Any = 1.2
    omega: Any = 750.0
    eta: Any = 0.0
    k: int = flax.struct.field(pytree_node=False, default=2)
    method: str = flax.struct.field(pytree_node=False, default="ddpm")
    var_type: str = flax.struct.field(pytree_node=False, default="learned_range")
    clip_denoised: bool = flax.struct.field(pytree_node=False, default=True)
    refine: bool = flax.struct.field(pytree_node=False, default=True)
    weight: bool = flax.struct.field(pytree_node=False, default=True)

    TRACED = ("tau", "s", "omega", "eta")


    def validate(self, num_timesteps: int) -> "Settings":
        """Check every concrete value (traced ones are skipped); raises ValueError naming every invalid field, its
        value and the allowed range (:meth:`problems`, joined by "; "). Returns ``self``."""
        problems = self.problems(num_timesteps)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def problems(self, num_timesteps: int) -> list[str]:
        """One message per invalid field (``"tau = -1.0: must be in [0, 1000) ..."``); traced values are skipped."""
        found = []

        def values(name):
            value = getattr(self, name)
            if isinstance(value, jax.core.Tracer):
                return None
            try:
                return np.asarray(value, np.float64).ravel()
            except (TypeError, ValueError):
                found.append(f"{name} = {value!r}: must be a number")
                return None

        def check(name, ok, allowed):
            v = values(name)
            if v is not None and not (np.all(np.isfinite(v)) and np.all(ok(v))):
                found.append(f"{name} = {np.asarray(getattr(self, name)).tolist()}: must be {allowed}")

        check("tau", lambda v: (v >= 0) & (v < num_timesteps),
              f"in [0, {num_timesteps}) (a timestep t of the original {num_timesteps}-step schedule, Eq. 9)")
        check("s", lambda v: v > 0, "> 0 (the RACM sharpness, Eq. 14)")
        check("omega", lambda v: v > 0, "> 0 (in units of the timestep t: w = t / omega, Eq. 9)")
        check("eta", lambda v: (v >= 0) & (v <= 1), "in [0, 1] (DDIM's eta)")
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            found.append(f"k = {self.k!r}: must be an integer >= 1 (the condition grid's sparsity)")
        if self.method not in METHODS:
            found.append(f"method = {self.method!r}: must be one of {', '.join(METHODS)}")
        for switch in ("refine", "weight", "clip_denoised"):
            if not isinstance(getattr(self, switch), (bool, np.bool_)):
                found.append(f"{switch} = {getattr(self, switch)!r}: must be True or False")
        if self.var_type not in diffusion.VAR_TYPES:
            found.append(f"var_type = {self.var_type!r}: must be one of {', '.join(diffusion.VAR_TYPES)}")
        return found

    def as_arrays(self) -> "Settings":
        """The traced fields as arrays of the default float type (float32, or float64 under ``jax_enable_x64``), so
        that an int tau and a float tau share one compilation."""
        real = jax.dtypes.canonicalize_dtype(jnp.float64)
        return self.replace(**{n: jnp.asarray(getattr(self, n), real) for n in self.TRACED})


DEFAULT_SETTINGS = Settings()  # the paper's x8 setting, DDPM


@flax.struct.dataclass
class Networks:
    """The denoising prior (e.g. :class:`dpi_jax.models.ADM`) and the optional condition corrector
    (:class:`dpi_jax.models.CRT`, or None), with their parameter pytrees. The modules are static, the parameters are
    pytree leaves: differentiate or shard them like any array."""

    prior: nn.Module = flax.struct.field(pytree_node=False)
    prior_params: Any
    crt: Optional[nn.Module] = flax.struct.field(pytree_node=False, default=None)
    crt_params: Any = None

    def prior_fn(self) -> ModelFn:
        """``(x, t) -> model output`` with the parameters bound."""
        return lambda x, t: self.prior.apply({"params": self.prior_params}, x, t)

    def crt_fn(self) -> Optional[CorrectorFn]:
        """``(m_f y', t, m_f y_T) -> corrected condition`` with the parameters bound, or None without a CRT."""
        if self.crt is None:
            return None
        return lambda x, t, y: self.crt.apply({"params": self.crt_params}, x, t, y)

    def without_crt(self) -> "Networks":
        return Networks(self.prior, self.prior_params)


def check_image_size(nets: Networks, size: tuple, k: int) -> None:
    """Refuse to sample at another size than the prior's ``image_size`` (when its module has one): the networks are
    convolutional and would run at any size, so a condition of the wrong size (it must be image_size / k a side)
    would otherwise give pictures of another size without a word. Shapes are static: checked at trace time."""
    expected = getattr(nets.prior, "image_size", None)
    if expected is not None and tuple(size) != (expected, expected):
        raise ValueError(f"the sample would be {size[0]}x{size[1]}, but the prior is {expected}x{expected}: the "
                         f"condition lr_bicubic must be {expected // k}x{expected // k} (image_size / k, k = {k})")


def stage_one(schedule: diffusion.Schedule, tau) -> np.ndarray:
    """For each step index i of ``schedule``, whether it is in stage I (t = timestep_map[i] > tau, Eq. 8), as
    :func:`dpi_step` decides it; the others are stage II (Eq. 9)."""
    return np.asarray(schedule.timestep_map) > np.asarray(tau)


class DPIState(NamedTuple):
    """The scan carry: the sample x and the condition y (only its grid pixels are ever read)."""

    x: jnp.ndarray
    y: jnp.ndarray


def dpi_step(state: DPIState, i, z, u, *, prior_fn: ModelFn, crt_fn: Optional[CorrectorFn],
             schedule: diffusion.Schedule, y_T, settings: Settings) -> DPIState:
    """One step of Algorithm 1 at step index ``i`` (a scalar), with its random draws given explicitly.

    Args:
      state: the current (x, y), NHWC.
      i: the step index into ``schedule`` (N-1 ... 0), a scalar integer (may be traced).
      z: the step's Gaussian draw, shaped like x; shared by x' and y' (Alg. 1, lines 3 and 6).
      u: uniforms (B, H/k, W/k) for the RACM's Bernoulli draw, ``m_a = u < p^s`` (used only in stage II).
      prior_fn: ``(x, t) -> model output`` with t the original timesteps, shape (B,).
      crt_fn: ``(m_f y', t, m_f y_T) -> corrected condition`` or None for no corrector.
      schedule: the (respaced) diffusion schedule.
      y_T: the initial condition (Eq. 11).
      settings: :class:`Settings`; tau and omega in units of the original timestep t.
    Returns:
      the next (x, y).
    """
    if settings.method not in METHODS:
        raise ValueError(f"unknown sampling method {settings.method!r}: expected one of {METHODS}")
    k = settings.k
    x, y = state
    batch, height, width, _ = x.shape
    chex.assert_equal_shape([x, y, z, y_T])
    i = jnp.asarray(i, jnp.int32)
    steps = jnp.full((batch,), i)
    t_i = schedule.timestep_map[i]
    t = jnp.full((batch,), t_i)

    out = diffusion.p_mean_variance(schedule, prior_fn(x, t), x, steps, var_type=settings.var_type,
                                    clip_denoised=settings.clip_denoised)
    if settings.method == "ddpm":
        x_prime = diffusion.ddpm_step(out, steps, z)
        y_noisy = diffusion.q_sample(schedule, y, steps, out["eps"])  # Eq. 6
        y_mean, _, _ = diffusion.q_posterior_mean_variance(schedule, y, y_noisy, steps)  # Eq. 7
        y_prime = y_mean + diffusion.nonzero_mask(steps) * jnp.exp(0.5 * out["log_variance"]) * z
    else:
        eps = diffusion.predict_eps_from_x0(schedule, x, steps, out["pred_xstart"])
        sigma = diffusion.ddim_sigma(schedule, steps, settings.eta)
        noise = diffusion.nonzero_mask(steps) * sigma * z
        x_prime = diffusion.ddim_mean(schedule, out["pred_xstart"], eps, steps, sigma) + noise
        y_prime = diffusion.ddim_mean(schedule, y, eps, steps, sigma) + noise

    m_f = masks.fixed_mask(height, width, k)
    # Stage I (Eq. 8): the fixed condition mask.
    x_stage1 = (1 - m_f) * x_prime + m_f * y_prime
    # Stage II (Eq. 9): the weighted random adaptive condition mask, drawn from the current condition y.
    per_image = lambda v: jnp.reshape(v, (-1, 1, 1, 1))  # scalars broadcast, (B,) values per image
    m_a = masks.racm_mask_from_uniforms(y, settings.s, u, k)
    w = per_image(t_i.astype(x.dtype) / settings.omega) if settings.weight else 1.0  # w = 1: Table 4 "w/o Weight"
    x_stage2 = (1 - m_a) * x_prime + w * (m_a * y_prime) + (1 - w) * (m_a * x_prime)
    stage1 = per_image(t_i > settings.tau)
    x_mixed = jnp.where(stage1, x_stage1, x_stage2)
    if settings.refine:  # stage II's refinement: the CRT corrects the mixed sample (y' := x)
        y_prime = jnp.where(stage1, y_prime, x_stage2)

    if crt_fn is None:  # Table 4 "w/o CRT": the condition is never updated, y = y_T at every step
        y_next = y
    else:  # Eq. 16
        correct = lambda y_prime: m_f * crt_fn(m_f * y_prime, t, m_f * y_T)
        y_next = jax.lax.cond(i > 0, correct, lambda _: y, y_prime)
    x_next = jnp.where(i > 0, x_mixed, x_prime)
    return DPIState(x_next, y_next)


_step_watchers: list[Callable[[int], None]] = []  # host-side observers of the steps (see watch_steps)


def _report_step(i) -> None:
    for watcher in tuple(_step_watchers):
        watcher(int(i))


@contextlib.contextmanager
def watch_steps(watcher: Callable[[int], None]):
    """While the block runs, ``watcher(i)`` is called on the host after step index i (counting down from N-1 to 0)
    of every sampling call made with ``report_every > 0``, every ``report_every`` steps and at i = 0: a progress bar
    over the steps inside the jitted ``lax.scan``, through ``jax.debug.callback``.

    The compiled program is the same for any watcher (it calls one fixed host function that forwards to the
    watchers registered here), so a new bar never recompiles; and the callback only observes, so results are
    bitwise the same with and without it (tests/test_sampler.py). Runs of several seed chunks report each chunk's
    steps in turn."""
    _step_watchers.append(watcher)
    try:
        yield
    finally:
        _step_watchers.remove(watcher)


def _maybe_report(i, report_every: int) -> None:
    if report_every:
        jax.lax.cond((i % report_every == 0) | (i == 0), lambda: jax.debug.callback(_report_step, i),
                     lambda: None)


@functools.partial(jax.jit, static_argnames=("snapshot_steps", "report_every"))
def _run(draws, x_T, lr_bicubic, nets: Networks, schedule, settings: Settings, snapshot_steps=(), report_every=0):
    """Scan :func:`dpi_step` over i = N-1 ... 0.

    ``draws`` is a PRNG key (step i draws z and u from ``fold_in(draws, i)``) or a tuple ``(noises, uniforms)`` of
    all N steps' draws, indexed by step index. ``report_every > 0`` reports the steps to :func:`watch_steps`.
    """
    chex.assert_rank([x_T, lr_bicubic], 4)
    k = settings.k
    batch, height, width, channels = x_T.shape
    if lr_bicubic.shape != (batch, height // k, width // k, channels) or height % k or width % k:
        raise ValueError(f"lr_bicubic must be (B, H/k, W/k, C) = {(batch, height // k, width // k, channels)} for "
                         f"x_T {x_T.shape} and k={k}; got {lr_bicubic.shape}")
    if isinstance(draws, tuple):
        noises, uniforms = draws
        chex.assert_axis_dimension(noises, 0, schedule.num_steps)
        chex.assert_axis_dimension(uniforms, 0, schedule.num_steps)
        draw_fn = lambda i: (noises[i], uniforms[i])
    else:
        def draw_fn(i):
            key_z, key_u = jax.random.split(jax.random.fold_in(draws, i))
            return (jax.random.normal(key_z, x_T.shape, x_T.dtype),
                    jax.random.uniform(key_u, (batch, height // k, width // k), x_T.dtype))

    y_T = masks.initial_condition(lr_bicubic.astype(x_T.dtype), k)
    step = functools.partial(dpi_step, prior_fn=nets.prior_fn(), crt_fn=nets.crt_fn(), schedule=schedule, y_T=y_T,
                             settings=settings)
    snap_at = jnp.asarray(snapshot_steps, jnp.int32)

    @jax.checkpoint  # under jax.grad, keep only the carried state per step and recompute the rest
    def body(carry, i):
        state, snaps = carry
        z, u = draw_fn(i)
        state = step(state, i, z, u)
        _maybe_report(i, report_every)
        if snapshot_steps:  # keep only the chosen steps: memory does not grow with the number of steps
            hit = (snap_at == i)[:, None, None, None, None]
            snaps = (jnp.where(hit, state.x[None], snaps[0]), jnp.where(hit, state.y[None], snaps[1]))
        return (state, snaps), None

    empty = jnp.zeros((len(snapshot_steps),) + x_T.shape, x_T.dtype)
    init = (DPIState(x_T, y_T), (empty, empty))
    (final, snaps), _ = jax.lax.scan(body, init, jnp.arange(schedule.num_steps - 1, -1, -1))
    if snapshot_steps:
        return final.x, {"x": snaps[0], "y": snaps[1], "steps": snap_at}
    return final.x


@functools.partial(jax.jit, static_argnames=("snapshot_steps", "report_every"))
def _run_from_key(key, x_T, lr_bicubic, nets, schedule, settings, snapshot_steps=(), report_every=0):
    """x_T from ``split(key)[0]`` (unless given) and the steps' draws from ``split(key)[1]``; inside jit, so that a
    batch sharded over devices stays sharded from the first draw on."""
    key_init, key_steps = jax.random.split(key)
    if x_T is None:
        b, h, w, c = lr_bicubic.shape
        x_T = jax.random.normal(key_init, (b, h * settings.k, w * settings.k, c), lr_bicubic.dtype)
    check_image_size(nets, x_T.shape[1:3], settings.k)
    return _run(key_steps, x_T, lr_bicubic, nets, schedule, settings, snapshot_steps, report_every)


def _run_per_image(keys, lr_bicubic, nets, schedule, settings, report_every=0):
    """Image b from ``keys[b]`` alone, exactly as ``_run_from_key(keys[b], None, lr_bicubic[b:b+1], ...)``: the
    batch is a vmap over single images (XLA folds it back into the networks' batch dimension). Settings given per
    image ((B,) arrays) are split with the images."""
    one = lambda key, lr, own: _run_from_key(key, None, lr[None], nets, schedule, own, (), report_every)[0]
    settings_axes = jax.tree.map(lambda v: 0 if jnp.ndim(v) == 1 else None, settings)
    return jax.vmap(one, in_axes=(0, 0, settings_axes))(keys, lr_bicubic, settings)


def _key_batch_shape(keys: jax.Array) -> tuple:
    """The shape of an array of PRNG keys without the key's own trailing dimension (legacy uint32 keys)."""
    return keys.shape if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key) else keys.shape[:-1]


@functools.partial(jax.jit, static_argnames=("chunk_size", "report_every"))
def _run_seeds(keys, lr_bicubic, nets, schedule, settings, chunk_size=None, report_every=0):
    if len(_key_batch_shape(keys)) == 2:  # (S, B): one key per seed and image
        run_one_seed = lambda image_keys: _run_per_image(image_keys, lr_bicubic, nets, schedule, settings,
                                                         report_every)
    else:  # (S,): one key per seed for the whole batch
        run_one_seed = lambda key: _run_from_key(key, None, lr_bicubic, nets, schedule, settings, (), report_every)
    return jax.lax.map(run_one_seed, keys, batch_size=chunk_size)


def _prepared(schedule: diffusion.Schedule, settings: Settings) -> Settings:
    return settings.validate(schedule.num_timesteps).as_arrays()


def sample(key: jax.Array, lr_bicubic: jnp.ndarray, nets: Networks, schedule: diffusion.Schedule,
           settings: Settings = DEFAULT_SETTINGS, *, snapshot_steps: Sequence[int] = (),
           x_T: Optional[jnp.ndarray] = None, report_every: int = 0):
    """DPI super-resolution (Algorithm 1) of a batch, all random draws derived from ``key``.

    Args:
      key: a PRNG key. x_T is drawn from ``split(key)[0]`` unless given; step i draws from
        ``fold_in(split(key)[1], i)``.
      lr_bicubic: I_L^bc, the LR input resized bicubically to (B, H/k, W/k, 3), NHWC in [-1, 1].
      nets: the prior and the optional corrector with their parameters (:class:`Networks`).
      schedule: from :func:`dpi_jax.diffusion.make_schedule` (its length is the number of sampling steps).
      settings: :class:`Settings` (tau and omega in units of the original timestep t); its traced fields may be
        scalars or (B,) arrays, and changing them does not recompile.
      snapshot_steps: step indices i after which x and y are kept (static; a tuple).
      x_T: the initial noise (B, H, W, 3); drawn from the key when None.
      report_every: > 0 reports every that many steps to :func:`watch_steps` (static).
    Returns:
      x0 (B, H, W, 3) in the dtype of lr_bicubic; with ``snapshot_steps``, ``(x0, {"x": (S, ...), "y": (S, ...),
      "steps": (S,)})``.
    """
    snapshot_steps = tuple(int(i) for i in snapshot_steps)
    return _run_from_key(key, x_T, lr_bicubic, nets, schedule, _prepared(schedule, settings), snapshot_steps,
                         report_every)


def lower(key: jax.Array, lr_bicubic: jnp.ndarray, nets: Networks, schedule: diffusion.Schedule,
          settings: Settings = DEFAULT_SETTINGS, *, x_T: Optional[jnp.ndarray] = None) -> jax.stages.Lowered:
    """The lowered program that :func:`sample` runs for these arguments (``.compile()`` it for ahead-of-time
    compilation, its memory plan and cost analysis)."""
    return _run_from_key.lower(key, x_T, lr_bicubic, nets, schedule, _prepared(schedule, settings))


def compilation_count() -> int:
    """How many programs the sampling functions have compiled so far in this process (to check that changing the
    traced settings, the keys or the draws never recompiles)."""
    return sum(fn._cache_size() for fn in (_run, _run_from_key, _run_seeds))


def sample_seeds(keys: jax.Array, lr_bicubic: jnp.ndarray, nets: Networks, schedule: diffusion.Schedule,
                 settings: Settings = DEFAULT_SETTINGS, *, chunk_size: Optional[int] = None, report_every: int = 0):
    """:func:`sample` for each of S seeds at once: returns (S, B, H, W, 3).

    ``keys`` is (S,), one key per seed for the whole batch (seed j gives exactly ``sample(keys[j], ...)``), or
    (S, B), one key per seed and image (image b of seed j gives exactly ``sample(keys[j, b], lr_bicubic[b:b+1])``,
    so that an image's result depends neither on the batch it is in nor on its place there). Seeds are sampled
    ``chunk_size`` at a time (all at once when None), so memory stays bounded for large S. ``report_every > 0``
    reports the steps to :func:`watch_steps` (static: it compiles once per value).
    """
    return _run_seeds(keys, lr_bicubic, nets, schedule, _prepared(schedule, settings), chunk_size, report_every)


def sample_with_draws(x_T, lr_bicubic, noises, uniforms, nets: Networks, schedule: diffusion.Schedule,
                      settings: Settings = DEFAULT_SETTINGS, *, snapshot_steps: Sequence[int] = ()):
    """As :func:`sample`, with every random draw given: ``noises[i]`` (B, H, W, 3) and ``uniforms[i]`` (B, H/k, W/k)
    are the draws of step index i. For checking against another implementation draw for draw; it holds all N draws
    in memory, so prefer :func:`sample` for real work."""
    snapshot_steps = tuple(int(i) for i in snapshot_steps)
    return _run((noises, uniforms), x_T, lr_bicubic, nets, schedule, _prepared(schedule, settings), snapshot_steps)


@functools.partial(jax.jit, static_argnames=("shape",))
def sample_prior(key: jax.Array, shape: tuple, nets: Networks, schedule: diffusion.Schedule,
                 settings: Settings = DEFAULT_SETTINGS) -> jnp.ndarray:
    """Plain ancestral DDPM sampling from the prior alone (no condition; of ``settings`` only var_type and
    clip_denoised are used): (B, H, W, C) images in [-1, 1].

    For looking at what a prior has learned (train.py's sample PNGs, the demo's model card). x_T comes from
    ``split(key)[0]`` and step i draws from ``fold_in(split(key)[1], i)``, as in :func:`sample`."""
    key_init, key_steps = jax.random.split(key)
    prior_fn = nets.prior_fn()

    def body(x, i):
        steps = jnp.full((shape[0],), i)
        out = diffusion.p_mean_variance(schedule, prior_fn(x, schedule.timestep_map[steps]), x, steps,
                                        var_type=settings.var_type, clip_denoised=settings.clip_denoised)
        noise = jax.random.normal(jax.random.fold_in(key_steps, i), shape)
        return diffusion.ddpm_step(out, steps, noise), None

    x, _ = jax.lax.scan(body, jax.random.normal(key_init, shape), jnp.arange(schedule.num_steps - 1, -1, -1))
    return x
