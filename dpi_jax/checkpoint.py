"""The model checkpoint format of dpi-jax, shared by the weight port and training.

A checkpoint is a directory holding ``model.json`` (``{"kind": "adm" | "crt", "config": {guided-diffusion names}}``,
plus optional fields: the training ``step``, and a CRT's SR ``scale``, see :func:`stored_scale`)
and ``params/``, an orbax checkpoint of the float32 parameter pytree. ``load_model`` restores it against the tree
that the config's module defines, so a checkpoint whose parameters do not fit its config is refused.

Robustness:

- writing is atomic: everything goes to a hidden sibling ``.<name>.tmp-*`` first, which then takes the place of
  ``<name>`` by one rename (by an atomic exchange with the old directory when replacing one, on Linux), so a crash
  leaves either the previous complete checkpoint or the new one; :func:`repair` removes what a crash left beside it
  and puts a previous export back where a crash fell between two renames (only where the exchange is unavailable).
- reading names what is wrong: a directory that is not a checkpoint, a checkpoint of another kind than the one
  asked for (:func:`load_model`'s ``expected_kind``), parameters that do not fit ``model.json``'s config (listed), and
  a damaged ``params/`` (:class:`CheckpointError` "checkpoint <dir> is damaged (...)"), including files that still
  read but hold NaN or Inf (bit rot), named with their parameters.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from dpi_jax.errors import CheckpointError
from dpi_jax.models import abstract_params, make_model, model_kwargs

MODEL_FILE = "model.json"
PARAMS_DIR = "params"
KIND_NAMES = {"adm": "an adm (prior)", "crt": "a crt (corrector)"}
_TMP, _OLD = ".tmp-", ".old-"


def json_config(config: dict) -> dict:
    """A model config as its checkpoint's model.json stores it (all fields, lists for tuples)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in model_kwargs(dict(config)).items()}


def save_model(directory, params, model_config: dict, *, kind: str, overwrite: bool = False,
               extra: dict | None = None) -> Path:
    """Write ``params`` and their model config to ``directory`` (atomically); an existing directory is replaced only
    when ``overwrite``. ``extra`` adds fields to ``model.json`` (e.g. the training step). Returns the absolute path."""
    make_model(kind, model_config)  # validates kind and config before anything is written
    meta = dict(extra or {}, kind=kind, config=json_config(model_config))
    return write_checkpoint(directory, params, meta, overwrite=overwrite)


