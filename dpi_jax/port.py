"""Port PyTorch guided-diffusion / DPI checkpoints (``ffhq_10m.pt``, the CRT) to dpi-jax checkpoints.

    python -m dpi_jax.port ffhq_10m.pt checkpoints/ffhq_10m --model ffhq_10m
    python -m dpi_jax.port crt.pt checkpoints/crt_x8 --model crt --scale 8
    python -m dpi_jax.port other.pt out_dir --model other_config.json --kind adm
    python -m dpi_jax.port alexnet-owt-7be5be79.pth checkpoints/metrics/lpips_alex --model lpips_alex
    python -m dpi_jax.port pt_inception-2015-12-05-6726825d.pth checkpoints/metrics/fid_inception --model fid_inception
    python -m dpi_jax.port vgg_face_weights.h5 checkpoints/metrics/vggface --model vggface

The Flax tree mirrors the state_dict: module ``a_1_b_2`` holds the PyTorch keys ``a.1.b.2.*``; ``weight`` is a
``kernel`` (convolutions OIHW -> HWIO, linear and 1-D convolutions (O, I[, 1]) -> (I, O)) or a GroupNorm ``scale``.
Every key must be used and every parameter filled, with the right shape: otherwise nothing is written and the error
lists all missing keys, unexpected keys and shape mismatches. A CRT's ``--scale`` (the SR factor it was trained for)
goes into its model.json, where sampling checks it (:func:`dpi_jax.checkpoint.stored_scale`).
"""

from __future__ import annotations

import argparse
import json
import re
import runpy
import sys
from pathlib import Path

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from dpi_jax import checkpoint
from dpi_jax.models import PRESETS, abstract_params, count_params, make_model

LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias"}
# The metric networks (dpi_jax.metrics) the command also ports: --model NAME, from the file each is published as.
METRIC_MODELS = {"lpips_alex": "alexnet-owt-7be5be79.pth", "lpips_vgg": "vgg16-397923af.pth",
                 "fid_inception": "pt_inception-2015-12-05-6726825d.pth", "vggface": "vgg_face_weights.h5"}


class PortError(ValueError):
    """A state_dict that does not fit the model; the message lists every problem."""


