"""Degradations that make training/evaluation LR faces from HR faces, on the host (NumPy + Pillow, uint8 RGB).

- ``bicubic``: the synthetic benchmarks' x r bicubic downsampling (PIL, antialiased), as the reference data loader.
- :func:`degrade` (Eq. 19): I_L = {[(I_H ⊗ k_σ) ↓_r + n_δ]_JPEG_q}, an isotropic Gaussian blur with kernel size and
  σ, bicubic down by r (may be fractional), additive Gaussian noise of std δ (in 0-255 units), JPEG at quality q. The
  caller resizes the result to H/k to make I_L^bc (:func:`dpi_jax.images.condition_from_lr`), which is Eq. 19's ↑r.

Every random choice comes from ``numpy.random.default_rng((seed, index))``: the same (seed, index) always gives the
same LR image, whatever the order or the process that asks for it.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image

from dpi_jax import images


@dataclasses.dataclass(frozen=True)
class DegradationRanges:
    """Ranges [lo, hi] the parameters of Eq. 19 are drawn from, uniformly (kernel sizes: odd integers)."""

    scale: tuple[float, float]
    kernel_size: tuple[int, int]
    sigma: tuple[float, float]
    noise: tuple[float, float]
    jpeg_quality: tuple[int, int]


# CodeFormer's training defaults (isotropic kernels only here): the `real` setting.
CODEFORMER = DegradationRanges(scale=(0.8, 8.0), kernel_size=(41, 41), sigma=(0.1, 10.0), noise=(0.0, 20.0),
                               jpeg_quality=(60, 100))
# The paper's severe blind setting: r in [8, 16], kernel size in [1, 17], sigma in [3, 20], q in [40, 50], delta in
# [30, 90].
SEVERE = DegradationRanges(scale=(8.0, 16.0), kernel_size=(1, 17), sigma=(3.0, 20.0), noise=(30.0, 90.0),
                           jpeg_quality=(40, 50))
PRESETS = {"codeformer": CODEFORMER, "severe": SEVERE}


def bicubic(hr: np.ndarray, scale: int) -> np.ndarray:
    """The synthetic LR: bicubic down by an integer ``scale``."""
    return images.lr_from_hr(hr, scale)


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian of odd length ``size``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def blur(image: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an (H, W, C) float image with reflect padding."""
    if size <= 1:
        return image
    k = gaussian_kernel(size, sigma)
    pad = size // 2
    out = np.pad(image, ((pad, pad), (0, 0), (0, 0)), mode="reflect")
    out = sum(k[j] * out[j:j + image.shape[0]] for j in range(size))
    out = np.pad(out, ((0, 0), (pad, pad), (0, 0)), mode="reflect")
    return sum(k[j] * out[:, j:j + image.shape[1]] for j in range(size))


def sample_parameters(rng: np.random.Generator, ranges: DegradationRanges) -> dict:
    lo, hi = ranges.kernel_size
    return dict(scale=float(rng.uniform(*ranges.scale)),
                kernel_size=int(rng.choice(np.arange(lo | 1, hi + 1, 2))) if hi > lo else lo,
                sigma=float(rng.uniform(*ranges.sigma)), noise=float(rng.uniform(*ranges.noise)),
                jpeg_quality=int(rng.integers(ranges.jpeg_quality[0], ranges.jpeg_quality[1] + 1)))


def apply_degradation(hr: np.ndarray, scale: float, kernel_size: int, sigma: float, noise: float, jpeg_quality: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Eq. 19 with given parameters on a uint8 (H, W, 3) image; returns the uint8 LR of size round(H / scale)."""
    h, w = hr.shape[:2]
    x = blur(hr.astype(np.float64), kernel_size, sigma)
    x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    x = images.resize(x, (max(1, round(h / scale)), max(1, round(w / scale))))
    x = np.clip(np.round(x + noise * rng.standard_normal(x.shape)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, format="JPEG", quality=jpeg_quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def degrade(hr: np.ndarray, seed: int, index: int, ranges: DegradationRanges = CODEFORMER) -> np.ndarray:
    """Eq. 19 with parameters drawn from ``ranges``, deterministic per (seed, index)."""
    rng = np.random.default_rng((seed, index))
    return apply_degradation(hr, rng=rng, **sample_parameters(rng, ranges))
