"""Super-resolve a folder of faces with DPI.

    python sample.py --config configs/x8.py --config.input_dir=faces/ --config.output_dir=out/x8

Any config field can be overridden on the command line (``--config.tau=200``). See dpi_jax/sample_lib.py.
"""

import sys

from absl import app
from ml_collections import config_flags

from dpi_jax import sample_lib

_CONFIG = config_flags.DEFINE_config_file("config", "configs/demo.py", "Sampling configuration file.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    sys.exit(sample_lib.main(_CONFIG.value))


if __name__ == "__main__":
    app.run(main)
