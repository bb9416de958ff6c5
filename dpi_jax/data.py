"""Training data: sources of HR faces, and the batches (HR, I_L^bc) the trainers consume.

A *source* gives uint8 RGB faces at the model size by index (``len(source)``, ``source[i]``):

- :class:`FolderSource`: a folder of images, searched recursively (the suffixes of ``images.IMAGE_SUFFIXES``),
  centre-cropped to a square and resized (PIL bicubic) to the model size. A file that cannot be read is reported by
  name once and replaced by the next readable file, so one bad file never stops a run.
- :class:`TFDSSource`: any image dataset of tensorflow-datasets by name (random access through
  ``tfds.data_source``; the dataset must already be prepared under ``data_dir``, or preparable from ``manual_dir``
  as CelebA-HQ is: nothing is downloaded unless ``download=True``).
- :class:`SynthSource`: the synthetic faces of :mod:`dpi_jax.demo.synthfaces`, a train or held-out split.

Batches are made on the host by :func:`make_batch` and depend only on ``(seed, step)``: the examples of step n are
the n-th slice of a per-epoch permutation drawn from ``default_rng((seed, epoch))``, and any random degradation is
drawn from ``(seed, example position)``. A resumed run therefore sees exactly the batches it would have seen.
:func:`batches` yields them from a background thread, and :func:`prefetch_to_mesh` puts them on the devices ahead of
use, split over the mesh's data axis.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import logging
from pathlib import Path
from typing import Iterator, Optional, Protocol

import jax
import ml_collections
import numpy as np

from dpi_jax import degrade, images, sharding
from dpi_jax.errors import InputError

log = logging.getLogger(__name__)

class Source(Protocol):
    size: int

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


class FolderSource:
    """Every image under ``root`` (recursively), as size x size uint8 RGB."""

    def __init__(self, root, size: int):
        self.root, self.size = Path(root), int(size)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data folder {self.root} does not exist")
        self.paths = images.list_images(self.root, recursive=True)
        if not self.paths:
            raise FileNotFoundError(f"no {'/'.join(e[1:] for e in images.IMAGE_SUFFIXES)} images under {self.root}")
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        for offset in range(len(self.paths)):
            i = (index + offset) % len(self.paths)
            if i in self._bad:
                continue
            try:
                return images.fit_square(images.read_rgb(self.paths[i]), self.size)
            except images.ImageReadError as err:
                self._bad.add(i)
                log.warning("skipped unreadable image (the next readable one is used instead): %s", err)
        raise InputError(f"no readable image under {self.root}")


class TFDSSource:
    """An image dataset of tensorflow-datasets, e.g. ``TFDSSource("celeb_a_hq/256", "train", 256,
    data_dir=..., manual_dir=...)``."""

    def __init__(self, name: str, split: str, size: int, *, data_dir: Optional[str] = None,
                 manual_dir: Optional[str] = None, image_key: str = "image", download: bool = False):
        import tensorflow_datasets as tfds  # imported here: only this source needs it

        self.size, self.image_key, self.name = int(size), image_key, name
        prepare = {}
        if manual_dir:
            prepare["download_config"] = tfds.download.DownloadConfig(manual_dir=manual_dir)
        try:
            self.source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=download or
                                           bool(manual_dir), download_and_prepare_kwargs=prepare or None)
        except Exception as err:  # tfds raises several types; all mean "not usable as configured"
            raise FileNotFoundError(
                f"tensorflow-datasets dataset {name!r} (split {split!r}) is not available under data_dir="
                f"{data_dir!r}: {err}. Prepare it first (for CelebA-HQ: set manual_dir to the folder holding the "
                f"files its tfds page names); nothing is downloaded here unless download=True.") from err

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> np.ndarray:
        image = np.asarray(self.source[int(index)][self.image_key])
        if image.ndim == 2 or image.shape[-1] == 1:
            image = np.repeat(image.reshape(image.shape[:2] + (1,)), 3, axis=-1)
        return images.fit_square(image[..., :3].astype(np.uint8), self.size)


class SynthSource:
    """The synthetic faces of :mod:`dpi_jax.demo.synthfaces`: ``split`` "train" or "heldout"; ``count`` seeds of it
    (all of the split's seeds when 0)."""

    def __init__(self, split: str, size: int, count: int = 0):
        if split not in ("train", "heldout"):
            raise InputError(f"synthetic split must be 'train' or 'heldout', not {split!r}")
        from dpi_jax.demo import synthfaces

        self.size, self._face = int(size), synthfaces.face
        seeds = synthfaces.HELDOUT_SEEDS if split == "heldout" else synthfaces.TRAIN_SEEDS
        self.seeds = seeds[:count] if count else seeds

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, index: int) -> np.ndarray:
        return self._face(self.seeds[index], self.size)


