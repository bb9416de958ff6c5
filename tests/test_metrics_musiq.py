"""MUSIQ in Flax against pyiqa's ``musiq`` (KonIQ) computation (tests/iqa_reference.py) with the same random weights.

The "user's file" is a random ``MUSIQ(num_class=1)`` state_dict (the keys and shapes of pyiqa's
``musiq_koniq_ckpt-e95806b9.pth``) saved with ``torch.save``. Tolerances: the hashed positions, scale ids and masks
are integers and must be equal; the patches (pixels in [-1, 1] after pyiqa's bicubic resizes) and the scores 1e-4
relative. Both sides compute in float32: the resize's taps are summed in another order (measured 2e-6 on the
patches), and the convolutions, the 16384-wide embedding and 14 attention blocks accumulate in another order (XLA vs
PyTorch's CPU kernels; measured up to 1.2e-5 on scores of order 1); a wrong resize size, patch order, position hash
or mask moves the values by far more.
"""

import jax
import numpy as np
import pytest

from dpi_jax.metrics import musiq as jm
from dpi_jax.port import PortError

torch = pytest.importorskip("torch")
from tests import iqa_reference as ref  # noqa: E402  (needs torch)

RTOL = 1e-4
# a square image upsized to both scales, an odd non-square one, and one downsized at 224 and upsized at 384 whose
# original size pads both ways
SHAPES = [(2, 64, 64), (1, 57, 83), (1, 300, 200)]


@pytest.fixture(scope="module")
def net():
    model = ref.random_musiq(0)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    return model, state, jm.params_from_state_dict(state)


def _nchw(images):
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 255


def _images(shape):
    return np.random.default_rng(sum(shape)).integers(0, 256, shape + (3,), dtype=np.uint8)


@pytest.mark.parametrize("shape", SHAPES)
def test_patches_positions_and_scales_match_pyiqa(shape):
    images = _images(shape)
    with torch.no_grad():
        theirs = ref.get_multiscale_patches((_nchw(images) - 0.5) * 2).numpy()
    patches, spatial, scale, mask = jm.prepare(images)
    n, length = patches.shape[:2]
    h, w = shape[1:]
    assert length == 49 + 144 + -(-h // 32) * -(-w // 32) == theirs.shape[1]
    ours = np.asarray(patches).transpose(0, 1, 4, 2, 3).reshape(n, length, -1)  # unfold's (c, kh, kw) order
    assert np.max(np.abs(ours - theirs[..., :-3])) <= RTOL * np.max(np.abs(theirs[..., :-3]))
    for column, values in zip((-3, -2, -1), (spatial, scale, mask), strict=True):
        np.testing.assert_array_equal(np.broadcast_to(values, (n, length)), theirs[..., column])


def test_hashed_positions_match_nearest_interpolation():
    for count_h, count_w in [(1, 1), (3, 7), (10, 10), (12, 9), (20, 20), (33, 17)]:
        np.testing.assert_array_equal(jm.hashed_positions(count_h, count_w),
                                      ref.hashed_positions(10, count_h, count_w).numpy()[0])


@pytest.mark.parametrize("shape", SHAPES)
def test_scores_match_pyiqa(net, shape):
    model, _, params = net
    images = _images(shape)
    with torch.no_grad():
        theirs = model(_nchw(images)).numpy()[:, 0]
    ours = jm.musiq_images(params, images, progress=False)
    print(f"scores {ours} vs {theirs}, max relative error {np.max(np.abs(ours - theirs) / np.abs(theirs)):.1e}")
    np.testing.assert_allclose(ours, theirs, rtol=RTOL)


def test_port_command_round_trip_and_refusals(net, tmp_path):
    from dpi_jax import port

    _, state, params = net
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / jm.WEIGHTS_FILE)
    assert port.main([str(tmp_path / jm.WEIGHTS_FILE), str(tmp_path / "musiq"), "--model", "musiq"]) == 0
    loaded = jm.load(tmp_path / "musiq")
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    bad = dict(state)
    del bad["transformer_encoder.transformer.encoderblock_13.mlp.fc2.bias"]
    bad["transformer_encoder.sinusoid"] = np.zeros(3, np.float32)
    bad["head.0.weight"] = bad.pop("head.weight")  # the AVA checkpoint's 10-way head is head.0 (+ softmax)
    with pytest.raises(PortError) as err:
        jm.params_from_state_dict(bad)
    message = str(err.value)
    assert "missing keys (2):\n  head.weight\n  transformer_encoder.transformer.encoderblock_13.mlp.fc2.bias" in message
    assert "unexpected keys (2):\n  head.0.weight\n  transformer_encoder.sinusoid" in message
    bad = dict(state, **{"transformer_encoder.scaleembed_input.scale_emb": np.zeros((4, 384), np.float32)})
    with pytest.raises(PortError, match=r"scale_emb: checkpoint \(4, 384\), model expects \(3, 384\)"):
        jm.params_from_state_dict(bad)


def test_missing_weights_name_the_file_and_port_command(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        jm.load(tmp_path / "nowhere")
    message = str(err.value)
    for part in (jm.WEIGHTS_FILE, "IQA-PyTorch", f"python -m dpi_jax.port {jm.WEIGHTS_FILE} {tmp_path / 'nowhere'} "
                 "--model musiq"):
        assert part in message


def test_folder_scores_images_of_two_sizes(net, tmp_path):
    from PIL import Image

    model, _, params = net
    images = {"a": _images((1, 64, 64))[0], "b": _images((1, 57, 83))[0], "c": _images((1, 64, 64))[0][::-1]}
    for name, image in images.items():
        Image.fromarray(np.ascontiguousarray(image)).save(tmp_path / f"{name}.png")
    result = jm.musiq_folder(params, tmp_path, progress=False)  # batches of SHAPES[0] and SHAPES[1]: compiled above
    with torch.no_grad():
        expected = {name: float(model(_nchw(x[None]))[0, 0]) for name, x in images.items()}
    assert result["per_image"] == pytest.approx(expected, rel=RTOL)


def test_evaluation_columns(net, tmp_path):
    """--metrics=...,musiq,clipiqa: Table 2's order in real mode, a missing checkpoint named before any sampling, and
    the per-image column as the mean over seeds of the metric."""
    from dpi_jax.evaluate import measures

    assert measures.parse_metrics("clipiqa,musiq,is,fid", "real") == ("fid", "is", "musiq", "clipiqa")
    assert measures.columns(("fid", "is", "musiq", "clipiqa")) == ("fid", "is", "musiq", "clipiqa")
    with pytest.raises(FileNotFoundError, match="--model musiq"):
        measures.MetricNetworks.load(("musiq",), {"musiq": tmp_path / "nowhere"})
    _, _, params = net
    sr = _images((2, 64, 64))[:, None]  # two seeds of one image
    acc = measures.Accumulator(("musiq",), measures.MetricNetworks({"musiq": params}), scale=4)
    acc.add(sr, sr[0, :, ::4, ::4], None)
    row = acc.summary(["face"])
    want = jm.musiq_images(params, sr[:, 0], progress=False).mean()
    assert row["per_image"]["face"]["musiq"] == pytest.approx(want, rel=1e-6) == row["musiq"]
