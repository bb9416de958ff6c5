"""The command line of ``python -m dpi_jax.evaluate`` (see the package docstring)."""

from __future__ import annotations

import sys
from typing import Sequence

import ml_collections

from dpi_jax import distributed, images, launch
from dpi_jax.evaluate import measures
from dpi_jax.evaluate.loop import evaluate
from dpi_jax.evaluate.registry import METRICS
from dpi_jax.evaluate.settings import ABLATION_K, ablation_settings, default_settings, parse_sweep, unique
from dpi_jax.evaluate.writers import markdown_table, output_paths, write_outputs

TABLE4_METRICS = ("ssim", "lpips", "fid")  # the rows of the paper's Table 4


def table_note(rows: Sequence[dict], metrics, networks: measures.MetricNetworks) -> str:
    """What the table's numbers are, in one paragraph under it."""
    seeds = max((r["num_seeds"] for r in rows), default=1)
    parts = [f"Mean ± std over {rows[0]['num_images'] if rows else 0} images, {seeds} seed(s) per image; per-image "
             "metrics averaged over the seeds."]
    if "fid" in metrics or "is" in metrics:
        parts.append("FID (pytorch-fid) and IS (torch-fidelity, ± std over splits) on the first seed's results"
                     + (" against the ground-truth faces." if "fid" in metrics else "."))
    if "id" in metrics:
        parts.append(f"ID: DeepFace VGG-Face ({networks.id_descriptor}) cosine distance to the ground truth (CS) and "
                     f"the share of pairs within {networks.id_threshold:g} (ACC).")
    if "musiq" in metrics or "clipiqa" in metrics:
        parts.append("MUSIQ (KonIQ) and CLIPIQA as pyiqa's musiq and clipiqa, per image, higher is better.")
    if "diversity" in metrics:
        parts.append("Diversity: mean per-pixel std over seeds ([0, 1] scale).")
    return " ".join(parts)


def check_settings(config: ml_collections.ConfigDict, settings) -> None:
    """Every setting's DPI values against the sampler's rules, before anything is loaded or sampled: one
    ConfigError naming each bad setting and field."""
    from dpi_jax import validation

    problems = []
    for setting in settings:
        values = setting.sampler_settings(config)
        problems += [f"setting {setting.name}: {p}" for p in values.problems(int(config.diffusion.num_timesteps))]
    if problems:
        raise validation.ConfigError(problems)


def run(config: ml_collections.ConfigDict, out_dir, *, metrics=measures.DEFAULT, sweeps: Sequence[str] = (),
        crt_ablation: bool = True, ablation: bool = False, ablation_k: int = ABLATION_K, overwrite: bool = False,
        weights: dict | None = None, fid_reference: str = "", id_descriptor: str = "fc8",
        progress: bool = True) -> list[dict]:
    """What the command does: settings, refusal of existing outputs and loading of the metric networks (before any
    sampling), evaluation, files, and the table printed. ``ablation``: the columns of the paper's Table 4 as rows
    (:func:`~dpi_jax.evaluate.settings.ablation_settings`). Returns the rows."""
    metrics = measures.parse_metrics(metrics, config.mode)
    settings = ablation_settings(config, ablation_k) if ablation else default_settings(config, crt_ablation)
    for spec in sweeps:
        settings += parse_sweep(spec, config)
    settings = unique(settings)
    check_settings(config, settings)
    sweep = any(s.swept for s in settings) and "diversity" in metrics
    existing = [p for p in output_paths(out_dir, [s.name for s in settings], sweep) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]}{f' (and {len(existing) - 1} more)' if len(existing) > 1 else ''} "
                              f"already exists in {out_dir}: pass --overwrite to replace, or choose another --out")
    networks = measures.MetricNetworks.load(metrics, weights, fid_reference=fid_reference or None,
                                            id_descriptor=id_descriptor, progress=progress)
    rows = evaluate(config, settings, metrics=metrics, networks=networks, progress=progress)
    columns = measures.columns(metrics)
    note = table_note(rows, metrics, networks)
    meta = dict(config=config.to_dict(), settings=[s.as_dict() for s in settings], metrics=list(metrics),
                fid_reference=fid_reference or ("ground truth" if "fid" in metrics else None))
    if distributed.is_main():  # in a run over several processes, every process holds all rows; process 0 writes
        write_outputs(rows, out_dir, columns, overwrite=overwrite, meta=meta, note=note)
        print(markdown_table(rows, columns, note))
    return rows


