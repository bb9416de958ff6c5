"""Model configs in guided-diffusion's names: the presets of the paper's models, and reading configs from files."""

from __future__ import annotations

import dataclasses

from dpi_jax.errors import InputError
from dpi_jax.models.unet import UNet

# The pretrained FFHQ 256x256 DDPM used by DPS and DPI (`ffhq_10m.pt`): 93,563,910 parameters.
FFHQ_10M = dict(image_size=256, num_channels=128, num_res_blocks=1, channel_mult=(1, 1, 2, 2, 4, 4),
                learn_sigma=True, attention_resolutions="16", num_heads=4, num_head_channels=64,
                num_heads_upsample=-1, use_scale_shift_norm=True, resblock_updown=True, dropout=0.0)
# The authors' CRT at 256x256: 5,867,427 parameters.
CRT_256 = dict(image_size=256, num_channels=32, num_res_blocks=1, channel_mult=(1, 1, 2, 2, 4, 4),
               learn_sigma=False, attention_resolutions="8", num_heads=2, num_head_channels=16,
               num_heads_upsample=1, use_scale_shift_norm=True, resblock_updown=True, dropout=0.0)
PRESETS = {"ffhq_10m": (FFHQ_10M, "adm"), "crt": (CRT_256, "crt"), "crt_256": (CRT_256, "crt")}

# guided-diffusion options that do not change the network's function here.
IGNORED_KEYS = {"use_checkpoint", "use_fp16", "class_cond", "diffusion_steps", "noise_schedule", "timestep_respacing",
                "use_kl", "predict_xstart", "rescale_timesteps", "rescale_learned_sigmas", "num_classes",
                "out_channels", "model_channels"}
MODEL_FIELDS = {f.name for f in dataclasses.fields(UNet)} - {"parent", "name", "dtype"}


def model_kwargs(config: dict) -> dict:
    """The UNet fields of a guided-diffusion config dict: lists become tuples (modules must be hashable), known
    training-only keys are dropped, and an unknown key is an error that names it."""
    unknown = sorted(set(config) - MODEL_FIELDS - IGNORED_KEYS)
    if unknown:
        raise InputError(f"unknown model config keys {unknown}; known: {sorted(MODEL_FIELDS)}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in MODEL_FIELDS}
