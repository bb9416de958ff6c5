"""The bundled demo's x8 CRT: a small 64x64 condition corrector on bicubic x8 LR of the synthetic faces.

    python train.py --config configs/crt_demo_x8.py --config.workdir=runs/crt_demo_x8
"""

import ml_collections

from configs import ddpm_demo, train_default

DEMO_CRT = dict(image_size=64, num_channels=16, num_res_blocks=1, channel_mult=(1, 2, 2), learn_sigma=False,
                attention_resolutions="16", num_heads=2, num_head_channels=16, use_scale_shift_norm=True,
                resblock_updown=False, dropout=0.0)


def get_config():
    config = train_default.get_config()
    config.model.kind = "crt"
    config.model.config = ml_collections.ConfigDict(DEMO_CRT)
    config.scale = 8
    return ddpm_demo.short_cpu_run(config, num_steps=700, eval_every=300)
