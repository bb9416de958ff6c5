"""Reading PyTorch weights into Flax parameter trees: the helpers that the port command (:mod:`dpi_jax.port`) and the
ported metric networks (:mod:`dpi_jax.metrics`) share. This module imports no other module of dpi_jax, so that both
can build on it.

The Flax tree mirrors the state_dict: module ``a_1_b_2`` holds the PyTorch keys ``a.1.b.2.*``; ``weight`` is a
``kernel`` (convolutions OIHW -> HWIO, linear and 1-D convolutions (O, I[, 1]) -> (I, O)) or a GroupNorm ``scale``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from flax.traverse_util import unflatten_dict

from dpi_jax.errors import PortError

LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias"}


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
    return finite_arrays(state, path)


def finite_arrays(state: dict, path) -> dict:
    """The tensors of ``state`` as float32 NumPy arrays; a NaN or Inf anywhere is a PortError naming each tensor."""
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


def _torch_shape(flax_shape, ndim):
    if len(flax_shape) == 4:
        h, w, i, o = flax_shape
        return (o, i, h, w)
    if len(flax_shape) == 2:
        i, o = flax_shape
        return (o, i, 1) if ndim == 3 else (o, i)
    return tuple(flax_shape)
