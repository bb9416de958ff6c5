"""The model checkpoint format of dpi-jax, shared by the weight port and training.

A checkpoint is a directory holding ``model.json`` (``{"kind": "adm" | "crt", "config": {guided-diffusion names}}``)
and ``params/``, an orbax checkpoint of the float32 parameter pytree. ``load_model`` restores it against the tree
that the config's module defines, so a checkpoint whose parameters do not fit its config is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from dpi_jax.models import abstract_params, make_model, model_kwargs

MODEL_FILE = "model.json"
PARAMS_DIR = "params"


def _json_config(config: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in model_kwargs(dict(config)).items()}


def save_model(directory, params, model_config: dict, *, kind: str, overwrite: bool = False) -> Path:
    """Write ``params`` and their model config to ``directory``; an existing directory is replaced only when
    ``overwrite``. Returns the absolute path."""
    make_model(kind, model_config)  # validates kind and config before anything is written
    return write_checkpoint(directory, params, {"kind": kind, "config": _json_config(model_config)},
                            overwrite=overwrite)


def write_checkpoint(directory, params, meta: dict, *, overwrite: bool = False) -> Path:
    """Write any parameter pytree (as float32) with its description ``meta`` (``{"kind": ..., "config": {...}}``,
    JSON) to ``directory``: the format of every network dpi-jax stores, the DPI models and the metric networks alike.
    An existing directory is replaced only when ``overwrite``. Returns the absolute path."""
    directory = Path(directory).resolve()
    if directory.exists():
        if not overwrite:
            raise FileExistsError(f"{directory} already exists; pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    params = jax.tree.map(lambda p: np.asarray(p, np.float32), params)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory / PARAMS_DIR, params)
        checkpointer.wait_until_finished()
    (directory / MODEL_FILE).write_text(json.dumps(meta, indent=1))
    return directory


def read_checkpoint(directory, target_fn) -> tuple[dict, dict]:
    """(meta, params) of a directory written by :func:`write_checkpoint`; ``target_fn(meta)`` gives the expected
    parameter tree (ShapeDtypeStructs), so parameters that do not fit the description are refused."""
    kind, config = read_model_config(directory)
    meta = {"kind": kind, "config": config}
    with ocp.StandardCheckpointer() as checkpointer:
        params = checkpointer.restore(Path(directory).resolve() / PARAMS_DIR, target_fn(meta))
    return meta, params


def read_model_config(directory) -> tuple[str, dict]:
    """(kind, config) of a checkpoint directory; a clear error when it is not one."""
    directory = Path(directory)
    meta_path = directory / MODEL_FILE
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist")
    if not meta_path.is_file() or not (directory / PARAMS_DIR).is_dir():
        raise FileNotFoundError(f"{directory} is not a dpi-jax model checkpoint (it needs {MODEL_FILE} and "
                                f"{PARAMS_DIR}/, as written by `python -m dpi_jax.port` or train.py)")
    try:
        meta = json.loads(meta_path.read_text())
        return meta["kind"], meta["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{meta_path}: not a valid model description ({err})") from err


def load_model(directory):
    """(kind, config, params) from a DPI model checkpoint directory; params are float32 arrays."""
    meta, params = read_checkpoint(directory, lambda m: abstract_params(make_model(m["kind"], m["config"])))
    return meta["kind"], meta["config"], params


def load_module(directory, dtype=jnp.float32):
    """(module, params) of a checkpoint directory: the Flax ADM or CRT it describes, computing in ``dtype``, and its
    parameters. The config stays readable as the module's fields (e.g. ``module.image_size``)."""
    kind, config, params = load_model(directory)
    return make_model(kind, config, dtype=dtype), params
