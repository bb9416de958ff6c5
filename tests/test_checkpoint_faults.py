"""Checkpoint faults: parameters that read but hold NaN/Inf (bit rot) are refused by name, and a CRT's SR scale is
stored in its model.json (training export, port) and read back by ``checkpoint.stored_scale``."""

import json
from pathlib import Path
from types import SimpleNamespace

import jax
import ml_collections
import numpy as np
import pytest

from configs import crt_demo_x8, ddpm_demo
from dpi_jax import checkpoint, train_lib, validation
from dpi_jax.models import abstract_params, make_model
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
    assert validation.run_cli(lambda: checkpoint.load_module(bad)) == 2
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
    config = crt_demo_x8.get_config()
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
