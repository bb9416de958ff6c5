"""Train the condition corrector (CRT) or a small DDPM prior.

    python train.py --config configs/crt_x8.py --config.workdir=runs/crt_x8 --config.data.folder=faces/
    python train.py --config configs/ddpm_demo.py --config.workdir=runs/ddpm_demo

Rerunning the same command resumes from the latest checkpoint in the workdir. See dpi_jax/train_lib.py for what
the workdir holds; ``<workdir>/model`` is what sample.py loads.
"""

import logging

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from dpi_jax import train_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    if not config.workdir:
        raise app.UsageError("set --config.workdir=DIR (checkpoints, metrics and the exported model go there)")
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every file operation at INFO
    logging.getLogger("dpi_jax").setLevel(logging.INFO)
    train_lib.train(config, config.workdir)


if __name__ == "__main__":
    app.run(main)
