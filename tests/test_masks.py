"""Condition masks: the RACM map against the reference, and the properties DPI relies on."""

import jax
import numpy as np
import pytest

from dpi_jax import masks
from tests.reference import load_npz, nchw_to_nhwc


def test_fixed_mask_is_the_k_grid():
    m = np.asarray(masks.fixed_mask(6, 8, k=2))[0, :, :, 0]
    expected = np.zeros((6, 8))
    expected[::2, ::2] = 1
    np.testing.assert_array_equal(m, expected)
    assert np.asarray(masks.fixed_mask(9, 9, k=3)).sum() == 9


def test_initial_condition_and_backtrack_round_trip():
    lr = jax.random.uniform(jax.random.key(0), (2, 4, 5, 3), minval=-1, maxval=1)
    y_T = masks.initial_condition(lr, k=2)
    assert y_T.shape == (2, 8, 10, 3)
    np.testing.assert_array_equal(np.asarray(masks.backtrack(y_T, 2)), np.asarray(lr))
    np.testing.assert_array_equal(np.asarray(y_T * (1 - masks.fixed_mask(8, 10, 2))), 0)


def test_racm_probability_matches_reference():
    ref = load_npz("racm_prob.npz")
    y = nchw_to_nhwc(ref["y"])
    k, s = int(ref["k"]), float(ref["s"])
    lap = masks.laplacian_abs(masks.backtrack(y, k))
    prob = masks.racm_probability(y, s, k)
    # The grayscale weights and the stencil are applied in float32 in a different order than kornia's conv2d:
    # differences are float32 rounding (measured 4.8e-7 on values up to 5.8, and 1.8e-7 on the probabilities).
    np.testing.assert_allclose(np.asarray(lap), ref["laplacian_abs"][:, 0], atol=5e-6)
    np.testing.assert_allclose(np.asarray(prob), ref["prob"][:, 0], atol=2e-6)


@pytest.mark.slow
def test_racm_is_per_image_and_flat_images_are_nan_free():
    key = jax.random.key(1)
    y = jax.random.uniform(key, (3, 16, 16, 3), minval=-1, maxval=1)
    y = y.at[1].set(0.25)  # a flat image
    prob = masks.racm_probability(y, 1.2, 2)
    assert np.isfinite(np.asarray(prob)).all()
    np.testing.assert_array_equal(np.asarray(prob[1]), 0)
    # An image's map does not depend on its batch-mates (the reference normalises over the batch; we do not).
    np.testing.assert_array_equal(np.asarray(prob[2]), np.asarray(masks.racm_probability(y[2:], 1.2, 2)[0]))
    grad = jax.grad(lambda y: masks.racm_probability(y, 1.2, 2).sum())(y)
    assert np.isfinite(np.asarray(grad)).all()


@pytest.mark.slow
def test_racm_mask_is_inside_fixed_mask_and_thins_with_s():
    y = jax.random.uniform(jax.random.key(2), (4, 32, 32, 3), minval=-1, maxval=1)
    m_f = masks.fixed_mask(32, 32, 2)
    density = {}
    for s in (1.0, 50.0):
        m_a = np.asarray(masks.racm_mask(jax.random.key(3), y, s, 2))
        assert m_a.shape == (4, 32, 32, 1)
        assert set(np.unique(m_a)) <= {0.0, 1.0}
        assert np.all(m_a <= np.asarray(m_f))  # m_a ⊆ m_f
        density[s] = m_a.sum() / (4 * 16 * 16)
    assert density[1.0] > 0.1
    assert density[50.0] < 0.01  # s -> large: p^s -> 0 except at the per-image maximum


def test_racm_draw_is_u_below_p():
    y = jax.random.uniform(jax.random.key(4), (1, 8, 8, 3), minval=-1, maxval=1)
    u = jax.random.uniform(jax.random.key(5), (1, 4, 4))
    m_a = masks.racm_mask_from_uniforms(y, 1.0, u, 2)
    expected = np.asarray(u < masks.racm_probability(y, 1.0, 2), np.float32)
    np.testing.assert_array_equal(np.asarray(m_a)[0, ::2, ::2, 0], expected[0])
