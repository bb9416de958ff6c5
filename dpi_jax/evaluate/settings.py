"""The DPI settings an evaluation compares: the config's own (with and without the CRT) and sweeps."""

from __future__ import annotations

import dataclasses
import re

import ml_collections

SWEEP_PARAMS = ("tau", "s", "omega")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One sampled setting: DPI's (tau, s, omega) in the config's units (the original timestep t for tau and omega),
    with or without the corrector; ``swept``/``value`` mark the points of a sweep for the plot."""

    name: str
    tau: float
    s: float
    omega: float
    crt: bool
    swept: str | None = None
    value: float | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _base(config: ml_collections.ConfigDict) -> dict:
    return dict(tau=float(config.tau), s=float(config.s), omega=float(config.omega))


def default_settings(config: ml_collections.ConfigDict, crt_ablation: bool = True) -> list[Setting]:
    """The config's (tau, s, omega) with its CRT ("dpi") and, when ``crt_ablation``, without it ("dpi-no-crt"). A
    config without a CRT checkpoint gives only "dpi-no-crt"."""
    if not config.crt_checkpoint:
        return [Setting("dpi-no-crt", crt=False, **_base(config))]
    settings = [Setting("dpi", crt=True, **_base(config))]
    if crt_ablation:
        settings.append(Setting("dpi-no-crt", crt=False, **_base(config)))
    return settings


def parse_sweep(spec: str, config: ml_collections.ConfigDict) -> list[Setting]:
    """``"tau=0,100,300"`` -> one setting per value (the config's other settings, its CRT when it has one), named
    ``tau=0``, ... Also ``s=`` and ``omega=``."""
    param, sep, values = spec.partition("=")
    param = param.strip()
    if not sep or param not in SWEEP_PARAMS:
        raise ValueError(f"--sweep {spec!r}: expected <param>=<v1>,<v2>,... with param one of "
                         f"{', '.join(SWEEP_PARAMS)}")
    try:
        numbers = [float(v) for v in values.split(",") if v.strip()]
    except ValueError as err:
        raise ValueError(f"--sweep {spec!r}: the values must be numbers ({err})") from None
    if not numbers:
        raise ValueError(f"--sweep {spec!r}: no values")
    base = _base(config)
    return [Setting(f"{param}={v:g}", **dict(base, **{param: v}), crt=bool(config.crt_checkpoint), swept=param,
                    value=v) for v in numbers]


def unique(settings) -> list[Setting]:
    """The first setting of each name, in order."""
    first = {}
    for setting in settings:
        first.setdefault(setting.name, setting)
    return list(first.values())


def slug(name: str) -> str:
    """A setting name as a file-name part: ``tau=25`` -> ``tau_25``."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "setting"
