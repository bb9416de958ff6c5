"""Bad inputs are skipped by name and the run goes on; outputs are never lost or half-written."""

import subprocess

import numpy as np
import pytest
from PIL import Image

from dpi_jax import evaluate, images
from tests.fault_kit import BAD, GOOD, error_line, face, run_main, sample_config

# --- inputs: every bad file is skipped by name, the run goes on ---------------------------------------------------

def test_read_rgb_skips_every_bad_file_by_name(odd_inputs):
    for name in GOOD:
        path = next(odd_inputs.glob(name + ".*"))
        image = images.read_rgb(path)
        assert image.dtype == np.uint8 and image.shape == (32, 32, 3), name
    for name in BAD:
        path = next(odd_inputs.glob(name + ".*"))
        with pytest.raises(images.ImageReadError, match=name):
            images.read_rgb(path)
    with pytest.raises(images.ImageReadError, match="more than the limit of 100"):
        images.read_rgb(odd_inputs / "a_rgb.png", max_pixels=100)  # the documented, per-call limit
    assert Image.MAX_IMAGE_PIXELS != 100  # PIL's global guard was only changed for that call


@pytest.mark.slow
def test_sample_skips_bad_files_and_keeps_existing_outputs(ckpts, odd_inputs, tmp_path, caplog, capsys):
    """A 20000x20000 image, corrupt, empty and truncated files are skipped by name; every other image is written;
    an existing grid is kept (a new one goes beside it) and no temporary file is left behind."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "grid.png").write_bytes(b"an earlier grid")
    status, err = run_main(sample_config(ckpts, odd_inputs, out), capsys)
    assert status == 0, err
    for name in BAD:
        assert name in caplog.text, name
    assert "more than the limit of 50,000,000 pixels" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.png" for n in GOOD] + ["grid.png", "grid-1.png"])
    assert (out / "grid.png").read_bytes() == b"an earlier grid"
    assert np.asarray(Image.open(out / "a_rgb.png")).shape == (32, 32, 3)



# --- outputs -------------------------------------------------------------------------------------------------------

def test_read_only_output_dir_fails_before_sampling(ckpts, odd_inputs, tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    (out / "kept.png").write_bytes(b"earlier work")
    out.chmod(0o555)
    immutable = False
    try:
        try:
            (out / "probe").touch()
            (out / "probe").unlink()
            # root ignores the mode bits: make the folder immutable instead (ext4 and others), or give up
            immutable = subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode == 0
            if not immutable:
                pytest.skip("cannot make a read-only folder here (root without chattr)")
        except PermissionError:
            pass
        status, err = run_main(sample_config(ckpts, odd_inputs, out), capsys)
        line = error_line(err)
        assert status == 2 and "output_dir" in line and "not writable" in line and str(out) in line
        assert (out / "kept.png").read_bytes() == b"earlier work" and [p.name for p in out.iterdir()] == ["kept.png"]
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(out)])
        out.chmod(0o755)


def test_output_dir_that_is_a_file(ckpts, odd_inputs, tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"not a folder")
    status, err = run_main(sample_config(ckpts, odd_inputs, out), capsys)
    line = error_line(err)
    assert status == 2 and "is a file" in line and str(out) in line
    assert out.read_bytes() == b"not a folder"
    status, err = run_main(sample_config(ckpts, odd_inputs, out / "sub"), capsys)
    assert status == 2 and "is a file" in error_line(err)


def test_write_atomic_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    target = tmp_path / "a.png"
    images.save_png(target, face(0))
    before = target.read_bytes()

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(images.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        images.save_png(target, face(1))
    monkeypatch.undo()
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    with pytest.raises(FileExistsError, match="not replaced"):
        images.write_atomic(target, b"new", overwrite=False)
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    images.write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o666 & ~images._UMASK  # as open() would make it, not mkstemp's 0600


def test_evaluate_never_replaces_its_csv_unasked(tmp_path):
    row = dict(setting="bicubic", tau=None, s=None, omega=None, crt=False, swept="", grid=None, psnr=20.0,
               psnr_std=1.0)
    (tmp_path / "metrics.csv").write_text("earlier results")
    with pytest.raises(FileExistsError, match="metrics.csv"):
        evaluate.write_outputs([row], tmp_path, ["psnr"])
    assert (tmp_path / "metrics.csv").read_text() == "earlier results"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]
    evaluate.write_outputs([row], tmp_path, ["psnr"], overwrite=True)
    assert "20" in (tmp_path / "metrics.csv").read_text()
