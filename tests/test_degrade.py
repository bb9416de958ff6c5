"""Degradations: PIL's bicubic for the synthetic settings, Eq. 19 deterministic per (seed, index)."""

import numpy as np
from PIL import Image

from dpi_jax import degrade


def face(size=64, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    img = np.stack([np.sin(8 * xx), np.cos(6 * yy), xx * yy], -1) * 0.4 + 0.5
    return (255 * np.clip(img + noise * rng.standard_normal(img.shape), 0, 1)).astype(np.uint8)


def test_bicubic_is_pils_antialiased_bicubic():
    hr = face()
    want = np.asarray(Image.fromarray(hr).resize((8, 8), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(degrade.bicubic(hr, 8), want)


def test_eq19_is_deterministic_per_seed_and_index():
    hr = face()
    a = degrade.degrade(hr, seed=1, index=5, ranges=degrade.SEVERE)
    np.testing.assert_array_equal(a, degrade.degrade(hr, seed=1, index=5, ranges=degrade.SEVERE))
    b = degrade.degrade(hr, seed=1, index=6, ranges=degrade.SEVERE)
    assert a.shape != b.shape or not np.array_equal(a, b)
    assert a.dtype == np.uint8 and 4 <= a.shape[0] <= 8  # 64 / r with r in [8, 16]


def test_eq19_parameters_stay_in_their_ranges():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = degrade.sample_parameters(rng, degrade.SEVERE)
        assert 8 <= p["scale"] <= 16 and 3 <= p["sigma"] <= 20 and 30 <= p["noise"] <= 90
        assert 1 <= p["kernel_size"] <= 17 and p["kernel_size"] % 2 == 1 and 40 <= p["jpeg_quality"] <= 50


def test_mild_eq19_is_close_to_bicubic():
    """No blur, no noise, JPEG 100: Eq. 19 reduces to bicubic down, up to JPEG's rounding (a gray image, so that
    JPEG's 4:2:0 chroma subsampling has nothing to lose)."""
    hr = np.repeat(face(noise=0.0)[..., :1], 3, axis=-1)
    lr = degrade.apply_degradation(hr, scale=4, kernel_size=1, sigma=1.0, noise=0.0, jpeg_quality=100,
                                   rng=np.random.default_rng(0))
    assert np.abs(lr.astype(int) - degrade.bicubic(hr, 4).astype(int)).mean() < 1


def test_blur_preserves_flat_images_and_smooths():
    flat = np.full((16, 16, 3), 100.0)
    np.testing.assert_allclose(degrade.blur(flat, 7, 2.0), flat)
    noisy = face(16).astype(float)
    assert degrade.blur(noisy, 9, 3.0).std() < noisy.std()