def make_source(config: ml_collections.ConfigDict, size: int, split: str = "train") -> Source:
    """The source a training config names: ``config.source`` is "synthetic", "folder" or "tfds"; ``split`` is
    "train" or "heldout" (the validation images)."""
    if config.source == "synthetic":
        return SynthSource(split, size, config.get("num_images", 0) if split == "train" else 0)
    if config.source == "folder":
        folder = config.folder if split == "train" else (config.get("heldout_folder") or config.folder)
        return FolderSource(folder, size)
    if config.source == "tfds":
        return TFDSSource(config.tfds_name, config.tfds_split if split == "train" else config.tfds_heldout_split, size,
                          data_dir=config.get("data_dir") or None, manual_dir=config.get("manual_dir") or None,
                          image_key=config.get("image_key", "image"))
    raise InputError(f"unknown data source {config.source!r}: expected 'synthetic', 'folder' or 'tfds'")


@functools.lru_cache(maxsize=4)
def _epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng((seed, epoch)).permutation(n)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Dataset indices of step ``step``: positions [step * B, (step + 1) * B) of the concatenated per-epoch
    permutations of range(n)."""
    positions = np.arange(step * batch_size, (step + 1) * batch_size)
    epochs, offsets = np.divmod(positions, n)
    return np.array([_epoch_permutation(n, seed, int(e))[o] for e, o in zip(epochs, offsets, strict=True)])


def lr_of(hr: np.ndarray, scale: int, degradation: str, seed: int, position: int) -> np.ndarray:
    """The LR input of one HR face: "bicubic" x scale, or Eq. 19 with the "codeformer" / "severe" ranges."""
    if degradation == "bicubic":
        return degrade.bicubic(hr, scale)
    if degradation not in degrade.PRESETS:
        raise InputError(f"unknown degradation {degradation!r}: 'bicubic' or one of {sorted(degrade.PRESETS)}")
    return degrade.degrade(hr, seed, position, degrade.PRESETS[degradation])


def make_batch(source: Source, indices, *, scale: int, k: int = 2, degradation: str = "bicubic", seed: int = 0,
               positions=None) -> dict:
    """{"hr": I_G (B, H, W, 3), "lr_bicubic": I_L^bc (B, H/k, W/k, 3)}, float32 NHWC in [-1, 1], for
    ``source[indices]``. (The corrector's y_T is made from I_L^bc inside the jitted train step, :mod:`dpi_jax.tasks`.)

    ``positions`` (default: ``indices``) seed the random degradations, one per example."""
    positions = indices if positions is None else positions
    hr = [source[int(i)] for i in indices]
    lr_bc = [images.condition_from_lr(lr_of(h, scale, degradation, seed, int(p)), source.size, k)
             for h, p in zip(hr, positions, strict=True)]
    lr_bicubic = np.stack([images.to_model(x) for x in lr_bc]).astype(np.float32)
    return {"hr": np.stack([images.to_model(h) for h in hr]).astype(np.float32), "lr_bicubic": lr_bicubic}


def batch_at(source: Source, step: int, batch_size: int, *, seed: int, scale: int, k: int = 2,
             degradation: str = "bicubic", rows: slice | None = None) -> dict:
    """The batch of training step ``step``: a function of (seed, step) only. ``rows``: only these rows of it (a
    process's share of the global batch in a multi-process run; each example's degradation is that of its row)."""
    indices = batch_indices(len(source), batch_size, seed, step)
    positions = np.arange(step * batch_size, (step + 1) * batch_size)
    rows = rows or slice(0, batch_size)
    return make_batch(source, indices[rows], scale=scale, k=k, degradation=degradation, seed=seed,
                      positions=positions[rows])


def batches(source: Source, start_step: int, batch_size: int, *, seed: int, scale: int, k: int = 2,
            degradation: str = "bicubic", workers: int = 2, ahead: int = 4, rows: slice | None = None
            ) -> Iterator[dict]:
    """``batch_at`` for steps start_step, start_step + 1, ... made by ``workers`` host threads, ``ahead`` ahead
    (``rows``: this process's rows of each)."""
    make = functools.partial(batch_at, source, batch_size=batch_size, seed=seed, scale=scale, k=k,
                             degradation=degradation, rows=rows)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        queue = collections.deque(pool.submit(make, start_step + j) for j in range(ahead))
        step = start_step + ahead
        while True:
            batch = queue.popleft().result()
            queue.append(pool.submit(make, step))
            step += 1
            yield batch


def prefetch_to_mesh(iterator: Iterator[dict], mesh: jax.sharding.Mesh, size: int = 2) -> Iterator[dict]:
    """Device-put the batches of ``iterator`` ``size`` ahead, split over the mesh's data axis (in a multi-process
    run, ``iterator`` yields this process's rows of each global batch: :func:`dpi_jax.sharding.global_batch`)."""
    queue = collections.deque()
    for batch in iterator:
        queue.append(jax.tree.map(lambda x: sharding.global_batch(x, mesh), batch))
        if len(queue) > size:
            yield queue.popleft()
    while queue:
        yield queue.popleft()
