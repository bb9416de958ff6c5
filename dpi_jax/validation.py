"""Start-up checks of the sampling and training configs: the config rules, and nothing of the command line
(:mod:`dpi_jax.cli` runs the tools and turns these errors into exit statuses).

Every check runs before any model is loaded and names the field, its value and what is allowed, e.g.
``config.batch_size = 0: must be an integer >= 1``; all problems of a config are reported at once
(:class:`ConfigError`). The DPI settings (tau, s, omega, eta, k, method, var_type) are checked by
:meth:`dpi_jax.sampler.Settings.validate`, the one place of those rules; this module adds the config-only rules,
and :func:`closest_field` the "did you mean" of an unknown field.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
from typing import Iterable

import ml_collections

from dpi_jax.errors import ConfigError

SAMPLE_MODES = ("synthetic", "real", "photo")
DTYPES = ("float32", "bfloat16")
DATA_SOURCES = ("synthetic", "folder", "tfds")
LR_SCHEDULES = ("cosine", "constant")
POSTERIOR_FROM = ("gt", "condition")
MODEL_KINDS = ("crt", "adm")
MAX_SEED = 2**32 - 1  # jax.random.PRNGKey keeps 32 bits of a seed without jax_enable_x64: 2**32 would equal 0
SEED_NOTE = " (a 32-bit PRNG seed)"
MAX_UPSCALE = 16.0  # photo mode's background upscale


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

    missing = [name for name in ("dpi", "diffusion") if not isinstance(config.get(name), ml_collections.ConfigDict)]
    if missing:  # the layout of configs/default.py: sections that are sampler.Settings's and make_schedule's arguments
        raise ConfigError([f"config.{name}: missing, or not a section (configs/default.py has it)" for name in missing])
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
    c.integer("diffusion.num_timesteps", 1)
    c.choice("diffusion.beta_schedule", ("linear", "cosine"))
    c.respacing("diffusion.respacing", config.diffusion.num_timesteps)
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
    num_timesteps = config.diffusion.num_timesteps
    num_timesteps = num_timesteps if isinstance(num_timesteps, int) and num_timesteps > 0 else 1
    try:  # the section's fields are sampler.Settings's arguments: the sampler's own rules, every problem
        settings = sampler.Settings(**config.dpi)
    except TypeError as err:
        c.problems.append(f"config.dpi: {err} (its fields are dpi_jax.sampler.Settings's)")
    else:
        c.problems += [f"config.dpi.{problem}" for problem in settings.problems(num_timesteps)]
    c.raise_if_any()


def check_sampling_sizes(config: ml_collections.ConfigDict, image_size: int, crt_size: int | None = None) -> None:
    """The rules that need the prior's image size (from its model.json, before loading it): k and scale divide it,
    and a CRT works at the same size."""
    c = _Checker(config)
    for name, what in (("dpi.k", "the condition grid's sparsity"), ("scale", "the SR factor")):
        if c.value(name) < 1 or image_size % c.value(name):
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


# ------------------------------------------------------------------------------------------ unknown fields

def dotted_fields(fields, prefix: str = "") -> dict:
    """The leaves of a nested mapping by dotted name: ``{"scale": 4, "dpi": {"tau": 100.0}}`` gives
    ``{"scale": 4, "dpi.tau": 100.0}``."""
    leaves = {}
    for name, value in fields.items():
        if isinstance(value, (dict, ml_collections.ConfigDict)):
            leaves.update(dotted_fields(value, f"{prefix}{name}."))
        else:
            leaves[f"{prefix}{name}"] = value
    return leaves


def closest_field(config: ml_collections.ConfigDict, dotted: str) -> str:
    """"; did you mean 'dpi.tau'?" for an unknown dotted field of ``config``, or "" when nothing is close. The first
    unknown part is looked up among the fields beside it (difflib), then, when it is not there, among the fields of
    the sections beside it: a field named without its section (``tau`` for ``dpi.tau``) gets its path. The rest of
    the name is kept where it exists there."""
    parts = dotted.split(".")
    node, known = config, []
    for depth, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict):
            return ""
        if part in node:
            node, known = node[part], known + [part]
            continue
        match = _closest_key(node, part)
        if not match:
            return ""
        rest = parts[depth + 1:]
        for step in match:
            node = node[step]
        for later in rest:
            if not (isinstance(node, ml_collections.ConfigDict) and later in node):
                rest = []
                break
            node = node[later]
        return f"; did you mean {'.'.join(known + match + rest)!r}?"
    return ""


def _closest_key(node: ml_collections.ConfigDict, part: str) -> list[str]:
    """The path below ``node`` that ``part`` most likely means: the same key in one of its sections, else a close
    key of ``node``, else a close key of one of its sections; [] when none is close."""
    sections = [name for name in node.keys() if isinstance(node[name], ml_collections.ConfigDict)]
    inner = {f"{name}.{key}": key for name in sections for key in node[name].keys()}
    exact = [path for path, key in inner.items() if key == part]
    if exact:
        return exact[0].split(".")
    match = difflib.get_close_matches(part, list(node.keys()), n=1, cutoff=0.5)
    if match:
        return match
    close = difflib.get_close_matches(part, list(inner.values()), n=1, cutoff=0.6)
    return next(path.split(".") for path, key in inner.items() if key == close[0]) if close else []
