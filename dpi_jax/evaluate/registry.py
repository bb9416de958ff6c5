"""The metrics an evaluation can measure, one record each (:class:`Metric`) in :data:`METRICS`, in the order of the
paper's tables. A new metric is one module (its network in :data:`dpi_jax.networks.NETWORKS` when it has one) and
one record here: the measures (:mod:`dpi_jax.evaluate.measures`), the columns, the command line's ``--metrics`` and
weight flags all read this table.

A record measures per image (``image_columns``: one value per input, averaged over its seeds, then mean ± std over
the inputs) and/or per set (``set_columns``: one value for the whole setting, from the first seed's images or from
per-input values the per-image step kept).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from dpi_jax.metrics import pixel

IS_SPLITS = 10  # torch-fidelity's default; fewer when a set has fewer images


@dataclasses.dataclass(frozen=True)
class Batch:
    """One batch of results: ``sr`` (S seeds, B inputs, H, W, 3) uint8, their LR inputs (B, ...), the ground truth
    (B, ...; None without it) and the SR scale."""

    sr: np.ndarray
    lr: np.ndarray
    gt: np.ndarray | None
    scale: int

    @property
    def flat(self) -> np.ndarray:
        """The results as one batch (S * B, H, W, 3), seed-major."""
        return self.sr.reshape((-1,) + self.sr.shape[2:])

    @property
    def gt_repeated(self) -> np.ndarray:
        """The ground truth of each result of :attr:`flat`."""
        return np.broadcast_to(self.gt[None], self.sr.shape).reshape(self.flat.shape)

    @property
    def lr_repeated(self) -> np.ndarray:
        """The LR input of each result of :attr:`flat`."""
        num = self.sr.shape[0]
        return np.broadcast_to(self.lr[None], (num,) + self.lr.shape).reshape((-1,) + self.lr.shape[1:])

    def per_seed(self, values) -> np.ndarray:
        """Values of :attr:`flat` as (S, B)."""
        return np.asarray(values).reshape(self.sr.shape[:2])


@dataclasses.dataclass(frozen=True)
class Metric:
    """One ``--metrics`` name.

    ``per_image(networks, batch)`` gives {name: values}: for an image column, (S, B) values (averaged over the seeds)
    or (B,) values (one per input); for a name of ``kept``, (S, B) values kept per input for ``per_set``.
    ``per_set(networks, values)`` gives the row's fields of the set columns (``<column>`` and ``<column>_std``, None
    where there is no spread); ``values`` has ``images`` (the first seed's results, (N, H, W, 3)) and ``kept`` ({name:
    (N, S)}). With ``first_seed_set``, ``per_set`` runs on process 0 only and the others receive its values (it reads
    the images every process holds; no need to repeat it)."""

    name: str
    labels: dict[str, str]  # {column: the table's header}, set columns first, in the table's order
    digits: dict[str, int]  # {column: decimals shown}
    needs_ground_truth: bool
    image_columns: tuple[str, ...] = ()
    set_columns: tuple[str, ...] = ()
    network: str | None = None  # the dpi_jax.networks entry whose default folder holds its weights
    weights: str | None = None  # the evaluation's --<weights>_weights flag (metrics of one network share one)
    load: Callable[[Any], Any] | None = None  # its network from a folder (default: the network entry's load)
    per_image: Callable[[Any, Batch], dict] | None = None
    per_set: Callable[[Any, Any], dict] | None = None
    kept: tuple[str, ...] = ()
    first_seed_set: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        """The row's columns this metric adds, in the order of the paper's tables."""
        return self.set_columns + self.image_columns


def _pixel(name: str, fn: Callable[[Batch], np.ndarray], label: str, digits: int, needs_ground_truth: bool = True):
    """A per-image metric that needs no network."""
    return Metric(name, {name: label}, {name: digits}, needs_ground_truth, image_columns=(name,),
                  per_image=lambda networks, batch: {name: fn(batch)})


def _lpips(networks, batch: Batch) -> dict:
    from dpi_jax.metrics import lpips
    params = networks.params["lpips"]
    distances = lpips.lpips_images(params, batch.flat, batch.gt_repeated, lpips.net_of(params), progress=False)
    return {"lpips": batch.per_seed(distances)}


def _identity(networks, batch: Batch) -> dict:
    from dpi_jax.metrics import identity
    distances = identity.identity_distances(networks.params["id"], batch.flat, batch.gt_repeated, progress=False,
                                            descriptor=networks.id_descriptor)
    return {"id_cs": batch.per_seed(distances), "id_distances": batch.per_seed(distances)}


def _identity_accuracy(networks, values) -> dict:
    distances = values.kept["id_distances"].reshape(-1)
    return {"id_acc": float(np.mean(distances <= networks.id_threshold)), "id_acc_std": None}


def _musiq(networks, batch: Batch) -> dict:
    from dpi_jax.metrics import musiq
    return {"musiq": batch.per_seed(musiq.musiq_images(networks.params["musiq"], batch.flat, progress=False))}


def _clipiqa(networks, batch: Batch) -> dict:
    from dpi_jax.metrics import clipiqa
    return {"clipiqa": batch.per_seed(clipiqa.clipiqa_images(networks.params["clipiqa"], batch.flat,
                                                             progress=False))}


def _fid(networks, values) -> dict:
    from dpi_jax.metrics import fid
    mine = fid.statistics(fid.image_activations(networks.params["fid"], values.images))
    return {"fid": fid.frechet_distance(*mine, *networks.fid_reference), "fid_std": None}


def _inception_score(networks, values) -> dict:
    from dpi_jax.metrics import fid
    logits = fid.image_logits(networks.params["fid"], values.images)
    mean, std = fid.inception_score(logits, min(IS_SPLITS, len(logits)))
    return {"is": mean, "is_std": std}


def _lpips_load(directory):
    from dpi_jax.metrics import lpips
    return lpips.load(directory)  # either trunk: the folder decides (lpips.net_of)


_METRICS = (
    _pixel("psnr", lambda b: b.per_seed(pixel.psnr(b.flat / 255.0, b.gt_repeated / 255.0)), "PSNR (dB)", 2),
    _pixel("ssim", lambda b: b.per_seed(pixel.ssim(b.flat / 255.0, b.gt_repeated / 255.0)), "SSIM", 4),
    Metric("lpips", {"lpips": "LPIPS"}, {"lpips": 4}, True, image_columns=("lpips",), network="lpips_alex",
           weights="lpips", load=_lpips_load, per_image=_lpips),
    Metric("fid", {"fid": "FID"}, {"fid": 2}, False, set_columns=("fid",), network="fid_inception", weights="fid",
           per_set=_fid, first_seed_set=True),
    Metric("is", {"is": "IS"}, {"is": 3}, False, set_columns=("is",), network="fid_inception", weights="fid",
           per_set=_inception_score, first_seed_set=True),
    Metric("musiq", {"musiq": "MUSIQ"}, {"musiq": 2}, False, image_columns=("musiq",), network="musiq",
           weights="musiq", per_image=_musiq),
    Metric("clipiqa", {"clipiqa": "CLIPIQA"}, {"clipiqa": 4}, False, image_columns=("clipiqa",), network="clipiqa",
           weights="clipiqa", per_image=_clipiqa),
    Metric("id", {"id_acc": "ID ACC", "id_cs": "ID CS"}, {"id_acc": 3, "id_cs": 4}, True, image_columns=("id_cs",),
           set_columns=("id_acc",), network="vggface", weights="id", per_image=_identity,
           per_set=_identity_accuracy, kept=("id_distances",)),
    _pixel("lr_psnr", lambda b: b.per_seed(pixel.lr_consistency(b.flat, b.lr_repeated, b.scale)),
           "LR-consistency PSNR (dB)", 2),
    _pixel("diversity", lambda b: pixel.diversity(b.sr / 255.0), "diversity", 4, needs_ground_truth=False),
)
# Every metric by name, in the order of the table's columns (Table 2's: fid, is, musiq, clipiqa).
METRICS: dict[str, Metric] = {metric.name: metric for metric in _METRICS}
