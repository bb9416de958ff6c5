"""Diffusion math against guided-diffusion's outputs (fixtures) and against closed forms computed here in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpi_jax import diffusion
from tests.reference import load_npz, nchw_to_nhwc


def test_linear_betas_match_reference():
    ref = load_npz("posterior_ddpm1000.npz")["betas"]
    # Both are float64; the reference's values went through 1 - (1 - beta), which costs ~1e-12 relative.
    np.testing.assert_allclose(diffusion.linear_betas(1000), ref, rtol=1e-10, atol=0)


@pytest.mark.parametrize("name,respacing", [("respace_ddim20.npz", "ddim20"), ("respace_250.npz", "250")])
def test_respacing_matches_reference(name, respacing):
    ref = load_npz(name)
    sched = diffusion.make_schedule(1000, "linear", respacing)
    np.testing.assert_array_equal(np.asarray(sched.timestep_map), ref["timestep_map"])
    kept = diffusion.space_timesteps(1000, respacing)
    betas = diffusion.respaced_betas(diffusion.linear_betas(1000), kept)
    np.testing.assert_allclose(betas, ref["betas"], rtol=1e-12)  # float64 on both sides
    np.testing.assert_allclose(np.asarray(sched.betas), ref["betas"].astype(np.float32), rtol=1e-7)
    if "alphas_cumprod" in ref:
        np.testing.assert_allclose(np.asarray(sched.alphas_cumprod), ref["alphas_cumprod"], rtol=1e-6)


def test_space_timesteps_sections_by_hand():
    # 10 steps in 2 sections of 5: 2 steps from [0, 4] -> 0, 4; 3 steps from [5, 9] -> 5, 7, 9.
    assert diffusion.space_timesteps(10, "2,3") == [0, 4, 5, 7, 9]
    assert diffusion.space_timesteps(10, [2, 3]) == [0, 4, 5, 7, 9]
    assert diffusion.space_timesteps(10, "ddim5") == [0, 2, 4, 6, 8]
    assert diffusion.space_timesteps(10, "") == list(range(10))
    with pytest.raises(ValueError, match="cannot take"):
        diffusion.space_timesteps(10, "6,1")


def test_p_mean_variance_matches_reference():
    ref = load_npz("posterior_ddpm1000.npz")
    sched = diffusion.make_schedule(1000)
    out = jax.jit(diffusion.p_mean_variance)(sched, nchw_to_nhwc(ref["model_output"]), nchw_to_nhwc(ref["x_t"]),
                                              jnp.asarray(ref["t"]))
    # The same float32 formulas; XLA may fuse them (FMA), so results differ by float32 rounding of the terms. At
    # t = 999, x0 = 156 x_t - 156 eps: a rounding of the 156-sized terms is ~1e-5 (measured max 3.4e-6).
    tolerances = {"pred_xstart": 2e-5, "mean": 2e-6, "log_variance": 5e-6, "variance": 1e-7}
    for name, atol in tolerances.items():
        np.testing.assert_allclose(np.asarray(out[name]), nchw_to_nhwc(ref[name]), rtol=1e-6, atol=atol, err_msg=name)


def test_posterior_against_closed_form():
    """Eq. 4 written out from the betas in float64, independently of the schedule's stored coefficients."""
    betas = diffusion.linear_betas(1000)
    alphas = 1 - betas
    abar = np.cumprod(alphas)
    rng = np.random.default_rng(0)
    x0, xt = rng.standard_normal((2, 3, 4, 4, 3)).astype(np.float32)
    i = np.array([999, 10, 1])
    abar_prev = abar[i - 1]
    coef0 = np.sqrt(abar_prev) * betas[i] / (1 - abar[i])
    coef_t = np.sqrt(alphas[i]) * (1 - abar_prev) / (1 - abar[i])
    expected = coef0[:, None, None, None] * x0 + coef_t[:, None, None, None] * xt
    mean, var, _ = diffusion.q_posterior_mean_variance(diffusion.make_schedule(1000), x0, xt, jnp.asarray(i))
    np.testing.assert_allclose(np.asarray(mean), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(var)[:, 0, 0, 0], (1 - abar_prev) / (1 - abar[i]) * betas[i], rtol=1e-5)


def test_ddim_eta0_follows_the_forward_process():
    """With the true eps, a deterministic DDIM step maps q_sample(x0, t, eps) to q_sample(x0, t_prev, eps)."""
    sched = diffusion.make_schedule(1000, respacing="ddim20")
    rng = np.random.default_rng(1)
    x0 = rng.uniform(-0.9, 0.9, (2, 8, 8, 3)).astype(np.float32)
    eps = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    i = jnp.array([12, 5])
    x_t = diffusion.q_sample(sched, x0, i, eps)
    out = diffusion.p_mean_variance(sched, eps, x_t, i, var_type="fixed_small")
    # The DDIM step as the sampler forms it: eps re-derived from the clipped x0-hat, the DDIM mean with sigma(eta=0).
    eps_hat = diffusion.predict_eps_from_x0(sched, x_t, i, out["pred_xstart"])
    x_prev = diffusion.ddim_mean(sched, out["pred_xstart"], eps_hat, i, diffusion.ddim_sigma(sched, i, 0.0))
    abar_prev = np.asarray(sched.alphas_cumprod_prev)[np.asarray(i)][:, None, None, None]
    expected = np.sqrt(abar_prev) * x0 + np.sqrt(1 - abar_prev) * eps
    np.testing.assert_allclose(np.asarray(x_prev), expected, atol=2e-4)


def test_fixed_variances_and_last_step_noise():
    sched = diffusion.make_schedule(1000)
    x = jnp.ones((2, 2, 2, 3))
    i = jnp.array([500, 0])
    large = diffusion.p_mean_variance(sched, jnp.zeros_like(x), x, i, var_type="fixed_large")
    small = diffusion.p_mean_variance(sched, jnp.zeros_like(x), x, i, var_type="fixed_small")
    betas = diffusion.linear_betas(1000)
    np.testing.assert_allclose(np.asarray(large["variance"])[0, 0, 0, 0], betas[500], rtol=1e-6)
    assert np.all(np.asarray(small["variance"]) <= np.asarray(large["variance"]) + 1e-12)
    # No noise at i == 0: the DDPM step returns the mean there.
    noisy = diffusion.ddpm_step(large, i, jnp.ones_like(x))
    np.testing.assert_array_equal(np.asarray(noisy[1]), np.asarray(large["mean"][1]))
    assert not np.allclose(np.asarray(noisy[0]), np.asarray(large["mean"][0]))
    with pytest.raises(ValueError, match="var_type"):
        diffusion.p_mean_variance(sched, x, x, i, var_type="nope")


def test_cosine_schedule_follows_its_alpha_bar():
    betas = diffusion.cosine_betas(100)
    abar = np.cumprod(1 - betas)
    f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    t = np.arange(1, 90)  # beta is clipped at 0.999 only at the very end
    np.testing.assert_allclose(abar[t - 1], f(t / 100) / f(0), rtol=1e-10)
