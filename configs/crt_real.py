"""The real-world CRT: LR from Eq. 19 with CodeFormer's ranges (x8 nominal; the drawn scale varies per image).
For the paper's severe setting add --config.degradation=severe.

    python train.py --config configs/crt_real.py --config.workdir=runs/crt_real --config.data.folder=FACES/
"""

from configs import crt_common


def get_config():
    return crt_common.crt_config(scale=8, degradation="codeformer")
