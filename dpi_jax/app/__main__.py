"""A local page for DPI: tau, s and omega as sliders, seeds side by side, the tau sweep (docs/app.md).

    python -m dpi_jax.app                                          # the demo weights (configs/demo.py)
    python -m dpi_jax.app --config configs/paper.py:x8 --config.diffusion.respacing=250 --host 0.0.0.0 --port 8000

--config: a sampling config (default configs/demo.py); any field can be overridden (--config.dpi.tau=200). Its runs
(the demo's x8 and x4) give the page's scales, each with its CRT. The page binds 127.0.0.1 unless --host says
otherwise, is never shared through a public link, and limits uploads to --max_upload_mb. Needs the [app] extra
(pip install -e '.[app]').
"""

from absl import flags

from dpi_jax import cli, validation
from dpi_jax.errors import InputError

_CONFIG = cli.define_config_file("config", "configs/demo.py", "Sampling configuration file.")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to bind (127.0.0.1: this machine only).")
_PORT = flags.DEFINE_integer("port", 7860, "Port to serve the page on.")
_MAX_UPLOAD_MB = flags.DEFINE_float("max_upload_mb", 20.0, "Largest upload accepted, in MiB.")


def main():
    """Every check and the networks before anything is served (a setup error: one line, status 2), then the page."""
    from dpi_jax import sample_lib

    if not _MAX_UPLOAD_MB.value > 0:
        raise InputError(f"--max_upload_mb {_MAX_UPLOAD_MB.value}: must be > 0")
    problems = sample_lib.shadowed_overrides(_CONFIG.value, cli.command_line_overrides())  # fields the runs set
    if problems:
        raise validation.ConfigError(problems)
    from dpi_jax.app import engine, ui  # ui: Gradio, the [app] extra
    page_engine = engine.Engine(_CONFIG.value, max_upload_mb=_MAX_UPLOAD_MB.value)
    try:
        ui.launch(page_engine, _HOST.value, _PORT.value)
    finally:
        page_engine.close()


if __name__ == "__main__":
    cli.run(main)
