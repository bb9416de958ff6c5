"""Data parallelism over all devices: one ``Mesh`` axis, ``"data"``, that the batch (or the seeds) is split over.

Parameters are replicated; the sampler is an ordinary jitted function, so sharded inputs give sharded work (GSPMD)
and the same keys give the same images on 1 or N devices. For several hosts (a TPU pod slice, a multi-node GPU
cluster), call ``jax.distributed.initialize()`` first on every host: ``jax.devices()`` then lists all of them.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """A 1-D mesh over ``devices`` (all devices by default) with the axis ``"data"``."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def shard_batch(tree, mesh: Mesh, axis: int = 0):
    """Split the arrays of ``tree`` over the mesh along ``axis`` (the batch); its size must divide evenly."""
    n = mesh.devices.size

    def put(x):
        if x.shape[axis] % n:
            raise ValueError(f"batch axis {axis} of size {x.shape[axis]} does not split over {n} devices; "
                             f"use a batch size that is a multiple of {n}")
        spec = PartitionSpec(*([None] * axis + [DATA_AXIS]))
        return jax.device_put(x, NamedSharding(mesh, spec))

    return jax.tree.map(put, tree)


def replicate(tree, mesh: Mesh):
    """A full copy of ``tree`` (e.g. parameters) on every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
