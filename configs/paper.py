"""The paper's settings, one variant each: ``--config configs/paper.py:<setting>``.

    python sample.py --config configs/paper.py:x8 --config.input_dir=faces/     # x4, x8, x16, real
    python sample.py --config configs/paper.py:x8_ddim20 --config.input_dir=faces/

``x4``, ``x8``, ``x16``: synthetic LR made from HR faces (bicubic x scale, ``data/hr``); ``real``: real-world LR
faces used as they are (``data/lr``, nominal x8). Each with the paper's (tau, s, omega), DDPM 1000 steps, the CRT
``checkpoints/crt_<setting>`` and outputs in ``out/<setting>``. tau and omega count the original timestep t, so they
hold under any ``--config.diffusion.respacing``.

``<x4|x8|x16>_ddim20``: DPI_20, the paper's 20-step DDIM (Fig. 4, eta = 0) with the authors' DDIM-20 setting
(tau, s, omega) = (7, 1.4, 30) in their step units, i.e. (350, 1.4, 1500) in units of t (DDIM-20 steps are
t = 50 i). The authors' code has this one DDIM-20 setting for every scale (their ddim_sample_loop hard-codes it; the
paper gives no other). About 50x fewer network calls; outputs in ``out/<setting>``.
"""

import ml_collections

from configs import default

# setting -> (mode, scale, tau, s, omega): the paper's Sec. 5.1 values, tau and omega in units of t.
PAPER = {"x4": ("synthetic", 4, 100.0, 1.4, 500.0), "x8": ("synthetic", 8, 300.0, 1.2, 750.0),
         "x16": ("synthetic", 16, 500.0, 1.0, 1000.0), "real": ("real", 8, 500.0, 1.0, 1000.0)}
DDIM20 = dict(tau=350.0, s=1.4, omega=1500.0, method="ddim", eta=0.0)
VARIANTS = (*PAPER, *(f"{name}_ddim20" for name in PAPER if name != "real"))


def get_config(setting: str = "x8") -> ml_collections.ConfigDict:
    if setting not in VARIANTS:
        raise ValueError(f"configs/paper.py:{setting}: choose one of {', '.join(VARIANTS)}")
    name, _, ddim20 = setting.partition("_")
    mode, scale, tau, s, omega = PAPER[name]
    config = default.get_config()
    config.mode, config.scale = mode, scale
    config.dpi.update(dict(tau=tau, s=s, omega=omega))
    config.input_dir = "data/lr" if mode == "real" else "data/hr"
    config.output_dir = f"out/{setting}"
    config.crt_checkpoint = f"checkpoints/crt_{name}"
    if ddim20:
        config.dpi.update(DDIM20)
        config.diffusion.respacing = "ddim20"
    return config
