"""DPI at x4 on synthetic LR made from HR faces with the paper's (tau, s, omega) = (100, 1.4, 500), DDPM 1000 steps."""

from configs import default


def get_config():
    config = default.get_config()
    config.mode = "synthetic"
    config.scale = 4
    config.tau = 100
    config.s = 1.4
    config.omega = 500
    config.input_dir = "data/hr"
    config.output_dir = "out/x4"
    config.crt_checkpoint = "checkpoints/crt_x4"
    return config
