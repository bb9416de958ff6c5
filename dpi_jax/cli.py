"""The one pattern of dpi-jax's command-line tools: how they parse their flags, and how they end.

Every tool (``sample.py``, ``train.py``, ``python -m dpi_jax.evaluate`` / ``bench`` / ``app`` / ``port`` /
``metrics`` / ``metrics.bench`` / ``demo.prior_samples`` / ``demo.synthfaces``) runs its work through
:func:`run_cli`, which turns what the work raises into the exit status (:mod:`dpi_jax.errors`):

- 0 when it returns (or the int it returns);
- 2 and one line ``error: <message>`` on stderr for a problem of the user's setup (:data:`SETUP_ERRORS`: a
  :class:`~dpi_jax.errors.DPIError` or an ``OSError``), with the traceback only under ``--verbose``;
- 1, the traceback and ``error: <type>: <message> (a bug ...)`` for anything else;
- 130 and ``error: interrupted`` for Ctrl-C, whatever a library does with the KeyboardInterrupt
  (:func:`ctrl_c_ends_the_run`).

Every tool parses its command line with absl flags, in one of two templates:

- the tools with a config file (ml_collections: ``sample.py``, ``train.py``, ``evaluate``, ``bench``, ``app``) end
  with :func:`run`: :func:`parse_flags` makes a bad flag, an unloadable config file or an unknown config field
  (``--config.tau=1``: "did you mean 'dpi.tau'?") one line ``error: ...`` and status 2 before anything is loaded,
  unexpected positional arguments are refused, and ``--verbose`` is defined once here;
- the tools with positional arguments (``port``, ``metrics``, ``metrics.bench``, ``demo.prior_samples``,
  ``demo.synthfaces``) return :func:`main_with_args` from their ``main(argv)``: their flags on a fresh
  ``FlagValues`` (so that tests can call ``main`` in-process again and again), a bad flag or a wrong number of
  arguments one line ``error: ...`` and status 2, and ``--verbose`` too.

``--help`` exits 0 everywhere. Both templates switch on the persistent compilation cache
(:mod:`dpi_jax.compile_cache`) before the work starts. The config rules themselves are :mod:`dpi_jax.validation`'s.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import signal
import sys
import threading
import traceback
from typing import TYPE_CHECKING, Callable, Sequence

import ml_collections

from dpi_jax import compile_cache
from dpi_jax.errors import DPIError
from dpi_jax.validation import closest_field

if TYPE_CHECKING:
    from absl import flags

# What a tool reports as "error: <message>" with exit status 2 (dpi_jax.errors); anything else is a bug: traceback, 1.
SETUP_ERRORS: tuple[type[BaseException], ...] = (DPIError, OSError)
VERBOSE_HELP = "Print the traceback of an error, not only its one-line message."
HELP_FLAGS = frozenset({"-?", "-h", "--help", "--helpshort", "--helpfull"})  # absl's; each exits 0


def _config_path(argv: list[str], flag: str, default: str | None) -> str | None:
    """The config file ``--<flag>`` names in ``argv`` (``path`` or ``path:arg``), else ``default``."""
    path = default
    for j, arg in enumerate(argv):
        if arg.startswith(f"--{flag}="):
            path = arg.split("=", 1)[1]
        elif arg == f"--{flag}" and j + 1 < len(argv):
            path = argv[j + 1]
    return path


def _load_config_file(path: str):
    file, *arg = path.split(":", 1)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"no such file {file!r}")
    get_config = runpy.run_path(file).get("get_config")
    if not callable(get_config):
        raise ValueError("it defines no get_config()")
    return get_config(*arg)


def config_file_problem(argv: list[str], flag: str = "config", default: str | None = None) -> str | None:
    """The one-line message when the config file of ``--<flag>`` (or ``default``) cannot be loaded: missing, not
    Python, without ``get_config()``, or failing in it; None when it loads."""
    path = _config_path(argv, flag, default)
    if path is None:
        return None
    try:
        _load_config_file(path)
    except Exception as err:
        return (f"--{flag} {path}: not a usable config file (a Python file with get_config()): "
                f"{type(err).__name__}: {one_line(err)}")
    return None


def unknown_override(argv: list[str], flag: str = "config", default: str | None = None) -> str | None:
    """The one-line message for the first ``--<flag>.<field>=...`` of ``argv`` that the config file of ``--<flag>``
    (or ``default`` when ``argv`` names none) does not have, or None (then the failure was something else)."""
    path = _config_path(argv, flag, default)
    if path is None:
        return None
    try:
        config = _load_config_file(path)
    except Exception:  # the config file itself is the problem: config_file_problem's message
        return None
    for arg in argv:
        if not arg.startswith(f"--{flag}."):
            continue
        dotted = arg[len(flag) + 3:].split("=", 1)[0]
        node = config
        for part in dotted.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                return f"--{flag}.{dotted}: the config has no field {dotted!r}{closest_field(config, dotted)}"
            node = node[part]
    return None


def define_config_file(name: str, default: str | None, help_text: str, **kwargs):
    """``config_flags.DEFINE_config_file``, which loads the default config file with the command line's overrides as
    soon as it is defined (before ``app.run``): an unloadable file or an unknown field there prints one line
    ``error: ...`` and exits with status 2, as :func:`parse_flags` does later."""
    from ml_collections import config_flags

    try:
        return config_flags.DEFINE_config_file(name, default, help_text, **kwargs)
    except Exception as err:
        _config_failure(sys.argv, name, default, err)


def _config_failure(argv: list[str], flag: str, default: str | None, err: BaseException):
    for message in (config_file_problem(argv, flag, default), unknown_override(argv, flag, default)):
        if message:
            _fail(message, 2)
    _fail(f"--{flag}: {type(err).__name__}: {one_line(err)}", 2)


def parse_flags(argv: list[str], config_flags: tuple[str, ...] = ("config",)) -> list[str]:
    """absl's flag parsing for ``app.run(..., flags_parser=parse_flags)``: a bad flag, an unloadable config file or
    an unknown config field prints one line ``error: ...`` and exits with status 2."""
    from absl import flags

    if HELP_FLAGS & set(argv[1:]):
        try:  # absl prints the help and exits with 1: a help that was asked for is a success
            flags.FLAGS(argv)
        except SystemExit as exit:
            sys.exit(0 if exit.code == 1 else exit.code)
    try:
        remaining = flags.FLAGS(argv)
    except Exception as err:  # flags.Error, or ml_collections' AttributeError/KeyError for an unknown field
        for flag in config_flags:
            default = flags.FLAGS[flag].default_as_str if flag in flags.FLAGS else None
            default = default.strip("'\"") if default else None
            for message in (config_file_problem(argv, flag, default), unknown_override(argv, flag, default)):
                if message:
                    _fail(message, 2)
        text = " ".join(str(err).split())
        if not isinstance(err, flags.Error):
            text = f"{type(err).__name__}: {text}"
        _fail(text, 2)
    for flag in config_flags:  # ml_collections defers a missing file's error to the first use of the config
        if _config_path(argv, flag, None):
            message = config_file_problem(argv, flag)
            if message:
                _fail(message, 2)
    return remaining


def _fail(message: str, status: int):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def command_line_overrides(prefix: str = "config") -> list[str]:
    """The dotted config fields set on the command line (``--config.dpi.tau=200`` gives ``"dpi.tau"``)."""
    from absl import flags

    start = f"{prefix}."
    return [name[len(start):] for name in flags.FLAGS if name.startswith(start) and flags.FLAGS[name].present]


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (a multi-line help text joined with spaces)."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = str(err.args[0])
    return text or type(err).__name__


def exit_now(status: int):
    """End the process with ``status`` without Python's interpreter teardown (after flushing stdout and stderr).

    For Ctrl-C: the KeyboardInterrupt has already unwound the program (its ``finally`` clauses ran, atomic writes
    cleaned up), but XLA may still be compiling in its own threads, and tearing the interpreter down under them
    crashes the process (SIGSEGV, exit 139, seen for a Ctrl-C during the sampler's compilation)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


# Seconds a Ctrl-C may take to unwind the program before the process ends regardless (see ctrl_c_ends_the_run).
INTERRUPT_GRACE_S = 5.0


def _interrupted():
    print("error: interrupted", file=sys.stderr)
    exit_now(130)


@contextlib.contextmanager
def ctrl_c_ends_the_run():
    """While the body runs, Ctrl-C (SIGINT) always ends the process with status 130.

    The first Ctrl-C raises KeyboardInterrupt, as Python's own handler does, so the program unwinds and its
    ``finally`` clauses run. Libraries can swallow that exception: orbax's checkpoint reads catch BaseException in
    several places, and asyncio's runner replaces Python's handler with one that only cancels a task. So the
    handler also starts a timer: a process still running :data:`INTERRUPT_GRACE_S` seconds later ends with
    "error: interrupted" and status 130, as does a second Ctrl-C, and a body that returns after a swallowed Ctrl-C.
    Only installed over Python's default handler in the main thread: a SIGINT ignored by the shell (a background
    job) stays ignored."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    pressed = threading.Event()

    def on_sigint(signum, frame):
        if pressed.is_set():
            _interrupted()
        pressed.set()
        timer = threading.Timer(INTERRUPT_GRACE_S, _interrupted)
        timer.daemon = True
        timer.start()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except Exception:
        if pressed.is_set():  # the interrupt turned into another error on its way up
            _interrupted()
        raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if pressed.is_set():
        _interrupted()


def _after_error(status: int) -> int:
    """In a multi-process run (:mod:`dpi_jax.distributed`) a failed process ends at once: JAX's exit would wait at
    a shutdown barrier for processes that cannot finish the run (5 minutes), while ending lets the coordination
    service stop the others within seconds."""
    jax = sys.modules.get("jax")
    if jax is not None and jax.distributed.is_initialized():
        exit_now(status)
    return status


def run_cli(fn: Callable[[], object], *, verbose: bool = False) -> int:
    """Run ``fn()`` for a command-line tool and return its exit status (:mod:`dpi_jax.errors`): 0; 2 with
    ``error: <message>`` on stderr for a problem of the user's setup (:data:`SETUP_ERRORS`: a
    :class:`~dpi_jax.errors.DPIError` or an ``OSError``), with the traceback only when ``verbose``; 1 with the traceback
    and ``error: <type>: <message>`` for anything else (a bug). Ctrl-C prints ``error: interrupted`` and ends the
    process at once with status 130 (:func:`exit_now`, :func:`ctrl_c_ends_the_run`). An int that ``fn`` returns is the
    status."""
    try:
        with ctrl_c_ends_the_run():
            status = fn()
    except KeyboardInterrupt:
        _interrupted()
    except Exception as err:
        if isinstance(err, SETUP_ERRORS):
            if verbose:
                traceback.print_exc()
            print(f"error: {one_line(err)}", file=sys.stderr)
            return _after_error(2)
        traceback.print_exc()
        print(f"error: {type(err).__name__}: {one_line(err)} (a bug: please report it with the traceback above)",
              file=sys.stderr)
        return _after_error(1)
    return status if isinstance(status, int) else 0


def main_with_args(argv: Sequence[str] | None, define: Callable[[flags.FlagValues], None],
                   program: Callable[..., object], *, prog: str, description: str, positional: Sequence[str],
                   at_most: int | None = None) -> int:
    """The main of every tool with positional arguments (``port``, ``metrics``, ``demo.prior_samples`` ...), parsed with
    absl flags on a fresh ``flags.FlagValues`` so that ``main(argv)`` can run any number of times in one process.

    ``define(fv)`` defines the tool's flags on ``fv`` (``flag_values=fv``); ``--verbose`` is added here. ``argv``:
    the arguments after the program name (None: ``sys.argv[1:]``), flags and positional arguments mixed. A help flag
    prints the usage and the flags and returns 0; a bad flag (unknown, bad value, out of bounds, missing) or a wrong
    number of positional arguments (``len(positional)``, up to ``at_most`` when given) prints one line
    ``error: ...`` and returns 2. Otherwise returns :func:`run_cli` of ``program(fv, *arguments)``."""
    from absl import flags

    argv = list(sys.argv[1:] if argv is None else argv)
    fv = flags.FlagValues()
    define(fv)
    flags.DEFINE_bool("verbose", False, VERBOSE_HELP, flag_values=fv)
    if HELP_FLAGS & set(argv):
        print(f"usage: {' '.join([prog, *positional, '[flags]'])}\n\n{description}\n\n"
              f"{fv.get_help(include_special_flags=False).strip()}")
        return 0
    try:
        args = fv([prog, *argv])[1:]
    except flags.Error as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    if not len(positional) <= len(args) <= (len(positional) if at_most is None else at_most):
        names = " ".join(positional) or "no positional arguments"
        if at_most is not None:
            names += f" (at most {at_most} arguments)"
        print(f"error: {prog} takes {names}; got {args}", file=sys.stderr)
        return 2
    compile_cache.enable()
    return run_cli(lambda: program(fv, *args), verbose=fv["verbose"].value)


def run(program: Callable[[], object], *, config_flags: tuple[str, ...] = ("config",)) -> None:
    """The main of every absl tool: ``cli.run(program)`` under ``if __name__ == "__main__"``.

    absl parses the command line with :func:`parse_flags` (``config_flags``: the tool's config-file flags);
    positional arguments are refused (one line, status 2); then ``program()`` runs under :func:`run_cli` with the
    ``--verbose`` flag defined here, and the process exits with its status."""
    from absl import app, flags

    if "verbose" not in flags.FLAGS:
        flags.DEFINE_bool("verbose", False, VERBOSE_HELP)
    # --help lists the main module's key flags: the config file(s), --verbose and the launch flags are the tool's own
    own = [flags.FLAGS[name] for name in (*config_flags, "verbose") if name in flags.FLAGS]
    for flag in own + flags.FLAGS.flags_by_module_dict().get("dpi_jax.launch", []):  # launch.define_flags's
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)

    def main(argv: list[str]):
        if len(argv) > 1:
            _fail(f"unexpected arguments: {argv[1:]}", 2)
        compile_cache.enable()
        sys.exit(run_cli(program, verbose=flags.FLAGS.verbose))

    app.run(main, flags_parser=lambda argv: parse_flags(argv, config_flags))