def load_torch_state_dict(path) -> dict:
    """A PyTorch state_dict as float32 NumPy arrays, read with ``torch.load(weights_only=True)`` (no pickled code
    runs). A ``module.`` prefix (DataParallel) and a ``{"state_dict": ...}`` / ``{"model": ...}`` wrapper are
    removed. Values that are not tensors, complex tensors (their imaginary part would be lost), and tensors holding NaN
    or Inf, are refused (PortError listing every key)."""
    try:
        import torch
    except ImportError as err:
        raise ImportError("reading a .pt file needs PyTorch (CPU is enough): pip install torch==2.13.0") from err
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for unreadable or unsafe files
        raise PortError(f"{path}: cannot read as a PyTorch state_dict ({type(err).__name__}: {err})") from err
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise PortError(f"{path}: holds a {type(state).__name__}, not a state_dict")
    state = strip_module_prefix(state)
    others = [f"{k} ({type(v).__name__})" for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise PortError(f"{path}: {len(others)} value(s) of the state_dict are not tensors: {', '.join(others)}")
    complex_ = [f"{k} ({v.dtype})" for k, v in state.items() if v.is_complex()]
    if complex_:
        raise PortError(f"{path}: {len(complex_)} tensor(s) of the state_dict are complex (a port would drop their "
                        f"imaginary part): {', '.join(complex_)}")
    arrays = {k: v.detach().float().numpy() for k, v in state.items()}
    bad = [f"{k} ({np.isnan(a).sum()} NaN, {np.isinf(a).sum()} Inf of {a.size})" for k, a in arrays.items()
           if not np.isfinite(a).all()]
    if bad:
        raise PortError(f"{path}: non-finite weights in {len(bad)} tensor(s): {', '.join(bad)}")
    return arrays


def strip_module_prefix(state_dict: dict) -> dict:
    """Remove DataParallel's ``module.`` prefix when every key has it."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def torch_key(path: tuple[str, ...]) -> str:
    """The state_dict key of a Flax parameter path: ('input_blocks_1_0', 'in_layers_2', 'kernel') ->
    'input_blocks.1.0.in_layers.2.weight'."""
    *modules, leaf = path
    return ".".join([re.sub(r"_(\d+)", r".\1", m) for m in modules] + [LEAF_NAMES[leaf]])


def to_flax(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """A PyTorch tensor in the layout of a Flax parameter of ``shape``, or None when it cannot fit."""
    value = np.asarray(value, np.float32)
    if len(shape) == 4 and value.ndim == 4:
        value = value.transpose(2, 3, 1, 0)
    elif len(shape) == 2 and value.ndim in (2, 3):
        if value.ndim == 3:  # Conv1d with kernel size 1 (attention qkv / proj_out)
            if value.shape[2] != 1:
                return None
            value = value[:, :, 0]
        value = value.T
    return value if value.shape == tuple(shape) else None


def fill_params(expected: dict, state_dict: dict, what: str, ignore=lambda key: False) -> dict:
    """Flax params (nested dict of float32 arrays) from a PyTorch state_dict through ``expected`` = {state_dict key:
    (Flax path, Flax shape)}, each value converted by :func:`to_flax`. Raises :class:`PortError` listing every missing
    key, unexpected key (other than ``ignore(key)``), shape mismatch and complex value, for the network named
    ``what``: nothing is converted half. Every port of the project (the DPI networks, the metric networks) goes through
    here."""
    params, missing, mismatched, complex_ = {}, [], [], []
    for key, (path, shape) in expected.items():
        if key not in state_dict:
            missing.append(key)
            continue
        array = np.asarray(state_dict[key])
        if np.iscomplexobj(array):
            complex_.append(f"{key} ({array.dtype})")
            continue
        value = to_flax(array, shape)
        if value is None:
            mismatched.append(f"{key}: checkpoint {tuple(np.shape(state_dict[key]))}, model expects "
                              f"{_torch_shape(shape, np.ndim(state_dict[key]))}")
            continue
        params[path] = value
    unexpected = sorted(k for k in state_dict if k not in expected and not ignore(k))
    if missing or unexpected or mismatched or complex_:
        raise misfit_error(f"the state_dict does not fit the {what} ({len(expected)} parameters expected):",
                           {"missing keys": missing, "unexpected keys": unexpected, "shape mismatches": mismatched,
                            "complex values (the weights are real)": complex_})
    return unflatten_dict(params)


def misfit_error(header: str, sections: dict) -> PortError:
    """The :class:`PortError` of weights that do not fit a network: ``header``, then each non-empty section
    ({title: items}) as "title (n):" and one indented line per item."""
    lines = [header]
    for title, items in sections.items():
        if items:
            lines.append(f"{title} ({len(items)}):")
            lines += [f"  {item}" for item in items]
    return PortError("\n".join(lines))


def convert_state_dict(state_dict: dict, model_config: dict, kind: str = "adm") -> dict:
    """The Flax params (nested dict of float32 arrays) of ``make_model(kind, model_config)`` from a PyTorch
    state_dict (tensors or arrays). Raises :class:`PortError` listing all missing keys, unexpected keys and shape
    mismatches."""
    expected = flatten_dict(abstract_params(make_model(kind, model_config)))
    return fill_params({torch_key(path): (path, spec.shape) for path, spec in expected.items()},
                       strip_module_prefix(dict(state_dict)), f"{kind} model")


def _torch_shape(flax_shape, ndim):
    if len(flax_shape) == 4:
        h, w, i, o = flax_shape
        return (o, i, h, w)
    if len(flax_shape) == 2:
        i, o = flax_shape
        return (o, i, 1) if ndim == 3 else (o, i)
    return tuple(flax_shape)


def load_params(directory):
    """The parameters of a converted (or trained) checkpoint directory."""
    return checkpoint.load_model(directory)[2]


def read_config_file(path) -> dict:
    """A model config from a .json file (a dict) or a .py file (``get_config()`` or ``CONFIG``)."""
    path = Path(path)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".py":
        namespace = runpy.run_path(str(path))
        config = namespace["get_config"]() if "get_config" in namespace else namespace.get("CONFIG")
        if config is None:
            raise ValueError(f"{path} defines neither get_config() nor CONFIG")
        return dict(config)
    raise ValueError(f"{path}: a model config must be a .json or .py file")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpi_jax.port", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="PyTorch checkpoint (.pt)")
    parser.add_argument("dst", help="output checkpoint directory")
    parser.add_argument("--model", required=True,
                        help=f"a preset ({', '.join(PRESETS)}), a metric network ({', '.join(METRIC_MODELS)}) or a "
                             ".json/.py file with a guided-diffusion config")
    parser.add_argument("--heads", help="lpips_alex/lpips_vgg: the v0.1 linear heads (.pth; default: the ones the "
                                        "lpips package ships)")
    parser.add_argument("--kind", choices=["adm", "crt"], help="network kind for a config file (default adm)")
    parser.add_argument("--scale", type=int, help="a crt: the SR factor it was trained for (e.g. 8), stored in its "
                                                  "model.json so that sampling at another scale is refused "
                                                  "(default: not stored, unknown)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    parser.add_argument("--verbose", action="store_true", help="print the traceback of an error")
    args = parser.parse_args(argv)
    from dpi_jax import validation

    return validation.run_cli(lambda: _convert(args), verbose=args.verbose)


def _port_metric_network(args) -> Path:
    """The metric networks' weight files (torchvision/lpips, pytorch-fid, DeepFace) to dpi-jax checkpoints."""
    if args.model.startswith("lpips_"):
        from dpi_jax.metrics import lpips
        net = args.model[len("lpips_"):]
        return lpips.save_lpips(args.dst, lpips.port_lpips(args.src, args.heads, net), net, overwrite=args.overwrite)
    if args.model == "fid_inception":
        from dpi_jax.metrics import inception
        return inception.port_inception(args.src, args.dst, overwrite=args.overwrite)
    from dpi_jax.metrics import identity
    return identity.save_vggface(args.dst, identity.convert_vggface_h5(args.src), overwrite=args.overwrite)


def _convert(args) -> int:
    """What main does once the arguments are parsed; errors propagate to ``validation.run_cli`` (exit status 2)."""
    if args.scale is not None and args.scale < 1:
        raise PortError(f"--scale {args.scale}: must be a positive integer")
    if args.model in METRIC_MODELS:
        if args.scale is not None:
            raise PortError(f"--scale applies to a crt, not to the metric network {args.model}")
        if Path(args.dst).exists() and not args.overwrite:
            raise FileExistsError(f"{args.dst} already exists (pass --overwrite to replace it)")
        try:
            out = _port_metric_network(args)
        except PortError as err:
            raise PortError(f"{args.src}: {err}") from err
        print(f"converted {args.model} from {args.src} to {out}")
        return 0
    if args.model in PRESETS:
        config, kind = PRESETS[args.model]
        kind = args.kind or kind
    else:
        try:
            config, kind = read_config_file(args.model), args.kind or "adm"
        except (ValueError, OSError, KeyError) as err:
            raise PortError(f"--model {args.model}: {err}") from err
    if args.scale is not None and kind != "crt":
        raise PortError(f"--scale applies to a crt, not to {checkpoint.KIND_NAMES.get(kind, kind)} model")
    if Path(args.dst).exists() and not args.overwrite:
        raise FileExistsError(f"{args.dst} already exists (pass --overwrite to replace it)")
    state_dict = load_torch_state_dict(args.src)  # its errors name the file
    try:
        params = convert_state_dict(state_dict, config, kind)
    except PortError as err:
        raise PortError(f"{args.src}: {err}") from err
    extra = {} if args.scale is None else {"scale": args.scale}
    out = checkpoint.save_model(args.dst, params, config, kind=kind, overwrite=args.overwrite, extra=extra)
    print(f"converted {count_params(params):,} parameters of a {kind} model from {args.src} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
