"""The files of an evaluation: metrics.csv, metrics.md (also printed), metrics.json, grid_<setting>.png per sampled
setting, compare.png (every setting side by side, first seed) with two or more of them and, with a sweep, sweep.png
(LR consistency against diversity, the paper's Fig. 7)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

from dpi_jax import images
from dpi_jax.evaluate.measures import DIGITS, LABELS
from dpi_jax.evaluate.settings import ROW_FIELDS, SWEEP_PARAMS, slug
from dpi_jax.sampler import DEFAULT_SETTINGS

PICTURES = ("grid", "shown", "lr_shown", "gt_shown")  # the rows' images, kept out of metrics.json
SETTING_FIELDS = ("setting", "crt", *ROW_FIELDS, "num_images", "num_seeds")  # the CSV's first columns


def output_paths(out_dir, names: Sequence[str], sweep: bool) -> list[Path]:
    """The files :func:`write_outputs` writes for sampled settings with these names (``compare.png`` for two or more,
    ``sweep.png`` when ``sweep``)."""
    out_dir = Path(out_dir)
    paths = [out_dir / n for n in ("metrics.csv", "metrics.md", "metrics.json")]
    paths += [out_dir / f"grid_{slug(name)}.png" for name in names]
    paths += [out_dir / "compare.png"] if len(names) > 1 else []
    return paths + ([out_dir / "sweep.png"] if sweep else [])


def plot_compare(rows: Sequence[dict], path) -> Path:
    """Every setting side by side on the same inputs and noise (the first seed): one row per input, columns LR |
    bicubic | each sampled setting | GT, each column named above it (e.g. Table 4's columns with ``--ablation``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bicubic = next(r for r in rows if r["grid"] is None)
    sampled = [r for r in rows if r["grid"] is not None]
    columns = [("LR", bicubic["lr_shown"]), ("bicubic", bicubic["shown"])]
    columns += [(r["setting"], r["shown"]) for r in sampled]
    columns += [("GT", bicubic["gt_shown"])] if bicubic.get("gt_shown") is not None else []
    count = min(len(pictures) for _, pictures in columns)
    grid = images.make_grid([[c[1][n] for c in columns] for n in range(count)])
    tile = columns[0][1].shape[1] + 2
    fig = Figure(figsize=(grid.shape[1] / 80, grid.shape[0] / 80 + 0.6), dpi=160)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, grid.shape[0] / (grid.shape[0] + 48)))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    for c, (name, _) in enumerate(columns):
        ax.text(2 + c * tile + tile / 2, -4, name, ha="center", va="bottom", fontsize=6, rotation=20)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return images.write_atomic(Path(path), buffer.getvalue(), overwrite=True)


def _cell(row: dict, column: str) -> str:
    mean, std, digits = row.get(column), row.get(f"{column}_std"), DIGITS[column]
    if mean is None:
        return "-"
    if not math.isfinite(mean):
        return str(mean)
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def describe(row: dict) -> str:
    """The setting column of the table: the name, the sweepable values, the CRT and the switches that differ from
    the paper's (no refine, w = 1, a k other than 2)."""
    if row.get("crt") is None:  # not sampled (bicubic)
        return row["setting"]
    parts = [f"{name}={row[name]:g}" for name in SWEEP_PARAMS if row.get(name) is not None]
    parts.append("CRT" if row["crt"] else "no CRT")
    parts += [] if row.get("refine", True) else ["no refine"]
    parts += [] if row.get("weight", True) else ["w = 1"]
    parts += [f"k={row['k']}"] if row.get("k", DEFAULT_SETTINGS.k) != DEFAULT_SETTINGS.k else []
    return f"{row['setting']} ({', '.join(parts)})"


def markdown_table(rows: Sequence[dict], columns: Sequence[str], note: str = "") -> str:
    """The metrics as a markdown table (per-image metrics as mean ± std over images), with ``note`` below."""
    lines = ["| setting | " + " | ".join(LABELS[c] for c in columns) + " |",
             "| --- |" + " --- |" * len(columns)]
    for row in rows:
        lines.append(f"| {describe(row)} | " + " | ".join(_cell(row, c) for c in columns) + " |")
    return "\n".join(lines + ([("\n" + note)] if note else []))


def plot_sweep(rows: Sequence[dict], path) -> Path:
    """LR-consistency PSNR (or, without it, diversity alone) against diversity, one point per sampled setting; sweep
    points are joined per swept parameter and labelled with their value (the paper's Fig. 7)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y_key = "lr_psnr" if all("lr_psnr" in r for r in rows) else "diversity"
    sampled = [r for r in rows if r["tau"] is not None and math.isfinite(r[y_key])]
    for param in dict.fromkeys(r["swept"] for r in sampled if r["swept"]):
        group = [r for r in sampled if r["swept"] == param]
        ax.plot([r["diversity"] for r in group], [r[y_key] for r in group], "o-", label=f"{param} sweep")
        for r in group:
            ax.annotate(f"{param}={r['value']:g}", (r["diversity"], r[y_key]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
    for r in (r for r in sampled if not r["swept"]):
        ax.plot([r["diversity"]], [r[y_key]], "s", color="gray")
        ax.annotate(r["setting"], (r["diversity"], r[y_key]), textcoords="offset points", xytext=(4, -10),
                    fontsize=8, color="gray")
    ax.set_xlabel("diversity (mean per-pixel std over seeds, [0, 1] scale)")
    ax.set_ylabel(LABELS[y_key])
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    if any(r["swept"] for r in sampled):
        ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150)
    return images.write_atomic(Path(path), buffer.getvalue(), overwrite=True)


def write_outputs(rows: Sequence[dict], out_dir, columns: Sequence[str], *, overwrite: bool = False,
                  meta: dict | None = None, note: str = "") -> list[Path]:
    """Write every file (atomically); existing files are refused (FileExistsError naming them) unless ``overwrite``.
    Returns the paths written."""
    out_dir = Path(out_dir)
    sampled = [r for r in rows if r["grid"] is not None]
    sweep = any(r["swept"] for r in sampled) and all("diversity" in r for r in sampled)
    paths = output_paths(out_dir, [r["setting"] for r in sampled], sweep)
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(map(str, existing))} already exist(s): pass --overwrite to replace")
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path, json_path = paths[:3]
    fields = list(SETTING_FIELDS) + [f for c in columns for f in (c, f"{c}_std")]
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in fields})
    plain = [{k: v for k, v in r.items() if k not in PICTURES} for r in rows]
    texts = {csv_path: table.getvalue(), md_path: markdown_table(rows, columns, note) + "\n",
             json_path: json.dumps(dict(meta or {}, rows=plain), indent=1, default=str)}
    for path, text in texts.items():
        images.write_atomic(path, text, overwrite=overwrite)
    written = [csv_path, md_path, json_path]
    for row in sampled:
        written.append(images.save_png(out_dir / f"grid_{slug(row['setting'])}.png", row["grid"], overwrite=overwrite))
    if len(sampled) > 1:
        written.append(plot_compare(rows, out_dir / "compare.png"))
    if sweep:
        written.append(plot_sweep(rows, out_dir / "sweep.png"))
    return written
