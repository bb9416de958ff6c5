"""DPI with the FFHQ prior alone (``ffhq_10m``, no CRT): the first run of anyone who has only the authors' published
prior. The condition stays the LR input's own pixels at every step (the paper's Table 4 "w/o CRT" column, where
CelebA1000 x8 gives SSIM 0.6933 / LPIPS 0.2242 / FID 73.01 against full DPI's 0.6881 / 0.1401 / 22.86): as consistent
with the LR input as full DPI, grainier in detail.

    python sample.py --config configs/prior_only.py --config.input_dir=faces/            # x8 (the default)
    python sample.py --config configs/prior_only.py:x4 --config.input_dir=faces/         # any of configs/paper.py's

configs/paper.py's setting without its CRT, outputs in ``out/prior_only_<setting>``
(``--config.diffusion.respacing=250`` for 4x fewer calls).
"""

from configs import paper

VARIANTS = paper.VARIANTS


def get_config(setting: str = "x8"):
    if setting not in VARIANTS:
        raise ValueError(f"configs/prior_only.py:{setting}: choose one of {', '.join(VARIANTS)}")
    config = paper.get_config(setting)
    config.crt_checkpoint = ""
    config.output_dir = f"out/prior_only_{setting}"
    return config
