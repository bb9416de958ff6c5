"""Running a jitted network metric over many images: fixed-size batches sharded over all devices, a progress bar.

Every network metric takes NHWC images; a batch is padded (with copies of its last image) to ``batch_size``, a multiple
of the device count, so that one compilation serves every batch and the padding is dropped from the result.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import jax
import numpy as np
from tqdm import tqdm

from dpi_jax import sharding
from dpi_jax.errors import InputError


def padded_batches(images: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """``(batch, n_valid)`` for consecutive slices of ``images`` (N, ...), each padded to ``batch_size`` rows."""
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        valid = len(batch)
        if valid < batch_size:
            batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - valid, axis=0)])
        yield batch, valid


def map_batches(fn: Callable, arrays: Iterable[np.ndarray] | np.ndarray, *, batch_size: int = 50,
                desc: str | None = None, progress: bool = True):
    """Apply ``fn`` (jitted; takes one batch, or one batch of each array, returns a pytree of per-image arrays) to
    ``arrays`` in sharded batches; returns the per-image results concatenated as NumPy arrays.

    ``arrays``: one array (N, ...) or a tuple of arrays with the same N (e.g. two image sets for LPIPS).
    ``batch_size`` is rounded up to a multiple of the device count.
    """
    arrays = (arrays,) if isinstance(arrays, np.ndarray) else tuple(arrays)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise InputError(f"the image sets differ in length: {[len(a) for a in arrays]}")
    if n == 0:
        raise InputError("no images to measure")
    mesh = sharding.local_mesh()
    batch_size = -(-max(1, min(batch_size, n)) // mesh.size) * mesh.size
    streams = [padded_batches(np.asarray(a), batch_size) for a in arrays]
    outputs = []
    with tqdm(total=n, desc=desc, unit="img", disable=not progress or desc is None, leave=False) as bar:
        for parts in zip(*streams, strict=True):
            valid = parts[0][1]
            batch = [sharding.shard_batch(p[0], mesh) for p in parts]
            result = jax.device_get(fn(*batch))
            outputs.append(jax.tree.map(lambda r, v=valid: np.asarray(r)[:v], result))
            bar.update(valid)
    return jax.tree.map(lambda *rs: np.concatenate(rs), *outputs)
