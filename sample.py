"""Super-resolve a folder of faces with DPI.

    python sample.py --config configs/paper.py:x8 --config.input_dir=faces/ --config.output_dir=out/x8

Any config field can be overridden on the command line (``--config.dpi.tau=200``). See dpi_jax/sample_lib.py. The config
is checked before any model is loaded (dpi_jax/validation.py); a setup error exits with status 2 and one line
``error: ...`` on stderr (``--verbose`` adds the traceback; dpi_jax/cli.py).
"""

from dpi_jax import cli, launch

_CONFIG = cli.define_config_file("config", "configs/demo.py", "Sampling configuration file.")
launch.define_flags()


def main():
    from dpi_jax import sample_lib  # after the flags: a flag error or --help need not wait for JAX

    sample_lib.run_from_config(_CONFIG.value, overrides=cli.command_line_overrides(),
                               launch=launch.launch_from_flags())


if __name__ == "__main__":
    cli.run(main)
