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

import jax
import numpy as np

from dpi_jax.errors import InputError
from dpi_jax.metrics import pixel

PIXEL = ("psnr", "ssim", "lr_psnr", "diversity")
# the order of the table's columns (Table 2's: fid, is, musiq, clipiqa)
CHOICES = ("psnr", "ssim", "lpips", "fid", "is", "musiq", "clipiqa", "id", "lr_psnr", "diversity")
DEFAULT = PIXEL
# without ground truth (real-world LR): fid, is, musiq, clipiqa, diversity
NEEDS_GT = ("psnr", "ssim", "lr_psnr", "lpips", "id")
# The columns each metric name adds to a row, in the order of the paper's tables.
COLUMNS = {"psnr": ("psnr",), "ssim": ("ssim",), "lpips": ("lpips",), "fid": ("fid",), "is": ("is",),
           "musiq": ("musiq",), "clipiqa": ("clipiqa",), "id": ("id_acc", "id_cs"), "lr_psnr": ("lr_psnr",),
           "diversity": ("diversity",)}
LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "lpips": "LPIPS", "fid": "FID", "is": "IS", "musiq": "MUSIQ",
          "clipiqa": "CLIPIQA", "id_acc": "ID ACC",
          "id_cs": "ID CS", "lr_psnr": "LR-consistency PSNR (dB)", "diversity": "diversity"}
DIGITS = {"psnr": 2, "ssim": 4, "lpips": 4, "fid": 2, "is": 3, "musiq": 2, "clipiqa": 4, "id_acc": 3, "id_cs": 4,
          "lr_psnr": 2,
          "diversity": 4}
IS_SPLITS = 10  # torch-fidelity's default; fewer when a set has fewer images


def parse_metrics(spec, mode: str = "synthetic") -> tuple[str, ...]:
    """``"psnr,ssim,lpips"`` -> the metric names in the canonical order; unknown names and, without ground truth
    (``mode`` "real"), metrics that need it are refused with a message naming them."""
    names = [m.strip() for m in (spec.split(",") if isinstance(spec, str) else spec) if m.strip()]
    unknown = [m for m in names if m not in CHOICES]
    if unknown or not names:
        raise InputError(f"--metrics {spec!r}: unknown {unknown or 'empty list'}; choose from {', '.join(CHOICES)}")
    if mode != "synthetic":
        need_gt = [m for m in names if m in NEEDS_GT]
        if need_gt:
            raise InputError(f"--metrics: {', '.join(need_gt)} need ground-truth faces (config.mode 'synthetic'); "
                             f"without them (mode {mode!r}) only fid, is, musiq, clipiqa and diversity can be measured")
    return tuple(m for m in CHOICES if m in names)


def columns(metrics) -> tuple[str, ...]:
    return tuple(c for m in metrics for c in COLUMNS[m])


@dataclasses.dataclass
class MetricNetworks:
    """The ported networks the chosen metrics need, and the FID reference statistics (None: the GT faces')."""

    lpips: tuple | None = None  # (params, net)
    inception: dict | None = None
    vggface: dict | None = None
    musiq: dict | None = None
    clipiqa: dict | None = None
    fid_reference: tuple | None = None  # (mu, sigma)
    id_descriptor: str = "fc8"
    id_threshold: float = 0.40

    @classmethod
    def load(cls, metrics, *, lpips_weights=None, fid_weights=None, id_weights=None, fid_reference=None,
             id_descriptor: str = "fc8", id_threshold: float | None = None, progress: bool = True,
             musiq_weights=None, clipiqa_weights=None):
        """Load what ``metrics`` needs; a missing weights directory raises FileNotFoundError naming the file to get
        and the port command (before any sampling is done)."""
        nets = cls(id_descriptor=id_descriptor)
        if "lpips" in metrics:
            from dpi_jax.metrics import lpips
            nets.lpips = lpips.load_lpips(lpips_weights)
        if "fid" in metrics or "is" in metrics:
            from dpi_jax.metrics import fid, inception
            nets.inception = inception.load_inception(fid_weights)
            if "fid" in metrics and fid_reference:
                nets.fid_reference = fid.folder_statistics(nets.inception, fid_reference, progress=progress)
        if "id" in metrics:
            from dpi_jax.metrics import identity
            nets.vggface = identity.load_vggface(id_weights)
            default = identity.THRESHOLD_FC8 if id_descriptor == "fc8" else identity.THRESHOLD
            nets.id_threshold = default if id_threshold is None else float(id_threshold)
        if "musiq" in metrics:
            from dpi_jax.metrics import musiq
            nets.musiq = musiq.load_musiq(musiq_weights)
        if "clipiqa" in metrics:
            from dpi_jax.metrics import clipiqa
            nets.clipiqa = clipiqa.load_clipiqa(clipiqa_weights)
        return nets


