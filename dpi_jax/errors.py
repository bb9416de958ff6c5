"""One error model for every tool of dpi-jax.

A :class:`DPIError` is a problem of what the user gave: a config field, a file, a folder, a checkpoint, a
state_dict, an upload. Every command-line tool (:func:`dpi_jax.cli.run_cli`) prints such an error as one line
``error: <message>`` and exits with status 2; so it does for an ``OSError`` (a missing file, no permission, a full
disk: the machine, not the program). Anything else is a bug of the program: its traceback is printed and the tool
exits with status 1.

Each error also derives from the built-in exception it refines (``ValueError``, ``OSError``), so that code which
catches those keeps working. This module imports nothing of dpi_jax: every module may raise these.
"""

from __future__ import annotations

from typing import Iterable


class DPIError(Exception):
    """A problem of the user's setup, named in one line: exit status 2, no traceback."""


class ConfigError(DPIError, ValueError):
    """One or more invalid config fields; ``problems`` holds one message per field."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class SetupError(DPIError, RuntimeError):
    """A missing checkpoint, folder or input, or inputs that do not fit the models; the message says what to do."""


class InputError(DPIError, ValueError):
    """A value the user gave that cannot be used: a flag, a folder of images, a metric or a sweep, a data source."""


class CheckpointError(DPIError, ValueError):
    """A checkpoint that exists but cannot be used: another kind, parameters that do not fit, or damaged files."""


class PortError(DPIError, ValueError):
    """A state_dict (or other weights file) that does not fit the network; the message lists every problem."""


class ImageReadError(DPIError, ValueError):
    """An input image that cannot be used; the message names the file and the problem."""


class FolderError(DPIError, OSError):
    """A folder that cannot be used as asked (another run holds it, names collide, inputs would be replaced)."""


class ConfigChangedError(DPIError, ValueError):
    """A rerun in a workdir whose config.json differs from the config in fields that change what is trained."""


class UploadError(DPIError, ValueError):
    """An upload to the page that cannot be used; the message is shown on the page."""
