"""The weight port: every key of the full-size manifests, refusal of state_dicts that do not fit, the checkpoint
format, and the command line."""

import ast
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from dpi_jax import checkpoint, port
from dpi_jax.models import ADM, CRT_256, FFHQ_10M, abstract_params, make_model
from tests.fault_kit import error_line
from tests.reference import ADM_TINY, CRT_TINY, FIXTURES, load_npz, nchw_to_nhwc, run_python


def manifest_state_dict(name):
    """A state_dict with the keys and shapes of a full-size manifest and random values."""
    manifest = json.loads((FIXTURES / "checkpoint_manifests.json").read_text())[name]
    shapes = manifest["state_dict"]
    shapes = ast.literal_eval(shapes) if isinstance(shapes, str) else shapes
    rng = np.random.default_rng(0)
    return {key: rng.standard_normal(shape, dtype=np.float32) for key, shape in shapes.items()}


@pytest.mark.parametrize("name,config,kind", [("ffhq_10m", FFHQ_10M, "adm"), ("crt_256", CRT_256, "crt")])
def test_full_size_manifests_convert_exactly(name, config, kind):
    state_dict = manifest_state_dict(name)
    params = port.convert_state_dict(state_dict, config, kind)  # raises on any key left over or missing
    expected = abstract_params(make_model(kind, config))
    assert jax.tree.structure(params) == jax.tree.structure(expected)
    assert jax.tree.map(np.shape, params) == jax.tree.map(lambda s: s.shape, expected)
    # Values land where they belong: a conv kernel is the OIHW weight transposed to HWIO.
    np.testing.assert_array_equal(params["input_blocks_0_0"]["kernel"],
                                  state_dict["input_blocks.0.0.weight"].transpose(2, 3, 1, 0))


@pytest.fixture(scope="module")
def adm_state_dict():
    return port.load_torch_state_dict(FIXTURES / "adm_tiny.pt")


def test_missing_and_unexpected_keys_are_all_named(adm_state_dict):
    broken = dict(adm_state_dict)
    del broken["middle_block.1.qkv.weight"]
    broken["output_blocks.0.0.in_layers.0.gamma"] = broken.pop("output_blocks.0.0.in_layers.0.weight")
    with pytest.raises(port.PortError) as err:
        port.convert_state_dict(broken, ADM_TINY, "adm")
    message = str(err.value)
    assert "missing keys (2)" in message and "unexpected keys (1)" in message
    for key in ("middle_block.1.qkv.weight", "output_blocks.0.0.in_layers.0.weight",
                "output_blocks.0.0.in_layers.0.gamma"):
        assert key in message


def test_shape_mismatch_is_named(adm_state_dict):
    broken = dict(adm_state_dict, **{"out.2.weight": np.zeros((3, 32, 3, 3), np.float32)})
    with pytest.raises(port.PortError, match=r"out\.2\.weight: checkpoint \(3, 32, 3, 3\), model expects "
                                             r"\(6, 32, 3, 3\)"):
        port.convert_state_dict(broken, ADM_TINY, "adm")


def test_dataparallel_prefix_and_torch_tensors(adm_state_dict):
    wrapped = {f"module.{k}": torch.from_numpy(v) for k, v in adm_state_dict.items()}
    params = port.convert_state_dict(wrapped, ADM_TINY, "adm")
    reference = port.convert_state_dict(adm_state_dict, ADM_TINY, "adm")
    assert jax.tree.all(jax.tree.map(np.array_equal, params, reference))


def test_torch_load_refuses_pickled_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must not run",))

    path = tmp_path / "evil.pt"
    torch.save({"weight": Payload()}, path)
    with pytest.raises(port.PortError, match="evil.pt"):
        port.load_torch_state_dict(path)


def test_checkpoint_round_trip_is_bitwise(tmp_path, adm_state_dict):
    params = port.convert_state_dict(adm_state_dict, ADM_TINY, "adm")
    checkpoint.save_model(tmp_path / "ckpt", params, ADM_TINY, kind="adm")
    kind, config, restored = checkpoint.load_model(tmp_path / "ckpt")
    assert kind == "adm" and config == ADM_TINY
    assert jax.tree.all(jax.tree.map(np.array_equal, params, restored))
    with pytest.raises(FileExistsError, match="already exists"):
        checkpoint.save_model(tmp_path / "ckpt", params, ADM_TINY, kind="adm")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a dpi-jax model checkpoint"):
        checkpoint.load_model(tmp_path / "empty")


