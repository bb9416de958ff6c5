"""The x4 CRT of the paper's synthetic benchmark: bicubic x4 LR, 256x256 faces.

    python train.py --config configs/crt_x4.py --config.workdir=runs/crt_x4 --config.data.folder=FACES/
"""

from configs import crt_common


def get_config():
    return crt_common.crt_config(scale=4)
