"""DPI with the FFHQ prior alone (``ffhq_10m``, no CRT): the first run of anyone who has only the authors' published
prior. The condition stays the LR input's own pixels at every step (the paper's Table 4 "w/o CRT" column, where
CelebA1000 x8 gives SSIM 0.6933 / LPIPS 0.2242 / FID 73.01 against full DPI's 0.6881 / 0.1401 / 22.86): as consistent
with the LR input as full DPI, grainier in detail.

    python sample.py --config configs/prior_only.py --config.input_dir=faces/            # x8 (the default)
    python sample.py --config configs/prior_only.py:x4 --config.input_dir=faces/         # x4, x8, x16 or real

The paper's (tau, s, omega) for the chosen setting, DDPM 1000 steps (``--config.respacing=250`` for 4x fewer calls).
"""

from configs import default

PAPER = {"x4": ("synthetic", 4, 100, 1.4, 500), "x8": ("synthetic", 8, 300, 1.2, 750),
         "x16": ("synthetic", 16, 500, 1.0, 1000), "real": ("real", 8, 500, 1.0, 1000)}


def get_config(setting: str = "x8"):
    if setting not in PAPER:
        raise ValueError(f"configs/prior_only.py:{setting}: choose one of {', '.join(PAPER)}")
    mode, scale, tau, s, omega = PAPER[setting]
    config = default.paper_config(setting, mode=mode, scale=scale, tau=tau, s=s, omega=omega)
    config.crt_checkpoint = ""
    config.output_dir = f"out/prior_only_{setting}"
    return config
