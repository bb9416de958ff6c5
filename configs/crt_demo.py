"""The bundled demo's CRTs: a small 64x64 condition corrector on bicubic LR of the synthetic faces, one variant per
scale: ``x8`` (8x8 -> 64x64, 700 steps) and ``x4`` (16x16 -> 64x64, the same architecture and recipe, 1000 steps).

    python train.py --config configs/crt_demo.py:x8 --config.workdir=runs/crt_demo_x8
    python train.py --config configs/crt_demo.py:x4 --config.workdir=runs/crt_demo_x4
"""

import ml_collections

from configs import ddpm_demo, train_default

DEMO_CRT = dict(image_size=64, num_channels=16, num_res_blocks=1, channel_mult=(1, 2, 2), learn_sigma=False,
                attention_resolutions="16", num_heads=2, num_head_channels=16, use_scale_shift_norm=True,
                resblock_updown=False, dropout=0.0)
# setting -> (scale, num_steps)
SETTINGS = {"x8": (8, 700), "x4": (4, 1000)}
VARIANTS = tuple(SETTINGS)


def get_config(setting: str = "x8") -> ml_collections.ConfigDict:
    if setting not in SETTINGS:
        raise ValueError(f"configs/crt_demo.py:{setting}: choose one of {', '.join(VARIANTS)}")
    scale, num_steps = SETTINGS[setting]
    config = train_default.get_config()
    config.model.kind = "crt"
    config.model.config = ml_collections.ConfigDict(DEMO_CRT)
    config.scale = scale
    return ddpm_demo.short_cpu_run(config, num_steps=num_steps, eval_every=300)
