"""Super-resolve a folder of faces with DPI.

    python sample.py --config configs/x8.py --config.input_dir=faces/ --config.output_dir=out/x8

Any config field can be overridden on the command line (``--config.tau=200``). See dpi_jax/sample_lib.py. The config
is checked before any model is loaded (dpi_jax/validation.py); a setup error exits with status 2 and one line
``error: ...`` on stderr (``--verbose`` adds the traceback).
"""

import sys

from absl import app, flags

from dpi_jax import distributed, sample_lib, validation

_CONFIG = validation.define_config_file("config", "configs/demo.py", "Sampling configuration file.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Print the traceback of an error, not only its one-line message.")
distributed.define_flags()


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments: {argv[1:]}", file=sys.stderr)
        sys.exit(2)
    overrides = validation.command_line_overrides()
    sys.exit(sample_lib.main(_CONFIG.value, verbose=_VERBOSE.value, overrides=overrides,
                             launch=distributed.launch_from_flags()))


if __name__ == "__main__":
    app.run(main, flags_parser=validation.parse_flags)
