"""DPI on real-world LR inputs (the paper's real-world setting) with the paper's (tau, s, omega) = (500, 1.0, 1000), DDPM 1000 steps."""

from configs import default


def get_config():
    config = default.get_config()
    config.mode = "real"
    config.scale = 8
    config.tau = 500
    config.s = 1.0
    config.omega = 1000
    config.input_dir = "data/lr"
    config.output_dir = "out/real"
    config.crt_checkpoint = "checkpoints/crt_real"
    return config
