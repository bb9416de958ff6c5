"""The networks of DPI: the guided-diffusion ADM UNet (the prior) and the condition corrector (CRT)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dpi_jax.errors import InputError
from dpi_jax.models.configs import CRT_256, FFHQ_10M, PRESETS, model_kwargs
from dpi_jax.models.unet import ADM, CRT, UNet, timestep_embedding

KINDS = {cls.kind: cls for cls in (ADM, CRT)}


def make_model(kind: str, config: dict, dtype=jnp.float32) -> UNet:
    """``ADM`` (kind "adm") or ``CRT`` (kind "crt") from a guided-diffusion config dict."""
    if kind not in KINDS:
        raise InputError(f"unknown model kind {kind!r}: expected one of {sorted(KINDS)}")
    return KINDS[kind](**model_kwargs(config), dtype=dtype)


def abstract_params(model: UNet, batch: int = 1):
    """The parameter tree of ``model`` as ShapeDtypeStructs, without computing anything. Tracing a UNet's ``init``
    takes most of a second, so the tree is worked out once per model config (modules with equal fields are equal);
    each call returns its own copy of the dicts."""
    return jax.tree.map(lambda spec: spec, _abstract_params(model, batch))


@functools.lru_cache(maxsize=16)
def _abstract_params(model: UNet, batch: int):
    return jax.eval_shape(model.init, jax.random.key(0), *model.example_inputs(batch))["params"]


def count_params(params) -> int:
    return int(sum(np.prod(np.shape(p)) for p in jax.tree.leaves(params)))


__all__ = ["ADM", "CRT", "UNet", "FFHQ_10M", "CRT_256", "PRESETS", "make_model", "model_kwargs", "abstract_params",
           "count_params", "timestep_embedding"]