def write_checkpoint(directory, params, meta: dict, *, overwrite: bool = False) -> Path:
    """Write any parameter pytree (as float32) with its description ``meta`` (``{"kind": ..., "config": {...}}``,
    JSON) to ``directory``: the format of every network dpi-jax stores, the DPI models and the metric networks alike.
    An existing directory is replaced only when ``overwrite``. Atomic: the files are written to a hidden sibling
    first, which then replaces ``directory`` (see the module docstring). Returns the absolute path."""
    directory = Path(directory).resolve()
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} already exists; pass overwrite=True (--overwrite) to replace it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(directory, _TMP)
    try:
        tmp.mkdir()
        params = jax.tree.map(lambda p: np.asarray(p, np.float32), params)
        # This process writes alone (host arrays; in a multi-process run, the one process that exports).
        alone = ocp.options.MultiprocessingOptions(primary_host=jax.process_index(),
                                                   active_processes={jax.process_index()})
        with ocp.StandardCheckpointer(multiprocessing_options=alone) as checkpointer:
            checkpointer.save(tmp / PARAMS_DIR, params)
            checkpointer.wait_until_finished()
        _write_synced(tmp / MODEL_FILE, json.dumps(meta, indent=1))
        _install(tmp, directory, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_network(directory, kind: str, label: str, abstract: Callable[[dict], Any], missing_message: str):
    """The parameters of a ported network checkpoint of ``kind`` (e.g. a metric network): a directory without
    model.json raises FileNotFoundError with ``missing_message`` (which file to get, where, the port command); a
    checkpoint of another kind is refused naming ``label``. ``abstract(config)`` gives the parameters' shapes from the
    checkpoint's stored config (it may refuse a config it cannot load)."""
    directory = Path(directory)
    if not (directory / MODEL_FILE).is_file():
        raise FileNotFoundError(missing_message)

    def target(meta):
        if meta["kind"] != kind:
            raise CheckpointError(f"{directory} holds a {meta['kind']!r} checkpoint, not {label} ({kind!r})")
        return abstract(meta["config"])

    return read_checkpoint(directory, target)[1]


def _sibling(directory: Path, tag: str) -> Path:
    return directory.with_name(f".{directory.name}{tag}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _write_synced(path: Path, text: str):
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _install(new: Path, directory: Path, overwrite: bool):
    """Put the complete directory ``new`` at ``directory``; the old one (if any) ends up at ``new``."""
    if not directory.exists():
        os.rename(new, directory)
        return
    if not overwrite:
        raise FileExistsError(f"{directory} already exists; pass overwrite=True (--overwrite) to replace it")
    if _exchange(new, directory):
        return
    old = _sibling(directory, _OLD)  # no atomic exchange here: two renames, which repair() can complete
    os.rename(directory, old)
    os.rename(new, directory)
    os.rename(old, new)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def is_complete(directory) -> bool:
    """Whether ``directory`` holds a finished checkpoint (a readable model.json and a committed params/)."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / MODEL_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "kind" in meta and (directory / PARAMS_DIR / "_CHECKPOINT_METADATA").is_file()


def repair(directory) -> list[str]:
    """Clean up after a crash while ``directory`` was being written: a missing or unfinished ``directory`` gets the
    previous complete one back when a crash left it beside (``.<name>.old-*``), and the unfinished siblings are
    removed. Returns what was done, one line per action (empty when nothing was needed)."""
    directory = Path(directory).resolve()
    if not directory.parent.is_dir():
        return []
    actions = []
    siblings = sorted(p for p in directory.parent.glob(f".{directory.name}.*-*") if p.is_dir())
    if not is_complete(directory):
        for old in (p for p in siblings if p.name.startswith(f".{directory.name}{_OLD}") and is_complete(p)):
            if directory.exists():
                shutil.rmtree(directory)
                actions.append(f"removed the unfinished {directory}")
            os.rename(old, directory)
            actions.append(f"restored the previous complete {directory} from {old.name}")
            break
    for sibling in siblings:
        if sibling.exists():
            shutil.rmtree(sibling, ignore_errors=True)
            actions.append(f"removed the leftover {sibling}")
    return actions


def read_checkpoint(directory, target_fn) -> tuple[dict, dict]:
    """(meta, params) of a directory written by :func:`write_checkpoint`; ``target_fn(meta)`` gives the expected
    parameter tree (ShapeDtypeStructs), so parameters that do not fit the description are refused
    (:class:`CheckpointError` listing them), and damaged files give "checkpoint <dir> is damaged (...)", as do
    parameters holding NaN or Inf (:func:`check_finite`)."""
    kind, config = read_model_config(directory)
    meta = {"kind": kind, "config": config}
    path = Path(directory).resolve() / PARAMS_DIR
    try:
        target = target_fn(meta)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{Path(directory) / MODEL_FILE}: its config does not describe a {kind} model "
                              f"({err})") from err
    _check_fits(directory, _stored_shapes(directory, path), target)
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            params = checkpointer.restore(path, target)
    except Exception as err:  # orbax/tensorstore raise ValueError, RuntimeError, ... for damaged files
        _quiet_closed_event_loop()
        raise CheckpointError(f"checkpoint {directory} is damaged ({_short(err)})") from err
    check_finite(directory, params)
    return meta, params


def check_finite(directory, params) -> None:
    """Refuse restored ``params`` holding NaN or Inf (bytes flipped in files that still read): a
    :class:`CheckpointError` "checkpoint <dir> is damaged (...)" naming every such parameter with its counts. One
    reduction per parameter, on the host; the counts only for the bad ones."""
    bad = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        value = np.asarray(leaf)
        if not np.isfinite(value).all():
            bad.append(f"{_name(path)} ({np.isnan(value).sum()} NaN, {np.isinf(value).sum()} Inf of {value.size})")
    if bad:
        raise CheckpointError(f"checkpoint {directory} is damaged (non-finite values in {len(bad)} parameter(s): "
                              f"{_listed(bad)})")


def _short(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def _stored_shapes(directory, path: Path) -> dict[str, tuple]:
    """{parameter path: shape} of a params/ directory, from orbax's metadata (no array is read)."""
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            metadata = checkpointer.metadata(path)
        tree = getattr(metadata, "item_metadata", metadata)
        shapes = {_name(p): tuple(leaf.shape) for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}
    except Exception as err:  # unreadable or truncated metadata files
        _quiet_closed_event_loop()
        raise CheckpointError(f"checkpoint {directory} is damaged ({_short(err)})") from err
    if not shapes:
        raise CheckpointError(f"checkpoint {directory} is damaged ({PARAMS_DIR}/ lists no parameters: its metadata "
                              f"files are missing or unreadable)")
    return shapes


def _name(path) -> str:
    """'input_blocks_0_0.kernel' for a key path."""
    return ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _listed(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return f"{shown}, ... ({len(items)} in all)" if len(items) > limit else shown


def _check_fits(directory, stored: dict[str, tuple], target) -> None:
    """Refuse parameters whose names or shapes differ from the config's module, listing every difference."""
    wanted = {_name(p): tuple(leaf.shape) for p, leaf in jax.tree_util.tree_leaves_with_path(target)}
    missing = sorted(set(wanted) - set(stored))
    unexpected = sorted(set(stored) - set(wanted))
    shapes = [f"{k} stored {stored[k]}, config {wanted[k]}" for k in sorted(set(wanted) & set(stored))
              if stored[k] != wanted[k]]
    if not (missing or unexpected or shapes):
        return
    parts = [f"{len(items)} {title}: {_listed(items)}" for title, items in
             (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)) if items]
    raise CheckpointError(f"the parameters in {Path(directory) / PARAMS_DIR} do not fit the config in "
                          f"{Path(directory) / MODEL_FILE}: " + "; ".join(parts))


def _quiet_closed_event_loop():
    """After a failed orbax read, tensorstore's pending callbacks hit orbax's closed event loop and each prints a
    "RuntimeError: Event loop is closed" traceback through ``sys.unraisablehook``; drop those (only those)."""
    previous = sys.unraisablehook
    if getattr(previous, "_dpi_jax_filter", False):
        return

    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        previous(unraisable)

    hook._dpi_jax_filter = True
    sys.unraisablehook = hook


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
        kind, config = meta["kind"], meta["config"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{meta_path}: not a valid model description ({type(err).__name__}: {err})") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{meta_path}: 'config' must be a JSON object, not {type(config).__name__}")
    return kind, config


def stored_scale(directory) -> int | None:
    """The SR scale a CRT checkpoint was made for: ``scale`` in its model.json, written by training
    (``train_lib.export_model``) and by ``python -m dpi_jax.port --model crt --scale N``. None when it is not stored
    (an adm checkpoint, or a CRT exported or ported before the field existed): the scale is then unknown. A stored
    value that is not a positive integer is a :class:`CheckpointError` naming the file."""
    read_model_config(directory)  # a clear error when ``directory`` is not a checkpoint
    meta_path = Path(directory) / MODEL_FILE
    scale = json.loads(meta_path.read_text()).get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or scale < 1):
        raise CheckpointError(f"{meta_path}: 'scale' must be a positive integer, not {scale!r}")
    return scale


def check_kind(directory, expected_kind: str, role: str = "the checkpoint") -> tuple[str, dict]:
    """(kind, config) of ``directory``, refused with "<dir> is a crt checkpoint, but <role> needs an adm (prior)
    checkpoint" when its kind is not ``expected_kind``."""
    kind, config = read_model_config(directory)
    if kind != expected_kind:
        found = f"{_article(kind)} {kind}" if kind in KIND_NAMES else f"a checkpoint of unknown kind {kind!r}, not a"
        needed = KIND_NAMES.get(expected_kind, expected_kind)
        raise CheckpointError(f"{directory} is {found} checkpoint, but {role} needs {needed} checkpoint")
    return kind, config


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def load_model(directory, expected_kind: str | None = None, role: str = "the checkpoint"):
    """(kind, config, params) from a DPI model checkpoint directory; params are float32 arrays. With
    ``expected_kind`` ("adm" or "crt"), a checkpoint of the other kind is refused by name (see :func:`check_kind`)."""
    if expected_kind is not None:
        check_kind(directory, expected_kind, role)
    meta, params = read_checkpoint(directory, lambda m: abstract_params(make_model(m["kind"], m["config"])))
    return meta["kind"], meta["config"], params


def load_module(directory, dtype=jnp.float32, expected_kind: str | None = None, role: str = "the checkpoint"):
    """(module, params) of a checkpoint directory: the Flax ADM or CRT it describes, computing in ``dtype``, and its
    parameters. The config stays readable as the module's fields (e.g. ``module.image_size``). ``expected_kind`` and
    ``role`` as in :func:`load_model`."""
    kind, config, params = load_model(directory, expected_kind, role)
    return make_model(kind, config, dtype=dtype), params