@pytest.mark.slow
def test_port_command_round_trip(tmp_path):
    config_file = tmp_path / "adm.json"
    config_file.write_text(json.dumps(ADM_TINY))
    command = ["-m", "dpi_jax.port", str(FIXTURES / "adm_tiny.pt"), str(tmp_path / "adm"), "--model", str(config_file)]
    proc = run_python(command)
    assert "converted 1,422,278 parameters" in proc.stdout
    io = load_npz("adm_tiny_io.npz")
    out = jax.jit(ADM(**ADM_TINY).apply)({"params": port.load_params(tmp_path / "adm")}, nchw_to_nhwc(io["x"]),
                                         jnp.asarray(io["t"]))
    want = nchw_to_nhwc(io["out"])
    assert float(jnp.abs(out - want).max() / jnp.abs(want).max()) <= 1e-4  # see test_models.TOL
    # An existing output is kept; a state_dict of another model is refused with the key lists.
    proc = run_python(command, check=False)
    assert proc.returncode != 0 and "already exists" in proc.stderr
    proc = run_python(["-m", "dpi_jax.port", str(FIXTURES / "crt_tiny.pt"), str(tmp_path / "wrong"), "--model",
                       str(config_file)], check=False)
    assert proc.returncode != 0 and "missing keys" in proc.stderr and "unexpected keys" in proc.stderr
    assert not (tmp_path / "wrong").exists()


def test_port_refuses_complex_tensors_by_key(tmp_path, capsys, adm_state_dict):
    src = tmp_path / "complex.pt"
    state = {k: torch.from_numpy(v) for k, v in adm_state_dict.items()}
    state["out.2.bias"] = torch.complex(state["out.2.bias"], torch.ones_like(state["out.2.bias"]))
    state["time_embed.0.bias"] = state["time_embed.0.bias"].to(torch.complex128)
    torch.save(state, src)
    config_file = tmp_path / "adm.json"
    config_file.write_text(json.dumps(ADM_TINY))
    status = port.main([str(src), str(tmp_path / "out"), "--model", str(config_file)])
    err = capsys.readouterr().err
    assert status == 2 and "2 tensor(s) of the state_dict are complex" in err and "imaginary part" in err
    assert "out.2.bias (torch.complex64)" in err and "time_embed.0.bias (torch.complex128)" in err
    assert not (tmp_path / "out").exists()
    # The library call refuses complex arrays as well, instead of dropping their imaginary part.
    with pytest.raises(port.PortError, match=r"complex values \(the weights are real\) \(1\):\s+out\.2\.bias"):
        port.convert_state_dict(dict(adm_state_dict, **{"out.2.bias": adm_state_dict["out.2.bias"] + 1j}), ADM_TINY)


def test_port_command_stores_the_crt_scale(tmp_path, capsys):
    config_file = tmp_path / "crt.json"
    config_file.write_text(json.dumps(CRT_TINY))
    src, args = str(FIXTURES / "crt_tiny.pt"), ["--model", str(config_file), "--kind", "crt"]
    assert port.main([src, str(tmp_path / "x8"), *args, "--scale", "8"]) == 0
    assert json.loads((tmp_path / "x8" / "model.json").read_text())["scale"] == 8
    assert checkpoint.stored_scale(tmp_path / "x8") == 8
    assert port.main([src, str(tmp_path / "unknown"), *args]) == 0
    assert checkpoint.stored_scale(tmp_path / "unknown") is None
    capsys.readouterr()
    # Refused: a scale for a prior, and a scale that is not positive.
    assert port.main([src, str(tmp_path / "adm"), "--model", str(config_file), "--scale", "8"]) == 2
    assert "--scale applies to a crt, not to an adm (prior) model" in capsys.readouterr().err
    assert port.main([src, str(tmp_path / "zero"), *args, "--scale", "0"]) == 2
    assert error_line(capsys.readouterr().err) == "error: flag --scale=0: 0 is not a positive integer"
    assert not (tmp_path / "adm").exists() and not (tmp_path / "zero").exists()


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
