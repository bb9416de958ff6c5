"""Pixel metrics of SR results: PSNR and SSIM to the ground truth, LR consistency, diversity over seeds.

PSNR and SSIM are dm-pix's (SSIM: 11x11 Gaussian window, sigma 1.5, k1 0.01, k2 0.03); images are floats in [0, 1].
"""

from __future__ import annotations

import dm_pix
import jax.numpy as jnp
import numpy as np

from dpi_jax import images


def psnr(a, b) -> np.ndarray:
    """PSNR in dB between float images in [0, 1] (peak 1): NHWC batches give one value per image, (B,); one HWC image
    gives a scalar. Identical images give inf. Computed by ``dm_pix.psnr``."""
    return np.asarray(dm_pix.psnr(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)))


def ssim(a, b) -> np.ndarray:
    """SSIM between float images in [0, 1] (``dm_pix.ssim`` with its defaults: 11x11 Gaussian window, sigma 1.5,
    k1 0.01, k2 0.03, valid filtering, so images must be at least 11x11), one value per image of an NHWC batch."""
    return np.asarray(dm_pix.ssim(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), max_val=1.0))


def lr_consistency(sr_uint8, lr_uint8, scale: int) -> np.ndarray:
    """LR consistency in dB: the PSNR between the SR result degraded back to LR with the bicubic downsampling that made
    the LR (``images.lr_from_hr(sr, scale)``) and the LR input. uint8 (B, H, W, 3) and (B, H/scale, W/scale, 3) give
    (B,); single HWC images give a scalar."""
    sr, lr = np.asarray(sr_uint8), np.asarray(lr_uint8)
    if sr.dtype != np.uint8 or lr.dtype != np.uint8:
        raise TypeError(f"lr_consistency takes uint8 images, not {sr.dtype} and {lr.dtype}")
    single = sr.ndim == 3
    sr, lr = (sr[None], lr[None]) if single else (sr, lr)
    down = np.stack([images.lr_from_hr(x, scale) for x in sr])
    if down.shape != lr.shape:
        raise ValueError(f"SR {sr.shape[1:3]} downsampled by {scale} gives {down.shape[1:3]}, not the LR "
                         f"{lr.shape[1:3]}")
    value = psnr(down / 255.0, lr / 255.0)
    return value[0] if single else value


def diversity(samples) -> np.ndarray:
    """Diversity of S samples of each image, (S, B, H, W, 3) in [0, 1]: the per-pixel standard deviation over the
    seeds (population std, ddof 0), averaged over pixels and channels; (B,). 0 when all seeds agree."""
    samples = np.asarray(samples, np.float64)
    return samples.std(axis=0).mean(axis=(-3, -2, -1))
