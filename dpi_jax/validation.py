"""Start-up checks of the sampling and training configs, and the error handling of the command-line tools.

Every check runs before any model is loaded and names the field, its value and what is allowed, e.g.
``config.batch_size = 0: must be an integer >= 1``; all problems of a config are reported at once
(:class:`ConfigError`). The DPI settings (tau, s, omega, eta, k, method, var_type) are checked by
:meth:`dpi_jax.sampler.Settings.validate`, the one place of those rules; this module adds the config-only rules.

The command-line tools (sample.py, train.py, ``python -m dpi_jax.evaluate`` / ``port`` / ``bench``) parse their flags
with :func:`parse_flags` (an unknown config field becomes one line naming the closest valid one) and run through
:func:`run_cli`: a setup error (a bad config, a missing or unusable file or checkpoint) exits with status 2 and one
line ``error: ...`` on stderr, any other failure with status 1 and one line; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import numbers
import os
import runpy
import signal
import sys
import threading
import traceback
from typing import Callable, Iterable

import ml_collections

from dpi_jax.errors import ConfigError, DPIError

SAMPLE_MODES = ("synthetic", "real", "photo")
DTYPES = ("float32", "bfloat16")
DATA_SOURCES = ("synthetic", "folder", "tfds")
LR_SCHEDULES = ("cosine", "constant")
POSTERIOR_FROM = ("gt", "condition")
MODEL_KINDS = ("crt", "adm")
MAX_SEED = 2**32 - 1  # jax.random.PRNGKey keeps 32 bits of a seed without jax_enable_x64: 2**32 would equal 0
SEED_NOTE = " (a 32-bit PRNG seed)"
MAX_UPSCALE = 16.0  # photo mode's background upscale
# What a tool reports as "error: <message>" with exit status 2 (dpi_jax.errors); anything else is a bug: traceback, 1.
SETUP_ERRORS: tuple[type[BaseException], ...] = (DPIError, OSError)


class _Checker:
    """Collects one message per invalid field of a config."""

    def __init__(self, config, prefix: str = "config"):
        self.config, self.prefix, self.problems = config, prefix, []

    def value(self, name: str):
        node = self.config
        for part in name.split("."):
            node = node[part]
        return node

    def fail(self, name: str, allowed: str):
        self.problems.append(f"{self.prefix}.{name} = {self.value(name)!r}: must be {allowed}")

    def integer(self, name: str, minimum: int = 0, maximum: int | None = None, note: str = "") -> bool:
        """An int (not a bool) in [minimum, maximum]; True when valid."""
        v = self.value(name)
        ok = isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum and (
            maximum is None or v <= maximum)
        if not ok:
            bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            self.fail(name, f"an integer {bound}{note}")
        return ok

    def real(self, name: str, low: float, high: float = math.inf, *, low_open=False, high_open=False, note=""):
        """A finite number in the interval; True when valid."""
        v = self.value(name)
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        if not ok:
            left, right = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
            high_text = "inf" if high == math.inf else f"{high:g}"
            self.fail(name, f"a finite number in {left}{low:g}, {high_text}{right}{note}")
        return ok

    def choice(self, name: str, choices: Iterable[str]) -> bool:
        choices = tuple(choices)
        if self.value(name) not in choices:
            self.fail(name, "one of " + ", ".join(repr(c) for c in choices))
            return False
        return True

    def boolean(self, name: str):
        if not isinstance(self.value(name), bool):
            self.fail(name, "True or False")

    def text(self, name: str, what: str = "a non-empty string") -> bool:
        v = self.value(name)
        if not isinstance(v, str) or not v:
            self.fail(name, what)
            return False
        return True

    def respacing(self, name: str, num_timesteps):
        from dpi_jax import diffusion

        if not isinstance(num_timesteps, numbers.Integral) or num_timesteps < 1:
            return
        try:
            diffusion.space_timesteps(int(num_timesteps), self.value(name))
        except (ValueError, TypeError) as err:
            self.fail(name, f"'' (all steps), 'N', 'ddimN' or comma-separated counts that fit {num_timesteps} "
                      f"steps ({err})")

    def raise_if_any(self):
        if self.problems:
            raise ConfigError(self.problems)


def check_sampling(config: ml_collections.ConfigDict) -> None:
    """The sampling config (configs/default.py) on its own; raises :class:`ConfigError` listing every problem."""
    from dpi_jax import sampler

    c = _Checker(config)
    c.choice("mode", SAMPLE_MODES)
    c.text("input_dir", "a folder or 'synthfaces:heldout' / 'synthfaces:train'")
    c.text("output_dir", "a folder")
    c.text("prior_checkpoint", "a checkpoint directory")
    if not isinstance(config.crt_checkpoint, str):
        c.fail("crt_checkpoint", "a checkpoint directory or '' (no corrector)")
    c.boolean("overwrite")
    c.integer("num_images", 0, note=" (0: all)")
    c.choice("dtype", DTYPES)
    c.integer("scale", 1)
    c.integer("num_timesteps", 1)
    c.choice("beta_schedule", ("linear", "cosine"))
    c.respacing("respacing", config.num_timesteps)
    c.boolean("clip_denoised")
    c.integer("batch_size", 1)
    c.integer("seed", 0, MAX_SEED, note=SEED_NOTE)
    c.integer("num_seeds", 1)
    c.integer("seed_chunk", 0, note=" (0: all seeds at once)")
    c.integer("grid_rows", 1)
    if "progress" in config:
        c.boolean("progress")
    if "max_image_pixels" in config:
        c.integer("max_image_pixels", 1)
    if config.mode == "photo":  # the whole-photo fields of configs/photo.py; a config without them uses its defaults
        from dpi_jax.photo import paste
        checks = {"upscale": lambda: c.real("upscale", 0, MAX_UPSCALE, low_open=True),
                  "background_upsampler": lambda: c.choice("background_upsampler", tuple(paste.BACKGROUND_UPSAMPLERS)),
                  "min_face_size": lambda: c.real("min_face_size", 0),
                  "max_faces": lambda: c.integer("max_faces", 0, note=" (0: all)"),
                  "face_threshold": lambda: c.real("face_threshold", 0, 1),
                  "detect_max_side": lambda: c.integer("detect_max_side", 12),
                  "mask_erode": lambda: c.real("mask_erode", 0, 0.5, high_open=True, note=" (of the crop side)"),
                  "mask_blur": lambda: c.real("mask_blur", 0, 0.5, high_open=True, note=" (of the crop side)")}
        for name, check in checks.items():
            if name in config:
                check()
    num_timesteps = config.num_timesteps if isinstance(config.num_timesteps, int) and config.num_timesteps > 0 else 1
    try:  # tau, s, omega, eta, k, method, var_type, refine, weight: the sampler's own rules, every problem
        c.problems += [f"config.{problem}" for problem in sampler.Settings.from_config(config).problems(num_timesteps)]
    except (TypeError, ValueError) as err:
        c.problems.append(f"config: {err}")
    c.raise_if_any()


def check_sampling_sizes(config: ml_collections.ConfigDict, image_size: int, crt_size: int | None = None) -> None:
    """The rules that need the prior's image size (from its model.json, before loading it): k and scale divide it,
    and a CRT works at the same size."""
    c = _Checker(config)
    for name, what in (("k", "the condition grid's sparsity"), ("scale", "the SR factor")):
        if config[name] < 1 or image_size % config[name]:
            c.fail(name, f"a divisor of the prior's image size {image_size} ({what})")
    if crt_size is not None and crt_size != image_size:
        c.problems.append(f"config.crt_checkpoint = {config.crt_checkpoint!r}: its CRT works at {crt_size}x{crt_size}, "
                          f"the prior at {image_size}x{image_size}; they must match")
    c.raise_if_any()


def check_training(config: ml_collections.ConfigDict) -> None:
    """The training config (configs/train_default.py and the crt_*/ddpm_* files); raises :class:`ConfigError`
    listing every problem."""
    from dpi_jax import degrade
    from dpi_jax.models import make_model

    c = _Checker(config)
    c.text("workdir", "a folder (--config.workdir=DIR)")
    c.integer("seed", 0, MAX_SEED, note=SEED_NOTE)
    init_from = config.get("init_from", "")
    if init_from and not (isinstance(init_from, str) and os.path.isdir(init_from)):
        c.fail("init_from", "'' or an existing model directory (e.g. another run's <workdir>/model)")
    image_size = None
    if c.choice("model.kind", MODEL_KINDS):
        try:
            image_size = make_model(config.model.kind, dict(config.model.config)).image_size
        except (ValueError, TypeError) as err:
            c.problems.append(f"config.model.config: not a valid {config.model.kind} config ({err})")
    if c.choice("data.source", DATA_SOURCES):
        if config.data.source == "folder":
            for name in ("data.folder", "data.heldout_folder"):
                folder = c.value(name)
                if name == "data.folder" and not folder or folder and not os.path.isdir(folder):
                    c.fail(name, "an existing folder of training images (data.source='folder')")
        if config.data.source == "tfds":
            c.text("data.tfds_name", "a tensorflow-datasets name (data.source='tfds')")
    c.integer("data.num_images", 0, note=" (0: all)")
    c.integer("data.workers", 1)
    for name in ("scale", "k"):
        if c.integer(name, 1) and image_size and image_size % config[name]:
            c.fail(name, f"a divisor of the model's image size {image_size}")
    c.choice("degradation", ("bicubic", *sorted(degrade.PRESETS)))
    if c.integer("diffusion.num_timesteps", 1):
        c.respacing("sample_respacing", config.diffusion.num_timesteps)
    c.choice("diffusion.beta_schedule", ("linear", "cosine"))
    c.choice("loss.posterior_from", POSTERIOR_FROM)
    c.integer("batch_size", 1)
    c.integer("num_steps", 1)
    _check_optimiser(c)
    c.real("ema_decay", 0, 1)
    for name in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "eval_images", "sample_images"):
        c.integer(name, 1)
    from dpi_jax import diffusion

    c.choice("var_type", diffusion.VAR_TYPES)
    c.raise_if_any()


def _check_optimiser(c: _Checker):
    c.real("optim.learning_rate", 0, low_open=True)
    c.choice("optim.schedule", LR_SCHEDULES)
    c.integer("optim.warmup_steps", 0)
    c.real("optim.final_lr_fraction", 0, 1)
    c.real("optim.b1", 0, 1, high_open=True)
    c.real("optim.b2", 0, 1, high_open=True)
    c.real("optim.eps", 0, low_open=True)
    c.real("optim.weight_decay", 0)
    c.real("optim.grad_clip", 0, note=" (0: no clipping)")


# ---------------------------------------------------------------------------------------------------- command line

def closest_field(config: ml_collections.ConfigDict, dotted: str) -> str:
    """"; did you mean 'tau'?" for an unknown dotted field of ``config`` (difflib on the first unknown part, the
    rest kept when it exists there), or "" when nothing is close."""
    parts = dotted.split(".")
    node, known = config, []
    for depth, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict):
            return ""
        if part in node:
            node, known = node[part], known + [part]
            continue
        match = difflib.get_close_matches(part, list(node.keys()), n=1, cutoff=0.5)
        if not match:
            return ""
        rest, node = parts[depth + 1:], node[match[0]]
        for later in rest:
            if not (isinstance(node, ml_collections.ConfigDict) and later in node):
                rest = []
                break
            node = node[later]
        return f"; did you mean {'.'.join(known + match + rest)!r}?"
    return ""


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
    """The dotted config fields set on the command line (``--config.tau=200`` gives ``"tau"``)."""
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
