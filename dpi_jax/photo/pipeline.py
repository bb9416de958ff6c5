"""``sample.py`` with ``config.mode = "photo"``: restore every face of ordinary photos with DPI and paste it back.

For each photo of ``config.input_dir``: detect the faces (:mod:`dpi_jax.photo.detect`); align each to the FFHQ
template (:mod:`dpi_jax.photo.align`) at the photo's own resolution and shrink that crop to the LR input of DPI
(prior size / ``config.scale``: 32x32 for the 256x256 FFHQ prior at x8, 8x8 for the 64x64 demo prior); restore all
faces of all photos together in batches (``inference.sample_batches``, real mode: the LR is used as it is); paste
seed 0 of each face back into the photo upscaled by ``config.upscale`` (:mod:`dpi_jax.photo.paste`).

The crop and ``config.scale``: DPI restores a face at one fixed scale, so whatever a face's size in the photo, its
aligned crop is resized to (prior size / scale)^2 pixels and comes back at prior size; in the output the face then
covers (native crop side) x ``upscale`` pixels, and the restored crop is resampled to that. A face whose native crop
is smaller than the LR input is enlarged to it (with a message): the photo has less detail than DPI's input.

Written to ``config.output_dir`` per photo ``<name>``: ``<name>.png`` (the restored photo), ``<name>_compare.png``
(the input upscaled by the background upsampler | the restored photo, each half at most 2048 px on its longer side),
and per face i: ``<name>_face<i>_lr.png`` (the
aligned LR crop DPI restored) and ``<name>_face<i>.png`` (with ``num_seeds`` > 1: ``<name>_face<i>_s<n>.png``).
A photo whose ``<name>.png`` exists is skipped unless ``config.overwrite``; an unreadable one is reported and skipped.
``<name>`` is the file's stem, or ``<stem>_<suffix>`` where two photos share a stem; a photo whose name is another's
plus one of these endings (``x_compare.jpg`` beside ``x.jpg``) is refused with both named
(:func:`dpi_jax.folders.unique_names`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import ml_collections
import numpy as np
from PIL import Image

from dpi_jax import distributed, folders, images, inference
from dpi_jax.photo import align, detect, paste

log = logging.getLogger(__name__)

# EXIF Orientation -> the PIL transposition that shows the photo upright (as PIL.ImageOps.exif_transpose does).
ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
               5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_90}
EXIF_ORIENTATION_TAG = 0x0112

DEFAULTS = dict(upscale=2.0, min_face_size=20.0, detect_max_side=1280, face_threshold=0.9, max_faces=0,
                background_upsampler="lanczos", mask_erode=0.05, mask_blur=0.025)


def setting(config: ml_collections.ConfigDict, name: str):
    """A photo-mode field of ``config``, or its default (so that any sampling config can run in photo mode)."""
    return config.get(name, DEFAULTS[name])


def read_photo(path: str | Path) -> np.ndarray:
    """A photo as uint8 RGB, upright: :func:`images.read_rgb` (grayscale, RGBA, 16-bit converted) with its EXIF
    orientation applied. Raises :class:`images.ImageReadError` naming the file."""
    rgb = images.read_rgb(path)
    try:
        with Image.open(path) as im:
            orientation = im.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except (OSError, ValueError, SyntaxError):
        orientation = 1
    if orientation in ORIENTATION:
        rgb = np.asarray(Image.fromarray(rgb).transpose(ORIENTATION[orientation]))
    return rgb


def find_faces(image: np.ndarray, config: ml_collections.ConfigDict, label: str = "photo") -> list[detect.Face]:
    """The faces of ``image`` at least ``min_face_size`` pixels wide (smaller ones are skipped with a message),
    ordered left to right, at most ``max_faces`` (0: all). Detection runs on the photo shrunk to at most
    ``detect_max_side`` pixels on its long side; boxes and landmarks are in the photo's pixels."""
    factor = min(1.0, setting(config, "detect_max_side") / max(image.shape[:2]))
    small = image if factor == 1.0 else paste.pil_upsampler(Image.Resampling.BILINEAR)(image, factor)
    back = align.invert(align.resize_map(image.shape[:2], small.shape[:2]))
    found = detect.detect_faces(small, thresholds=(0.6, 0.7, setting(config, "face_threshold")))
    faces = []
    for face in found:
        corners = align.apply(back, face.box.reshape(2, 2)).reshape(4)
        faces.append(detect.Face(corners, face.score, align.apply(back, face.landmarks)))
    kept = []
    for face in sorted(faces, key=lambda f: f.box[0]):
        if face.size < setting(config, "min_face_size"):
            log.warning("%s: skipped a face of %.0f px at (%.0f, %.0f) (min_face_size=%g)", label, face.size,
                        *face.box[:2], setting(config, "min_face_size"))
        else:
            kept.append(face)
    max_faces = int(setting(config, "max_faces"))
    return kept[:max_faces] if max_faces > 0 else kept


def face_input(image: np.ndarray, landmarks: np.ndarray, prior_size: int, lr_size: int,
               label: str = "face") -> tuple[np.ndarray, np.ndarray]:
    """(LR uint8 (lr_size, lr_size, 3), photo -> prior-size crop transform) for one face: the aligned crop made at
    the photo's resolution, resized to the LR size."""
    native = align.native_size(landmarks, prior_size)
    if native < lr_size:
        log.warning("%s: the face is %d px across (aligned), smaller than the %d px LR input: enlarged", label,
                    native, lr_size)
    crop, photo_to_native = align.align(image, landmarks, native)
    lr = images.resize(np.clip(np.round(crop), 0, 255).astype(np.uint8), lr_size)
    return lr, align.compose(align.resize_map((native, native), (prior_size, prior_size)), photo_to_native)


