"""How a multi-process run is launched: the flags and environment variables that name it, read without JAX (the
tools define these flags before anything heavy is imported). :func:`dpi_jax.distributed.initialize` joins the run."""

from __future__ import annotations

import os

from absl import flags

from dpi_jax.errors import SetupError

ENV_ADDRESS, ENV_COUNT, ENV_ID = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"


def define_flags() -> None:
    """The launch flags of a multi-process run, for absl tools (sample.py)."""
    flags.DEFINE_string("coordinator_address", None, f"host:port of process 0's coordinator (or ${ENV_ADDRESS}).")
    flags.DEFINE_integer("num_processes", None, f"The number of processes of the run (or ${ENV_COUNT}).")
    flags.DEFINE_integer("process_id", None, f"This process's id, 0 ... num_processes - 1 (or ${ENV_ID}).")
    flags.DEFINE_bool("distributed", False, "Initialize jax.distributed with what JAX detects (TPU pod slices, "
                      "SLURM), without the three flags above.")


def launch_settings(coordinator_address=None, num_processes=None, process_id=None) -> dict | None:
    """The arguments of ``jax.distributed.initialize`` from the flags, else the environment; None when neither
    names a coordinator (a single-process run). Missing or bad values raise ValueError naming them."""
    address = coordinator_address or os.environ.get(ENV_ADDRESS)
    count = num_processes if num_processes is not None else os.environ.get(ENV_COUNT)
    pid = process_id if process_id is not None else os.environ.get(ENV_ID)
    if not address:
        if count is not None or pid is not None:
            raise SetupError(f"--num_processes/--process_id need --coordinator_address (or ${ENV_ADDRESS})")
        return None
    try:
        count, pid = int(count), int(pid)
    except (TypeError, ValueError):
        raise SetupError(f"a multi-process run needs --num_processes and --process_id (or ${ENV_COUNT} and "
                         f"${ENV_ID}) as integers; got {count!r} and {pid!r}") from None
    if count < 1 or not 0 <= pid < count:
        raise SetupError(f"process_id {pid} must be in 0 ... num_processes - 1 = {count - 1}")
    return dict(coordinator_address=address, num_processes=count, process_id=pid)


def launch_from_flags() -> dict:
    """The arguments of :func:`dpi_jax.distributed.initialize` given by :func:`define_flags`'s flags."""
    f = flags.FLAGS
    return dict(coordinator_address=f.coordinator_address, num_processes=f.num_processes, process_id=f.process_id,
                auto=f.distributed)
