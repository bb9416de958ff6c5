"""What ``sample.py`` does: super-resolve a folder of faces (or whole photos, ``config.mode = "photo"``) with the
engine of :mod:`dpi_jax.inference`, once per run of ``config.runs``, and write PNGs and a grid.

Outputs in ``config.output_dir``: ``<input name>.png`` for each SR result (with ``config.num_seeds = S > 1``:
``<stem>_s0.png`` ... ``<stem>_s{S-1}.png`` and ``<stem>_std.png``, the per-pixel standard deviation over the seeds)
and ``grid.png`` with one row per input: LR (nearest, enlarged) | bicubic | DPI (up to 4 seeds) | std map | ground
truth (synthetic mode). Existing files are never overwritten unless ``config.overwrite``: an input whose output
exists is skipped, and a new grid goes to ``grid-N.png``. The output folder is locked for the run
(:func:`dpi_jax.folders.locked`) and may not be the input folder.

Several processes (:mod:`dpi_jax.distributed`, docs/many_hosts.md): each reads its share of the inputs and writes
their images; process 0 locks the output folder and writes the grids, gathered from all.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import ml_collections
import numpy as np

from dpi_jax import cli, diffusion, distributed, folders, images, validation
from dpi_jax.inference import (  # noqa: F401  (the engine's names, as sample_lib offered them before)
    CRT_HELP,
    GRID_SEEDS,
    PRIOR_HELP,
    PRIOR_ONLY_NOTE,
    SYNTHFACES_PREFIX,
    SetupError,
    check_crt_scale,
    check_memory,
    effective_batch_size,
    grid_row,
    list_inputs,
    load_models,
    model_configs,
    prepare_image,
    prepare_input,
    sample_batches,
    synthfaces_split,
)

log = logging.getLogger(__name__)


def expand_runs(config: ml_collections.ConfigDict) -> list[tuple[str, ml_collections.ConfigDict]]:
    """``(name, config)`` of each run ``config.runs`` asks for, in name order: ``config`` with that run's fields
    changed and ``output_dir/<name>`` as its output folder; ``[("", config)]`` when ``config.runs`` is empty or
    absent."""
    runs = config.get("runs") or ml_collections.ConfigDict()
    if not runs:
        return [("", config)]
    expanded = []
    for name, fields in runs.items():  # in name order (ConfigDict sorts its keys)
        run_config = config.copy_and_resolve_references()
        with run_config.unlocked():
            run_config.runs = ml_collections.ConfigDict()
        changes = validation.dotted_fields(fields)
        known = validation.dotted_fields(run_config)
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise validation.ConfigError([f"config.runs.{name}.{field}: not a field of the sampling config"
                                          f"{validation.closest_field(run_config, field)}" for field in unknown])
        run_config.update_from_flattened_dict(changes)
        run_config.output_dir = str(Path(config.output_dir) / name)
        expanded.append((name, run_config))
    return expanded


def run(config: ml_collections.ConfigDict, runs: list | None = None) -> list[Path]:
    """Super-resolve every input of ``config`` (see :func:`list_inputs`), once per run of ``runs`` (by default
    :func:`expand_runs` of ``config``); returns the paths written. With several runs, ``output_dir/grid.png`` stacks
    the rows of their grids."""
    runs = expand_runs(config) if runs is None else runs
    if len(runs) == 1:
        return run_one(runs[0][1])[0]
    # Several: a file or a read-only folder fails before any work, and the folder is locked for all of them.
    out_dir = images.check_output_dir(config.output_dir)
    written, rows = [], []
    with _locked(out_dir):
        for name, run_config in runs:
            log.info("run %s: scale %s, tau %s, s %s, omega %s -> %s", name, run_config.scale, run_config.dpi.tau,
                     run_config.dpi.s, run_config.dpi.omega, run_config.output_dir)
            run_written, run_rows = run_one(run_config)
            written += run_written
            rows += run_rows
        if rows and distributed.is_main():
            written.append(write_grid(out_dir, rows, config))
    return written


def _locked(out_dir: Path):
    """The run's lock on its output folder, taken by process 0 (the others write only their own files)."""
    return folders.locked(out_dir, "sampling run") if distributed.is_main() else contextlib.nullcontext()


def write_grid(out_dir: Path, rows: list, config: ml_collections.ConfigDict) -> Path:
    """``out_dir/grid.png`` of ``rows`` (atomically); an existing grid is replaced only with ``config.overwrite``,
    otherwise the new one goes to ``grid-1.png``, ..."""
    grid_path = out_dir / "grid.png"
    grid_path = grid_path if config.overwrite else images.free_path(grid_path)
    path = images.save_png(grid_path, images.make_grid(rows), overwrite=bool(config.overwrite))
    log.info("wrote %s", path)
    return path


