"""Gaussian diffusion math as pure functions of a :class:`Schedule` pytree.

The conventions are those of guided-diffusion (Dhariwal & Nichol 2021), which the DPI prior `ffhq_10m` was
trained with: every per-timestep coefficient is computed in float64 with NumPy and stored in float32 (guided-diffusion
casts them to float32 when it looks them up), and every function here takes the *step index* ``i`` of the (possibly
respaced) schedule. The denoiser is called with the original timestep ``schedule.timestep_map[i]``.

Equation numbers are those of the DPI paper (AAAI 2025): q_sample is Eq. 2, the posterior q(x_{t-1} | x_t, x_0) is
Eqs. 3-4, x0-from-eps is the equation under Eq. 4, and the learned-range variance is Eq. 5.

All functions are jittable and take images NHWC; ``i`` has shape (B,).
"""

from __future__ import annotations

import math
from typing import Sequence

import chex
import flax.struct
import jax.numpy as jnp
import numpy as np

VAR_TYPES = ("learned_range", "fixed_large", "fixed_small")


# ----------------------------------------------------------------------------------------------- beta schedules
def linear_betas(num_timesteps: int) -> np.ndarray:
    """Ho et al.'s linear schedule, scaled so that any T gives the same curve as T = 1000 (float64)."""
    scale = 1000.0 / num_timesteps
    return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)


