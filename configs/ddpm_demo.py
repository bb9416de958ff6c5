"""The bundled demo's prior: a small 64x64 DDPM (epsilon prediction, L_simple, fixed variances) on the synthetic
faces of dpi_jax.demo.synthfaces. Trained on this project's 2-core CPU; see weights/demo/MODEL_CARD.md.

    python train.py --config configs/ddpm_demo.py --config.workdir=runs/ddpm_demo
"""

import ml_collections

from configs import train_default

DEMO_PRIOR = dict(image_size=64, num_channels=16, num_res_blocks=1, channel_mult=(1, 2, 4, 4), learn_sigma=False,
                  attention_resolutions="8", num_heads=4, num_head_channels=16, use_scale_shift_norm=True,
                  resblock_updown=False, dropout=0.0)


def short_cpu_run(config, *, num_steps: int, eval_every: int):
    """The optimisation and bookkeeping of the demo's short CPU runs (the prior and the CRT share them)."""
    config.data.source = "synthetic"
    config.batch_size = 16
    config.num_steps = num_steps
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 100
    config.ema_decay = 0.995
    config.log_every = 20
    config.eval_every = eval_every
    config.checkpoint_every = 200
    return config


def get_config():
    config = train_default.get_config()
    config.model.kind = "adm"
    config.model.config = ml_collections.ConfigDict(DEMO_PRIOR)
    return short_cpu_run(config, num_steps=2500, eval_every=400)
