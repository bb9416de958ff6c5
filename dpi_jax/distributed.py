"""One run over several processes: JAX's multi-controller runtime (``jax.distributed``), one process per host.

Every process runs the same command. Given a coordinator (``--coordinator_address`` or ``$JAX_COORDINATOR_ADDRESS``),
the number of processes (``--num_processes`` or ``$JAX_NUM_PROCESSES``) and this process's id (``--process_id`` or
``$JAX_PROCESS_ID``), :func:`initialize` calls ``jax.distributed.initialize``; ``--distributed`` alone lets JAX
detect them (TPU pod slices, SLURM). ``jax.devices()`` then lists the devices of all processes, and
:func:`dpi_jax.sharding.data_mesh` spans them. On CPU the processes talk through gloo.

What each process does in ``sample.py`` (docs/many_hosts.md): all list the input files (the same sorted list;
checked with :func:`assert_same`); each decodes only its :func:`share` of them, supplies those inputs as its rows of
the batches and writes their outputs, so every file is read and written exactly once; grids are gathered
(:func:`gather_rows`) and written by process 0. A process that dies makes the others fail at their next collective
step; a rerun skips the outputs that exist.
"""

from __future__ import annotations

import hashlib
import logging
import pickle

import jax
import numpy as np

from dpi_jax.errors import SetupError
from dpi_jax.launch import launch_settings

log = logging.getLogger(__name__)

def initialize(coordinator_address=None, num_processes=None, process_id=None, auto: bool = False) -> bool:
    """Join a multi-process run when one is configured (:func:`dpi_jax.launch.launch_settings`) or ``auto``; returns
    whether it did. Must come before anything touches a JAX device."""
    settings = launch_settings(coordinator_address, num_processes, process_id)
    if settings is None and not auto:
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes; no effect on GPU/TPU
    jax.distributed.initialize(**(settings or {}))
    if jax.default_backend() == "cpu" and jax.local_device_count() > 1:
        raise SetupError(
            f"a multi-process CPU run needs one CPU device per process, not {jax.local_device_count()} "
            "(XLA_FLAGS=--xla_force_host_platform_device_count): with two per process, jax 0.10.2 gave wrong "
            "pixels, differing from run to run, for the 64x64 demo models (docs/many_hosts.md)")
    log.info("process %d of %d: %d of the run's %d devices", jax.process_index(), jax.process_count(),
             jax.local_device_count(), jax.device_count())
    return True


def is_main() -> bool:
    """Whether this is process 0, the one that writes what concerns the whole run (grids, tables, metrics)."""
    return jax.process_index() == 0


def assert_same(values, what: str) -> None:
    """Check that every process has the same ``values`` (e.g. the input names), naming ``what`` if not."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    digest = np.frombuffer(hashlib.sha256(repr(values).encode()).digest(), np.uint8)
    try:
        multihost_utils.assert_equal(digest, what)
    except AssertionError:
        raise SetupError(f"the processes disagree on {what}; every process must see the same inputs") from None


def share(count: int) -> slice:
    """This process's part of a list of ``count`` items that every process lists alike: process p of P takes the
    contiguous block ``[p * count // P, (p + 1) * count // P)`` (everything in a single-process run)."""
    p, n = jax.process_index(), jax.process_count()
    return slice(p * count // n, (p + 1) * count // n)


def counts(count: int) -> list[int]:
    """Every process's ``count``, in process order, on every process (every process must call it)."""
    if jax.process_count() == 1:
        return [int(count)]
    from jax.experimental import multihost_utils

    return [int(c) for c in np.asarray(multihost_utils.process_allgather(np.int64(count))).reshape(-1)]


def place(count: int) -> tuple[int, int]:
    """``(first, total)``: where this process's ``count`` items start among every process's items, in process order,
    and how many there are in all (every process must call it)."""
    every = counts(count)
    return sum(every[:jax.process_index()]), sum(every)


def gather_objects(value) -> list:
    """Every process's ``value`` (any picklable object), in process order, on every process; every process must
    call it. ``[value]`` in a single-process run. The bytes travel between the run's own processes only."""
    if jax.process_count() == 1:
        return [value]
    from jax.experimental import multihost_utils

    data = np.frombuffer(pickle.dumps(value), np.uint8)
    sizes = counts(data.size)
    padded = np.zeros(max(sizes), np.uint8)
    padded[:data.size] = data
    every = np.asarray(multihost_utils.process_allgather(padded))  # (processes, longest)
    return [pickle.loads(every[q, :size].tobytes()) for q, size in enumerate(sizes)]


def gather_rows(rows: dict[int, np.ndarray], count: int, shape: tuple, dtype=np.uint8) -> list[np.ndarray]:
    """The rows 0 ... count-1 of a table that the processes fill in parts: ``rows`` maps a position to this
    process's row (an array of ``shape``); returns the rows that any process holds, in order, on every process
    (every process must call it)."""
    rows = {p: row for p, row in rows.items() if p < count}
    if jax.process_count() == 1:
        return [rows[p] for p in sorted(rows)]
    from jax.experimental import multihost_utils

    table, held = np.zeros((count, *shape), dtype), np.zeros(count, bool)
    for p, row in rows.items():
        table[p], held[p] = row, True
    tables, helds = multihost_utils.process_allgather((table, held))  # (processes, count, ...), (processes, count)
    return [tables[np.argmax(helds[:, p]), p] for p in range(count) if helds[:, p].any()]
