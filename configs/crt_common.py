"""The paper's CRTs (CRT_256, the authors' 256x256 corrector) trained on a folder of HR faces, e.g. FFHQ or
CelebA-HQ prepared by the user (or a tensorflow-datasets name: --config.data.source=tfds
--config.data.tfds_name=celeb_a_hq/256 --config.data.manual_dir=...). One file per setting imports this."""

import ml_collections

from configs import train_default
from dpi_jax.models import CRT_256


def crt_config(scale: int, degradation: str = "bicubic") -> ml_collections.ConfigDict:
    config = train_default.get_config()
    config.model.kind = "crt"
    config.model.config = ml_collections.ConfigDict(CRT_256)
    config.data.source = "folder"
    config.data.folder = "data/train_hr"  # override: --config.data.folder=...
    config.scale = scale
    config.degradation = degradation
    config.batch_size = 16
    config.num_steps = 100_000
    config.optim.learning_rate = 1e-4
    config.optim.warmup_steps = 1000
    config.ema_decay = 0.9999
    config.log_every = 100
    config.eval_every = 2000
    config.checkpoint_every = 2000
    return config
