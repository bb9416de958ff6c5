"""Evaluate DPI the way the paper's tables do: fidelity, perceptual and identity metrics, LR consistency and
diversity, for several settings.

    python -m dpi_jax.evaluate --config configs/demo.py --out out/eval
    python -m dpi_jax.evaluate --config configs/demo.py --sweep tau=0,100,300,500 --out out/eval_tau
    python -m dpi_jax.evaluate --config configs/paper.py:x8 --config.input_dir=celeba1000/ --ablation \
        --out out/table4                                                                  # the paper's Table 4
    python -m dpi_jax.evaluate --config configs/paper.py:x8 --config.input_dir=celeba1000/ \
        --metrics=psnr,ssim,lpips,fid --out out/table1_x8                                 # the paper's Table 1 row
    python -m dpi_jax.evaluate --config configs/paper.py:real --config.input_dir=lfw_lr/ --metrics=fid,is \
        --fid_reference=ffhq_stats.npz --out out/lfw                                      # Table 2, no reference

The config is a sampling config (``configs/default.py`` and the files built on it); any field can be overridden
(``--config.num_images=4 --config.num_seeds=3``). In synthetic mode the LR inputs are made from HR faces (a folder,
or ``synthfaces:heldout``) by bicubic downsampling, and the HR faces are the ground truth (GT); in real mode the
inputs are LR faces without GT, and only fid (against ``--fid_reference``), is, musiq, clipiqa and diversity can be
measured.

Settings (:mod:`~dpi_jax.evaluate.settings`): the config's (tau, s, omega) with its CRT (``dpi``) and without it
(``dpi-no-crt``: the condition stays the LR input's pixels; ``--no_crt_ablation`` drops it), plus the ``bicubic``
baseline. ``--ablation`` samples instead the six columns of the paper's Table 4 (full DPI, w/o CRT, w/o Refine, w/o
Stage II, w/o Weight, w/o k = 2) and measures SSIM / LPIPS / FID unless ``--metrics`` says otherwise. ``--sweep
tau=0,100,300`` adds one setting per value (also ``s=...``, ``omega=...``; repeatable). tau and omega count the
original timestep t, as in the config. Every setting sees the same inputs and the same noise.

Metrics (:mod:`~dpi_jax.evaluate.measures`), on the 8-bit results as saved: ``psnr``, ``ssim`` and ``lpips`` to the
GT, ``lr_psnr`` (the result downsampled like the LR input, against it), ``diversity`` (per-pixel std over seeds),
``fid`` (pytorch-fid: against the GT faces, or ``--fid_reference``), ``is`` (torch-fidelity) and ``id`` (DeepFace
VGG-Face: ACC, the share of SR/GT pairs verified as the same person, and CS, the mean cosine distance). The network
metrics need their weights ported once (``python -m dpi_jax.port ... --model lpips_alex | fid_inception | vggface``);
a missing one is named, with where to get it, before anything is sampled.

Written to ``--out`` (:mod:`~dpi_jax.evaluate.writers`; existing files are kept unless ``--overwrite``):
``metrics.csv``, ``metrics.md`` (also printed), ``metrics.json`` (with per-image values and the settings),
``grid_<setting>.png`` (rows: LR | bicubic | up to 4 seeds | GT), ``compare.png`` (every setting side by side,
first seed) and, for a sweep, ``sweep.png`` (LR consistency
against diversity, the paper's Fig. 7).
"""

from dpi_jax.evaluate.cli import main, run
from dpi_jax.evaluate.loop import evaluate
from dpi_jax.evaluate.measures import CHOICES, DEFAULT, MetricNetworks, parse_metrics
from dpi_jax.evaluate.settings import Setting, ablation_settings, default_settings, parse_sweep, slug
from dpi_jax.evaluate.writers import markdown_table, output_paths, plot_sweep, write_outputs

__all__ = ["main", "run", "evaluate", "CHOICES", "DEFAULT", "MetricNetworks", "parse_metrics", "Setting",
           "ablation_settings", "default_settings", "parse_sweep", "slug", "markdown_table", "output_paths",
           "plot_sweep", "write_outputs"]
