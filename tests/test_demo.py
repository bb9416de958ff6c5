"""The bundled demo: the shipped weights, and sample.py's default config run end to end (shortened)."""


import numpy as np
from PIL import Image

from dpi_jax import checkpoint
from tests.reference import ROOT, run_python

WEIGHTS = ROOT / "weights" / "demo"


def test_shipped_weights_load_and_fit_the_budget():
    size = sum(p.stat().st_size for p in WEIGHTS.rglob("*") if p.is_file())
    assert size <= 25 * 2**20, f"weights/demo is {size / 2**20:.1f} MiB"
    assert (WEIGHTS / "MODEL_CARD.md").is_file()
    prior, _ = checkpoint.load_module(WEIGHTS / "prior")
    crt, _ = checkpoint.load_module(WEIGHTS / "crt_x8")
    assert (type(prior).__name__, type(crt).__name__) == ("ADM", "CRT")
    assert prior.image_size == crt.image_size == 64


def test_demo_command_shortened(tmp_path):
    """`python sample.py` (its default is configs/demo.py) with 5 steps and 2 faces instead of 50 and 6; tau = 300
    puts two of the five steps (t = 0, 250) in stage II."""
    out = tmp_path / "demo"
    proc = run_python(["sample.py", f"--config.output_dir={out}", "--config.respacing=5", "--config.tau=300",
                       "--config.num_images=2", "--config.batch_size=2"])
    names = sorted(p.name for p in out.iterdir())
    stems = sorted({n.split("_s")[0] for n in names if n.startswith("heldout_")})
    assert len(stems) == 2 and "grid.png" in names, (names, proc.stderr)
    assert all(f"{stem}_s{j}.png" in names for stem in stems for j in range(3))
    grid = np.asarray(Image.open(out / "grid.png"))
    # 2 rows of LR | bicubic | 3 seeds | std | GT, 64 px tiles with 2 px padding.
    assert grid.shape == (2 * 66 + 2, 7 * 66 + 2, 3)
