"""The x8 CRT of the paper's synthetic benchmark: bicubic x8 LR, 256x256 faces.

    python train.py --config configs/crt_x8.py --config.workdir=runs/crt_x8 --config.data.folder=FACES/
"""

from configs import crt_common


def get_config():
    return crt_common.crt_config(scale=8)
