"""A small DDPM prior on your own faces (a folder, or --config.data.source=tfds ...), at 64x64 by default: the demo
prior's architecture with twice the channels. Sample with it through a sampling config's
--config.prior_checkpoint=<workdir>/model --config.dpi.var_type=fixed_small.

    python train.py --config configs/ddpm_small.py --config.workdir=runs/ddpm_small --config.data.folder=FACES/
"""

import ml_collections

from configs import ddpm_demo


def get_config():
    config = ddpm_demo.get_config()
    config.model.config = ml_collections.ConfigDict(dict(ddpm_demo.DEMO_PRIOR, num_channels=32))
    config.data.source = "folder"
    config.data.folder = "data/train_hr"
    config.batch_size = 64
    config.num_steps = 200_000
    config.optim.learning_rate = 2e-4
    config.ema_decay = 0.9999
    config.eval_every = 5000
    config.checkpoint_every = 5000
    return config
