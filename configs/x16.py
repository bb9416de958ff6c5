"""DPI at x16 on synthetic LR made from HR faces with the paper's (tau, s, omega) = (500, 1.0, 1000), DDPM 1000
steps; tau and omega in units of the timestep t, so they hold under any respacing."""

from configs import default


def get_config():
    return default.paper_config("x16", mode="synthetic", scale=16, tau=500, s=1.0, omega=1000)
