"""A local page for DPI: tau, s and omega as sliders, seeds side by side, the tau sweep (docs/app.md).

    python -m dpi_jax.app                                          # the demo weights (configs/demo.py)
    python -m dpi_jax.app --config configs/x8.py --config.respacing=250 --host 0.0.0.0 --port 8000

--config: a sampling config (default configs/demo.py); any field can be overridden (--config.tau=200). Its runs
(the demo's x8 and x4) give the page's scales, each with its CRT. The page binds 127.0.0.1 unless --host says
otherwise, is never shared through a public link, and limits uploads to --max_upload_mb. Needs the [app] extra
(pip install -e '.[app]').
"""

import sys

from absl import app, flags

from dpi_jax import validation
from dpi_jax.errors import InputError

_CONFIG = validation.define_config_file("config", "configs/demo.py", "Sampling configuration file.")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to bind (127.0.0.1: this machine only).")
_PORT = flags.DEFINE_integer("port", 7860, "Port to serve the page on.")
_MAX_UPLOAD_MB = flags.DEFINE_float("max_upload_mb", 20.0, "Largest upload accepted, in MiB.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Print the traceback of a setup error, not only its one line.")


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments: {argv[1:]}", file=sys.stderr)
        sys.exit(2)
    from dpi_jax import compile_cache, sample_lib

    overrides = validation.command_line_overrides()

    loaded = {}

    def load():  # every check and the networks, before anything is served
        if not _MAX_UPLOAD_MB.value > 0:
            raise InputError(f"--max_upload_mb {_MAX_UPLOAD_MB.value}: must be > 0")
        problems = sample_lib.shadowed_overrides(_CONFIG.value, overrides)  # a field the demo's runs set themselves
        if problems:
            raise validation.ConfigError(problems)
        compile_cache.enable()
        from dpi_jax.app import engine, ui  # ui: Gradio, the [app] extra
        loaded["engine"], loaded["ui"] = engine.Engine(_CONFIG.value, max_upload_mb=_MAX_UPLOAD_MB.value), ui

    status = validation.run_cli(load, verbose=_VERBOSE.value)
    if status:
        sys.exit(status)
    try:
        loaded["ui"].launch(loaded["engine"], _HOST.value, _PORT.value)
    finally:
        loaded["engine"].close()


def parse_flags(argv):
    """:func:`dpi_jax.validation.parse_flags`, but ``--help`` exits with status 0 (absl's exits with 1)."""
    try:
        return validation.parse_flags(argv)
    except SystemExit as exit:
        if exit.code == 1 and {"-?", "-h", "--help", "--helpshort", "--helpfull"} & set(argv[1:]):
            sys.exit(0)
        raise


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
