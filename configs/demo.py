"""The bundled demo (sample.py's default): DPI at x8 (8x8 -> 64x64) and x4 (16x16 -> 64x64) on held-out synthetic
faces with the shipped 64x64 prior and CRTs, at the paper's (tau, s, omega) for each scale.

    python sample.py            # = python sample.py --config configs/demo.py

Writes out/demo/x4/ and out/demo/x8/: heldout_<seed>_s{0,1,2}.png (three seeds per face, vmapped),
heldout_<seed>_std.png and grid.png (LR | bicubic | DPI x 3 seeds | std | ground truth), and out/demo/grid.png
with the x4 rows above the x8 rows (runs go in name order). tau and omega count the original timestep t (of 1000),
as everywhere: x8 (300, 1.2, 750) and x4 (100, 1.4, 500) are the paper's. The fields outside ``runs`` are the x8 run's,
so tools that take one setting (``python -m dpi_jax.evaluate --config configs/demo.py``) evaluate x8;
``--config.scale=4 --config.dpi.tau=100 --config.dpi.s=1.4 --config.dpi.omega=500
--config.crt_checkpoint=weights/demo/crt_x4`` is x4. Change one run's field with ``--config.runs.x4.dpi.tau=200``.
Weights: weights/demo/ (MODEL_CARD.md there).
"""

import ml_collections

from configs import default

X8 = dict(scale=8, crt_checkpoint="weights/demo/crt_x8", dpi=dict(tau=300.0, s=1.2, omega=750.0))
X4 = dict(scale=4, crt_checkpoint="weights/demo/crt_x4", dpi=dict(tau=100.0, s=1.4, omega=500.0))


def get_config():
    config = default.get_config()
    config.mode = "synthetic"
    config.input_dir = "synthfaces:heldout"  # generated on the fly: dpi_jax.demo.synthfaces, held-out seeds
    config.num_images = 4
    config.output_dir = "out/demo"
    config.prior_checkpoint = "weights/demo/prior"
    config.update(X8)
    config.diffusion.respacing = "50"
    config.dpi.var_type = "fixed_small"  # the demo prior predicts eps only (learn_sigma=False)
    config.num_seeds = 3
    config.batch_size = 4
    config.runs = ml_collections.ConfigDict(dict(x8=X8, x4=X4))
    return config
