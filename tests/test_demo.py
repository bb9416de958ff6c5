"""The bundled demo: the shipped weights, and sample.py's default config run end to end (shortened)."""


import numpy as np
import pytest
from PIL import Image

from dpi_jax import checkpoint
from tests.fault_kit import error_line
from tests.reference import ROOT, run_python

WEIGHTS = ROOT / "weights" / "demo"


def test_shipped_weights_load_and_fit_the_budget():
    size = sum(p.stat().st_size for p in WEIGHTS.rglob("*") if p.is_file())
    assert size <= 25 * 2**20, f"weights/demo is {size / 2**20:.1f} MiB"
    assert (WEIGHTS / "MODEL_CARD.md").is_file()
    prior, _ = checkpoint.load_module(WEIGHTS / "prior")
    for scale in (8, 4):
        crt, _ = checkpoint.load_module(WEIGHTS / f"crt_x{scale}")
        assert (type(prior).__name__, type(crt).__name__) == ("ADM", "CRT")
        assert prior.image_size == crt.image_size == 64


@pytest.mark.slow
def test_demo_command_shortened(tmp_path):
    """`python sample.py` (its default is configs/demo.py: x8 and x4 runs) with 5 steps and 2 faces instead of 50 and
    4; on 5 steps (t = 999, 749, 500, 250, 0) x8's tau = 300 puts two in stage II, x4's tau = 100 one."""
    out = tmp_path / "demo"
    proc = run_python(["sample.py", f"--config.output_dir={out}", "--config.diffusion.respacing=5",
                       "--config.num_images=2", "--config.batch_size=2"])
    assert proc.returncode == 0, proc.stderr
    assert "run x8: scale 8, tau 300.0, s 1.2, omega 750.0" in proc.stderr
    assert "run x4: scale 4, tau 100.0, s 1.4, omega 500.0" in proc.stderr
    tile = 66  # 64 px tiles with 2 px padding
    for scale in ("x8", "x4"):
        names = sorted(p.name for p in (out / scale).iterdir())
        stems = sorted({n.split("_s")[0] for n in names if n.startswith("heldout_")})
        assert len(stems) == 2 and "grid.png" in names, (names, proc.stderr)
        assert all(f"{stem}_s{j}.png" in names for stem in stems for j in range(3))
        # 2 rows of LR | bicubic | 3 seeds | std | GT.
        assert np.asarray(Image.open(out / scale / "grid.png")).shape == (2 * tile + 2, 7 * tile + 2, 3)
    grid = np.asarray(Image.open(out / "grid.png"))  # the runs in name order: the x4 rows, then the x8 rows
    assert grid.shape == (4 * tile + 2, 7 * tile + 2, 3)
    np.testing.assert_array_equal(grid[:2 * tile + 2], np.asarray(Image.open(out / "x4" / "grid.png")))
    np.testing.assert_array_equal(grid[2 * tile:], np.asarray(Image.open(out / "x8" / "grid.png")))
    # The inputs differ in resolution: the x8 row's LR tile is 8x8 blocks of 8 pixels, the x4 row's 4x4 blocks.
    lr4, lr8 = grid[2:66, 2:66], grid[2 * tile + 2:2 * tile + 66, 2:66]
    assert (lr8[::8, ::8].repeat(8, 0).repeat(8, 1) == lr8).all()
    assert not (lr4[::8, ::8].repeat(8, 0).repeat(8, 1) == lr4).all()
    assert (lr4[::4, ::4].repeat(4, 0).repeat(4, 1) == lr4).all()


@pytest.mark.slow
def test_prior_samples_command(tmp_path, capsys):
    """python -m dpi_jax.demo.prior_samples: a grid of unconditional samples of the shipped prior (2 steps here);
    an existing PNG is kept unless --overwrite, a CRT directory is refused by name."""
    from dpi_jax.demo import prior_samples

    out = tmp_path / "samples.png"
    args = [str(WEIGHTS / "prior"), str(out), "--count", "3", "--per_row", "2", "--respacing", "2"]
    assert prior_samples.main(args) == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape == (2 * 66 + 2, 2 * 66 + 2, 3)
    assert grid[2:66, 2:66].std() > 0 and (grid[68:132, 68:132] == 255).all()  # 3 samples, the 4th tile empty
    assert prior_samples.main(args) == 2 and "exists" in capsys.readouterr().err
    assert prior_samples.main(args + ["--overwrite"]) == 0
    assert prior_samples.main([str(WEIGHTS / "crt_x8"), str(tmp_path / "x.png")]) == 2
    assert "crt" in capsys.readouterr().err
    # Flags are checked before anything is loaded: one line, status 2.
    assert prior_samples.main(args + ["--count", "0"]) == 2
    assert error_line(capsys.readouterr().err) == "error: flag --count=0: 0 is not a positive integer"
    assert prior_samples.main(args + ["--var_type", "fixed"]) == 2 and "--var_type" in capsys.readouterr().err


@pytest.mark.slow
def test_prior_only_is_not_noise():
    """Without a CRT (the paper's Table 4 "w/o CRT", and every user who has only a prior) the shipped demo prior still
    restores faces: on 2 held-out faces at x8 (20 steps), LR consistency within 4 dB of the CRT path and PSNR to the
    ground truth within 3 dB of bicubic. (The old no-CRT path, which fed a noisy y back in as if it were clean, gave
    noise: about 12 dB PSNR and 15 dB LR consistency at 50 steps.)"""
    from configs import demo
    from dpi_jax import images, sample_lib
    from dpi_jax.metrics import pixel

    config = demo.get_config()
    config.update(dict(num_images=2, num_seeds=1, batch_size=2, respacing="20"))
    config.prior_checkpoint, config.crt_checkpoint = str(WEIGHTS / "prior"), str(WEIGHTS / "crt_x8")
    prior, prior_params, crt, crt_params = sample_lib.load_models(config)
    todo = sample_lib.list_inputs(config, prior.image_size)
    lr, gt = np.stack([item[1] for item in todo]), np.stack([item[3] for item in todo])

    def measured(with_crt):
        (_, sr), = sample_lib.sample_batches(todo, config, prior, prior_params, crt if with_crt else None, crt_params,
                                             progress=False)
        sr = images.to_uint8(sr[0])
        return pixel.lr_consistency(sr, lr, 8).mean(), pixel.psnr(sr / 255.0, gt / 255.0).mean()

    (lr_crt, _), (lr_alone, psnr_alone) = measured(True), measured(False)
    bicubic = np.stack([images.resize(x, prior.image_size) for x in lr])
    psnr_bicubic = pixel.psnr(bicubic / 255.0, gt / 255.0).mean()
    assert lr_alone > lr_crt - 4 and lr_alone > 24, (lr_alone, lr_crt)
    assert psnr_alone > psnr_bicubic - 3, (psnr_alone, psnr_bicubic)
