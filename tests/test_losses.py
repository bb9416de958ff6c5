"""The CRT and DDPM losses against a straightforward float64 NumPy computation of Eqs. 15, 17, 18."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpi_jax import diffusion, losses

A, B_ = 0.7, 0.2


def corrector(x, t, y):
    return A * jnp.tanh(x) + B_ * y + 1e-4 * t[:, None, None, None]


def numpy_terms(gt, y_T, t, noises, posterior_from):
    betas = diffusion.linear_betas(1000)
    abar = np.cumprod(1 - betas)
    abar_prev = np.append(1.0, abar[:-1])
    grid = np.zeros(gt.shape[1:3])
    grid[::2, ::2] = 1
    grid = grid[None, :, :, None]

    def post_sample(x0, q_noise, post_noise):
        a, ap, b = (v[t][:, None, None, None] for v in (abar, abar_prev, betas))
        x_t = np.sqrt(a) * x0 + np.sqrt(1 - a) * q_noise
        mean = np.sqrt(ap) * b / (1 - a) * x0 + np.sqrt(1 - b) * (1 - ap) / (1 - a) * x_t
        var = b * (1 - ap) / (1 - a)
        var = np.where(t[:, None, None, None] == 0, (betas[1] * (1 - abar[0]) / (1 - abar[1])), var)
        return mean + (t > 0)[:, None, None, None] * np.sqrt(var) * post_noise

    def crt(x):
        return A * np.tanh(x) + B_ * y_T * grid + 1e-4 * t[:, None, None, None]

    def mse(pred):
        return ((grid * (pred - gt)) ** 2).sum(axis=(1, 2, 3)) / (grid.sum() * 3)

    x0 = gt if posterior_from == "gt" else y_T
    pred = crt(grid * post_sample(x0, noises[0], noises[1]))
    l_prior = mse(pred)
    l_gap = mse(crt(grid * post_sample(grid * pred, noises[2], noises[3])))
    omega = t / 1000
    return l_prior, l_gap, omega * l_prior + (1 - omega) * l_gap


@pytest.mark.parametrize("posterior_from", ["gt", "condition"])
def test_crt_loss_matches_numpy(posterior_from):
    rng = np.random.default_rng(0)
    gt = np.clip(rng.standard_normal((3, 8, 8, 3)), -1, 1)
    y_T = np.zeros_like(gt)
    y_T[:, ::2, ::2] = np.clip(gt[:, ::2, ::2] + 0.1 * rng.standard_normal((3, 4, 4, 3)), -1, 1)
    t = np.array([999, 400, 0])
    noises = rng.standard_normal((4, 3, 8, 8, 3))
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    got = jax.jit(losses.crt_loss_terms, static_argnames=("corrector", "k", "posterior_from"))(
        corrector, f32(gt), f32(y_T), jnp.asarray(t), losses.CRTNoises(*map(f32, noises)),
        diffusion.make_schedule(1000), posterior_from=posterior_from)
    want = numpy_terms(gt, y_T, t, noises, posterior_from)
    for name, expected in zip(("prior", "gap", "crt"), want, strict=True):
        # float32 against float64 on values of order 1: a few float32 roundings.
        np.testing.assert_allclose(np.asarray(got[name]), expected, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_gap_term_does_not_backpropagate_through_its_input():
    """ŷ is stop-gradient: the gradient of L_gap flows only through the CRT's second call."""
    gt = jnp.full((1, 4, 4, 3), 0.5)
    noises = losses.draw_crt_noises(jax.random.key(0), gt.shape)

    def gap(scale):
        return losses.crt_loss_terms(lambda x, t, y: scale * x, gt, gt, jnp.array([10]), noises,
                                     diffusion.make_schedule(1000))["gap"].sum()

    def gap_unstopped(scale):  # the same with ŷ differentiated, computed by hand
        sched = diffusion.make_schedule(1000)
        m_f = jnp.zeros((1, 4, 4, 1)).at[:, ::2, ::2].set(1)
        t = jnp.array([10])
        y_hat = m_f * scale * m_f * losses.posterior_sample(sched, gt, t, noises.q_prior, noises.post_prior)
        x = losses.posterior_sample(sched, y_hat, t, noises.q_gap, noises.post_gap)
        return losses.grid_mse(scale * m_f * x, gt, m_f).sum()

    assert jnp.allclose(gap(0.9), gap_unstopped(0.9))
    assert not jnp.allclose(jax.grad(gap)(0.9), jax.grad(gap_unstopped)(0.9))


def test_ddpm_simple_loss_is_zero_for_the_true_noise():
    sched = diffusion.make_schedule(1000)
    x0 = jax.random.uniform(jax.random.key(0), (2, 4, 4, 3), minval=-1, maxval=1)
    noise = jax.random.normal(jax.random.key(1), x0.shape)
    t = jnp.array([5, 900])
    oracle = lambda x_t, ts: (x_t - diffusion.q_sample(sched, x0, t, 0 * noise)) / jnp.sqrt(  # noqa: E731
        1 - sched.alphas_cumprod[t])[:, None, None, None]
    np.testing.assert_allclose(np.asarray(losses.ddpm_simple_loss(oracle, x0, t, noise, sched)), 0, atol=1e-9)
    zero = lambda x_t, ts: jnp.zeros_like(x_t)  # noqa: E731
    np.testing.assert_allclose(np.asarray(losses.ddpm_simple_loss(zero, x0, t, noise, sched)),
                               np.mean(np.asarray(noise) ** 2, axis=(1, 2, 3)), rtol=1e-6)
