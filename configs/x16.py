"""DPI at x16 on synthetic LR made from HR faces with the paper's (tau, s, omega) = (500, 1.0, 1000), DDPM 1000 steps."""

from configs import default


def get_config():
    config = default.get_config()
    config.mode = "synthetic"
    config.scale = 16
    config.tau = 500
    config.s = 1.0
    config.omega = 1000
    config.input_dir = "data/hr"
    config.output_dir = "out/x16"
    config.crt_checkpoint = "checkpoints/crt_x16"
    return config
