"""The two kinds of network DPI trains, as task objects: what a loss, a held-out measure and a held-out picture mean
for a prior (kind "adm") and for the condition corrector (kind "crt").

``task_for(model)`` picks the task by the model's ``kind``; :mod:`dpi_jax.train_lib` runs one loop for both. A
training batch holds ``hr`` (I_G) and ``lr_bicubic`` (I_L^bc, (B, H/k, W/k, 3)); the corrector's y_T (Eq. 11) is made
from I_L^bc inside the jitted step, so the host threads run no JAX op and move a k² smaller array.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dpi_jax import diffusion, images, losses, masks, sampler

HELDOUT_DRAWS_SEED = 1234  # the fixed Gaussian draws of the held-out measures


def _spread_timesteps_and_draws(batch_size: int, shape, schedule: diffusion.Schedule, count: int):
    """The fixed held-out timesteps (spread evenly over [0, T)) and ``count`` fixed Gaussian draws shaped ``shape``."""
    t = jnp.round(jnp.linspace(0, schedule.num_steps - 1, batch_size)).astype(jnp.int32)
    return t, jax.random.normal(jax.random.PRNGKey(HELDOUT_DRAWS_SEED), (count,) + tuple(shape))


class PriorTask:
    """A denoising prior (:class:`dpi_jax.models.ADM`) trained with L_simple (epsilon prediction)."""

    kind = "adm"

    def loss(self, params, batch: dict, key: jax.Array, *, model, schedule: diffusion.Schedule,
             config: ml_collections.ConfigDict):
        """(mean L_simple, {}) of one batch; every draw from ``key``."""
        gt = batch["hr"]
        key_t, key_noise = jax.random.split(key)
        t = jax.random.randint(key_t, (gt.shape[0],), 0, schedule.num_steps)
        eps_model = lambda x, ts: model.apply({"params": params}, x, ts)
        return losses.ddpm_simple_loss(eps_model, gt, t, jax.random.normal(key_noise, gt.shape), schedule).mean(), {}

    def heldout(self, params, batch: dict, *, model, schedule: diffusion.Schedule, config):
        """({"heldout_l_simple": ...}, a PNG of unconditional samples of ``params``)."""
        heldout = prior_heldout_loss(params, batch, model=model, schedule=schedule)
        shape = (config.sample_images, model.image_size, model.image_size, model.in_channels)
        sample_schedule = diffusion.make_schedule(config.diffusion.num_timesteps, config.diffusion.beta_schedule,
                                                  config.sample_respacing)
        samples = sampler.sample_prior(jax.random.PRNGKey(config.seed), shape, sampler.Networks(model, params),
                                       sample_schedule, sampler.Settings(var_type=config.var_type))
        per_row = max(1, int(np.sqrt(len(samples))))
        pictures = list(images.to_uint8(np.asarray(samples)))
        rows = [pictures[j:j + per_row] for j in range(0, len(pictures), per_row)]
        return {"heldout_l_simple": float(heldout)}, images.make_grid(rows)


class CorrectorTask:
    """The condition corrector (:class:`dpi_jax.models.CRT`) trained with L_crt = Ω L_prior + (1 - Ω) L_gap
    (Eqs. 15, 17, 18) over the grid pixels."""

    kind = "crt"

    def loss(self, params, batch: dict, key: jax.Array, *, model, schedule: diffusion.Schedule,
             config: ml_collections.ConfigDict):
        """(mean L_crt, {"l_prior", "l_gap"}) of one batch; every draw from ``key``."""
        gt = batch["hr"]
        y_T = masks.initial_condition(batch["lr_bicubic"], config.k)
        key_t, key_noise = jax.random.split(key)
        t = jax.random.randint(key_t, (gt.shape[0],), 0, schedule.num_steps)
        corrector = lambda x, ts, y: model.apply({"params": params}, x, ts, y)
        terms = losses.crt_loss_terms(corrector, gt, y_T, t, losses.draw_crt_noises(key_noise, gt.shape), schedule,
                                      config.k, config.loss.posterior_from)
        return terms["crt"].mean(), {"l_prior": terms["prior"].mean(), "l_gap": terms["gap"].mean()}

    def heldout(self, params, batch: dict, *, model, schedule: diffusion.Schedule, config):
        """({"heldout_mse_y_T", "heldout_mse_crt"}, a PNG of the grid pixels of y_T | CRT(y) | GT per row)."""
        out, y_T, mse_cond, mse_crt = crt_heldout_outputs(params, batch, model=model, schedule=schedule, k=config.k)
        size = model.image_size
        show = lambda x: images.nearest_up(images.to_uint8(np.asarray(x)[::config.k, ::config.k]), size)
        rows = [[show(y_T[j]), show(out[j]), show(batch["hr"][j])] for j in range(out.shape[0])]
        return ({"heldout_mse_y_T": float(mse_cond.mean()), "heldout_mse_crt": float(mse_crt.mean())},
                images.make_grid(rows))


TASKS = {task.kind: task for task in (PriorTask(), CorrectorTask())}


def task_for(model) -> PriorTask | CorrectorTask:
    """The task of a model, by its ``kind`` ("adm" or "crt")."""
    return TASKS[model.kind]


@functools.partial(jax.jit, static_argnames=("model", "k"))
def crt_heldout_outputs(params, batch: dict, *, model, schedule: diffusion.Schedule, k: int):
    """The CRT as the sampler uses it, on held-out images: input = a posterior sample of y_T at timesteps spread
    over [0, T) (fixed draws), condition y_T. Returns (CRT output, y_T, per-image grid MSE of y_T and of the output to
    the ground truth)."""
    gt = batch["hr"]
    y_T = masks.initial_condition(batch["lr_bicubic"], k)
    t, (q_noise, post_noise) = _spread_timesteps_and_draws(gt.shape[0], gt.shape, schedule, 2)
    m_f = masks.fixed_mask(gt.shape[1], gt.shape[2], k)
    x = losses.posterior_sample(schedule, y_T, t, q_noise, post_noise)
    out = model.apply({"params": params}, m_f * x, schedule.timestep_map[t], m_f * y_T)
    return out, y_T, losses.grid_mse(y_T, gt, m_f), losses.grid_mse(out, gt, m_f)


@functools.partial(jax.jit, static_argnames=("model",))
def prior_heldout_loss(params, batch: dict, *, model, schedule: diffusion.Schedule):
    """L_simple of a prior on held-out images at timesteps spread over [0, T), with fixed draws."""
    gt = batch["hr"]
    t, (noise,) = _spread_timesteps_and_draws(gt.shape[0], gt.shape, schedule, 1)
    eps_model = lambda x, ts: model.apply({"params": params}, x, ts)
    return losses.ddpm_simple_loss(eps_model, gt, t, noise, schedule).mean()
