"""DPI on real-world LR inputs (the paper's real-world setting) with the paper's (tau, s, omega) = (500, 1.0, 1000),
DDPM 1000 steps; tau and omega in units of the timestep t, so they hold under any respacing."""

from configs import default


def get_config():
    return default.paper_config("real", mode="real", scale=8, tau=500, s=1.0, omega=1000)
