"""Condition masks of DPI (Eqs. 10-14): the fixed mask m_f, the initial condition y_T, and the RACM.

Images are NHWC in [-1, 1]; ``k`` is the sparsity (2 in the paper) and must divide H and W. Masks are float32 with
one channel, (B or 1, H, W, 1), and broadcast over the image channels ("the same for all channels").
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

# ITU-R 601 luma weights, as torchvision's Grayscale used by the reference.
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
LAPLACIAN = ((0.0, -1.0, 0.0), (-1.0, 4.0, -1.0), (0.0, -1.0, 0.0))


def fixed_mask(height: int, width: int, k: int = 2) -> jnp.ndarray:
    """Eq. 10: m_f = 1 where i mod k == 0 and j mod k == 0, else 0; shape (1, H, W, 1)."""
    rows = (jnp.arange(height) % k == 0)[:, None]
    cols = (jnp.arange(width) % k == 0)[None, :]
    return (rows & cols).astype(jnp.float32)[None, :, :, None]


def scatter_to_grid(values: jnp.ndarray, height: int, width: int, k: int = 2) -> jnp.ndarray:
    """Place (B, H/k, W/k, C) values on the k-grid of a zero (B, H, W, C) image."""
    b, h, w, c = values.shape
    if (h * k, w * k) != (height, width):
        raise ValueError(f"grid values of size {h}x{w} do not fit a {height}x{width} image with k={k}")
    return jnp.zeros((b, height, width, c), values.dtype).at[:, ::k, ::k, :].set(values)


def initial_condition(lr_bicubic: jnp.ndarray, k: int = 2) -> jnp.ndarray:
    """Eq. 11: y_T = I_L^bc scattered onto the grid; I_L^bc is (B, H/k, W/k, C), y_T is (B, H, W, C)."""
    chex.assert_rank(lr_bicubic, 4)
    _, h, w, _ = lr_bicubic.shape
    return scatter_to_grid(lr_bicubic, h * k, w * k, k)


def backtrack(y: jnp.ndarray, k: int = 2) -> jnp.ndarray:
    """Eq. 12: y^b = y[::k, ::k], the condition's grid pixels, (B, H/k, W/k, C)."""
    return y[:, ::k, ::k, :]


def laplacian_abs(y_b: jnp.ndarray) -> jnp.ndarray:
    """|∇² g| of the grayscale g of (B, h, w, 3) grid pixels, reflect-padded, shape (B, h, w)."""
    gray = jnp.tensordot(y_b, jnp.asarray(GRAY_WEIGHTS, y_b.dtype), axes=([-1], [0]))
    g = jnp.pad(gray, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    h, w = gray.shape[1:]
    # The 5-point stencil written out: 4 g - up - down - left - right.
    lap = 4 * g[:, 1:h + 1, 1:w + 1] - g[:, :h, 1:w + 1] - g[:, 2:, 1:w + 1] - g[:, 1:h + 1, :w] - g[:, 1:h + 1, 2:]
    return jnp.abs(lap)


def racm_probability(y: jnp.ndarray, s, k: int = 2) -> jnp.ndarray:
    """Eqs. 13-14: p^s with p the per-image min-max normalised |Laplacian| of the backtracked condition.

    ``s`` is a scalar or a (B,) array. Returns (B, H/k, W/k). Deliberate difference from the authors' code: min and
    max are taken per image, not over the whole batch, so that an image's mask does not depend on its batch-mates. A
    flat image (max == min) gives p = 0 everywhere, never NaN (and a finite gradient).
    """
    lap = laplacian_abs(backtrack(y, k))
    lo = jnp.min(lap, axis=(1, 2), keepdims=True)
    span = jnp.max(lap, axis=(1, 2), keepdims=True) - lo
    flat = span <= 0
    p = jnp.where(flat, 0.0, (lap - lo) / jnp.where(flat, 1.0, span))
    # p ** s with a safe gradient at p == 0 (the gradient of 0 ** s is not finite for s < 1).
    pos = p > 0
    s = jnp.reshape(s, (-1, 1, 1))  # a scalar, or one value per image
    return jnp.where(pos, jnp.where(pos, p, 1.0) ** s, 0.0)


def racm_mask_from_uniforms(y: jnp.ndarray, s, u: jnp.ndarray, k: int = 2) -> jnp.ndarray:
    """m_a = Bernoulli(p^s) on the grid, drawn as ``u < p^s`` from given uniforms ``u`` of shape (B, H/k, W/k).

    Returns (B, H, W, 1), zero off the grid, the same for every channel.
    """
    prob = racm_probability(y, s, k)
    chex.assert_equal_shape([prob, u])
    bern = (u < prob).astype(jnp.float32)[..., None]
    return scatter_to_grid(bern, y.shape[1], y.shape[2], k)


def racm_mask(key: jax.Array, y: jnp.ndarray, s, k: int = 2) -> jnp.ndarray:
    """``Mask_gen(y, s)`` of Algorithm 1: the RACM m_a drawn with ``jax.random`` (see
    :func:`racm_mask_from_uniforms`)."""
    b, h, w, _ = y.shape
    u = jax.random.uniform(key, (b, h // k, w // k), jnp.float32)
    return racm_mask_from_uniforms(y, s, u, k)
