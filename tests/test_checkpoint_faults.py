"""Checkpoint faults: parameters that read but hold NaN/Inf (bit rot) are refused by name; a CRT's SR scale is stored
in its model.json (training export, port) and read back by ``checkpoint.stored_scale``; a checkpoint of the wrong
kind, one whose config does not fit its parameters, and truncated orbax files are refused by name; writes are
atomic and a half-written export is repaired."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import jax
import ml_collections
import numpy as np
import pytest

from configs import crt_demo, ddpm_demo
from dpi_jax import checkpoint, cli, train_lib
from dpi_jax.models import abstract_params, make_model
from tests import fault_kit
from tests.fault_kit import error_line, run_main, sample_config
from tests.reference import TRAJ_ADM, TRAJ_CRT


def random_params(seed=0, scale=0.05):
    abstract = abstract_params(make_model("crt", TRAJ_CRT))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (scale * rng.standard_normal(s.shape)).astype(np.float32), abstract)


def random_bit_params(seed=0):
    """Finite float32 parameters of random bits: incompressible, so the stored files hold their raw bytes."""
    abstract = abstract_params(make_model("crt", TRAJ_CRT))
    rng = np.random.default_rng(seed)

    def leaf(spec):
        bits = rng.integers(0, 2**32, size=spec.shape, dtype=np.uint32) & np.uint32(0xBFFFFFFF)  # exponent < 0xFF
        return bits.view(np.float32)

    return jax.tree.map(leaf, abstract)


def flip_to_nan(directory: Path, value: np.ndarray) -> None:
    """Set the exponent bits of the first element of ``value`` to all ones where its bytes are stored, as bit rot
    would: the file keeps its size and stays readable."""
    raw = value.ravel()[:8].tobytes()
    for path in sorted((directory / checkpoint.PARAMS_DIR).rglob("*")):
        data = bytearray(path.read_bytes()) if path.is_file() else bytearray()
        at = data.find(raw)
        if at >= 0:
            data[at + 3] |= 0x7F
            data[at + 2] |= 0x80
            path.write_bytes(bytes(data))
            return
    raise AssertionError("the parameter's bytes are not stored raw in any file")


def test_nan_and_inf_parameters_are_refused_naming_the_checkpoint(tmp_path, capsys):
    params = random_params()
    params["out_2"]["kernel"][0, 0, :2, 0] = np.nan
    params["input_blocks_0_0"]["bias"][:3] = [np.inf, -np.inf, np.nan]
    bad = checkpoint.save_model(tmp_path / "crt", params, TRAJ_CRT, kind="crt")
    with pytest.raises(checkpoint.CheckpointError, match=f"checkpoint {bad} is damaged") as err:
        checkpoint.load_module(bad, expected_kind="crt")
    message = str(err.value)
    assert "non-finite values in 2 parameter(s)" in message
    assert "out_2.kernel (2 NaN, 0 Inf of " in message and "input_blocks_0_0.bias (1 NaN, 2 Inf of 32)" in message
    # The command-line tools report it as a setup error: exit 2, one line naming the checkpoint.
    assert cli.run_cli(lambda: checkpoint.load_module(bad)) == 2
    assert f"error: checkpoint {bad} is damaged" in capsys.readouterr().err


def test_flipped_bytes_in_the_params_files_are_refused(tmp_path):
    params = random_bit_params()
    good = checkpoint.save_model(tmp_path / "crt", params, TRAJ_CRT, kind="crt")
    checkpoint.load_model(good, "crt")  # finite random bits load
    flip_to_nan(good, params["middle_block_0"]["in_layers_2"]["kernel"])
    with pytest.raises(checkpoint.CheckpointError, match=f"checkpoint {good} is damaged") as err:
        checkpoint.load_model(good, "crt")
    assert "middle_block_0.in_layers_2.kernel (1 NaN, 0 Inf of " in str(err.value)


def test_stored_scale(tmp_path):
    params = random_params()
    x8 = checkpoint.save_model(tmp_path / "x8", params, TRAJ_CRT, kind="crt", extra={"scale": 8})
    old = checkpoint.save_model(tmp_path / "old", params, TRAJ_CRT, kind="crt", extra={"step": 3})
    assert checkpoint.stored_scale(x8) == 8 and checkpoint.stored_scale(old) is None
    meta = json.loads((old / checkpoint.MODEL_FILE).read_text())
    (old / checkpoint.MODEL_FILE).write_text(json.dumps(dict(meta, scale="x8")))
    with pytest.raises(checkpoint.CheckpointError, match="'scale' must be a positive integer, not 'x8'"):
        checkpoint.stored_scale(old)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.stored_scale(tmp_path / "nothing")


def test_training_export_stores_the_crt_scale(tmp_path):
    config = crt_demo.get_config("x8")
    config.model.config = ml_collections.ConfigDict(TRAJ_CRT)
    state = SimpleNamespace(step=2, ema_params=random_params(1))
    model = train_lib.export_model(tmp_path / "crt", state, config)
    assert config.scale == 8 and checkpoint.stored_scale(model) == 8
    assert json.loads((model / checkpoint.MODEL_FILE).read_text())["step"] == 2
    # A prior has no SR scale.
    config = ddpm_demo.get_config()
    config.model.config = ml_collections.ConfigDict(TRAJ_ADM)
    params = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), abstract_params(make_model("adm", TRAJ_ADM)))
    model = train_lib.export_model(tmp_path / "adm", SimpleNamespace(step=1, ema_params=params), config)
    assert checkpoint.stored_scale(model) is None


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
    params = fault_kit.random_params("crt", TRAJ_CRT, 2)
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

    from configs import crt_demo
    from dpi_jax import train_lib

    config = crt_demo.get_config("x8")
    config.model.config = ml_collections.ConfigDict(TRAJ_CRT)
    state = SimpleNamespace(step=2, ema_params=fault_kit.random_params("crt", TRAJ_CRT, 3))
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
