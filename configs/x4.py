"""DPI at x4 on synthetic LR made from HR faces with the paper's (tau, s, omega) = (100, 1.4, 500), DDPM 1000 steps."""

from configs import default


def get_config():
    return default.paper_config("x4", mode="synthetic", scale=4, tau=100, s=1.4, omega=500)
