"""The paper's CRTs (CRT_256, the authors' 256x256 corrector), one variant per setting:
``--config configs/crt.py:<setting>``, trained on a folder of HR faces, e.g. FFHQ or CelebA-HQ prepared by the user
(or a tensorflow-datasets name: --config.data.source=tfds --config.data.tfds_name=celeb_a_hq/256
--config.data.manual_dir=...).

    python train.py --config configs/crt.py:x8 --config.workdir=runs/crt_x8 --config.data.folder=FACES/

``x4``, ``x8``, ``x16``: bicubic LR at that scale, the paper's synthetic benchmark. ``real``: LR from Eq. 19 with
CodeFormer's ranges (x8 nominal; the drawn scale varies per image); for the paper's severe setting add
``--config.degradation=severe``. Sampling reads the result from ``checkpoints/crt_<setting>`` (configs/paper.py).
"""

import ml_collections

from configs import train_default
from dpi_jax.models import CRT_256

# setting -> (scale, degradation)
SETTINGS = {"x4": (4, "bicubic"), "x8": (8, "bicubic"), "x16": (16, "bicubic"), "real": (8, "codeformer")}
VARIANTS = tuple(SETTINGS)


def get_config(setting: str = "x8") -> ml_collections.ConfigDict:
    if setting not in SETTINGS:
        raise ValueError(f"configs/crt.py:{setting}: choose one of {', '.join(VARIANTS)}")
    config = train_default.get_config()
    config.model.kind = "crt"
    config.model.config = ml_collections.ConfigDict(CRT_256)
    config.data.source = "folder"
    config.data.folder = "data/train_hr"  # override: --config.data.folder=...
    config.scale, config.degradation = SETTINGS[setting]
    config.batch_size = 16
    config.num_steps = 100_000
    config.optim.learning_rate = 1e-4
    config.optim.warmup_steps = 1000
    config.ema_decay = 0.9999
    config.log_every = 100
    config.eval_every = 2000
    config.checkpoint_every = 2000
    return config
