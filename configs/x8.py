"""DPI at x8 on synthetic LR made from HR faces with the paper's (tau, s, omega) = (300, 1.2, 750), DDPM 1000 steps."""

from configs import default


def get_config():
    return default.paper_config("x8", mode="synthetic", scale=8, tau=300, s=1.2, omega=750)
