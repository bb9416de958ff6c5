"""The evaluation loop: every setting sampled on the same inputs with the same noise, then measured."""

from __future__ import annotations

from typing import Sequence

import ml_collections
import numpy as np
from tqdm import tqdm

from dpi_jax import distributed, images, inference
from dpi_jax.evaluate.measures import DEFAULT, Accumulator, MetricNetworks, set_fid_reference
from dpi_jax.evaluate.settings import Setting, unsampled_row


def evaluate(config: ml_collections.ConfigDict, settings: Sequence[Setting], *, metrics=DEFAULT,
             networks: MetricNetworks | None = None, models=None, inputs=None, progress: bool = True) -> list[dict]:
    """Run DPI with each setting on the inputs of ``config`` and measure it; returns one row per setting, then a
    "bicubic" row (the LR input resized bicubically to the HR size, measured alike).

    Args:
      config: a sampling config; in "synthetic" mode the HR inputs are the ground truth, in "real" mode there is
        none (only fid, is, musiq, clipiqa and diversity). Its num_seeds, batch_size, seed, respacing, ... are used.
      settings: :class:`~dpi_jax.evaluate.settings.Setting` values (``default_settings``, ``parse_sweep``).
      metrics: names of :data:`dpi_jax.evaluate.measures.CHOICES` (already parsed).
      networks: the metric networks ``metrics`` needs (:meth:`MetricNetworks.load`); none for pixel metrics.
      models: ``(prior, prior_params, crt, crt_params)`` as from ``inference.load_models(config)`` (loaded when None).
      inputs: this process's items of ``inference.list_inputs`` (listed from the config when None).
    Returns:
      rows: dicts with :meth:`Setting.row`'s fields (None for bicubic),
      ``num_images``, ``num_seeds``, each metric column with ``<column>_std``, ``per_image`` ({input name:
      {column: value}}), ``grid`` (a uint8 image; None for bicubic) and ``shown`` (the first seed's results of the
      first ``config.grid_rows`` inputs, uint8; the bicubic row also has ``lr_shown`` and ``gt_shown``), for
      ``compare.png``.
    """
    networks = networks or MetricNetworks()
    prior, prior_params, crt, crt_params = models if models is not None else inference.load_models(config)
    image_size = prior.image_size
    todo = list(inputs) if inputs is not None else inference.list_inputs(config, image_size)  # this process's
    every = inference.all_inputs(todo)  # all processes' inputs (todo itself in one process)
    if not every:
        raise inference.SetupError(f"no usable inputs in {config.input_dir}")
    if any(s.crt for s in settings) and crt is None:
        raise inference.SetupError("a setting asks for the CRT but config.crt_checkpoint is empty")
    has_gt = config.mode == "synthetic"
    gt_all = np.stack([item.gt for item in every]) if has_gt else None
    set_fid_reference(networks, gt_all, progress)
    scale, num_seeds = int(config.scale), int(config.num_seeds)
    names = [item.name for item in every]
    position = {name: p for p, name in enumerate(names)}
    grid_shape = (2 + min(num_seeds, inference.GRID_SEEDS) + has_gt, image_size, image_size, 3)
    rows = []
    for setting in tqdm(settings, desc="settings", unit="setting", disable=not progress):
        measured = Accumulator(metrics, networks, scale)
        grid = {}
        batches = inference.sample_batches(
            todo, config, prior, prior_params, crt if setting.crt else None, crt_params,
            overrides=setting.overrides, progress=progress, desc=setting.name, leave=False)
        for batch, sr in batches:  # in a run over several processes, this process's inputs
            if not batch:
                continue
            sr = images.to_uint8(sr)  # (S, B, H, W, 3), as it would be saved
            lr = np.stack([item.lr for item in batch])
            measured.add(sr, lr, np.stack([item.gt for item in batch]) if has_gt else None,
                         positions=[position[item.name] for item in batch])
            for n, item in enumerate(batch):
                if position[item.name] < config.grid_rows:
                    grid[position[item.name]] = np.stack(
                        inference.grid_row(item.lr, sr[:, n], image_size, gt=item.gt))
        measured.gather(len(every), (image_size, image_size, 3))  # all inputs' values, in every process
        grid = distributed.gather_rows(grid, int(config.grid_rows), grid_shape)
        row = dict(setting.row(config), num_images=len(names), num_seeds=num_seeds)
        row.update(measured.summary(names))
        row["grid"] = images.make_grid([list(r) for r in grid])
        row["shown"] = np.concatenate(measured.first_seed)[: config.grid_rows]
        rows.append(row)

    lr = np.stack([item.lr for item in every])
    bicubic = np.stack([images.resize(x, image_size) for x in lr])
    measured = Accumulator(metrics, networks, scale)
    measured.add(bicubic[None], lr, gt_all)
    row = dict(unsampled_row("bicubic"), num_images=len(names), num_seeds=1)
    row.update(measured.summary(names))
    row["grid"] = None
    row["shown"] = bicubic[:config.grid_rows]
    row["lr_shown"] = np.stack([images.nearest_up(x, image_size) for x in lr[:config.grid_rows]])
    row["gt_shown"] = gt_all[:config.grid_rows] if has_gt else None
    rows.append(row)
    return rows
