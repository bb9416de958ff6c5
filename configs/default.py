"""Settings shared by every DPI sampling config; the other files override what differs.

Paths are relative to the working directory. tau and omega are in the paper's units, the original timestep t
(Eq. 9): stage I while t > tau, w = t / omega in stage II. The paper's values therefore apply unchanged under any
respacing (``respacing="250"``, ``"ddim20"``, ...); see ``docs/algorithm.md``.
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
    config.k = 2
    # DPI (Algorithm 1), in units of the original timestep t: tau in [0, num_timesteps), omega > 0, s > 0.
    config.tau = 300.0
    config.s = 1.2
    config.omega = 750.0
    # Table 4's switches (static; see dpi_jax.sampler.Settings): stage II's refinement (the CRT corrects the mixed
    # sample) and the weight w = t / omega of Eq. 9 (False: w = 1). No CRT is crt_checkpoint = '', no stage II tau = 0.
    config.refine = True
    config.weight = True
    # Diffusion.
    config.num_timesteps = 1000
    config.beta_schedule = "linear"
    config.respacing = ""  # "" (all steps), "250", "ddim20", ...
    config.method = "ddpm"  # or "ddim"
    config.eta = 0.0
    config.var_type = "learned_range"
    config.clip_denoised = True
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


def paper_config(name: str, *, mode: str, scale: int, tau: float, s: float, omega: float) -> ml_collections.ConfigDict:
    """The defaults with one of the paper's settings (DDPM, 1000 steps), writing to out/<name> and reading the CRT
    from checkpoints/crt_<name>."""
    config = get_config()
    config.mode = mode
    config.scale = scale
    config.tau, config.s, config.omega = float(tau), float(s), float(omega)
    config.input_dir = "data/lr" if mode == "real" else "data/hr"
    config.output_dir = f"out/{name}"
    config.crt_checkpoint = f"checkpoints/crt_{name}"
    return config


def ddim20_config(scale: int) -> ml_collections.ConfigDict:
    """DPI_20 at x``scale``: the paper's 20-step DDIM (Fig. 4, eta = 0) with the authors' DDIM-20 setting
    (tau, s, omega) = (7, 1.4, 30) in their step units, i.e. (350, 1.4, 1500) in units of the timestep t (DDIM-20 steps
    are t = 50 i). The authors' code has this one DDIM-20 setting for every scale (their ddim_sample_loop hard-codes
    it; the paper gives no other). About 50x fewer network calls than the DDPM-1000 configs."""
    config = paper_config(f"x{scale}", mode="synthetic", scale=scale, tau=350, s=1.4, omega=1500)
    config.respacing, config.method, config.eta = "ddim20", "ddim", 0.0
    config.output_dir = f"out/x{scale}_ddim20"
    return config
