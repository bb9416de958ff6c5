"""dpi_jax.metrics.pixel: PSNR, SSIM, LR consistency and diversity against direct NumPy computations."""

import numpy as np
import pytest

from dpi_jax import images
from dpi_jax.metrics import pixel
from tests.test_evaluate import face_like, np_psnr, np_ssim, pil_resize


def test_psnr_is_the_formula_per_image():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(3, 16, 16, 3))
    b = np.clip(a + rng.normal(scale=[[[[0.01]]], [[[0.05]]], [[[0.2]]]], size=a.shape), 0, 1)
    got = pixel.psnr(a, b)
    assert got.shape == (3,)
    np.testing.assert_allclose(got, np_psnr(a, b), rtol=1e-4)
    assert got[0] > got[1] > got[2]
    assert np.isinf(pixel.psnr(a[0], a[0]))


def test_ssim_matches_a_direct_computation_and_its_properties():
    rng = np.random.default_rng(1)
    a = np.stack([face_like(0, 24), face_like(1, 24)]) / 255.0
    noisy = np.clip(a + rng.normal(scale=0.05, size=a.shape), 0, 1)
    noisier = np.clip(a + rng.normal(scale=0.2, size=a.shape), 0, 1)
    np.testing.assert_allclose(pixel.ssim(a, a), 1.0, atol=1e-5)
    got = pixel.ssim(a, noisy)
    assert got.shape == (2,)
    np.testing.assert_allclose(got, [np_ssim(x, y) for x, y in zip(a, noisy, strict=True)], atol=1e-4)
    np.testing.assert_allclose(got, pixel.ssim(noisy, a), atol=1e-6)  # symmetric
    assert np.all(pixel.ssim(a, noisier) < got)  # more noise, lower SSIM


def test_lr_consistency_degrades_the_sr_with_the_lr_bicubic():
    rng = np.random.default_rng(2)
    sr = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    lr = rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    expected = np_psnr(np.stack([pil_resize(x, 4) for x in sr]) / 255.0, lr / 255.0)
    got = pixel.lr_consistency(sr, lr, 8)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    np.testing.assert_allclose(pixel.lr_consistency(sr[1], lr[1], 8), expected[1], rtol=1e-4)
    hr = face_like(3)  # the ground truth explains its own LR exactly
    assert np.isinf(pixel.lr_consistency(hr, images.lr_from_hr(hr, 8), 8))
    with pytest.raises(TypeError):
        pixel.lr_consistency(sr / 255.0, lr, 8)
    with pytest.raises(ValueError):
        pixel.lr_consistency(sr, lr, 4)


def test_diversity_is_the_mean_per_pixel_std_over_seeds():
    rng = np.random.default_rng(3)
    samples = rng.uniform(size=(3, 2, 8, 8, 3))
    got = pixel.diversity(samples)
    assert got.shape == (2,)
    np.testing.assert_allclose(got, [np.std(samples[:, b], axis=0).mean() for b in range(2)], rtol=1e-12)
    np.testing.assert_array_equal(pixel.diversity(np.repeat(samples[:1], 4, axis=0)), 0.0)
