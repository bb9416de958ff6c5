"""DPI_20 at x8: the paper's 20-step DDIM with the authors' DDIM-20 setting, (350, 1.4, 1500) in timestep units
(see configs/default.py's ddim20_config); the DDPM-1000 setting is configs/x8.py."""

from configs import default


def get_config():
    return default.ddim20_config(8)
