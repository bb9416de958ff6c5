"""Every bad input a clear message, every fault survived: one test per case of the robustness issue.

Each test asserts the exit status (or the exception), that the message names the cause, and that nothing already
written was lost or replaced. Most run in-process (``sample_lib.main`` / ``port.main`` return the exit status and
print to stderr); a few run the real commands to check the one-line ``error: ...`` and ``--verbose``.
"""

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from configs import crt_x8, default, x8
from dpi_jax import checkpoint, evaluate, images, port, sample_lib, validation
from dpi_jax.models import abstract_params, make_model
from tests.reference import ROOT, TRAJ_ADM, TRAJ_CRT, run_python

# --- fixtures ------------------------------------------------------------------------------------------------------


def random_params(kind, config, seed=0):
    abstract = abstract_params(make_model(kind, config))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (0.05 * rng.standard_normal(s.shape)).astype(np.float32), abstract)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Tiny random 32x32 prior (adm) and CRT checkpoints."""
    root = tmp_path_factory.mktemp("ckpts")
    checkpoint.save_model(root / "adm", random_params("adm", TRAJ_ADM), TRAJ_ADM, kind="adm")
    checkpoint.save_model(root / "crt", random_params("crt", TRAJ_CRT, 1), TRAJ_CRT, kind="crt")
    return root


def face(seed, size=32):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def huge_png(path: Path, side: int = 20000):
    """A genuine side x side 1-bit black PNG (50 MB of pixels, a few tens of kB of file)."""
    row = b"\x00" + bytes((side + 7) // 8)
    raw = zlib.compress(row * side, 9)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


@pytest.fixture
def odd_inputs(tmp_path):
    """Good images in every odd format, and bad files of every kind."""
    folder = tmp_path / "hr"
    folder.mkdir()
    Image.fromarray(face(0)).save(folder / "a_rgb.png")
    Image.fromarray(face(1)[..., 0]).save(folder / "b_gray.png")
    Image.fromarray(np.dstack([face(2), np.full((32, 32), 128, np.uint8)])).save(folder / "c_rgba.png")
    Image.fromarray(face(3)).convert("P").save(folder / "d_palette.png")
    Image.fromarray((face(4)[..., 0].astype(np.uint16) * 257)).save(folder / "e_16bit.png")
    Image.fromarray(face(5)).convert("CMYK").save(folder / "f_cmyk.jpg")
    huge_png(folder / "g_huge.png")
    (folder / "h_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (folder / "i_empty.png").write_bytes(b"")
    good = folder / "j_truncated.png"
    Image.fromarray(face(6)).save(good)
    good.write_bytes(good.read_bytes()[:200])
    return folder


GOOD = ["a_rgb", "b_gray", "c_rgba", "d_palette", "e_16bit", "f_cmyk"]
BAD = ["g_huge", "h_corrupt", "i_empty", "j_truncated"]


def sample_config(ckpts, inputs, out, **overrides) -> ml_collections.ConfigDict:
    config = x8.get_config()
    config.input_dir, config.output_dir = str(inputs), str(out)
    config.prior_checkpoint, config.crt_checkpoint = str(ckpts / "adm"), str(ckpts / "crt")
    config.respacing, config.batch_size = "2", 4
    config.update(overrides)
    return config


def run_main(config, capsys):
    """(exit status, stderr) of sample_lib.main, in-process."""
    status = sample_lib.main(config)
    return status, capsys.readouterr().err


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


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


# --- config validation ----------------------------------------------------------------------------------------------

SAMPLING_CASES = [  # (field, value, words the message must hold)
    ("batch_size", 0, ">= 1"),
    ("k", 0, ">= 1"),
    ("respacing", "abc", "'ddimN'"),
    ("respacing", "2000", "2000"),
    ("dtype", "float16", "'bfloat16'"),
    ("grid_rows", 0, ">= 1"),
    ("method", "bogus", "ddim"),
    ("var_type", "bogus", "learned_range"),
    ("tau", -1.0, "[0, 1000)"),
    ("tau", float("nan"), "[0, 1000)"),
    ("tau", 1000.0, "[0, 1000)"),
    ("s", -1.0, "> 0"),
    ("s", 0.0, "> 0"),
    ("s", float("nan"), "> 0"),
    ("omega", 0.0, "> 0"),
    ("omega", -5.0, "> 0"),
    ("eta", 2.0, "[0, 1]"),
    ("num_images", -1, ">= 0"),
    ("num_seeds", 0, ">= 1"),
    ("seed_chunk", -1, ">= 0"),
    ("scale", 0, ">= 1"),
    ("num_timesteps", 0, ">= 1"),
    ("mode", "bogus", "'synthetic'"),
    ("beta_schedule", "quadratic", "'cosine'"),
    ("output_dir", "", "a folder"),
]


@pytest.mark.parametrize("field, value, allowed", SAMPLING_CASES, ids=lambda v: str(v))
def test_sampling_config_rule(field, value, allowed):
    config = default.get_config()
    config[field] = value
    with pytest.raises(validation.ConfigError) as err:
        validation.check_sampling(config)
    message = str(err.value)
    assert f"config.{field} = " in message and allowed in message, message
    assert repr(value) in message or str(value) in message, message


def test_every_shipped_config_is_valid():
    """Every file under configs/ (found by glob), with each variant a get_config(arg) offers: a sampling config
    passes check_sampling, a training config (it has a model section) check_training."""
    import importlib
    import inspect

    checked = []
    for path in sorted((ROOT / "configs").glob("*.py")):
        module = importlib.import_module(f"configs.{path.stem}")
        if not hasattr(module, "get_config"):
            continue
        variants = getattr(module, "PAPER", None) if inspect.signature(module.get_config).parameters else None
        for config in [module.get_config(v) for v in variants] if variants else [module.get_config()]:
            if "model" in config:
                if not config.model.config:  # train_default: the base the crt_* and ddpm_* files complete
                    continue
                config.workdir = config.workdir or "runs/x"
                if config.data.source == "folder":  # the data folder is the user's
                    config.data.source = "synthetic"
                validation.check_training(config)
            else:
                validation.check_sampling(config)
            checked.append(path.stem)
    assert {"default", "demo", "x8", "prior_only", "crt_x8", "ddpm_demo", "photo"} <= set(checked), checked


def test_sampling_reports_every_problem_before_loading_anything(tmp_path, capsys):
    config = sample_config(tmp_path / "no", tmp_path, tmp_path / "out", batch_size=0, dtype="float16", k=0)
    status, err = run_main(config, capsys)  # the checkpoints do not exist: the config is checked first
    line = error_line(err)
    assert status == 2 and all(f in line for f in ("batch_size = 0", "dtype = 'float16'", "k = 0"))
    assert not (tmp_path / "out").exists()


def test_runs_are_checked_by_name_before_loading_anything(tmp_path, capsys):
    """config.runs (the demo's x4 and x8): a field a run changes is checked like any other and named with its run;
    a field that the sampling config does not have is refused by its path."""
    config = sample_config(tmp_path / "no", tmp_path, tmp_path / "out")
    config.runs = ml_collections.ConfigDict(dict(a=dict(tau=100.0), b=dict(tau=-1.0)))
    status, err = run_main(config, capsys)
    line = error_line(err)
    assert status == 2 and "tau" in line and "(in run b)" in line and "(in run a)" not in line
    config.runs = ml_collections.ConfigDict(dict(a=dict(sigma=1.0)))
    status, err = run_main(config, capsys)
    assert status == 2 and "config.runs.a.sigma: not a field of the sampling config" in error_line(err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("field, value", [("k", 3), ("scale", 3), ("k", 64)])
def test_k_and_scale_must_divide_the_prior_size(ckpts, odd_inputs, tmp_path, capsys, field, value):
    status, err = run_main(sample_config(ckpts, odd_inputs, tmp_path / "out", **{field: value}), capsys)
    line = error_line(err)
    assert status == 2 and f"config.{field} = {value}" in line and "image size 32" in line
    assert not (tmp_path / "out").exists()


def train_config() -> ml_collections.ConfigDict:
    """configs/crt_x8.py with a workdir and synthetic data (its data folder is the user's)."""
    config = crt_x8.get_config()
    config.workdir, config.data.source = "runs/x", "synthetic"
    return config


TRAINING_CASES = [
    ("batch_size", 0, ">= 1"),
    ("num_steps", 0, ">= 1"),
    ("k", 0, ">= 1"),
    ("k", 3, "divisor"),
    ("scale", 7, "divisor"),
    ("degradation", "blurry", "'codeformer'"),
    ("sample_respacing", "x", "'ddimN'"),
    ("ema_decay", 1.5, "[0, 1]"),
    ("var_type", "bogus", "'fixed_small'"),
    ("log_every", 0, ">= 1"),
    ("checkpoint_every", 0, ">= 1"),
    ("keep_checkpoints", 0, ">= 1"),
    ("optim.learning_rate", 0.0, "(0, inf)"),
    ("optim.learning_rate", float("nan"), "(0, inf)"),
    ("optim.schedule", "linear", "'cosine'"),
    ("optim.b2", 1.0, "[0, 1)"),
    ("optim.warmup_steps", -1, ">= 0"),
    ("optim.grad_clip", -1.0, "[0, inf)"),
    ("data.source", "web", "'folder'"),
    ("data.folder", "", "an existing folder"),
    ("data.workers", 0, ">= 1"),
    ("model.kind", "vae", "'crt'"),
    ("loss.posterior_from", "x", "'gt'"),
    ("diffusion.num_timesteps", 0, ">= 1"),
    ("workdir", "", "a folder"),
]


@pytest.mark.parametrize("field, value, allowed", TRAINING_CASES, ids=lambda v: str(v))
def test_training_config_rule(field, value, allowed):
    config = train_config()
    if field == "data.folder":
        config.data.source = "folder"
    *parents, leaf = field.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = value
    with pytest.raises(validation.ConfigError) as err:
        validation.check_training(config)
    message = str(err.value)
    assert f"config.{field} = " in message and allowed in message, message


def test_training_config_names_an_impossible_model_config():
    config = train_config()
    config.model.config.num_chanels = 4
    with pytest.raises(validation.ConfigError, match="config.model.config.*num_chanels"):
        validation.check_training(config)


def test_unknown_field_names_the_closest_one():
    assert validation.closest_field(default.get_config(), "tua") == "; did you mean 'tau'?"
    assert (validation.closest_field(crt_x8.get_config(), "optim.lerning_rate")
            == "; did you mean 'optim.learning_rate'?")
    assert validation.closest_field(crt_x8.get_config(), "modle.kind") == "; did you mean 'model.kind'?"
    assert validation.closest_field(default.get_config(), "zzzzzz") == ""


# --- checkpoints ---------------------------------------------------------------------------------------------------

def test_prior_checkpoint_pointing_at_a_crt_and_the_reverse(ckpts, odd_inputs, tmp_path, capsys):
    config = sample_config(ckpts, odd_inputs, tmp_path / "out", prior_checkpoint=str(ckpts / "crt"))
    status, err = run_main(config, capsys)
    assert status == 2 and error_line(err) == (f"error: {ckpts / 'crt'} is a crt checkpoint, but prior_checkpoint "
                                               f"needs an adm (prior) checkpoint")
    config = sample_config(ckpts, odd_inputs, tmp_path / "out", crt_checkpoint=str(ckpts / "adm"))
    status, err = run_main(config, capsys)
    assert status == 2 and error_line(err) == (f"error: {ckpts / 'adm'} is an adm checkpoint, but crt_checkpoint "
                                               f"needs a crt (corrector) checkpoint")
    assert not (tmp_path / "out").exists()


def test_checkpoint_whose_config_does_not_fit_its_parameters(ckpts, odd_inputs, tmp_path, capsys):
    bad = tmp_path / "adm_other_shape"
    shutil.copytree(ckpts / "adm", bad)
    meta = json.loads((bad / "model.json").read_text())
    meta["config"]["num_channels"] = 64
    (bad / "model.json").write_text(json.dumps(meta))
    status, err = run_main(sample_config(ckpts, odd_inputs, tmp_path / "out", prior_checkpoint=str(bad)), capsys)
    line = error_line(err)
    assert status == 2 and "do not fit the config" in line and str(bad / "model.json") in line
    assert "input_blocks_0_0.kernel stored (3, 3, 3, 32), config (3, 3, 3, 64)" in line


@pytest.mark.parametrize("victim", ["d", "manifest.ocdbt", "_METADATA", "ocdbt.process_0/d"])
def test_truncated_orbax_files(ckpts, tmp_path, victim, capfd):
    bad = tmp_path / "crt_damaged"
    shutil.copytree(ckpts / "crt", bad)
    target = bad / "params" / victim
    for path in [target] if target.is_file() else sorted(target.iterdir()):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(checkpoint.CheckpointError, match=f"checkpoint {bad} is damaged"):
        checkpoint.load_model(bad, "crt")
    assert "Event loop is closed" not in capfd.readouterr().err


def test_atomic_checkpoint_write_and_repair(ckpts, tmp_path, monkeypatch):
    """A crash in the middle of replacing a checkpoint leaves the previous complete one (or puts it back)."""
    params = random_params("crt", TRAJ_CRT, 2)
    target = tmp_path / "model"
    checkpoint.save_model(target, params, TRAJ_CRT, kind="crt", extra={"step": 1})
    # 1. a failure while the new files are written: the old directory is untouched, nothing is left beside it
    monkeypatch.setattr(checkpoint, "_write_synced", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_model(target, params, TRAJ_CRT, kind="crt", overwrite=True, extra={"step": 2})
    monkeypatch.undo()
    assert json.loads((target / "model.json").read_text())["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    # 2. no atomic exchange, and a crash between the two renames: model/ is missing; repair puts the old one back
    calls = []

    def rename_then_die(src, dst):
        if Path(dst).parent == tmp_path:  # the renames of the install, not orbax's inside the new directory
            calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands for SIGKILL: the finally clause of the writer still runs, but repair
        return real_rename(src, dst)

    real_rename = checkpoint.os.rename
    monkeypatch.setattr(checkpoint, "_exchange", lambda a, b: False)
    monkeypatch.setattr(checkpoint.os, "rename", rename_then_die)
    monkeypatch.setattr(checkpoint.shutil, "rmtree", lambda *a, **k: None)  # as after a SIGKILL: no clean-up
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_model(target, params, TRAJ_CRT, kind="crt", overwrite=True, extra={"step": 2})
    monkeypatch.undo()
    assert not target.exists() and len(list(tmp_path.glob(".model.*"))) == 2
    actions = checkpoint.repair(target)
    assert any("restored the previous complete" in a for a in actions)
    assert json.loads((target / "model.json").read_text())["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert checkpoint.load_model(target, "crt")[0] == "crt"
    # 3. with the exchange (Linux): replacing works and leaves nothing beside
    checkpoint.save_model(target, params, TRAJ_CRT, kind="crt", overwrite=True, extra={"step": 3})
    assert json.loads((target / "model.json").read_text())["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_resume_repairs_a_half_written_export(tmp_path):
    """The state the issue reports: model/ with params.orbax-checkpoint-tmp and no params/, and a leftover beside it.
    What a resumed run does (train_lib.repair_export, called right after the restore) exports the restored state
    again and removes the leftovers; a complete export of the same step is left alone."""
    from types import SimpleNamespace

    from configs import crt_demo_x8
    from dpi_jax import train_lib

    config = crt_demo_x8.get_config()
    config.model.config = ml_collections.ConfigDict(TRAJ_CRT)
    state = SimpleNamespace(step=2, ema_params=random_params("crt", TRAJ_CRT, 3))
    train_lib.export_model(tmp_path, state, config)
    model = tmp_path / "model"
    shutil.rmtree(model / "params")
    (model / "params.orbax-checkpoint-tmp-1234").mkdir()
    (tmp_path / ".model.tmp-99-abcdef01").mkdir()
    with pytest.raises(FileNotFoundError, match="not a dpi-jax model checkpoint"):
        checkpoint.load_model(model)
    train_lib.repair_export(tmp_path, state, config)
    assert checkpoint.load_model(model, "crt")[0] == "crt"
    assert train_lib.exported_step(model) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    before = (model / "model.json").stat().st_mtime_ns
    train_lib.repair_export(tmp_path, state, config)
    assert (model / "model.json").stat().st_mtime_ns == before


# --- the port ------------------------------------------------------------------------------------------------------

def test_port_refuses_non_tensor_values(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    src = tmp_path / "odd.pt"
    torch.save({"input_blocks.0.0.weight": torch.zeros(3), "epoch": 3, "note": "x"}, src)
    status = port.main([str(src), str(tmp_path / "out"), "--model", "crt"])
    line = error_line(capsys.readouterr().err)
    assert status == 2 and "not tensors" in line and "epoch (int)" in line and "note (str)" in line
    assert not (tmp_path / "out").exists()


def test_port_refuses_nan_and_inf_weights_listing_all(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    src = tmp_path / "nan.pt"
    torch.save({"a.weight": torch.tensor([1.0, float("nan")]), "b.bias": torch.tensor([float("inf"), -float("inf")]),
                "c.weight": torch.ones(2)}, src)
    status = port.main([str(src), str(tmp_path / "out"), "--model", "crt"])
    line = error_line(capsys.readouterr().err)
    assert status == 2 and "non-finite weights in 2 tensor(s)" in line
    assert "a.weight (1 NaN, 0 Inf of 2)" in line and "b.bias (0 NaN, 2 Inf of 2)" in line and "c.weight" not in line
    assert not (tmp_path / "out").exists()


def test_port_verbose_shows_the_traceback(tmp_path, capsys):
    status = port.main([str(tmp_path / "missing.pt"), str(tmp_path / "out"), "--model", "crt", "--verbose"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" in err and "error: " in err and "missing.pt" in err


# --- the commands: exit 2, one line, --verbose ---------------------------------------------------------------------

def check_cli(args, *words, status=2):
    proc = run_python(args, check=False)
    line = error_line(proc.stderr)
    assert proc.returncode == status, proc.stderr
    for word in words:
        assert word in line, line
    return proc


def test_sample_cli_unknown_field_and_bad_values():
    check_cli(["sample.py", "--config", "configs/x8.py", "--config.tua=3"], "config.tua", "did you mean 'tau'?")
    check_cli(["sample.py", "--config", "configs/x8.py", "--config.batch_size=abc"], "--config.batch_size=abc")
    check_cli(["sample.py", "--config", "configs/x8.py", "--config.batch_size=0", "--config.tau=nan"],
              "config.batch_size = 0: must be an integer >= 1", "config.tau = nan")


def test_sample_cli_verbose_shows_the_traceback(tmp_path):
    proc = run_python(["sample.py", "--config", "configs/x8.py", f"--config.prior_checkpoint={tmp_path}",
                       f"--config.input_dir={tmp_path}", "--config.crt_checkpoint=", "--verbose"], check=False)
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "not a dpi-jax model checkpoint" in proc.stderr


def test_train_cli_setup_errors(tmp_path):
    check_cli(["train.py", "--config", "configs/crt_x8.py", f"--config.workdir={tmp_path}", "--config.k=0"],
              "config.k = 0")
    check_cli(["train.py", "--config", "configs/crt_x8.py"], "config.workdir")
    check_cli(["train.py", "--config", "configs/crt_x8.py", "--config.optim.lerning_rate=1"],
              "did you mean 'optim.learning_rate'?")
    check_cli(["train.py", "--config", "configs/crt_x8.py", f"--config.workdir={tmp_path}",
               f"--config.data.folder={tmp_path / 'none'}"], "config.data.folder", "an existing folder")


def test_evaluate_bench_port_cli_setup_errors(tmp_path):
    check_cli(["-m", "dpi_jax.evaluate", "--config", "configs/x8.py", "--config.omega=0"], "config.omega = 0")
    check_cli(["-m", "dpi_jax.bench", "--config", "configs/x8.py", "--config.s=-1"], "config.s = -1")
    check_cli(["-m", "dpi_jax.port", str(tmp_path / "missing.pt"), str(tmp_path / "out"), "--model", "crt"],
              "missing.pt")
