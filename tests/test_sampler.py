"""The DPI sampler: one step against a float64 NumPy transcription of DPI_SPEC, the whole reference trajectory
draw for draw, and the compile/determinism properties."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpi_jax import diffusion, masks, sampler

# ------------------------------------------------------------------------------ one step vs NumPy (float64)
EPS_W, V_W, CRT_W = 0.3, 0.5, 0.8


def toy_prior(x, t):
    """A smooth stand-in for the denoiser: eps and v are fixed functions of x (and t, to check it is passed)."""
    eps = EPS_W * x + 0.001 * t[:, None, None, None]
    return jnp.concatenate([eps, jnp.tanh(V_W * x)], axis=-1)


def toy_crt(y, t, y_T):
    return CRT_W * y + (1 - CRT_W) * y_T + 1e-4 * t[:, None, None, None]


def numpy_step(x, y, y_T, i, z, u, betas, timestep_map, tau, s, omega, k, method, eta):
    """Algorithm 1 with DPI_SPEC's choices, in float64, written independently of the library."""
    t = float(timestep_map[i])
    alphas = 1 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.append(1.0, abar[:-1])
    a, ap, beta = abar[i], abar_prev[i], betas[i]
    eps = EPS_W * x + 0.001 * t
    v = np.tanh(V_W * x)
    x0 = np.clip(x / np.sqrt(a) - np.sqrt(1 / a - 1) * eps, -1, 1)
    post_var = betas * (1 - abar_prev) / (1 - abar)
    log_min = np.log(post_var[1] if i == 0 else post_var[i])
    log_var = (v + 1) / 2 * np.log(beta) + (1 - (v + 1) / 2) * log_min
    nonzero = float(i > 0)

    def post_mean(x_start, x_t):
        return np.sqrt(ap) * beta / (1 - a) * x_start + np.sqrt(1 - beta) * (1 - ap) / (1 - a) * x_t

    if method == "ddpm":
        x_p = post_mean(x0, x) + nonzero * np.exp(0.5 * log_var) * z
        y_noisy = np.sqrt(a) * y + np.sqrt(1 - a) * eps
        y_p = post_mean(y, y_noisy) + nonzero * np.exp(0.5 * log_var) * z
    else:
        eps_x0 = (x / np.sqrt(a) - x0) / np.sqrt(1 / a - 1)
        sigma = eta * np.sqrt((1 - ap) / (1 - a)) * np.sqrt(1 - a / ap)
        x_p = x0 * np.sqrt(ap) + np.sqrt(1 - ap - sigma**2) * eps_x0 + nonzero * sigma * z
        y_p = y * np.sqrt(ap) + np.sqrt(1 - ap - sigma**2) * eps_x0 + nonzero * sigma * z
    if i == 0:
        return x_p, y
    grid = np.zeros(x.shape[1:3], bool)
    grid[::k, ::k] = True
    grid = grid[None, :, :, None]
    if i > tau:
        x_new = np.where(grid, y_p, x_p)
    else:
        gray = y[:, ::k, ::k] @ np.array([0.2989, 0.587, 0.114])
        g = np.pad(gray, ((0, 0), (1, 1), (1, 1)), mode="reflect")
        lap = np.abs(4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:])
        lo = lap.min(axis=(1, 2), keepdims=True)
        p = ((lap - lo) / (lap.max(axis=(1, 2), keepdims=True) - lo)) ** s
        m_a = np.zeros(x.shape[:3] + (1,), bool)
        m_a[:, ::k, ::k, 0] = u < p
        w = i / omega
        x_new = np.where(m_a, w * y_p + (1 - w) * x_p, x_p)
        y_p = x_new
    y_new = np.where(grid, CRT_W * np.where(grid, y_p, 0) + (1 - CRT_W) * y_T + 1e-4 * t, 0)
    return x_new, y_new


@pytest.mark.parametrize("method,eta,respacing", [("ddpm", 0.0, "50"), ("ddim", 0.0, "ddim20"), ("ddim", 0.7, "ddim20")])
@pytest.mark.parametrize("stage", ["I", "II", "last"])
def test_dpi_step_matches_numpy(method, eta, respacing, stage):
    sched = diffusion.make_schedule(1000, respacing=respacing)
    n = sched.num_steps
    i = {"I": n - 3, "II": n // 3, "last": 0}[stage]
    tau, s, omega, k = n // 2, 1.3, float(n) * 1.5, 2
    rng = np.random.default_rng(i)
    x, y, z = rng.standard_normal((3, 2, 8, 8, 3))
    y = np.clip(y, -1, 1) * masks.fixed_mask(8, 8, k)
    y_T = np.clip(rng.standard_normal((2, 8, 8, 3)), -1, 1) * masks.fixed_mask(8, 8, k)
    u = rng.random((2, 4, 4))
    state = sampler.DPIState(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    step = jax.jit(functools.partial(sampler.dpi_step, prior_fn=toy_prior, crt_fn=toy_crt, k=k, method=method))
    got = step(state, i, jnp.asarray(z, jnp.float32), jnp.asarray(u, jnp.float32), schedule=sched,
               y_T=jnp.asarray(y_T, jnp.float32), tau=tau, s=s, omega=omega, eta=eta)
    betas = diffusion.respaced_betas(diffusion.linear_betas(1000), diffusion.space_timesteps(1000, respacing))
    want = numpy_step(x, y, y_T, i, z, u, betas, np.asarray(sched.timestep_map), tau, s, omega, k, method, eta)
    # float32 against float64: the x̂0 formula multiplies by up to 1/sqrt(abar) (~20 here) before clipping.
    np.testing.assert_allclose(np.asarray(got.x), want[0], atol=2e-5, err_msg="x")
    np.testing.assert_allclose(np.asarray(got.y), want[1], atol=2e-5, err_msg="y")
