"""Settings shared by every DPI sampling config; the other files override what differs (configs/paper.py holds
the paper's settings as variants of one file).

Paths are relative to the working directory. tau and omega are in the paper's units, the original timestep t
(Eq. 9): stage I while t > tau, w = t / omega in stage II. The paper's values therefore apply unchanged under any
respacing (``diffusion.respacing="250"``, ``"ddim20"``, ...); see ``docs/algorithm.md``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Inputs: "synthetic" = HR faces from which the LR input is made by bicubic downsampling by `scale`;
    # "real" = LR faces used as they are.
    config.mode = "synthetic"
    # A folder of images, or "synthfaces:heldout" / "synthfaces:train": the procedural faces of dpi_jax.demo.synthfaces
    # (synthetic mode only), named <split>_<seed>.
    config.input_dir = "data/hr"
    config.num_images = 0  # only the first N inputs (sorted file names / N synthfaces seeds); 0: all (16 synthfaces)
    config.output_dir = "out/dpi"
    config.overwrite = False  # existing outputs are kept unless True
    # Models: directories written by `python -m dpi_jax.port` (or by train.py for a CRT). An empty crt_checkpoint
    # samples without the corrector.
    config.prior_checkpoint = "checkpoints/ffhq_10m"
    config.crt_checkpoint = "checkpoints/crt_x8"
    config.dtype = "float32"  # compute dtype of the networks: "float32" or "bfloat16"
    # Task.
    config.scale = 8
    # DPI (Algorithm 1): the arguments of dpi_jax.sampler.Settings, sampler.Settings(**config.dpi). tau and omega in
    # units of the original timestep t: tau in [0, num_timesteps), omega > 0, s > 0. refine and weight are Table 4's
    # switches (static): stage II's refinement (the CRT corrects the mixed sample) and the weight w = t / omega of
    # Eq. 9 (False: w = 1). No CRT is crt_checkpoint = '', no stage II tau = 0.
    config.dpi = ml_collections.ConfigDict(dict(
        tau=300.0, s=1.2, omega=750.0, k=2, refine=True, weight=True,
        method="ddpm", eta=0.0,  # method "ddim": eta is DDIM's stochasticity
        var_type="learned_range", clip_denoised=True))  # the prior's variances and x0 clipping
    # Diffusion: the arguments of dpi_jax.diffusion.make_schedule, diffusion.make_schedule(**config.diffusion).
    config.diffusion = ml_collections.ConfigDict(dict(
        num_timesteps=1000, beta_schedule="linear",
        respacing=""))  # "" (all steps), "250", "ddim20", ...
    # Execution.
    config.batch_size = 4
    config.seed = 0
    config.num_seeds = 1  # samples per input; > 1 also writes a diversity (per-pixel std) map
    config.seed_chunk = 0  # seeds vmapped at once (0: all); lower it to bound memory
    config.grid_rows = 16  # at most this many inputs in grid.png
    config.progress = True  # bars over the batches and the sampler's steps (one log line per batch without a terminal)
    config.max_image_pixels = 50_000_000  # larger input images are skipped by name (PIL's decompression-bomb guard)
    # Several runs of the same inputs, name -> the fields it changes (e.g. the demo's x8 and x4): each writes to
    # output_dir/<name>/ with its own grid, and output_dir/grid.png stacks their rows. Empty: this config's one run.
    config.runs = ml_collections.ConfigDict()
    return config

