"""Training losses: the CRT's L_crt (Eqs. 15, 17, 18) and the DDPM prior's L_simple. Pure and jittable.

``corrector`` is a function ``(x, t, y) -> corrected image`` (e.g. ``lambda x, t, y: crt.apply({'params': p}, x, t,
y)``); ``t`` are step indices of ``schedule`` (the original timesteps for an unrespaced training schedule), shape
(B,). Noises are given explicitly so that the losses can be checked draw for draw; :func:`draw_crt_noises` makes them.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from dpi_jax import diffusion, masks

Corrector = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray], jnp.ndarray]


class CRTNoises(NamedTuple):
    """The four Gaussian draws of one L_crt evaluation, each shaped like the images."""

    q_prior: jnp.ndarray  # x_t = q_sample(x0, t) for L_prior
    post_prior: jnp.ndarray  # the posterior sample at t-1 for L_prior
    q_gap: jnp.ndarray  # y^n = q_sample(ŷ, t) for L_gap
    post_gap: jnp.ndarray  # the posterior sample at t-1 for L_gap


def draw_crt_noises(key: jax.Array, shape, dtype=jnp.float32) -> CRTNoises:
    return CRTNoises(*jax.random.normal(key, (4,) + tuple(shape), dtype))


def grid_mse(a, b, m_f) -> jnp.ndarray:
    """Per-example mean squared error over the grid pixels (all channels), shape (B,)."""
    per_pixel = (m_f * (a - b)) ** 2
    return per_pixel.sum(axis=(1, 2, 3)) / (m_f.sum() * a.shape[-1])


def posterior_sample(schedule: diffusion.Schedule, x0, t, q_noise, post_noise):
    """A draw of q(x_{t-1} | x_t, x0) with x_t = q_sample(x0, t): how the sampler forms y' (Eqs. 6-7)."""
    x_t = diffusion.q_sample(schedule, x0, t, q_noise)
    mean, _, log_var = diffusion.q_posterior_mean_variance(schedule, x0, x_t, t)
    return mean + diffusion.nonzero_mask(t) * jnp.exp(0.5 * log_var) * post_noise


def crt_loss_terms(corrector: Corrector, gt, y_T, t, noises: CRTNoises, schedule: diffusion.Schedule, k: int = 2,
                   posterior_from: str = "gt") -> dict:
    """L_prior (Eq. 15), L_gap (Eq. 17) and L_crt = Ω L_prior + (1 - Ω) L_gap (Eq. 18, Ω = t / T), per example.

    ``posterior_from="gt"`` forms L_prior's posterior sample from I_G, as the paper writes it; ``"condition"`` forms
    it from y_T, as the authors' code does. Returns a dict of (B,) arrays: ``prior``, ``gap``, ``crt``.
    """
    if posterior_from not in ("gt", "condition"):
        raise ValueError(f"posterior_from must be 'gt' or 'condition', not {posterior_from!r}")
    m_f = masks.fixed_mask(gt.shape[1], gt.shape[2], k)
    x0 = gt if posterior_from == "gt" else y_T
    prior_input = posterior_sample(schedule, x0, t, noises.q_prior, noises.post_prior)
    timesteps = schedule.timestep_map[t]
    prediction = corrector(m_f * prior_input, timesteps, m_f * y_T)
    l_prior = grid_mse(prediction, gt, m_f)
    # L_gap: the CRT sees its own (frozen) prediction carried one posterior step, as at sampling time.
    y_hat = jax.lax.stop_gradient(m_f * prediction)
    gap_input = posterior_sample(schedule, y_hat, t, noises.q_gap, noises.post_gap)
    l_gap = grid_mse(corrector(m_f * gap_input, timesteps, m_f * y_T), gt, m_f)
    omega = t.astype(gt.dtype) / schedule.num_steps
    return {"prior": l_prior, "gap": l_gap, "crt": omega * l_prior + (1 - omega) * l_gap}


def ddpm_simple_loss(eps_model: Callable, x0, t, noise, schedule: diffusion.Schedule) -> jnp.ndarray:
    """L_simple of Ho et al.: ||eps - eps_θ(x_t, t)||², per example, (B,). A learned-range model's v channels are
    ignored here (the hybrid VLB term trains them)."""
    x_t = diffusion.q_sample(schedule, x0, t, noise)
    eps = eps_model(x_t, schedule.timestep_map[t])[..., : x0.shape[-1]]
    return jnp.mean((eps - noise) ** 2, axis=(1, 2, 3))
