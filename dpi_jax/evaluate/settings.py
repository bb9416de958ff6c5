"""The DPI settings an evaluation compares: the config's own (with and without the CRT), sweeps, and the columns of
the paper's Table 4 (:func:`ablation_settings`)."""

from __future__ import annotations

import dataclasses
import re

import ml_collections

from dpi_jax.errors import InputError

SWEEP_PARAMS = ("tau", "s", "omega")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One sampled setting: DPI's (tau, s, omega) in the config's units (the original timestep t for tau and omega),
    with or without the corrector, and Table 4's switches (``refine``, ``weight``; ``k`` None: the config's);
    ``swept``/``value`` mark the points of a sweep for the plot."""

    name: str
    tau: float
    s: float
    omega: float
    crt: bool
    refine: bool = True
    weight: bool = True
    k: int | None = None
    swept: str | None = None
    value: float | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def overrides(self) -> dict:
        """The :class:`dpi_jax.sampler.Settings` fields this setting sets (the config gives the rest)."""
        fields = dict(tau=self.tau, s=self.s, omega=self.omega, refine=self.refine, weight=self.weight)
        return fields if self.k is None else dict(fields, k=self.k)


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
        raise InputError(f"--sweep {spec!r}: expected <param>=<v1>,<v2>,... with param one of "
                         f"{', '.join(SWEEP_PARAMS)}")
    try:
        numbers = [float(v) for v in values.split(",") if v.strip()]
    except ValueError as err:
        raise InputError(f"--sweep {spec!r}: the values must be numbers ({err})") from None
    if not numbers:
        raise InputError(f"--sweep {spec!r}: no values")
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


ABLATION_K = 4  # the paper does not say which sparsity replaced k = 2 in Table 4's last column


def ablation_settings(config: ml_collections.ConfigDict, k: int = ABLATION_K) -> list[Setting]:
    """The columns of the paper's Table 4, on the config's (tau, s, omega): full DPI | w/o CRT (the condition stays the
    LR input's pixels) | w/o Refine (stage II corrects y', not the mixed sample) | w/o Stage II (tau = 0) | w/o Weight
    (w = 1 in Eq. 9) | w/o k = 2 (sparsity ``k``, the same CRT). Needs a CRT checkpoint (the full column has one)."""
    if not config.crt_checkpoint:
        raise InputError("the Table 4 ablation needs a CRT (its first column is full DPI): set --config.crt_checkpoint")
    if k == config.k:
        raise InputError(f"--ablation_k {k}: must differ from config.k = {config.k} (Table 4's \"w/o k = 2\" column)")
    base = dict(_base(config), crt=True)
    return [Setting("dpi", **base),
            Setting("dpi-no-crt", **dict(base, crt=False)),
            Setting("dpi-no-refine", **base, refine=False),
            Setting("dpi-no-stage2", **dict(base, tau=0.0)),
            Setting("dpi-no-weight", **base, weight=False),
            Setting(f"dpi-k{k}", **base, k=k)]
