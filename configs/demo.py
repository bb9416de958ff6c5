"""The bundled demo (sample.py's default): x8 DPI on held-out synthetic faces with the shipped 64x64 prior and CRT.

    python sample.py            # = python sample.py --config configs/demo.py

Writes out/demo/: heldout_<seed>_s{0,1,2}.png (three seeds per face, vmapped), heldout_<seed>_std.png and grid.png
(LR | bicubic | DPI x 3 seeds | std | ground truth). tau and omega count the original timestep t (of 1000), as
everywhere: omega = 750 is the paper's; tau = 100, not the paper's x8 value 300, because with this small, briefly
trained prior a longer stage II costs fidelity below bicubic's (measured in the README, "The demo, measured").
Weights: weights/demo/ (see weights/demo/MODEL_CARD.md).
"""

from configs import default


def get_config():
    config = default.get_config()
    config.mode = "synthetic"
    config.input_dir = "synthfaces:heldout"  # generated on the fly: dpi_jax.demo.synthfaces, held-out seeds
    config.num_images = 6
    config.output_dir = "out/demo"
    config.prior_checkpoint = "weights/demo/prior"
    config.crt_checkpoint = "weights/demo/crt_x8"
    config.scale = 8
    config.respacing = "50"
    config.tau, config.s, config.omega = 100.0, 1.2, 750.0  # timestep units; tau: see the docstring
    config.var_type = "fixed_small"  # the demo prior predicts eps only (learn_sigma=False)
    config.num_seeds = 3
    config.batch_size = 6
    return config