def set_fid_reference(networks: MetricNetworks, gt_images: np.ndarray | None, progress: bool = True):
    """Without a reference folder or statistics file, FID is measured against the ground-truth faces of the same
    inputs (computed once for all settings)."""
    if networks.inception is None or networks.fid_reference is not None:
        return
    if gt_images is None:
        raise InputError("FID without ground truth (config.mode 'real') needs --fid_reference: a folder of real "
                         "faces or a pytorch-fid .npz statistics file")
    from dpi_jax.metrics import fid
    networks.fid_reference = fid.statistics(fid.image_activations(networks.inception, gt_images))


class Accumulator:
    """The values of one setting, batch by batch: ``add`` the uint8 results (S, B, H, W, 3) with their LR (B, ...)
    and GT (B, ...; None without ground truth), then ``summary`` gives the row's metric fields."""

    def __init__(self, metrics, networks: MetricNetworks, scale: int, progress: bool = False):
        if "fid" in metrics and networks.fid_reference is None:
            raise ValueError("FID needs reference statistics: MetricNetworks.fid_reference (see set_fid_reference)")
        self.metrics, self.networks, self.scale, self.progress = tuple(metrics), networks, scale, progress
        self.per_image = {c: [] for c in columns(metrics) if c not in ("fid", "is", "id_acc")}
        self.first_seed, self.id_distances, self.positions = [], [], []

    def add(self, sr: np.ndarray, lr: np.ndarray, gt: np.ndarray | None, positions=None):
        """``positions``: the inputs' places in the whole input list (by default, the next ones): what
        :meth:`gather` orders the values of several processes by."""
        num, b = sr.shape[:2]
        start = len(self.positions)
        self.positions += list(range(start, start + b)) if positions is None else [int(p) for p in positions]
        flat = sr.reshape((num * b,) + sr.shape[2:])
        per_seed_mean = lambda values: list(np.asarray(values).reshape(num, b).mean(0))
        if gt is not None:
            gt_rep = np.broadcast_to(gt[None], sr.shape).reshape(flat.shape)
        if "psnr" in self.metrics:
            self.per_image["psnr"] += per_seed_mean(pixel.psnr(flat / 255.0, gt_rep / 255.0))
        if "ssim" in self.metrics:
            self.per_image["ssim"] += per_seed_mean(pixel.ssim(flat / 255.0, gt_rep / 255.0))
        if "lr_psnr" in self.metrics:
            lr_rep = np.broadcast_to(lr[None], (num,) + lr.shape).reshape((num * b,) + lr.shape[1:])
            self.per_image["lr_psnr"] += per_seed_mean(pixel.lr_consistency(flat, lr_rep, self.scale))
        if "diversity" in self.metrics:
            self.per_image["diversity"] += list(pixel.diversity(sr / 255.0))
        if "lpips" in self.metrics:
            from dpi_jax.metrics import lpips
            params, net = self.networks.lpips
            self.per_image["lpips"] += per_seed_mean(lpips.lpips_images(params, flat, gt_rep, net, progress=False))
        if "id" in self.metrics:
            from dpi_jax.metrics import identity
            d = identity.identity_distances(self.networks.vggface, flat, gt_rep, progress=False,
                                            descriptor=self.networks.id_descriptor)
            self.id_distances.append(np.asarray(d).reshape(num, b).T)  # (B, S): per input
            self.per_image["id_cs"] += per_seed_mean(d)
        if "musiq" in self.metrics:
            from dpi_jax.metrics import musiq
            self.per_image["musiq"] += per_seed_mean(musiq.musiq_images(self.networks.musiq, flat, progress=False))
        if "clipiqa" in self.metrics:
            from dpi_jax.metrics import clipiqa
            scores = clipiqa.clipiqa_images(self.networks.clipiqa, flat, progress=False)
            self.per_image["clipiqa"] += per_seed_mean(scores)
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

        num_seeds = self.id_distances[0].shape[1] if self.id_distances else 0
        ids = np.asarray(multihost_utils.process_allgather(np.int64(num_seeds))).max()
        local = {"held": held, "images": spread(self.first_seed, image_shape, np.uint8),
                 # float64 values travel as pairs of uint32 (JAX arrays would round them to float32)
                 "values": {c: spread(np.asarray(v, np.float64), (), np.float64).view(np.uint32).reshape(count, 2)
                            for c, v in self.per_image.items()}}
        if "id" in self.metrics:
            local["ids"] = spread(self.id_distances, (ids,), np.float64).view(np.uint32)
        every = multihost_utils.process_allgather(local)  # each leaf: (processes, ...)
        owner = np.argmax(np.asarray(every["held"]), axis=0)  # the process that holds input i
        pick = lambda table: np.asarray(table)[owner, np.arange(count)]  # noqa: E731
        self.positions = list(range(count))
        self.first_seed = [pick(every["images"])]
        self.per_image = {c: list(pick(v).view(np.float64).reshape(count)) for c, v in every["values"].items()}
        if "id" in self.metrics:
            self.id_distances = [pick(every["ids"]).view(np.float64).reshape(count, ids)]

    def _set_metrics(self) -> tuple[float, float, float]:
        """(FID, IS, IS std) of the first seed's images (NaN where not asked for). Over several processes every
        process holds the gathered images, but process 0 alone computes them and the others receive its values:
        the Fréchet distance's 2048x2048 eigenvalues are the costly part, and each process would repeat them."""
        from dpi_jax.metrics import fid
        values = np.full(3, np.nan)
        if jax.process_index() == 0:
            results = np.concatenate(self.first_seed)
            params = self.networks.inception
            if "fid" in self.metrics:
                mine = fid.statistics(fid.image_activations(params, results))
                values[0] = fid.frechet_distance(*mine, *self.networks.fid_reference)
            if "is" in self.metrics:
                logits = fid.image_logits(params, results)
                values[1:] = fid.inception_score(logits, min(IS_SPLITS, len(logits)))
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            as_uint32 = values.view(np.uint32)  # float64 as pairs of uint32 (JAX arrays would round to float32)
            values = np.asarray(multihost_utils.broadcast_one_to_all(as_uint32), np.uint32).view(np.float64)
        return tuple(float(v) for v in values)

    def summary(self, names: list[str]) -> dict:
        """The metric fields of the row: ``<c>`` and ``<c>_std`` per column, and ``per_image``."""
        row = {}
        for column, values in self.per_image.items():
            values = np.asarray(values, np.float64)
            row[column], row[f"{column}_std"] = float(values.mean()), float(values.std())
        if "fid" in self.metrics or "is" in self.metrics:
            fid_value, is_mean, is_std = self._set_metrics()
            if "fid" in self.metrics:
                row["fid"], row["fid_std"] = fid_value, None
            if "is" in self.metrics:
                row["is"], row["is_std"] = is_mean, is_std
        if "id" in self.metrics:
            d = np.concatenate(self.id_distances).reshape(-1)
            row["id_acc"], row["id_acc_std"] = float(np.mean(d <= self.networks.id_threshold)), None
        row["per_image"] = {n: {c: float(v[i]) for c, v in self.per_image.items()} for i, n in enumerate(names)}
        return row
