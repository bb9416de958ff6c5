"""Data parallelism over all devices: one ``Mesh`` axis, ``"data"``, that the batch (or the seeds) is split over.

Parameters are replicated; the sampler is an ordinary jitted function, so sharded inputs give sharded work (GSPMD)
and the same keys give the same images on 1 or N devices.

Several processes (one per host of a TPU pod slice or GPU cluster, or local CPU processes; see
:mod:`dpi_jax.distributed`): after ``jax.distributed.initialize()``, :func:`data_mesh` spans the devices of all
processes. Every process runs the same program on the same global batch shape; process p holds the rows of the
batch that its devices hold (:func:`process_rows`), supplies only those (:func:`global_batch`) and reads back only
those (:func:`local_rows`). Per-process work that needs no other process (the metric networks) uses
:func:`local_mesh`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dpi_jax.errors import InputError

DATA_AXIS = "data"


def data_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """A 1-D mesh over ``devices`` (all devices by default) with the axis ``"data"``."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def local_mesh() -> Mesh:
    """A 1-D ``"data"`` mesh over this process's own devices (all devices in a single-process run)."""
    return data_mesh(jax.local_devices())


def _spans_processes(mesh: Mesh) -> bool:
    return any(d.process_index != jax.process_index() for d in mesh.devices.flat)


def process_rows(batch_size: int, mesh: Mesh) -> slice:
    """The rows of a global batch of ``batch_size`` that this process's devices hold when the batch is split over
    ``mesh`` (``slice(0, batch_size)`` in a single-process run). The mesh lists each process's devices together, as
    ``jax.devices()`` does, so that the rows are contiguous."""
    n = mesh.devices.size
    if batch_size % n:
        raise InputError(f"a batch of {batch_size} does not split over {n} devices")
    per_device = batch_size // n
    mine = [k for k, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
    if mine != list(range(mine[0], mine[-1] + 1)):
        raise ValueError(f"the devices of process {jax.process_index()} are not contiguous in the mesh")
    return slice(mine[0] * per_device, (mine[-1] + 1) * per_device)


def global_batch(local: np.ndarray, mesh: Mesh) -> jax.Array:
    """The global batch, split over ``mesh`` along axis 0, of which this process supplies its rows ``local``
    (:func:`process_rows`; the whole batch in a single-process run)."""
    return jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec(DATA_AXIS)), np.asarray(local))


def local_rows(array: jax.Array, rows: slice, axis: int = 0) -> np.ndarray:
    """Rows ``rows`` of ``array`` along ``axis`` as a host array, read from this process's shards (which must hold
    them: :func:`process_rows` of the mesh the batch was split over)."""
    shape = list(array.shape)
    shape[axis] = rows.stop - rows.start
    out = np.empty(shape, array.dtype)
    filled = np.zeros(shape[axis], bool)
    for shard in array.addressable_shards:
        index = list(shard.index)
        start, stop, _ = index[axis].indices(array.shape[axis])
        lo, hi = max(start, rows.start), min(stop, rows.stop)
        if lo >= hi:
            continue
        data = np.asarray(shard.data)
        index[axis] = slice(lo - rows.start, hi - rows.start)
        out[tuple(index)] = np.take(data, np.arange(lo - start, hi - start), axis=axis)
        filled[lo - rows.start:hi - rows.start] = True
    if not filled.all():
        raise ValueError(f"rows {rows.start}:{rows.stop} of axis {axis} are not all held by process "
                         f"{jax.process_index()}")
    return out


def shard_batch(tree, mesh: Mesh, axis: int = 0):
    """Split the arrays of ``tree`` over the mesh along ``axis`` (the batch); its size must divide evenly."""
    n = mesh.devices.size

    def put(x):
        if x.shape[axis] % n:
            raise InputError(f"batch axis {axis} of size {x.shape[axis]} does not split over {n} devices; "
                             f"use a batch size that is a multiple of {n}")
        spec = PartitionSpec(*([None] * axis + [DATA_AXIS]))
        return jax.device_put(x, NamedSharding(mesh, spec))

    return jax.tree.map(put, tree)


def replicate(tree, mesh: Mesh):
    """A full copy of ``tree`` (e.g. parameters) on every device of the mesh. With the devices of several processes,
    every process must pass the same values (each places its own copies)."""
    replicated = NamedSharding(mesh, PartitionSpec())
    if not _spans_processes(mesh):
        return jax.device_put(tree, replicated)

    def put(x):
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, replicated, lambda index: host[index])

    return jax.tree.map(put, tree)
