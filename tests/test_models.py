"""The Flax ADM and CRT against the authors' PyTorch networks (random weights), and their options."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpi_jax import port
from dpi_jax.models import ADM, CRT, CRT_256, FFHQ_10M, abstract_params, count_params, make_model
from tests.reference import ADM_TINY, CRT_TINY, FIXTURES, load_npz, nchw_to_nhwc


def rel_err(got, want):
    """max |got - want| / max |want|: one number for a whole output, insensitive to near-zero entries."""
    return float(jnp.abs(got - want).max() / jnp.abs(want).max())


@pytest.fixture(scope="module")
def adm_tiny():
    sd = port.load_torch_state_dict(FIXTURES / "adm_tiny.pt")
    return ADM(**ADM_TINY), port.convert_state_dict(sd, ADM_TINY, kind="adm")


@pytest.fixture(scope="module")
def crt_tiny():
    sd = port.load_torch_state_dict(FIXTURES / "crt_tiny.pt")
    return CRT(**CRT_TINY), port.convert_state_dict(sd, CRT_TINY, kind="crt")


# Tolerance: float32 convolutions and matmuls summed in a different order by XLA and PyTorch (and differently fused
# norms) differ by float32 rounding through ~20 layers; measured 1.9e-6 (ADM) and 1.0e-6 (CRT) relative on CPU.
TOL = 1e-4


@pytest.fixture(scope="module")
def adm_tiny_out(adm_tiny):
    """(x, t, Flax output, PyTorch output) of adm_tiny, NHWC, computed once for the tests below."""
    model, params = adm_tiny
    io = load_npz("adm_tiny_io.npz")
    x, t = nchw_to_nhwc(io["x"]), jnp.asarray(io["t"])
    return x, t, jax.jit(model.apply)({"params": params}, x, t), nchw_to_nhwc(io["out"])


def test_adm_tiny_matches_pytorch(adm_tiny, adm_tiny_out):
    model, params = adm_tiny
    x, t, out, want = adm_tiny_out
    assert out.shape == (2, 32, 32, 6) and out.dtype == jnp.float32
    assert rel_err(out, want) <= TOL
    # Integer timesteps are the same timesteps.
    out_int = jax.jit(model.apply)({"params": params}, x, t.astype(jnp.int32))
    np.testing.assert_array_equal(np.asarray(out_int), np.asarray(out))


def test_crt_tiny_matches_pytorch(crt_tiny):
    model, params = crt_tiny
    io = load_npz("crt_tiny_io.npz")
    y = nchw_to_nhwc(io["y"])
    out = jax.jit(model.apply)({"params": params}, nchw_to_nhwc(io["x"]), jnp.asarray(io["t"]), y)
    want = nchw_to_nhwc(io["out"])
    assert rel_err(out, want) <= TOL
    assert rel_err(out - y, want - y) <= TOL  # the network part alone, without the + y residual


def test_presets_have_the_manifest_sizes():
    manifests = json.loads((FIXTURES / "checkpoint_manifests.json").read_text())
    assert count_params(abstract_params(make_model("adm", FFHQ_10M))) == manifests["ffhq_10m"]["params"]
    assert count_params(abstract_params(make_model("crt", CRT_256))) == manifests["crt_256"]["params"]


def test_abstract_params_are_worked_out_once_per_config_and_copied():
    """Equal configs give equal modules and share one traced tree; each caller gets its own dicts."""
    first = abstract_params(make_model("crt", CRT_TINY))
    first.clear()  # a caller that changes its tree does not change the next caller's
    again = abstract_params(make_model("crt", dict(CRT_TINY)))
    assert count_params(again) > 0 and jax.tree.structure(again) == jax.tree.structure(
        jax.eval_shape(make_model("crt", CRT_TINY).init, jax.random.key(0),
                       *make_model("crt", CRT_TINY).example_inputs(1))["params"])


def test_bfloat16_compute_is_close_to_float32(adm_tiny, adm_tiny_out):
    _, params = adm_tiny
    x, t, _, want = adm_tiny_out
    bf16 = ADM(**ADM_TINY, dtype=jnp.bfloat16)
    out = jax.jit(bf16.apply)({"params": params}, x, t)
    assert out.dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(abstract_params(bf16)))
    # bfloat16 keeps 8 bits of mantissa (rounding 2^-9 = 2e-3 per operation); through ~20 layers the error grows
    # to ~1e-2 of the output's range. Measured 1.7e-2 relative on this fixture (CPU, jit).
    err = rel_err(out, want)
    assert 0 < err < 5e-2, err


def test_new_attention_order_differs_from_legacy(adm_tiny, adm_tiny_out):
    _, params = adm_tiny
    x, t, legacy, _ = adm_tiny_out
    new = jax.jit(ADM(**ADM_TINY, use_new_attention_order=True).apply)({"params": params}, x, t)
    assert new.shape == legacy.shape and not np.allclose(np.asarray(new), np.asarray(legacy), atol=1e-4)


def test_other_options_build_and_run():
    """Conv resampling, additive timestep embedding, heads by count, dropout: the paths the fixtures do not use."""
    cfg = dict(ADM_TINY, image_size=16, channel_mult=(1, 2), attention_resolutions="8", resblock_updown=False,
               use_scale_shift_norm=False, learn_sigma=False, num_head_channels=-1, num_heads=2, dropout=0.1)
    model = ADM(**cfg)
    # Random parameters of the right shapes (model.init compiles slowly on CPU: it is not what is tested here).
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: 0.1 * rng.standard_normal(s.shape, dtype=np.float32), abstract_params(model))
    x, t = jnp.ones((1, 16, 16, 3)), jnp.array([3])
    apply = jax.jit(model.apply, static_argnames="train")
    out = apply({"params": params}, x, t)
    assert out.shape == (1, 16, 16, 3)
    dropped = apply({"params": params}, x, t, train=True, rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(np.asarray(dropped), np.asarray(out))


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match="num_chanels"):
        make_model("adm", dict(ADM_TINY, num_chanels=3))


def test_conv3x3_of_upsampled_equals_the_direct_form():
    """The sub-pixel form of conv3x3(nearest x2 upsample) (the up blocks' convolution, 2.25x fewer FLOPs) against the
    direct convolution of the upsampled input, on random data: float32 summation order only (bound 1e-5 relative)."""
    from dpi_jax.models import unet

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 5, 7, 6)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 6, 4)), jnp.float32)
    bias = jnp.asarray(rng.standard_normal((4,)), jnp.float32)
    got = unet.conv3x3_of_upsampled(x, kernel, bias)
    want = jax.lax.conv_general_dilated(unet.upsample_nearest(x), kernel, (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
    assert got.shape == want.shape == (2, 10, 14, 4)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-5 * float(jnp.abs(want).max()))
