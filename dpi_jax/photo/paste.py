"""Paste-back: the upscaled background and the restored faces blended into it through feathered masks.

``background_upsampler(image, factor)`` is the one function that enlarges the photo; ``BACKGROUND_UPSAMPLERS`` maps
the names accepted by ``config.background_upsampler`` to such functions, so that a learned upsampler can be added
as one more entry. Images are uint8 RGB in and out; the blending is done in float32.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from dpi_jax.photo import align


def upscaled_size(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    """(height, width) of an image of ``shape`` enlarged by ``factor`` (rounded, at least 1)."""
    return max(1, int(round(shape[0] * factor))), max(1, int(round(shape[1] * factor)))


def pil_upsampler(resample: Image.Resampling) -> Callable[[np.ndarray, float], np.ndarray]:
    """A ``background_upsampler`` that resizes with one of PIL's filters."""

    def upsample(image: np.ndarray, factor: float) -> np.ndarray:
        height, width = upscaled_size(image.shape, factor)
        return np.asarray(Image.fromarray(image).resize((width, height), resample))

    return upsample


BACKGROUND_UPSAMPLERS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "lanczos": pil_upsampler(Image.Resampling.LANCZOS),
    "bicubic": pil_upsampler(Image.Resampling.BICUBIC),
}


def background_upsampler(image: np.ndarray, factor: float, name: str = "lanczos") -> np.ndarray:
    """The photo enlarged by ``factor`` with the upsampler called ``name`` (see ``BACKGROUND_UPSAMPLERS``)."""
    if name not in BACKGROUND_UPSAMPLERS:
        raise ValueError(f"background upsampler {name!r} is not one of {sorted(BACKGROUND_UPSAMPLERS)}")
    return BACKGROUND_UPSAMPLERS[name](image, factor)


def feather_mask(size: int, erode: float = 0.05, blur: float = 0.025) -> np.ndarray:
    """A size x size blending mask in [0, 1]: ones eroded by ``erode * size`` pixels from every edge, then blurred
    by a Gaussian of standard deviation ``blur * size``, so that a pasted crop fades out before its edges."""
    margin = int(round(erode * size))
    mask = np.zeros((size, size), np.float32)
    mask[margin:size - margin, margin:size - margin] = 1.0
    return ndimage.gaussian_filter(mask, blur * size, mode="constant") if blur > 0 else mask


def paste(canvas: np.ndarray, face: np.ndarray, canvas_to_face: np.ndarray,
          mask: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """``face`` (S, S, 3) blended through ``mask`` (S, S) into ``canvas`` (float32 H, W, 3), where ``canvas_to_face``
    (2x3) maps canvas pixels to face pixels: ``(region, pixels)`` for the face's bounding box in the canvas (None when
    the face lies outside it). The canvas itself is left as it is."""
    size = face.shape[0]
    corners = align.apply(align.invert(canvas_to_face), [[-1, -1], [size, -1], [-1, size], [size, size]])
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, [canvas.shape[1], canvas.shape[0]])
    if x1 <= x0 or y1 <= y0:
        return None
    region_to_face = align.compose(canvas_to_face, [[1.0, 0.0, x0], [0.0, 1.0, y0]])
    shape = (y1 - y0, x1 - x0)
    warped = align.warp(face, region_to_face, shape, mode="nearest")
    alpha = align.warp(mask, region_to_face, shape, order=1, mode="constant")[..., None]
    region = (slice(y0, y1), slice(x0, x1))
    return region, alpha * warped + (1.0 - alpha) * canvas[region]


def paste_faces(background: np.ndarray, photo_shape: tuple[int, ...], faces: Sequence[np.ndarray],
                photo_to_faces: Sequence[np.ndarray], *, erode: float = 0.05, blur: float = 0.025) -> np.ndarray:
    """The upscaled ``background`` (uint8) with every face pasted, in order (a later face covers an earlier one where
    they overlap). ``photo_to_faces[i]`` maps pixels of the original photo (of ``photo_shape``) to those of
    ``faces[i]``, a float or uint8 (S, S, 3) crop; returns uint8."""
    canvas_to_photo = align.resize_map(background.shape[:2], photo_shape[:2])
    canvas = background.astype(np.float32)
    for face, photo_to_face in zip(faces, photo_to_faces, strict=True):
        mask = feather_mask(face.shape[0], erode, blur)
        pasted = paste(canvas, np.asarray(face, np.float32), align.compose(photo_to_face, canvas_to_photo), mask)
        if pasted is not None:
            canvas[pasted[0]] = pasted[1]
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8)
