"""Train the condition corrector (CRT) or a small DDPM prior.

    python train.py --config configs/crt.py:x8 --config.workdir=runs/crt_x8 --config.data.folder=faces/
    python train.py --config configs/ddpm_demo.py --config.workdir=runs/ddpm_demo

Rerunning the same command resumes from the latest checkpoint in the workdir (and repairs a ``model/`` export that a
crash left unfinished). A rerun whose config differs from the workdir's config.json in what is trained (the model,
data, task, diffusion, loss, seed, optimiser...) is refused, listing the fields, unless ``--allow_config_change``; a
second training in a workdir that one is running in is refused. See dpi_jax/train_lib.py for what the workdir holds;
``<workdir>/model`` is what sample.py loads. The config is checked first (dpi_jax/validation.py); a setup error exits
with status 2 and one line ``error: ...`` on stderr (``--verbose`` adds the traceback; dpi_jax/cli.py). SIGINT
(Ctrl-C) or SIGTERM during the steps checkpoints, then exits with status 130 or 143 (128 + the signal's number).
"""

import logging

from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

from dpi_jax import cli, launch, validation

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Resume a workdir even when the config differs from its config.json in fields that "
    "change what is trained (config.json then holds the new config).")
launch.define_flags()
flags.mark_flags_as_required(["config"])


def main() -> int:
    from dpi_jax import distributed, train_lib  # after the flags: a flag error or --help need not wait for JAX

    config = _CONFIG.value
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every file operation at INFO
    logging.getLogger("dpi_jax").setLevel(logging.INFO)
    distributed.initialize(**launch.launch_from_flags())
    validation.check_training(config)
    stop = train_lib.StopRequest()
    train_lib.train(config, config.workdir, stop=stop, allow_config_change=_ALLOW_CONFIG_CHANGE.value)
    return stop.exit_status  # 0, or 128 + the number of the signal that stopped the run


if __name__ == "__main__":
    cli.run(main)
