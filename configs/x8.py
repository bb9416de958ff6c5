"""DPI at x8 on synthetic LR made from HR faces with the paper's (tau, s, omega) = (300, 1.2, 750), DDPM 1000 steps."""

from configs import default


def get_config():
    config = default.get_config()
    config.mode = "synthetic"
    config.scale = 8
    config.tau = 300
    config.s = 1.2
    config.omega = 750
    config.input_dir = "data/hr"
    config.output_dir = "out/x8"
    config.crt_checkpoint = "checkpoints/crt_x8"
    return config