def run_one(config: ml_collections.ConfigDict) -> tuple[list[Path], list]:
    """One run (no ``runs``): the paths written and the rows of its grid. The output folder is locked for the run
    (:func:`dpi_jax.folders.locked`) and may not be the input folder."""
    out_dir = images.check_output_dir(config.output_dir)
    from_folder = synthfaces_split(config.input_dir) is None
    if (from_folder or config.mode == "photo") and not Path(config.input_dir).is_dir():
        raise SetupError(f"input_dir {config.input_dir} is not a folder (nothing was loaded or written)")
    if from_folder:
        folders.check_not_inputs(config.input_dir, out_dir)
    image_size = model_configs(config)[0]["image_size"]  # the checkpoints fit, before anything is written
    with _locked(out_dir):
        if config.mode == "photo":  # whole photos: detect, align, restore and paste back every face
            from dpi_jax.photo import pipeline
            return pipeline.run(config, checked=True), []
        return _sample_folder(config, out_dir, image_size)


def _sample_folder(config: ml_collections.ConfigDict, out_dir: Path, image_size: int) -> tuple[list[Path], list]:
    diffusion.make_schedule(**config.diffusion)  # a bad respacing fails early
    num_seeds = int(config.num_seeds)
    todo = list_inputs(config, image_size, out_dir)  # this process's share
    first, total = distributed.place(len(todo))  # this process's first input's place among all, and their number
    if not total:
        log.warning("nothing to do in %s: every input's output exists in %s", config.input_dir, out_dir)
        return [], []
    check_memory(config, image_size, total)  # before any parameter is read
    prior, prior_params, crt, crt_params = load_models(config, checked=True)  # run_one checked them
    out_dir.mkdir(parents=True, exist_ok=True)

    written, rows = [], {}
    position = {item.name: first + p for p, item in enumerate(todo)}
    for batch, sr in sample_batches(todo, config, prior, prior_params, crt, crt_params,
                                    progress=bool(config.get("progress", True))):
        for n, item in enumerate(batch):
            name, results = item.name, images.to_uint8(sr[:, n])
            extra = []
            keep = not config.overwrite  # per-image files follow the grid's no-clobber rule
            if num_seeds == 1:
                written.append(images.save_png(out_dir / f"{name}.png", results[0], overwrite=not keep))
            else:
                for m, result in enumerate(results):
                    written.append(images.save_png(out_dir / f"{name}_s{m}.png", result, overwrite=not keep))
                extra = [images.diversity_map(sr[:, n])]
                written.append(images.save_png(out_dir / f"{name}_std.png", extra[0], overwrite=not keep))
            if position[item.name] < config.grid_rows:
                rows[position[item.name]] = np.stack(grid_row(item.lr, results, image_size, extra=extra, gt=item.gt))
    log.info("wrote %d images in %s", len(written), out_dir)
    row_shape = (2 + min(num_seeds, GRID_SEEDS) + (num_seeds > 1) + (config.mode == "synthetic"),
                 image_size, image_size, 3)
    rows = [list(row) for row in distributed.gather_rows(rows, int(config.grid_rows), row_shape)]
    if distributed.is_main():
        written.append(write_grid(out_dir, rows, config))
    return written, rows


def shadowed_overrides(config: ml_collections.ConfigDict, overrides=()) -> list[str]:
    """The problems of command-line ``overrides`` (dotted field names, e.g. ``"dpi.tau"``) that no run would use: a
    field that a run of ``config.runs`` sets itself (the demo's runs set dpi.tau, dpi.s, dpi.omega, scale and
    crt_checkpoint), so that the run's own value would silently win."""
    runs = config.get("runs") or {}
    problems = []
    for dotted in overrides:
        if dotted.split(".", 1)[0] == "runs":
            continue
        setters = [name for name, fields in runs.items() if any(
            field == dotted or field.startswith(f"{dotted}.") for field in validation.dotted_fields(fields))]
        if setters:
            value = validation.dotted_fields(config).get(dotted, "(a section)")
            problems.append(f"config.{dotted} = {value!r}: not used, the run(s) {', '.join(setters)} of "
                            f"config.runs set their own {dotted}; set it per run, e.g. "
                            f"--config.runs.{setters[0]}.{dotted}=...")
    return problems


def run_from_config(config: ml_collections.ConfigDict, overrides=(), launch: dict | None = None) -> None:
    """sample.py's work: validate the config (:func:`dpi_jax.validation.check_sampling`, before any model is loaded),
    then run it. ``overrides``: the dotted fields set on the command line (refused where a run would ignore them).
    ``launch``: the arguments of :func:`dpi_jax.distributed.initialize` (a multi-process run when they name one)."""
    distributed.initialize(**(launch or {}))
    problems = shadowed_overrides(config, overrides)
    if problems:
        raise validation.ConfigError(problems)
    runs = expand_runs(config)
    for name, run_config in runs:
        try:
            validation.check_sampling(run_config)
        except validation.ConfigError as err:
            if not name:
                raise
            raise validation.ConfigError([f"{p} (in run {name})" for p in err.problems]) from None
    run(config, runs)


def main(config: ml_collections.ConfigDict, verbose: bool = False, overrides=(), launch: dict | None = None) -> int:
    """:func:`run_from_config` as sample.py runs it, returning the exit status (:func:`dpi_jax.cli.run_cli`): 0, or 2
    and one line ``error: ...`` on stderr for a setup error (the traceback only with ``verbose``)."""
    return cli.run_cli(lambda: run_from_config(config, overrides, launch), verbose=verbose)