@dataclass
class Photo:
    """A photo in flight: its pixels, its faces' photo -> crop transforms and, as they come, their restorations."""

    name: str
    image: np.ndarray
    transforms: list[np.ndarray]
    restored: dict[int, np.ndarray] = field(default_factory=dict)  # face index -> (seeds, S, S, 3) uint8


DERIVED_NAMES = r"_compare|_face\d+(?:_lr|_s\d+)?"  # what a photo's outputs add to its name
COMPARE_MAX_SIDE = 2048  # each half of <name>_compare.png (the full-size result is <name>.png)


def fit_within(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` shrunk (antialiased bicubic) so that its longer side is at most ``side``; unchanged when it fits."""
    h, w = image.shape[:2]
    if max(h, w) <= side:
        return image
    ratio = side / max(h, w)
    return images.resize(image, (max(1, round(h * ratio)), max(1, round(w * ratio))))


def finish(photo: Photo, config: ml_collections.ConfigDict, out_dir: Path) -> list[Path]:
    """Paste seed 0 of every restored face into the upscaled photo; write the photo, the comparison and the faces."""
    background = paste.background_upsampler(photo.image, float(setting(config, "upscale")),
                                            setting(config, "background_upsampler"))
    faces = [photo.restored[i][0] for i in range(len(photo.transforms))]
    result = paste.paste_faces(background, photo.image.shape, faces, photo.transforms,
                               erode=setting(config, "mask_erode"), blur=setting(config, "mask_blur"))
    compare = images.make_grid([[fit_within(background, COMPARE_MAX_SIDE), fit_within(result, COMPARE_MAX_SIDE)]])
    written = [images.save_png(out_dir / f"{photo.name}.png", result),
               images.save_png(out_dir / f"{photo.name}_compare.png", compare)]
    for i in range(len(photo.transforms)):
        seeds = photo.restored[i]
        if len(seeds) == 1:
            written.append(images.save_png(out_dir / f"{photo.name}_face{i}.png", seeds[0]))
        else:
            written += [images.save_png(out_dir / f"{photo.name}_face{i}_s{n}.png", s) for n, s in enumerate(seeds)]
    return written


def _collect(photos: list[Photo], owner: tuple[int, int], faces: np.ndarray, config, out_dir: Path) -> list[Path]:
    """Keep face ``owner = (photo, face)``'s restorations; once the photo has all of them, paste and write it."""
    p, i = owner
    photos[p].restored[i] = faces
    if len(photos[p].restored) < len(photos[p].transforms):
        return []
    written = finish(photos[p], config, out_dir)
    photos[p].image = None  # done: let the pixels go
    return written


def run(config: ml_collections.ConfigDict, *, checked: bool = False) -> list[Path]:
    """Restore the faces of every photo in ``config.input_dir``; returns the paths written. ``checked``: the
    checkpoints have been checked already (:func:`dpi_jax.inference.model_configs`)."""
    prior, prior_params, crt, crt_params = inference.load_models(config, checked=checked)
    prior_size = prior.image_size
    if prior_size % config.scale:
        raise inference.SetupError(f"config.scale={config.scale} does not divide the prior's size {prior_size}")
    if not float(setting(config, "upscale")) > 0:
        raise inference.SetupError(f"config.upscale must be positive, not {setting(config, 'upscale')}")
    lr_size = prior_size // config.scale
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    paths = inference.image_paths(config)
    names = folders.unique_names(paths, derived=DERIVED_NAMES)  # x_compare.jpg may not be photo x's comparison
    distributed.assert_same(names, "the photos (every process must list the same files)")
    share = distributed.share(len(paths))  # several processes: each reads, restores and writes its own photos
    photos, todo, owners, written = [], [], [], []
    for path, stem in zip(paths[share], names[share], strict=True):
        if (out_dir / f"{stem}.png").exists() and not config.overwrite:
            log.warning("%s exists: skipped (set --config.overwrite=True to replace it)", out_dir / f"{stem}.png")
            continue
        try:
            image = read_photo(path)
        except images.ImageReadError as err:
            log.error("skipped %s", err)
            continue
        faces = find_faces(image, config, str(path))
        photo = Photo(stem, image, [])
        if not faces:
            log.warning("%s: no face found; the photo is only upscaled", path)
            written += finish(photo, config, out_dir)
            continue
        log.info("%s: %d face(s)", path, len(faces))
        for i, face in enumerate(faces):
            name = f"{stem}_face{i}"
            lr, transform = face_input(image, face.landmarks, prior_size, lr_size, f"{path}, face {i}")
            written.append(images.save_png(out_dir / f"{name}_lr.png", lr))
            photo.transforms.append(transform)
            condition = images.condition_from_lr(lr, prior_size, config.dpi.k)
            todo.append(inference.Input(name, lr, condition, None, len(todo)))
            owners.append((len(photos), i))
        photos.append(photo)

    first, total = distributed.place(len(todo))  # a face's random draws derive from its place among all faces
    todo = [item._replace(index=first + item.index) for item in todo]
    if total:
        start = time.perf_counter()
        for batch, sr in inference.sample_batches(todo, config, prior, prior_params, crt, crt_params,
                                                  progress=bool(config.get("progress", True))):
            for n, item in enumerate(batch):  # paste a photo as soon as its faces are done
                written += _collect(photos, owners[item.index - first], images.to_uint8(sr[:, n]), config, out_dir)
        seconds = time.perf_counter() - start
        log.info("restored %d face(s) in %.1f s (%.2f s per face, compilation included)", len(todo), seconds,
                 seconds / max(len(todo), 1))
    if not sum(distributed.counts(len(written))):
        log.warning("nothing to do in %s", config.input_dir)
    return written