def _define_flags():
    from absl import flags

    from dpi_jax import cli

    config = cli.define_config_file("config", "configs/demo.py", "Sampling configuration file.")
    flags.DEFINE_string("out", "out/eval", "Folder for metrics.{csv,md,json}, the grids and sweep.png.")
    flags.DEFINE_string("metrics", ",".join(measures.DEFAULT),
                        f"Comma-separated metrics: {', '.join(measures.CHOICES)} (the paper's Table 1: "
                        "psnr,ssim,lpips,fid; Table 2, real-world: fid,is,musiq,clipiqa; Table 3: id).")
    flags.DEFINE_multi_string("sweep", [], "A sweep, e.g. tau=0,100,300,500 (also s=..., omega=...); repeatable.")
    flags.DEFINE_bool("no_crt_ablation", False, "Skip the setting without the CRT.")
    flags.DEFINE_bool("ablation", False, "The paper's Table 4: full DPI, w/o CRT, w/o Refine, w/o Stage II (tau=0), "
                      f"w/o Weight (w=1), w/o k=2 (k=--ablation_k); metrics {','.join(TABLE4_METRICS)} unless "
                      "--metrics is given.")
    flags.DEFINE_integer("ablation_k", ABLATION_K, "The sparsity of Table 4's \"w/o k = 2\" column.")
    flags.DEFINE_bool("overwrite", False, "Replace existing outputs in --out.")
    for key, folder in measures.weight_folders().items():  # --lpips_weights, --fid_weights, ...
        users = ", ".join(m.name for m in METRICS.values() if m.weights == key)
        flags.DEFINE_string(f"{key}_weights", folder, f"Ported checkpoint for {users} (python -m dpi_jax.port ...).")
    flags.DEFINE_string("fid_reference", "", "FID against this folder or pytorch-fid .npz statistics file instead "
                        "of the ground-truth faces (needed without ground truth, config.mode=real).")
    flags.DEFINE_enum("id_descriptor", "fc8", ["fc8", "fc7"], "VGG-Face embedding: fc8 (2622-d, threshold 0.40, "
                      "the DeepFace the paper used) or fc7 (4096-d, threshold 0.68, today's DeepFace).")
    launch.define_flags()
    # --help lists the key flags of the main module (python -m: dpi_jax/evaluate/__main__.py): make these its own
    for flag in flags.FLAGS.flags_by_module_dict().get(__name__, []):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    return config, flags.FLAGS


def main():
    """The command line (:func:`dpi_jax.cli.run`); exits with 0, or 2 on a setup error (one line on stderr;
    --verbose for the traceback). The config is checked before any model is loaded."""
    from dpi_jax import cli, validation

    config_holder, FLAGS = _define_flags()

    def validated_run():
        distributed.initialize(**launch.launch_from_flags())
        validation.check_sampling(config_holder.value)
        images.check_output_dir(FLAGS.out)
        weights = {key: FLAGS[f"{key}_weights"].value for key in measures.weight_folders()}
        metrics = TABLE4_METRICS if FLAGS.ablation and not FLAGS["metrics"].present else FLAGS.metrics
        run(config_holder.value, FLAGS.out, metrics=metrics, sweeps=FLAGS.sweep,
            crt_ablation=not FLAGS.no_crt_ablation, ablation=FLAGS.ablation, ablation_k=FLAGS.ablation_k,
            overwrite=FLAGS.overwrite, weights=weights,
            fid_reference=FLAGS.fid_reference, id_descriptor=FLAGS.id_descriptor)

    cli.run(validated_run)
