"""The bundled demo's x4 CRT: the x8 one's architecture and recipe (configs/crt_demo_x8.py) on bicubic x4 LR of the
synthetic faces (16x16 -> 64x64).

    python train.py --config configs/crt_demo_x4.py --config.workdir=runs/crt_demo_x4
"""

from configs import crt_demo_x8


def get_config():
    config = crt_demo_x8.get_config()
    config.scale = 4
    config.num_steps = 1000
    return config