def cosine_betas(num_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule, alpha_bar(t) = cos²((t + 0.008) / 1.008 · π/2) (float64)."""

    def alpha_bar(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    steps = np.arange(num_timesteps, dtype=np.float64)
    return np.array(
        [min(1 - alpha_bar((j + 1) / num_timesteps) / alpha_bar(j / num_timesteps), max_beta) for j in steps],
        dtype=np.float64,
    )


def named_betas(name: str, num_timesteps: int) -> np.ndarray:
    if name == "linear":
        return linear_betas(num_timesteps)
    if name == "cosine":
        return cosine_betas(num_timesteps)
    raise ValueError(f"unknown beta schedule {name!r}: expected 'linear' or 'cosine'")


# ----------------------------------------------------------------------------------------------- respacing
def space_timesteps(num_timesteps: int, section_counts: str | int | Sequence[int]) -> list[int]:
    """The kept timesteps of guided-diffusion's ``space_timesteps``, sorted ascending.

    ``section_counts`` is ``"ddimN"`` (an integer stride giving exactly N steps that include 0), ``"N"`` or an int
    (N steps spread evenly), a comma-separated string or a sequence of counts (the T steps are cut into that many equal
    sections, with ``count[j]`` steps taken evenly from section j, endpoints included), or ``""``/None for all T.
    """
    if section_counts in ("", None):
        return list(range(num_timesteps))
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = int(section_counts[len("ddim"):])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return list(range(0, num_timesteps, stride))
            raise ValueError(f"cannot take exactly {desired} evenly strided steps out of {num_timesteps}")
        counts = [int(c) for c in section_counts.split(",")]
    elif isinstance(section_counts, int):
        counts = [section_counts]
    else:
        counts = [int(c) for c in section_counts]

    if any(c < 0 for c in counts) or sum(counts) < 1:
        raise ValueError(f"respacing {section_counts!r}: step counts must be >= 0 and keep at least one step")
    size_per, extra = divmod(num_timesteps, len(counts))
    start, kept = 0, []
    for j, count in enumerate(counts):
        size = size_per + (1 if j < extra else 0)
        if size < count:
            raise ValueError(f"cannot take {count} steps out of a section of {size} (respacing {section_counts!r})")
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        kept += [start + round(stride * n) for n in range(count)]
        start += size
    return sorted(set(kept))


# ----------------------------------------------------------------------------------------------- the schedule pytree
@flax.struct.dataclass
class Schedule:
    """Per-step coefficients of a (respaced) diffusion, float32 arrays of shape (N,); ``timestep_map`` is int32.

    Build with :func:`make_schedule`. Being a pytree of arrays, a schedule is an ordinary traced argument of jitted
    functions.
    """

    betas: jnp.ndarray
    log_betas: jnp.ndarray
    alphas_cumprod: jnp.ndarray
    alphas_cumprod_prev: jnp.ndarray
    sqrt_alphas_cumprod: jnp.ndarray
    sqrt_one_minus_alphas_cumprod: jnp.ndarray
    sqrt_recip_alphas_cumprod: jnp.ndarray
    sqrt_recipm1_alphas_cumprod: jnp.ndarray
    posterior_variance: jnp.ndarray
    posterior_log_variance_clipped: jnp.ndarray
    posterior_mean_coef1: jnp.ndarray
    posterior_mean_coef2: jnp.ndarray
    fixed_large_variance: jnp.ndarray
    fixed_large_log_variance: jnp.ndarray
    timestep_map: jnp.ndarray
    # T, the length of the original (unrespaced) diffusion: the range of the timesteps t that tau and omega count.
    num_timesteps: int = flax.struct.field(pytree_node=False, default=0)

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0]


def schedule_from_betas(betas: np.ndarray, timestep_map: Sequence[int] | None = None,
                        num_timesteps: int | None = None) -> Schedule:
    """All coefficients from float64 betas, exactly as guided-diffusion's ``GaussianDiffusion.__init__``.
    ``num_timesteps`` (T of the original diffusion) defaults to ``max(timestep_map) + 1``."""
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or not np.all((betas > 0) & (betas <= 1)):
        raise ValueError("betas must be a 1-D array with values in (0, 1]")
    acp = np.cumprod(1.0 - betas)
    acp_prev = np.append(1.0, acp[:-1])
    post_var = betas * (1.0 - acp_prev) / (1.0 - acp)
    # log of the posterior variance, clipped because it is 0 at the first step.
    post_log_var = np.log(np.append(post_var[1], post_var[1:])) if len(betas) > 1 else np.log(betas)
    # "fixed large" variance: beta_t, with beta~_1 at the first step so that its log is finite.
    large_var = np.append(post_var[1], betas[1:]) if len(betas) > 1 else betas
    f32 = lambda a: jnp.asarray(a, dtype=jnp.float32)  # noqa: E731
    if timestep_map is None:
        timestep_map = np.arange(len(betas))
    if num_timesteps is None:
        num_timesteps = int(np.max(timestep_map)) + 1
    return Schedule(
        betas=f32(betas),
        log_betas=f32(np.log(betas)),
        alphas_cumprod=f32(acp),
        alphas_cumprod_prev=f32(acp_prev),
        sqrt_alphas_cumprod=f32(np.sqrt(acp)),
        sqrt_one_minus_alphas_cumprod=f32(np.sqrt(1.0 - acp)),
        sqrt_recip_alphas_cumprod=f32(np.sqrt(1.0 / acp)),
        sqrt_recipm1_alphas_cumprod=f32(np.sqrt(1.0 / acp - 1)),
        posterior_variance=f32(post_var),
        posterior_log_variance_clipped=f32(post_log_var),
        posterior_mean_coef1=f32(betas * np.sqrt(acp_prev) / (1.0 - acp)),
        posterior_mean_coef2=f32((1.0 - acp_prev) * np.sqrt(1.0 - betas) / (1.0 - acp)),
        fixed_large_variance=f32(large_var),
        fixed_large_log_variance=f32(np.log(large_var)),
        timestep_map=jnp.asarray(np.asarray(timestep_map), dtype=jnp.int32),
        num_timesteps=int(num_timesteps),
    )


def respaced_betas(base_betas: np.ndarray, kept: Sequence[int]) -> np.ndarray:
    """Betas of the respaced chain: ``1 - abar[t_j] / abar[t_{j-1}]`` over the kept steps (float64)."""
    acp = np.cumprod(1.0 - np.asarray(base_betas, dtype=np.float64))
    kept_acp = acp[np.asarray(kept)]
    return 1.0 - kept_acp / np.append(1.0, kept_acp[:-1])


def make_schedule(num_timesteps: int = 1000, beta_schedule: str = "linear", respacing="") -> Schedule:
    """The schedule of a T-step diffusion, optionally respaced (``"ddim20"``, ``"250"``, ``"10,20,30"``, ...)."""
    base = named_betas(beta_schedule, num_timesteps)
    kept = space_timesteps(num_timesteps, respacing)
    return schedule_from_betas(respaced_betas(base, kept), timestep_map=kept, num_timesteps=num_timesteps)


# ----------------------------------------------------------------------------------------------- posterior math
def _at(coef: jnp.ndarray, i: jnp.ndarray) -> jnp.ndarray:
    """coef[i] shaped (B, 1, 1, 1) to broadcast against NHWC images."""
    return coef[i][:, None, None, None]


def q_sample(sched: Schedule, x0, i, noise):
    """Eq. 2: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise."""
    return _at(sched.sqrt_alphas_cumprod, i) * x0 + _at(sched.sqrt_one_minus_alphas_cumprod, i) * noise


def q_posterior_mean_variance(sched: Schedule, x0, x_t, i):
    """Eqs. 3-4: mean, variance and clipped log-variance of q(x_{t-1} | x_t, x0)."""
    mean = _at(sched.posterior_mean_coef1, i) * x0 + _at(sched.posterior_mean_coef2, i) * x_t
    shape = (x_t.shape[0],) + (1,) * (x_t.ndim - 1)
    var = jnp.broadcast_to(_at(sched.posterior_variance, i), shape)
    log_var = jnp.broadcast_to(_at(sched.posterior_log_variance_clipped, i), shape)
    return mean, var, log_var


def predict_x0_from_eps(sched: Schedule, x_t, i, eps):
    """x̂0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), written as guided-diffusion computes it."""
    return _at(sched.sqrt_recip_alphas_cumprod, i) * x_t - _at(sched.sqrt_recipm1_alphas_cumprod, i) * eps


def predict_eps_from_x0(sched: Schedule, x_t, i, x0):
    """The eps that makes x0 the prediction at x_t (used by DDIM after clipping x̂0)."""
    return (_at(sched.sqrt_recip_alphas_cumprod, i) * x_t - x0) / _at(sched.sqrt_recipm1_alphas_cumprod, i)


def p_mean_variance(sched: Schedule, model_output, x_t, i, *, var_type: str = "learned_range",
                    clip_denoised: bool = True) -> dict:
    """Mean and variance of p(x_{t-1} | x_t) from the denoiser's output.

    ``model_output`` is (B, H, W, C) for fixed variances and (B, H, W, 2C) with ``learned_range`` (eps, then the
    interpolation value v of Eq. 5). Returns a dict with ``mean``, ``variance``, ``log_variance``, ``pred_xstart``
    (x̂0, clipped to [-1, 1] when ``clip_denoised``) and ``eps`` (the model's raw eps).
    """
    chex.assert_rank([model_output, x_t], 4)
    c = x_t.shape[-1]
    if var_type == "learned_range":
        chex.assert_axis_dimension(model_output, 3, 2 * c)
        eps, v = model_output[..., :c], model_output[..., c:]
        min_log = _at(sched.posterior_log_variance_clipped, i)
        max_log = _at(sched.log_betas, i)
        frac = (v + 1) / 2  # Eq. 5: v in [-1, 1] interpolates between log beta~_t and log beta_t
        log_var = frac * max_log + (1 - frac) * min_log
        var = jnp.exp(log_var)
    elif var_type in ("fixed_large", "fixed_small"):
        chex.assert_axis_dimension(model_output, 3, c)
        eps = model_output
        if var_type == "fixed_large":
            var_t = _at(sched.fixed_large_variance, i)
            log_var_t = _at(sched.fixed_large_log_variance, i)
        else:
            var_t = _at(sched.posterior_variance, i)
            log_var_t = _at(sched.posterior_log_variance_clipped, i)
        var = jnp.broadcast_to(var_t, x_t.shape)
        log_var = jnp.broadcast_to(log_var_t, x_t.shape)
    else:
        raise ValueError(f"unknown var_type {var_type!r}: expected one of {VAR_TYPES}")
    x0 = predict_x0_from_eps(sched, x_t, i, eps)
    if clip_denoised:
        x0 = jnp.clip(x0, -1.0, 1.0)
    mean, _, _ = q_posterior_mean_variance(sched, x0, x_t, i)
    return dict(mean=mean, variance=var, log_variance=log_var, pred_xstart=x0, eps=eps)


def nonzero_mask(i):
    """1 for i > 0, 0 at the last step (no noise is added there); shaped (B, 1, 1, 1)."""
    return (i > 0).astype(jnp.float32)[:, None, None, None]


def ddpm_step(out: dict, i, noise):
    """Ancestral step: x_{t-1} = mean + [i > 0] exp(½ log var) z."""
    return out["mean"] + nonzero_mask(i) * jnp.exp(0.5 * out["log_variance"]) * noise


def ddim_sigma(sched: Schedule, i, eta):
    """DDIM's sigma_t = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev), shaped (B, 1, 1, 1)."""
    abar, abar_prev = _at(sched.alphas_cumprod, i), _at(sched.alphas_cumprod_prev, i)
    return eta * jnp.sqrt((1 - abar_prev) / (1 - abar)) * jnp.sqrt(1 - abar / abar_prev)


def ddim_mean(sched: Schedule, x0, eps, i, sigma):
    """DDIM's deterministic part: x0 sqrt(abar_prev) + sqrt(1 - abar_prev - sigma²) eps."""
    abar_prev = _at(sched.alphas_cumprod_prev, i)
    return x0 * jnp.sqrt(abar_prev) + jnp.sqrt(1 - abar_prev - sigma**2) * eps
