"""DPI_20 at x16: the paper's 20-step DDIM (Fig. 4), with the authors' DDIM-20 settings (tau, s, omega) = (7, 1.4, 30)
in step units, i.e. (350, 1.4, 1500) in units of the timestep t (DDIM-20 steps are t = 50 i). eta = 0.

The authors' code has one DDIM-20 setting for every scale (their ddim_sample_loop hard-codes it); the paper gives no
other, so x4, x8 and x16 share it. About 50x fewer network calls than the DDPM-1000 configs (configs/x16.py).
"""

from configs import default


def get_config():
    config = default.paper_config("x16", mode="synthetic", scale=16, tau=350, s=1.4, omega=1500)
    config.respacing = "ddim20"
    config.method = "ddim"
    config.eta = 0.0
    config.output_dir = "out/x16_ddim20"
    return config
