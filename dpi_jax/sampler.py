"""The DPI sampler: Algorithm 1 of the paper as one pure step function and a ``lax.scan`` over steps.

One step (:func:`dpi_step`) at step index ``i`` (``t = schedule.timestep_map[i]`` is what the networks see):

1. the prior gives x̂0, the mean and variance of p(x_{t-1} | x_t), and x' is drawn with the step's Gaussian z;
2. the noisy condition y^n = sqrt(abar_t) y + sqrt(1 - abar_t) eps (Eq. 6), with the model's raw eps;
3. the condition posterior y' = posterior_mean(x0=y, x_t=y^n) + sigma z (Eq. 7), the same z and variance as x';
   under DDIM, both x' and y' are DDIM means with eps re-derived from the clipped x̂0 (x̂0 := y for y');
4. stage I (i > tau, Eq. 8): x = (1 - m_f) x' + m_f y';
   stage II (i <= tau, Eq. 9): m_a = Mask_gen(y, s), w = i / omega, x = (1 - m_a) x' + w m_a y' + (1 - w) m_a x',
   and y' := x;
5. the corrector (Eq. 16): y = m_f CRT(m_f y', t, m_f y_T), or y = m_f y' without a CRT;
6. at i == 0 the step returns x' and leaves y as it was (as the authors' code does).

tau and omega are in units of the sampler's own step index i, so the paper's DDPM-1000 settings apply unchanged to
1000 steps and must be scaled for respaced schedules. Differences from the authors' code, kept on purpose: the RACM is
normalised per image (see :mod:`dpi_jax.masks`); off-grid condition pixels are 0, not 1e-6; the CRT is passed the
original timestep ``timestep_map[i]`` also under DDIM (the reference passes ``i * 50`` for DDIM-20).

Random draws: :func:`sample` derives, for step i, ``z`` and the RACM uniforms ``u`` from ``fold_in(key, i)``;
:func:`sample_with_draws` takes them as arrays, which is how the sampler is checked against the reference draw for draw.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional, Sequence

import chex
import jax
import jax.numpy as jnp

from dpi_jax import diffusion, masks

ModelFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
CorrectorFn = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray], jnp.ndarray]
METHODS = ("ddpm", "ddim")


class DPIState(NamedTuple):
    """The scan carry: the sample x and the condition y (only its grid pixels are ever read)."""

    x: jnp.ndarray
    y: jnp.ndarray


def dpi_step(state: DPIState, i, z, u, *, prior_fn: ModelFn, crt_fn: Optional[CorrectorFn],
             schedule: diffusion.Schedule, y_T, tau, s, omega, k: int = 2, method: str = "ddpm", eta=0.0,
             var_type: str = "learned_range", clip_denoised: bool = True) -> DPIState:
    """One step of Algorithm 1 at step index ``i`` (a scalar), with its random draws given explicitly.

    Args:
      state: the current (x, y), NHWC.
      i: the step index into ``schedule`` (N-1 ... 0), a scalar integer (may be traced).
      z: the step's Gaussian draw, shaped like x; shared by x' and y' (Alg. 1, lines 3 and 6).
      u: uniforms (B, H/k, W/k) for the RACM's Bernoulli draw, ``m_a = u < p^s`` (used only when i <= tau).
      prior_fn: ``(x, t) -> model output`` with t the original timesteps, shape (B,).
      crt_fn: ``(m_f y', t, m_f y_T) -> corrected condition`` or None for no corrector.
      schedule: the (respaced) diffusion schedule.
      y_T: the initial condition (Eq. 11).
      tau, s, omega: DPI's stage boundary, RACM sharpness and interpolation scale: scalars or (B,) arrays (one value
        per image); may be traced.
      k: sparsity of the grid.
      method: "ddpm" (ancestral) or "ddim" (with ``eta``).
      var_type, clip_denoised: see :func:`dpi_jax.diffusion.p_mean_variance`.
    Returns:
      the next (x, y).
    """
    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r}: expected one of {METHODS}")
    x, y = state
    batch, height, width, _ = x.shape
    chex.assert_equal_shape([x, y, z, y_T])
    i = jnp.asarray(i, jnp.int32)
    steps = jnp.full((batch,), i)
    t = jnp.full((batch,), schedule.timestep_map[i])

    out = diffusion.p_mean_variance(schedule, prior_fn(x, t), x, steps, var_type=var_type,
                                    clip_denoised=clip_denoised)
    if method == "ddpm":
        x_prime = diffusion.ddpm_step(out, steps, z)
        y_noisy = diffusion.q_sample(schedule, y, steps, out["eps"])  # Eq. 6
        y_mean, _, _ = diffusion.q_posterior_mean_variance(schedule, y, y_noisy, steps)  # Eq. 7
        y_prime = y_mean + diffusion.nonzero_mask(steps) * jnp.exp(0.5 * out["log_variance"]) * z
    else:
        eps = diffusion.predict_eps_from_x0(schedule, x, steps, out["pred_xstart"])
        sigma = diffusion.ddim_sigma(schedule, steps, eta)
        noise = diffusion.nonzero_mask(steps) * sigma * z
        x_prime = diffusion.ddim_mean(schedule, out["pred_xstart"], eps, steps, sigma) + noise
        y_prime = diffusion.ddim_mean(schedule, y, eps, steps, sigma) + noise

    m_f = masks.fixed_mask(height, width, k)
    # Stage I (Eq. 8): the fixed condition mask.
    x_stage1 = (1 - m_f) * x_prime + m_f * y_prime
    # Stage II (Eq. 9): the weighted random adaptive condition mask, drawn from the current condition y.
    per_image = lambda v: jnp.reshape(v, (-1, 1, 1, 1))  # noqa: E731  (scalars broadcast, (B,) values per image)
    m_a = masks.racm_mask_from_uniforms(y, s, u, k)
    w = per_image(i.astype(x.dtype) / omega)
    x_stage2 = (1 - m_a) * x_prime + w * (m_a * y_prime) + (1 - w) * (m_a * x_prime)
    stage1 = per_image(i > tau)
    x_mixed = jnp.where(stage1, x_stage1, x_stage2)
    y_prime = jnp.where(stage1, y_prime, x_stage2)

    def correct(y_prime):  # Eq. 16
        if crt_fn is None:
            return m_f * y_prime
        return m_f * crt_fn(m_f * y_prime, t, m_f * y_T)

    y_next = jax.lax.cond(i > 0, correct, lambda _: y, y_prime)
    x_next = jnp.where(i > 0, x_mixed, x_prime)
    return DPIState(x_next, y_next)


def _apply_fns(prior, prior_params, crt, crt_params):
    """Bind Flax modules to their parameter pytrees as the plain functions :func:`dpi_step` takes."""
    prior_fn = lambda x, t: prior.apply({"params": prior_params}, x, t)  # noqa: E731
    crt_fn = None
    if crt is not None:
        crt_fn = lambda x, t, y: crt.apply({"params": crt_params}, x, t, y)  # noqa: E731
    return prior_fn, crt_fn


_STATIC = ("prior", "crt", "k", "method", "var_type", "clip_denoised", "snapshot_steps")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _run(draws, x_T, lr_bicubic, *, prior, prior_params, crt, crt_params, schedule, tau, s, omega, k, method, eta,
         var_type, clip_denoised, snapshot_steps):
    """Scan :func:`dpi_step` over i = N-1 ... 0.

    ``draws`` is a PRNG key (step i draws z and u from ``fold_in(draws, i)``) or a tuple ``(noises, uniforms)`` of
    all N steps' draws, indexed by step index.
    """
    chex.assert_rank([x_T, lr_bicubic], 4)
    batch, height, width, channels = x_T.shape
    if lr_bicubic.shape != (batch, height // k, width // k, channels) or height % k or width % k:
        raise ValueError(f"lr_bicubic must be (B, H/k, W/k, C) = {(batch, height // k, width // k, channels)} for "
                         f"x_T {x_T.shape} and k={k}; got {lr_bicubic.shape}")
    if isinstance(draws, tuple):
        noises, uniforms = draws
        chex.assert_axis_dimension(noises, 0, schedule.num_steps)
        chex.assert_axis_dimension(uniforms, 0, schedule.num_steps)
        draw_fn = lambda i: (noises[i], uniforms[i])  # noqa: E731
    else:
        def draw_fn(i):
            key_z, key_u = jax.random.split(jax.random.fold_in(draws, i))
            return (jax.random.normal(key_z, x_T.shape, x_T.dtype),
                    jax.random.uniform(key_u, (batch, height // k, width // k), x_T.dtype))

    prior_fn, crt_fn = _apply_fns(prior, prior_params, crt, crt_params)
    y_T = masks.initial_condition(lr_bicubic.astype(x_T.dtype), k)
    step = functools.partial(dpi_step, prior_fn=prior_fn, crt_fn=crt_fn, schedule=schedule, y_T=y_T, tau=tau, s=s,
                             omega=omega, k=k, method=method, eta=eta, var_type=var_type, clip_denoised=clip_denoised)
    snap_at = jnp.asarray(snapshot_steps, jnp.int32)

    @jax.checkpoint  # under jax.grad, keep only the carried state per step and recompute the rest
    def body(carry, i):
        state, snaps = carry
        z, u = draw_fn(i)
        state = step(state, i, z, u)
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


def sample(key: jax.Array, lr_bicubic: jnp.ndarray, *, prior, prior_params, schedule: diffusion.Schedule, tau, s,
           omega, crt=None, crt_params=None, k: int = 2, method: str = "ddpm", eta=0.0,
           var_type: str = "learned_range", clip_denoised: bool = True, snapshot_steps: Sequence[int] = (),
           x_T: Optional[jnp.ndarray] = None):
    """DPI super-resolution (Algorithm 1) of a batch, all random draws derived from ``key``.

    Args:
      key: a PRNG key. x_T is drawn from ``split(key)[0]`` unless given; step i draws from ``fold_in(split(key)[1], i)``.
      lr_bicubic: I_L^bc, the LR input resized bicubically to (B, H/k, W/k, 3), NHWC in [-1, 1].
      prior, prior_params: the pretrained denoiser (a Flax module such as ``dpi_jax.models.ADM``) and its parameters.
      schedule: from :func:`dpi_jax.diffusion.make_schedule` (its length is the number of sampling steps).
      tau, s, omega: DPI's settings, in units of the sampler's step index; scalars or (B,) arrays (per image). They
        are traced: changing them does not recompile.
      crt, crt_params: the condition corrector (``dpi_jax.models.CRT``) and its parameters, or None.
      k: sparsity. method/eta: "ddpm" or "ddim" (eta 0 by default). var_type/clip_denoised: the prior's variance
        parameterisation and x̂0 clipping.
      snapshot_steps: step indices i after which x and y are kept (static; a tuple).
      x_T: the initial noise (B, H, W, 3); drawn from the key when None.
    Returns:
      x0 (B, H, W, 3) in the dtype of lr_bicubic; with ``snapshot_steps``, ``(x0, {"x": (S, ...), "y": (S, ...), "steps": (S,)})``.
    """
    return _run_from_key(key, x_T, lr_bicubic, **_settings(locals()))


@functools.partial(jax.jit, static_argnames=_STATIC)
def _run_from_key(key, x_T, lr_bicubic, **settings):
    """x_T from ``split(key)[0]`` (unless given) and the steps' draws from ``split(key)[1]``; inside jit, so that a
    batch sharded over devices stays sharded from the first draw on."""
    key_init, key_steps = jax.random.split(key)
    if x_T is None:
        b, h, w, c = lr_bicubic.shape
        k = settings["k"]
        x_T = jax.random.normal(key_init, (b, h * k, w * k, c), lr_bicubic.dtype)
    return _run(key_steps, x_T, lr_bicubic, **settings)


def sample_seeds(keys: jax.Array, lr_bicubic: jnp.ndarray, *, prior, prior_params, schedule: diffusion.Schedule, tau,
                 s, omega, crt=None, crt_params=None, k: int = 2, method: str = "ddpm", eta=0.0,
                 var_type: str = "learned_range", clip_denoised: bool = True, chunk_size: Optional[int] = None):
    """:func:`sample` for each of S keys at once: returns (S, B, H, W, 3).

    Seeds are vmapped ``chunk_size`` at a time (all at once when None), so memory stays bounded for large S. Seed j
    gives exactly ``sample(keys[j], ...)``.
    """
    settings = _settings(dict(locals(), snapshot_steps=()))
    return _run_seeds(keys, lr_bicubic, chunk_size=chunk_size, **settings)


@functools.partial(jax.jit, static_argnames=_STATIC + ("chunk_size",))
def _run_seeds(keys, lr_bicubic, *, chunk_size, **settings):
    return jax.lax.map(lambda key: _run_from_key(key, None, lr_bicubic, **settings), keys, batch_size=chunk_size)


def sample_with_draws(x_T, lr_bicubic, noises, uniforms, *, prior, prior_params, schedule: diffusion.Schedule, tau,
                      s, omega, crt=None, crt_params=None, k: int = 2, method: str = "ddpm", eta=0.0,
                      var_type: str = "learned_range", clip_denoised: bool = True,
                      snapshot_steps: Sequence[int] = ()):
    """As :func:`sample`, with every random draw given: ``noises[i]`` (B, H, W, 3) and ``uniforms[i]`` (B, H/k, W/k)
    are the draws of step index i. For checking against another implementation draw for draw; it holds all N draws
    in memory, so prefer :func:`sample` for real work."""
    return _run((noises, uniforms), x_T, lr_bicubic, **_settings(locals()))


def _settings(args: dict) -> dict:
    """The keyword arguments of :func:`_run` from a public function's arguments; the scalar settings become arrays of
    the default float type (float32, or float64 under ``jax_enable_x64``), so that an int tau and a float tau share
    one compilation."""
    names = ("prior", "prior_params", "crt", "crt_params", "schedule", "k", "method", "var_type", "clip_denoised")
    out = {n: args[n] for n in names}
    real = jax.dtypes.canonicalize_dtype(jnp.float64)
    out.update({n: jnp.asarray(args[n], real) for n in ("tau", "s", "omega", "eta")})
    out["snapshot_steps"] = tuple(int(i) for i in args["snapshot_steps"])
    return out


@functools.partial(jax.jit, static_argnames=("shape", "prior", "var_type", "clip_denoised"))
def sample_prior(key: jax.Array, shape: tuple, *, prior, prior_params, schedule: diffusion.Schedule,
                 var_type: str = "learned_range", clip_denoised: bool = True) -> jnp.ndarray:
    """Plain ancestral DDPM sampling from the prior alone (no condition): (B, H, W, C) images in [-1, 1].

    For looking at what a prior has learned (train.py's sample PNGs, the demo's model card). x_T comes from
    ``split(key)[0]`` and step i draws from ``fold_in(split(key)[1], i)``, as in :func:`sample`."""
    key_init, key_steps = jax.random.split(key)
    prior_fn, _ = _apply_fns(prior, prior_params, None, None)

    def body(x, i):
        steps = jnp.full((shape[0],), i)
        out = diffusion.p_mean_variance(schedule, prior_fn(x, schedule.timestep_map[steps]), x, steps,
                                        var_type=var_type, clip_denoised=clip_denoised)
        noise = jax.random.normal(jax.random.fold_in(key_steps, i), shape)
        return diffusion.ddpm_step(out, steps, noise), None

    x, _ = jax.lax.scan(body, jax.random.normal(key_init, shape), jnp.arange(schedule.num_steps - 1, -1, -1))
    return x
