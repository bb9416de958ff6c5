"""Image files in and out: reading odd inputs safely, the LR preparation of DPI_SPEC, PNG grids.

Arrays on the host are uint8 HWC RGB when they come from or go to files, and float32 in [-1, 1] inside the model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class ImageReadError(ValueError):
    """An input image that cannot be used; the message names the file and the problem."""


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (by suffix, case-insensitive), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder {folder} does not exist or is not a folder")
    paths = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3). Grayscale, palette and 16-bit images are converted; an alpha channel is
    composited over white. Raises :class:`ImageReadError` naming the file when it cannot be decoded."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, rgba)
            elif im.mode in ("I;16", "I;16B", "I;16L", "I"):
                im = Image.fromarray((np.asarray(im, np.float64) / 257.0).clip(0, 255).astype(np.uint8))
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path}: cannot read image ({type(err).__name__}: {err})") from err


def resize(image: np.ndarray, size: tuple[int, int] | int) -> np.ndarray:
    """PIL's antialiased bicubic resize of a uint8 RGB image to (height, width)."""
    height, width = (size, size) if isinstance(size, int) else size
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))


def center_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square crop."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top:top + side, left:left + side]


def to_model(image: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return image.astype(np.float32) / 127.5 - 1.0


def to_uint8(image) -> np.ndarray:
    """float [-1, 1] -> uint8 [0, 255], rounded and clipped."""
    return np.clip(np.round((np.asarray(image, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def lr_from_hr(hr: np.ndarray, scale: int) -> np.ndarray:
    """The synthetic LR of an HR face: bicubic (PIL, antialiased) down by ``scale``."""
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} is not divisible by the scale {scale}")
    return resize(hr, (h // scale, w // scale))


def condition_from_lr(lr: np.ndarray, hr_size: int, k: int = 2) -> np.ndarray:
    """I_L^bc: the LR image resized bicubically to (H/k, W/k) (the reference data loader's convention)."""
    return resize(lr, hr_size // k)


def save_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a uint8 RGB (or float [-1, 1]) image as PNG, creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.dtype != np.uint8:
        image = to_uint8(image)
    Image.fromarray(image).save(path)
    return path


def diversity_map(samples: np.ndarray, full_scale: float = 0.5) -> np.ndarray:
    """The per-pixel standard deviation over seeds of (S, H, W, C) samples in [-1, 1], averaged over channels, as a
    uint8 RGB image: black = identical, white = a std of ``full_scale`` or more (the same scale for every image)."""
    std = np.asarray(samples, np.float32).std(axis=0).mean(axis=-1)
    gray = np.clip(np.round(std / full_scale * 255), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def nearest_up(image: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour enlargement to (size, size), to show an LR image pixel for pixel."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST))


def make_grid(rows: Iterable[Sequence[np.ndarray]], pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile rows of equally sized uint8 images into one image, with ``pad`` pixels of ``fill`` between them."""
    rows = [list(r) for r in rows]
    if not rows:
        raise ValueError("make_grid needs at least one row")
    h, w = rows[0][0].shape[:2]
    ncols = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + pad) + pad, ncols * (w + pad) + pad, 3), fill, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            top, left = pad + r * (h + pad), pad + c * (w + pad)
            grid[top:top + h, left:left + w] = image
    return grid


def free_path(path: str | os.PathLike) -> Path:
    """``path`` if it does not exist, else the first ``stem-N.suffix`` that does not (nothing is overwritten)."""
    path = Path(path)
    n = 1
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate
