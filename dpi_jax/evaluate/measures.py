"""What an evaluation measures: the metric names, the networks they need (ported once, loaded before any sampling),
and the accumulation of per-image and per-set values over the batches of one setting.

Per image (mean ± std over images; a sampled setting's value is first averaged over its seeds):
``psnr``, ``ssim``, ``lr_psnr`` (LR consistency), ``diversity`` (:mod:`dpi_jax.metrics.pixel`), ``lpips`` (to the
GT, :mod:`dpi_jax.metrics.lpips`), ``id_cs`` (DeepFace VGG-Face cosine distance to the GT) and the no-reference
``musiq`` and ``clipiqa`` (pyiqa's, :mod:`dpi_jax.metrics.musiq`, :mod:`dpi_jax.metrics.clipiqa`). Per set (the first
seed's result of every input): ``fid`` (pytorch-fid, against the GT faces or a reference folder / statistics file),
``is`` (torch-fidelity's Inception Score, ± its std over splits) and ``id_acc`` (the share of SR/GT pairs DeepFace
verifies as the same person, over all seeds' pairs). ``--metrics=id`` gives both ``id_acc`` and ``id_cs``.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import jax
import numpy as np

from dpi_jax.errors import InputError
from dpi_jax.evaluate.registry import METRICS, Batch

CHOICES = tuple(METRICS)
DEFAULT = ("psnr", "ssim", "lr_psnr", "diversity")
LABELS = {column: label for metric in METRICS.values() for column, label in metric.labels.items()}
DIGITS = {column: digits for metric in METRICS.values() for column, digits in metric.digits.items()}


def parse_metrics(spec, mode: str = "synthetic") -> tuple[str, ...]:
    """``"psnr,ssim,lpips"`` -> the metric names in the canonical order; unknown names and, without ground truth
    (``mode`` "real"), metrics that need it are refused with a message naming them."""
    names = [m.strip() for m in (spec.split(",") if isinstance(spec, str) else spec) if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise InputError(f"--metrics {spec!r}: unknown {unknown or 'empty list'}; choose from {', '.join(METRICS)}")
    if mode != "synthetic":
        need_gt = [m for m in names if METRICS[m].needs_ground_truth]
        if need_gt:
            free = [m for m, metric in METRICS.items() if not metric.needs_ground_truth]
            raise InputError(f"--metrics: {', '.join(need_gt)} need ground-truth faces (config.mode 'synthetic'); "
                             f"without them (mode {mode!r}) only {', '.join(free[:-1])} and {free[-1]} can be "
                             "measured")
    return tuple(m for m in METRICS if m in names)


def columns(metrics) -> tuple[str, ...]:
    """The row's columns of the metric names ``metrics``, in their order."""
    return tuple(c for m in metrics for c in METRICS[m].columns)


def weight_folders() -> dict[str, str]:
    """{weights key: default folder} of the metrics that read a ported network: the folder its
    :data:`dpi_jax.networks.NETWORKS` entry names (the evaluation's ``--<key>_weights`` defaults)."""
    from dpi_jax.networks import NETWORKS
    return {m.weights: NETWORKS[m.network].default_dir for m in METRICS.values() if m.weights}


@dataclasses.dataclass
class MetricNetworks:
    """The ported networks the chosen metrics need ({weights key: params}, e.g. ``{"fid": ...}`` for FID and IS),
    the FID reference statistics (None: the GT faces') and the identity verification's descriptor and threshold."""

    params: dict = dataclasses.field(default_factory=dict)
    fid_reference: tuple | None = None  # (mu, sigma)
    id_descriptor: str = "fc8"
    id_threshold: float = 0.40

    @classmethod
    def load(cls, metrics, weights: dict | None = None, *, fid_reference=None, id_descriptor: str = "fc8",
             id_threshold: float | None = None, progress: bool = True):
        """Load what ``metrics`` needs from ``weights`` ({weights key: folder}; a key not given: the network's
        default folder); a missing weights directory raises FileNotFoundError naming the file to get and the port
        command (before any sampling is done)."""
        from dpi_jax.metrics import identity
        from dpi_jax.networks import NETWORKS

        folders = dict(weight_folders(), **(weights or {}))
        default_threshold = identity.THRESHOLD_FC8 if id_descriptor == "fc8" else identity.THRESHOLD
        nets = cls(id_descriptor=id_descriptor,
                   id_threshold=default_threshold if id_threshold is None else float(id_threshold))
        for metric in (METRICS[m] for m in metrics):
            if metric.weights and metric.weights not in nets.params:
                load = metric.load or NETWORKS[metric.network].load
                nets.params[metric.weights] = load(folders[metric.weights])
        if "fid" in metrics and fid_reference:
            from dpi_jax.metrics import fid
            nets.fid_reference = fid.folder_statistics(nets.params["fid"], fid_reference, progress=progress)
        return nets


def set_fid_reference(networks: MetricNetworks, gt_images: np.ndarray | None, progress: bool = True):
    """Without a reference folder or statistics file, FID is measured against the ground-truth faces of the same
    inputs (computed once for all settings)."""
    if "fid" not in networks.params or networks.fid_reference is not None:
        return
    if gt_images is None:
        raise InputError("FID without ground truth (config.mode 'real') needs --fid_reference: a folder of real "
                         "faces or a pytorch-fid .npz statistics file")
    from dpi_jax.metrics import fid
    networks.fid_reference = fid.statistics(fid.image_activations(networks.params["fid"], gt_images))


class Accumulator:
    """The values of one setting, batch by batch: ``add`` the uint8 results (S, B, H, W, 3) with their LR (B, ...)
    and GT (B, ...; None without ground truth), then ``summary`` gives the row's metric fields. What each metric
    measures comes from its record (:mod:`dpi_jax.evaluate.registry`)."""

    def __init__(self, metrics, networks: MetricNetworks, scale: int, progress: bool = False):
        if "fid" in metrics and networks.fid_reference is None:
            raise ValueError("FID needs reference statistics: MetricNetworks.fid_reference (see set_fid_reference)")
        self.metrics, self.networks, self.scale, self.progress = tuple(metrics), networks, scale, progress
        self.records = [METRICS[m] for m in self.metrics]
        self.per_image = {c: [] for r in self.records for c in r.image_columns}
        self.kept = {k: [] for r in self.records for k in r.kept}  # {name: [(B, S) per batch]}
        self.first_seed, self.positions = [], []

    def add(self, sr: np.ndarray, lr: np.ndarray, gt: np.ndarray | None, positions=None):
        """``positions``: the inputs' places in the whole input list (by default, the next ones): what
        :meth:`gather` orders the values of several processes by."""
        batch = Batch(sr, lr, gt, self.scale)
        b = sr.shape[1]
        start = len(self.positions)
        self.positions += list(range(start, start + b)) if positions is None else [int(p) for p in positions]
        for record in self.records:
            if record.per_image is None:
                continue
            for name, values in record.per_image(self.networks, batch).items():
                values = np.asarray(values)
                if name in self.kept:
                    self.kept[name].append(values.T)  # (B, S): per input
                else:  # per input: the mean over its seeds
                    self.per_image[name] += list(values.mean(0) if values.ndim == 2 else values)
        self.first_seed.append(sr[0])

    def gather(self, count: int, image_shape: tuple) -> None:
        """In a run over several processes (each added the inputs of its own rows), give every process the values
        of all ``count`` inputs, in input order; nothing to do in one process. ``image_shape``: (H, W, 3) of a
        result."""
        if jax.process_count() == 1:
            return
        from jax.experimental import multihost_utils

        positions = np.asarray(self.positions, np.int64)
        held = np.zeros(count, np.uint8)
        held[positions] = 1

        def spread(parts, tail, dtype):
            full = np.zeros((count, *tail), dtype)
            if len(positions):
                full[positions] = np.concatenate(parts) if isinstance(parts, list) else parts
            return full

        # the number of seeds of kept values: a process without inputs has none, so take the largest
        seeds = {k: np.asarray(multihost_utils.process_allgather(np.int64(v[0].shape[1] if v else 0))).max()
                 for k, v in self.kept.items()}
        local = {"held": held, "images": spread(self.first_seed, image_shape, np.uint8),
                 # float64 values travel as pairs of uint32 (JAX arrays would round them to float32)
                 "values": {c: spread(np.asarray(v, np.float64), (), np.float64).view(np.uint32).reshape(count, 2)
                            for c, v in self.per_image.items()},
                 "kept": {k: spread([np.asarray(p, np.float64) for p in v], (seeds[k],), np.float64).view(np.uint32)
                          for k, v in self.kept.items()}}
        every = multihost_utils.process_allgather(local)  # each leaf: (processes, ...)
        owner = np.argmax(np.asarray(every["held"]), axis=0)  # the process that holds input i
        pick = lambda table: np.asarray(table)[owner, np.arange(count)]  # noqa: E731
        self.positions = list(range(count))
        self.first_seed = [pick(every["images"])]
        self.per_image = {c: list(pick(v).view(np.float64).reshape(count)) for c, v in every["values"].items()}
        self.kept = {k: [pick(v).view(np.float64).reshape(count, seeds[k])] for k, v in every["kept"].items()}

    def _set_values(self) -> dict:
        """The per-set fields of the asked metrics, in their order. Those of the first seed's images (FID, IS) are
        computed by process 0 alone, and the others receive its values: every process holds the gathered images, but
        the Fréchet distance's 2048x2048 eigenvalues are the costly part, and each process would repeat them."""
        values = SimpleNamespace(images=None, kept={k: np.concatenate(v) for k, v in self.kept.items() if v})
        on_first = [r for r in self.records if r.per_set is not None and r.first_seed_set]
        fields = [f for r in on_first for c in r.set_columns for f in (c, f"{c}_std")]
        shared = np.full(len(fields), np.nan)
        missing = np.zeros(len(fields), np.uint8)  # 1 where a field is None (no spread)
        if on_first and jax.process_index() == 0:
            values.images = np.concatenate(self.first_seed)
            computed = {}
            for record in on_first:
                computed.update(record.per_set(self.networks, values))
            for i, field in enumerate(fields):
                if computed[field] is None:
                    missing[i] = 1
                else:
                    shared[i] = computed[field]
        if on_first and jax.process_count() > 1:
            from jax.experimental import multihost_utils
            # float64 as pairs of uint32 (JAX arrays would round to float32)
            sent = multihost_utils.broadcast_one_to_all({"values": shared.view(np.uint32), "missing": missing})
            shared = np.asarray(sent["values"], np.uint32).view(np.float64)
            missing = np.asarray(sent["missing"], np.uint8)
        first = {f: None if m else float(v) for f, v, m in zip(fields, shared, missing, strict=True)}
        row = {}
        for record in self.records:
            if record.per_set is not None:
                row.update({f: first[f] for c in record.set_columns for f in (c, f"{c}_std")} if record.first_seed_set
                           else record.per_set(self.networks, values))
        return row

    def summary(self, names: list[str]) -> dict:
        """The metric fields of the row: ``<c>`` and ``<c>_std`` per column, and ``per_image``."""
        row = {}
        for column, values in self.per_image.items():
            values = np.asarray(values, np.float64)
            row[column], row[f"{column}_std"] = float(values.mean()), float(values.std())
        row.update(self._set_values())
        row["per_image"] = {n: {c: float(v[i]) for c, v in self.per_image.items()} for i, n in enumerate(names)}
        return row
