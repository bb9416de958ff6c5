"""The networks ported from published PyTorch (or Keras) files, in one table: DPI's prior and CRT and the metric
networks. ``python -m dpi_jax.port SRC DST --model NAME`` and the evaluation read :data:`NETWORKS`; a new portable
network is one module with the verbs below and one entry here.

Every entry has the same interface (:class:`PortableNetwork`): the shapes of its parameters, ``convert`` (the
published file -> the params, or a :class:`~dpi_jax.torch_port.PortError` naming what does not fit), ``save`` and
``load`` of a dpi-jax checkpoint, the folder the tools read it from by default, and the help a missing folder gets
(which file to download, the port command).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Any, Callable

from flax.traverse_util import flatten_dict

from dpi_jax import checkpoint
from dpi_jax.metrics import clipiqa, identity, inception, lpips, musiq
from dpi_jax.models import PRESETS, abstract_params, make_model
from dpi_jax.torch_port import fill_params, load_torch_state_dict, strip_module_prefix, torch_key


@dataclasses.dataclass(frozen=True)
class PortableNetwork:
    """One network that ``python -m dpi_jax.port`` converts.

    ``convert(src, **options)`` reads the published file and returns the params (``options``: the port flags named
    in ``options`` that are given, e.g. LPIPS's ``heads``); ``save(directory, params, overwrite=False, **options)``
    writes a checkpoint and returns its path; ``load(directory)`` returns the params (a missing folder:
    FileNotFoundError with ``missing_message(directory)``, which names the file and the exact port command)."""

    name: str  # the --model name
    kind: str  # the kind its checkpoints' model.json records
    weights_file: str  # the published file it is ported from
    default_dir: str  # where the tools read it from unless told otherwise
    description: str  # what it is, for messages: "the metric network musiq", "an adm (prior) model"
    abstract_params: Callable[[], Any]
    convert: Callable[..., Any]
    save: Callable[..., Path]
    load: Callable[[Any], Any]
    missing_message: Callable[[Any], str]
    convert_options: tuple[str, ...] = ()  # the port flags convert takes
    save_options: tuple[str, ...] = ()  # the port flags save takes


def convert_state_dict(state_dict: dict, model_config: dict, kind: str = "adm") -> dict:
    """The Flax params (nested dict of float32 arrays) of ``make_model(kind, model_config)`` from a PyTorch
    state_dict (tensors or arrays). Raises :class:`~dpi_jax.torch_port.PortError` listing all missing keys,
    unexpected keys and shape mismatches."""
    expected = flatten_dict(abstract_params(make_model(kind, model_config)))
    return fill_params({torch_key(path): (path, spec.shape) for path, spec in expected.items()},
                       strip_module_prefix(dict(state_dict)), f"{kind} model")


def model_network(name: str, config: dict, kind: str, weights_file: str = "", default_dir: str = "") -> PortableNetwork:
    """A DPI network (kind "adm": the prior, "crt": the corrector) of a guided-diffusion ``config`` as a table entry;
    a CRT's ``save`` takes ``scale``, the SR factor it was trained for, stored in its model.json."""
    what = f"{checkpoint.KIND_NAMES.get(kind, f'a {kind}')} model"

    def save(directory, params, *, overwrite: bool = False, scale: int | None = None) -> Path:
        extra = {} if scale is None else {"scale": scale}
        return checkpoint.save_model(directory, params, config, kind=kind, overwrite=overwrite, extra=extra)

    def missing_message(directory) -> str:
        return (f"no checkpoint of {what} at {directory}. Port {weights_file or 'its PyTorch checkpoint'} once "
                f"with\n  python -m dpi_jax.port {weights_file or 'SRC.pt'} {directory} --model {name}")

    def load(directory):
        if not (Path(directory) / checkpoint.MODEL_FILE).is_file():
            raise FileNotFoundError(missing_message(directory))
        return checkpoint.load_model(directory, kind)[2]

    return PortableNetwork(
        name, kind, weights_file, default_dir, what, lambda: abstract_params(make_model(kind, config)),
        lambda src: convert_state_dict(load_torch_state_dict(src), config, kind), save,
        load, missing_message,
        save_options=("scale",) if kind == "crt" else ())


def _metric_network(module, name: str, weights_file: str, default_dir: str, **fields) -> PortableNetwork:
    """A metric network whose module has the verbs ``abstract_params``, ``convert``, ``save``, ``load`` and
    ``missing_message``."""
    fields = {"abstract_params": module.abstract_params, "convert": module.convert, "save": module.save,
              "load": module.load, "missing_message": module.missing_message, **fields}
    return PortableNetwork(name, module.KIND, weights_file, default_dir, f"the metric network {name}", **fields)


def _lpips_network(net: str) -> PortableNetwork:
    return _metric_network(lpips, f"lpips_{net}", lpips.WEIGHTS_FILES[net], lpips.DEFAULT_DIRS[net],
                           abstract_params=partial(lpips.abstract_params, net), convert=partial(lpips.convert, net=net),
                           save=partial(lpips.save, net=net), load=partial(lpips.load, net=net),
                           missing_message=partial(lpips.missing_message, net=net), convert_options=("heads",))


# The presets' published files and default folders (crt_256 is the CRT's config under its size).
_MODEL_FILES = {"ffhq_10m": ("ffhq_10m.pt", "checkpoints/ffhq_10m"), "crt": ("crt.pt", "checkpoints/crt_x8"),
                "crt_256": ("crt.pt", "checkpoints/crt_x8")}

# Every portable network by its --model name.
NETWORKS: dict[str, PortableNetwork] = {
    **{name: model_network(name, config, kind, *_MODEL_FILES[name]) for name, (config, kind) in PRESETS.items()},
    "lpips_alex": _lpips_network("alex"),
    "lpips_vgg": _lpips_network("vgg"),
    "fid_inception": _metric_network(inception, "fid_inception", inception.WEIGHTS_FILE, inception.DEFAULT_DIR),
    "vggface": _metric_network(identity, "vggface", identity.WEIGHTS_FILE, identity.DEFAULT_DIR),
    "musiq": _metric_network(musiq, "musiq", musiq.WEIGHTS_FILE, musiq.DEFAULT_DIR),
    "clipiqa": _metric_network(clipiqa, "clipiqa", clipiqa.WEIGHTS_FILE, clipiqa.DEFAULT_DIR),
}
