"""The DPI settings an evaluation compares: the config's own (with and without the CRT), sweeps, and the columns of
the paper's Table 4 (:func:`ablation_settings`)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

import ml_collections

from dpi_jax import sampler
from dpi_jax.errors import InputError

SWEEP_PARAMS = ("tau", "s", "omega")  # the sampler.Settings fields --sweep may vary (see Setting)
ROW_FIELDS = ("tau", "s", "omega", "refine", "weight", "k")  # the sampler.Settings fields each row records


@dataclasses.dataclass(frozen=True)
class Setting:
    """One sampled setting: its name, whether it uses the corrector, and the :class:`dpi_jax.sampler.Settings`
    fields it changes from the config's (``overrides``; tau and omega in the config's units, the original timestep
    t). ``swept``/``value`` mark the points of a sweep for the plot.

    A sweep is a name plus overrides, so a further sweepable field (``eta``, say) is one entry in
    :data:`SWEEP_PARAMS`, and one in :data:`ROW_FIELDS` to see its value in the tables."""

    name: str
    crt: bool
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    swept: str | None = None
    value: float | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def sampler_settings(self, config: ml_collections.ConfigDict) -> sampler.Settings:
        """The sampler's settings: the config's, with this setting's overrides."""
        return sampler.Settings(**config.dpi).replace(**self.overrides)

    def row(self, config: ml_collections.ConfigDict) -> dict:
        """The setting's fields of a result row: ``setting`` (the name), ``crt``, ``swept``, ``value`` and the
        :data:`ROW_FIELDS` values it samples with."""
        values = self.sampler_settings(config)
        return dict(setting=self.name, crt=self.crt, swept=self.swept, value=self.value,
                    **{f: getattr(values, f) for f in ROW_FIELDS})


def unsampled_row(name: str) -> dict:
    """The setting fields of a row that was not sampled (bicubic): all None."""
    return dict(dict.fromkeys(("crt", "swept", "value", *ROW_FIELDS)), setting=name)


def default_settings(config: ml_collections.ConfigDict, crt_ablation: bool = True) -> list[Setting]:
    """The config's own settings with its CRT ("dpi") and, when ``crt_ablation``, without it ("dpi-no-crt"). A
    config without a CRT checkpoint gives only "dpi-no-crt"."""
    if not config.crt_checkpoint:
        return [Setting("dpi-no-crt", crt=False)]
    return [Setting("dpi", crt=True)] + ([Setting("dpi-no-crt", crt=False)] if crt_ablation else [])


def parse_sweep(spec: str, config: ml_collections.ConfigDict) -> list[Setting]:
    """``"tau=0,100,300"`` -> one setting per value (the config's other settings, its CRT when it has one), named
    ``tau=0``, ... Any of :data:`SWEEP_PARAMS`."""
    param, sep, values = spec.partition("=")
    param = param.strip()
    if not sep or param not in SWEEP_PARAMS:
        raise InputError(f"--sweep {spec!r}: expected <param>=<v1>,<v2>,... with param one of "
                         f"{', '.join(SWEEP_PARAMS)}")
    try:
        numbers = [float(v) for v in values.split(",") if v.strip()]
    except ValueError as err:
        raise InputError(f"--sweep {spec!r}: the values must be numbers ({err})") from None
    if not numbers:
        raise InputError(f"--sweep {spec!r}: no values")
    return [Setting(f"{param}={v:g}", crt=bool(config.crt_checkpoint), overrides={param: v}, swept=param, value=v)
            for v in numbers]


def unique(settings) -> list[Setting]:
    """The first setting of each name, in order."""
    first = {}
    for setting in settings:
        first.setdefault(setting.name, setting)
    return list(first.values())


def slug(name: str) -> str:
    """A setting name as a file-name part: ``tau=25`` -> ``tau_25``."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "setting"


ABLATION_K = 4  # the paper does not say which sparsity replaced k = 2 in Table 4's last column


def ablation_settings(config: ml_collections.ConfigDict, k: int = ABLATION_K) -> list[Setting]:
    """The columns of the paper's Table 4, on the config's (tau, s, omega): full DPI | w/o CRT (the condition stays the
    LR input's pixels) | w/o Refine (stage II corrects y', not the mixed sample) | w/o Stage II (tau = 0) | w/o Weight
    (w = 1 in Eq. 9) | w/o k = 2 (sparsity ``k``, the same CRT). Needs a CRT checkpoint (the full column has one)."""
    if not config.crt_checkpoint:
        raise InputError("the Table 4 ablation needs a CRT (its first column is full DPI): set --config.crt_checkpoint")
    if k == config.dpi.k:
        raise InputError(f"--ablation_k {k}: must differ from config.dpi.k = {config.dpi.k} "
                         "(Table 4's \"w/o k = 2\" column)")
    return [Setting("dpi", crt=True),
            Setting("dpi-no-crt", crt=False),
            Setting("dpi-no-refine", crt=True, overrides={"refine": False}),
            Setting("dpi-no-stage2", crt=True, overrides={"tau": 0.0}),
            Setting("dpi-no-weight", crt=True, overrides={"weight": False}),
            Setting(f"dpi-k{k}", crt=True, overrides={"k": k})]
