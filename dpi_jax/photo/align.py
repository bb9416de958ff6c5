"""Alignment to the FFHQ 5-point template: a least-squares similarity transform, warps in and out of the photo.

Transforms are 2x3 matrices acting on pixel coordinates (x, y) with pixel centres at integers; ``M`` maps a point of
the source to the destination. Warps take the inverse map (output pixel -> source pixel) and sample with cubic
splines (``scipy.ndimage``, a dependency of JAX).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# The five points (left eye, right eye, nose tip, left and right mouth corner) of the FFHQ alignment as used for
# 512x512 crops by GFPGAN, CodeFormer and facexlib, in (x, y) pixels.
FFHQ_TEMPLATE_512 = np.array([
    [192.98138, 239.94708],
    [318.90277, 240.19360],
    [256.63416, 314.01935],
    [201.26117, 371.41043],
    [313.08905, 371.15118],
])


def template(size: int) -> np.ndarray:
    """The FFHQ 5-point template for a size x size crop."""
    return FFHQ_TEMPLATE_512 * (size / 512.0)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The similarity transform (rotation, uniform scale, translation; no reflection) that maps the points ``src``
    (N, 2) closest to ``dst`` in the least-squares sense (Umeyama, 1991), as a 2x3 matrix."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    a, b = src - mu_src, dst - mu_dst
    u, sv, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ d @ vt
    scale = np.trace(np.diag(sv) @ d) / (a ** 2).sum(1).mean()
    return np.concatenate([scale * rotation, (mu_dst - scale * rotation @ mu_src)[:, None]], axis=1)


def to3(m: np.ndarray) -> np.ndarray:
    """A 2x3 affine matrix as 3x3 homogeneous."""
    return np.vstack([m, [0.0, 0.0, 1.0]])


def compose(*ms: np.ndarray) -> np.ndarray:
    """``compose(a, b)`` applies ``b`` first, then ``a``."""
    out = np.eye(3)
    for m in ms:
        out = out @ to3(m)
    return out[:2]


def invert(m: np.ndarray) -> np.ndarray:
    return np.linalg.inv(to3(m))[:2]


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``m`` applied to (N, 2) points."""
    return np.asarray(points) @ m[:, :2].T + m[:, 2]


def resize_map(src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """Pixel coordinates of an image (height, width) ``src_size`` -> those of its resize to ``dst_size`` (the pixel
    centre convention of PIL's resize)."""
    sy, sx = dst_size[0] / src_size[0], dst_size[1] / src_size[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])


def scale_of(m: np.ndarray) -> float:
    """The linear scale of a similarity (destination pixels per source pixel)."""
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def warp(image: np.ndarray, out_to_src: np.ndarray, shape: tuple[int, int], *, order: int = 3,
         mode: str = "reflect", cval: float = 0.0) -> np.ndarray:
    """Sample ``image`` (H, W) or (H, W, C) at ``out_to_src`` of every pixel of an output of ``shape`` (height,
    width); float32. ``mode`` is scipy's border rule ('reflect': the image mirrored at its edges; 'constant': cval).

    Only the part of the image that the output sees (plus a margin for the spline prefilter) is filtered, so warping
    a small face out of a large photo costs little.
    """
    image = np.asarray(image, np.float32)
    squeeze = image.ndim == 2
    image = image[..., None] if squeeze else image
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    sx = out_to_src[0, 0] * xs + out_to_src[0, 1] * ys + out_to_src[0, 2]
    sy = out_to_src[1, 0] * xs + out_to_src[1, 1] * ys + out_to_src[1, 2]
    windows = [_window(sy, image.shape[0]), _window(sx, image.shape[1])]
    sub = image[windows[0], windows[1]]
    coords = [sy - windows[0].start, sx - windows[1].start]
    out = np.stack([ndimage.map_coordinates(sub[..., ch], coords, order=order, mode=mode, cval=cval)
                    for ch in range(sub.shape[-1])], axis=-1).astype(np.float32)
    return out[..., 0] if squeeze else out


def _window(coords: np.ndarray, n: int, margin: int = 8) -> slice:
    """The rows (or columns) of an axis of length n that sampling at ``coords`` needs: all of them when the border
    rule applies (so that it is exact), else the span of coords plus a margin for the spline prefilter."""
    if coords.min() < 0 or coords.max() > n - 1:
        return slice(0, n)
    return slice(max(int(np.floor(coords.min())) - margin, 0), min(int(np.ceil(coords.max())) + margin + 1, n))


def align(image: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The size x size FFHQ-aligned crop of the face with these five landmarks (float32, the photo mirrored beyond
    its edges) and the photo -> crop transform."""
    m = similarity(landmarks, template(size))
    return warp(image, invert(m), (size, size)), m


def native_size(landmarks: np.ndarray, size: int) -> int:
    """The side of the aligned crop at the photo's own resolution (one crop pixel per photo pixel): the size whose
    template matches the landmarks without scaling."""
    return max(1, int(round(size / scale_of(similarity(landmarks, template(size))))))
