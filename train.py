"""Train the condition corrector (CRT) or a small DDPM prior.

    python train.py --config configs/crt_x8.py --config.workdir=runs/crt_x8 --config.data.folder=faces/
    python train.py --config configs/ddpm_demo.py --config.workdir=runs/ddpm_demo

Rerunning the same command resumes from the latest checkpoint in the workdir (and repairs a ``model/`` export that a
crash left unfinished). See dpi_jax/train_lib.py for what the workdir holds; ``<workdir>/model`` is what sample.py
loads. The config is checked first (dpi_jax/validation.py); a setup error exits with status 2 and one line
``error: ...`` on stderr (``--verbose`` adds the traceback).
"""

import logging
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from dpi_jax import train_lib, validation

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
_VERBOSE = flags.DEFINE_bool("verbose", False, "Print the traceback of an error, not only its one-line message.")
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments: {argv[1:]}", file=sys.stderr)
        sys.exit(2)
    config = _CONFIG.value
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every file operation at INFO
    logging.getLogger("dpi_jax").setLevel(logging.INFO)

    def validated_train():
        validation.check_training(config)
        train_lib.train(config, config.workdir)

    sys.exit(validation.run_cli(validated_train, verbose=_VERBOSE.value))


if __name__ == "__main__":
    app.run(main, flags_parser=validation.parse_flags)
