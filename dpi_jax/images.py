"""Image files in and out: reading odd inputs safely, the LR preparation of docs/algorithm.md, PNG grids.

Arrays on the host are uint8 HWC RGB when they come from or go to files, and float32 in [-1, 1] inside the model.

Robustness: :func:`read_rgb` turns any failure to decode one file (corrupt, truncated, empty, an unknown format, more
than ``MAX_IMAGE_PIXELS`` pixels) into an :class:`ImageReadError` naming the file, so that callers skip it and go on;
every file written here goes through :func:`write_atomic` (a temporary file in the same folder, then ``os.replace``),
so a crash never leaves a half-written PNG or CSV; :func:`check_output_dir` refuses an output folder that is a file
or cannot be written, before any work is done.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from dpi_jax.errors import ImageReadError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")  # a GIF: its first frame
# The largest input read, in pixels (width x height): 50 megapixels, far above any face photo. Bigger files (e.g. a
# 20000x20000 scan, or a "decompression bomb" whose header claims a huge size) are skipped by name instead of
# filling the memory. Pass ``max_pixels`` to read_rgb to change it per call; PIL's own global guard
# (``Image.MAX_IMAGE_PIXELS``) is set to the same value only while a file is being opened.
MAX_IMAGE_PIXELS = 50_000_000
_PIL_LIMIT_LOCK = threading.Lock()
_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it) and put back at once
os.umask(_UMASK)


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (by suffix, case-insensitive), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder {folder} does not exist or is not a folder")
    paths = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _open_limited(path: Path, max_pixels: int):
    """``Image.open`` with PIL's decompression-bomb limit set to ``max_pixels`` for this call only (a lock keeps
    other threads' opens from seeing it), and the size checked against ``max_pixels`` before any pixel is decoded."""
    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the explicit check below says it
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as err:  # more than twice the limit: PIL refuses it itself
            raise ImageReadError(f"{path}: more than the limit of {max_pixels:,} pixels "
                                 f"(dpi_jax.images.MAX_IMAGE_PIXELS); skipped ({err})") from err
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    if im.width * im.height > max_pixels:
        size = f"{im.width}x{im.height}"
        im.close()
        raise ImageReadError(f"{path}: {size} pixels, more than the limit of {max_pixels:,} "
                             f"(dpi_jax.images.MAX_IMAGE_PIXELS); skipped")
    return im


def _to_8bit(values: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """A single-channel 32-bit integer or float image as uint8, by the range its values use: [0, 1] (float
    only) is scaled by 255, [0, 255] kept, [0, 65535] divided by 257; anything else (negative values, larger ones,
    NaN) cannot be told apart from another convention and is refused by name."""
    finite = np.isfinite(values).all()
    low, high = (values.min(), values.max()) if finite and values.size else (np.nan, np.nan)
    if finite and low >= 0:
        for top, factor in ((1.0, 255.0), (255.0, 1.0), (65535.0, 1 / 257.0)):
            if high <= top and (top != 1.0 or mode == "F"):
                return np.round(values * factor).clip(0, 255).astype(np.uint8)
    raise ImageReadError(f"{path}: a {mode} (single-channel {'float' if mode == 'F' else 'integer'}) image with "
                         f"values in [{low:g}, {high:g}]: not one of the ranges [0, 1], [0, 255], [0, 65535] "
                         "read here; convert it to 8-bit RGB")


def read_rgb(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3). Grayscale, palette, 16- and 32-bit images are converted (32-bit ones by
    the range of their values, :func:`_to_8bit`); an alpha channel is composited over white. Raises
    :class:`ImageReadError` naming the file when it cannot be decoded, for whatever reason, or has more than
    ``max_pixels`` (default :data:`MAX_IMAGE_PIXELS`) pixels."""
    path = Path(path)
    try:
        with _open_limited(path, MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, rgba)
            elif im.mode in ("I;16", "I;16B", "I;16L"):
                im = Image.fromarray((np.asarray(im, np.float64) / 257.0).clip(0, 255).astype(np.uint8))
            elif im.mode in ("I", "F"):  # 32-bit integer or float: the bit depth does not say the range
                im = Image.fromarray(_to_8bit(np.asarray(im, np.float64), im.mode, path))
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except ImageReadError:
        raise
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, DecompressionBombError, ...)
        raise ImageReadError(f"{path}: cannot read image ({type(err).__name__}: {err})") from err
    if rgb.ndim != 3 or min(rgb.shape[:2]) < 1:
        raise ImageReadError(f"{path}: empty image ({'x'.join(map(str, rgb.shape[:2]))})")
    return rgb


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


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """The largest centred square crop resized to size x size (PIL bicubic); the image itself when already so."""
    if image.shape[:2] == (size, size):
        return image
    return resize(center_square(image), size)


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


def save_png(path: str | os.PathLike, image: np.ndarray, *, overwrite: bool = True) -> Path:
    """Write a uint8 RGB (or float [-1, 1]) image as PNG, atomically (:func:`write_atomic`), creating the folder;
    with ``overwrite=False`` an existing file is never replaced (FileExistsError). Returns the path."""
    if image.dtype != np.uint8:
        image = to_uint8(image)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return write_atomic(path, buffer.getvalue(), overwrite=overwrite)


def write_atomic(path: str | os.PathLike, data: bytes | str, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` so that ``path`` is never half-written: a temporary file in the same folder,
    flushed to disk, then renamed over ``path`` (``os.replace``). With ``overwrite=False`` an existing ``path`` is
    kept and FileExistsError raised (the new file is linked into place, which fails when the name exists). Creates
    the folder. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the mode a plain open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _link_no_clobber(tmp: str, path: Path):
    try:
        os.link(tmp, path)  # atomic, and fails when path exists
    except FileExistsError:
        raise FileExistsError(f"{path} already exists: not replaced") from None
    except OSError:  # a file system without hard links
        if path.exists():
            raise FileExistsError(f"{path} already exists: not replaced") from None
        os.replace(tmp, path)


def check_output_dir(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an output folder that is a file or cannot be written: ``path`` or, when it does not
    exist yet, its nearest existing parent must be a folder where a file can be created (tried for real, so that
    read-only mounts and permissions are both caught). Creates nothing. Returns the path."""
    path = Path(path)
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == path else f"cannot be created: {existing} is a file"
        raise NotADirectoryError(f"output_dir {path} {what}, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".dpi-jax-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        where = "" if existing == path else f" (its parent {existing} is where it would be created)"
        raise PermissionError(f"output_dir {path} is not writable{where}: {err.strerror or err}") from err
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
