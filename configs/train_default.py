"""Settings shared by every training config (train.py); the crt_* and ddpm_* files override what differs.

Steps, batch sizes and learning rates are per run (not per device): the batch is split over all devices.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.workdir = ""  # where checkpoints, metrics.csv, samples/ and model/ go (required; --config.workdir=...)
    config.seed = 0
    # A model directory (dpi_jax.checkpoint format, e.g. another run's <workdir>/model) whose parameters start this
    # run (params and EMA) instead of a random initialisation: fine-tuning. Used only when the run starts, not on
    # resumption; its kind and model config must equal this config's.
    config.init_from = ""
    # Model: kind "crt" (the condition corrector) or "adm" (a DDPM prior), and its guided-diffusion config.
    config.model = ml_collections.ConfigDict(dict(kind="crt", config=ml_collections.ConfigDict()))
    # Data: source "synthetic" (dpi_jax.demo.synthfaces), "folder" (recursive png/jpg/webp) or "tfds" (by name).
    config.data = ml_collections.ConfigDict(dict(
        source="synthetic", num_images=0,  # synthetic: how many train seeds (0: all 1,000,000)
        folder="", heldout_folder="",  # folder: train images, and held-out ones (default: the train folder)
        tfds_name="", tfds_split="train", tfds_heldout_split="validation", data_dir="", manual_dir="",
        image_key="image",
        workers=2))  # host threads making batches
    # Task: the LR the CRT learns to correct ("bicubic" x scale, or Eq. 19 with "codeformer"/"severe" ranges).
    config.scale = 8
    config.k = 2
    config.degradation = "bicubic"
    # Diffusion of training (the CRT and the prior see the original timesteps 0..T-1).
    config.diffusion = ml_collections.ConfigDict(dict(num_timesteps=1000, beta_schedule="linear"))
    # Loss: the CRT's L_prior posterior from the ground truth ("gt", the paper) or from y_T ("condition", the
    # authors' code).
    config.loss = ml_collections.ConfigDict(dict(posterior_from="gt"))
    # Optimisation.
    config.batch_size = 16
    config.num_steps = 10_000
    config.optim = ml_collections.ConfigDict(dict(
        learning_rate=2e-4, schedule="cosine", warmup_steps=200, final_lr_fraction=0.05,
        b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip=1.0))
    config.ema_decay = 0.999
    # Bookkeeping.
    config.log_every = 50
    config.eval_every = 500  # held-out metrics and a PNG
    config.eval_images = 8
    config.sample_images = 16  # prior only: unconditional samples in the PNG
    config.sample_respacing = "100"
    config.var_type = "fixed_small"  # prior only: the variance its samples use (learn_sigma=False priors)
    config.checkpoint_every = 1000
    config.keep_checkpoints = 3
    return config
