"""LPIPS in Flax against the ``lpips`` package (0.1.4) with random trunk weights.

The "user's file" is a randomly initialised torchvision AlexNet / VGG16 saved as a state_dict (the layout of
``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``); the same weights go into ``lpips.LPIPS(pnet_rand=True)``.
Tolerance: 1e-4 relative on the distances. Both sides compute in float32; the trunks' convolutions sum a few thousand
products in a different order (XLA vs PyTorch's CPU kernels), which leaves differences of order 1e-6 relative.
"""

import numpy as np
import pytest

from dpi_jax.metrics import lpips as jl
from dpi_jax.port import PortError
from tests.torch_compat import import_torchvision

torch = pytest.importorskip("torch")
torchvision = import_torchvision()
lpips = pytest.importorskip("lpips")

RTOL = 1e-4


def _reference(net, seed=0, heads=None):
    """(lpips model, torchvision-style trunk state_dict, heads state_dict) with random trunk weights."""
    torch.manual_seed(seed)
    tv_model = torchvision.models.alexnet() if net == "alex" else torchvision.models.vgg16()
    model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    features = tv_model.features
    for k in range(1, 6):
        for name, module in getattr(model.net, f"slice{k}").named_children():
            module.load_state_dict(features[int(name)].state_dict())
    if heads is not None:
        model.load_state_dict(heads, strict=False)
    model.eval()
    heads_sd = {k: v for k, v in model.state_dict().items() if k.startswith("lin")}
    return model, tv_model.state_dict(), heads_sd


def _images(n, size, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def _torch_distance(model, a, b):
    with torch.no_grad():
        out = model(torch.from_numpy(a.transpose(0, 3, 1, 2)), torch.from_numpy(b.transpose(0, 3, 1, 2)))
    return out.numpy().reshape(-1)


def _rel(x, y):
    return float(np.max(np.abs(x - y) / np.abs(y)))


@pytest.mark.parametrize("net", ["alex", "vgg"])
@pytest.mark.slow
def test_matches_lpips_package_with_bundled_heads(tmp_path, net):
    model, trunk, _ = _reference(net)
    torch.save(trunk, tmp_path / jl.WEIGHTS_FILES[net])  # includes classifier.*, ignored on purpose
    params = jl.convert(tmp_path / jl.WEIGHTS_FILES[net], net=net)
    a, b = _images(3, 64, 1), _images(3, 64, 2)
    b[2] = np.clip(a[2] + 0.05 * b[2], -1, 1)  # one close pair besides two unrelated ones
    ours = np.asarray(jl.lpips_distance(params, a, b, net))
    ref = _torch_distance(model, a, b)
    assert ours.shape == (3,)
    print(f"max relative error {_rel(ours, ref):.2e}")
    assert _rel(ours, ref) <= RTOL, (ours, ref)
    # LPIPS(x, x) is 0 up to float rounding: XLA may fuse the two sides' identical computations differently
    # (fused multiply-adds), which leaves residues of order 1e-16 where PyTorch gives exactly 0
    assert np.all(np.abs(np.asarray(jl.lpips_distance(params, a, a, net))) < 1e-12)


def test_random_heads_from_a_file_and_uint8_inputs(tmp_path):
    torch.manual_seed(5)
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(jl.CHANNELS["alex"])}
    model, trunk, heads_sd = _reference("alex", seed=3, heads=heads)
    assert all(torch.equal(heads_sd[k], heads[k]) for k in heads)
    torch.save(trunk, tmp_path / "trunk.pth")
    torch.save(heads, tmp_path / "heads.pth")
    params = jl.convert(tmp_path / "trunk.pth", tmp_path / "heads.pth", "alex")
    rng = np.random.default_rng(0)
    a8, b8 = (rng.integers(0, 256, (2, 64, 80, 3), dtype=np.uint8) for _ in range(2))
    ref = _torch_distance(model, *(np.float32(x / 127.5 - 1) for x in (a8, b8)))  # lpips.im2tensor's scaling
    ours = np.asarray(jl.lpips_distance(params, a8, b8, "alex"))
    print(f"max relative error {_rel(ours, ref):.2e}")
    assert _rel(ours, ref) <= RTOL, (ours, ref)
    many = jl.lpips_images(params, np.concatenate([a8, a8]), np.concatenate([b8, a8]), "alex", batch_size=3,
                           progress=False)
    np.testing.assert_allclose(many, np.concatenate([ours, [0.0, 0.0]]), rtol=1e-5, atol=1e-12)


def test_port_refuses_missing_unexpected_and_misshaped_keys():
    _, trunk, heads = _reference("alex")
    trunk = dict(trunk)
    del trunk["features.3.weight"]
    trunk["features.99.weight"] = torch.zeros(1)
    trunk["classifier.1.weight"] = torch.zeros(2)  # classifier keys stay ignored
    heads = dict(heads)
    heads["lin2.model.1.weight"] = torch.zeros(1, 7, 1, 1)
    with pytest.raises(PortError) as err:
        jl.params_from_state_dicts(trunk, heads, "alex")
    message = str(err.value)
    assert "missing keys (1):\n  features.3.weight" in message
    assert "unexpected keys (1):\n  features.99.weight" in message
    assert "lin2.model.1.weight: checkpoint (1, 7, 1, 1), model expects (1, 384, 1, 1)" in message
    assert "classifier" not in message


def test_checkpoint_round_trip_and_missing_directory(tmp_path):
    _, trunk, _ = _reference("alex")
    params = jl.params_from_state_dicts(trunk, None, "alex")
    jl.save(tmp_path / "lpips_alex", params, "alex")
    loaded = jl.load(tmp_path / "lpips_alex")
    assert jl.net_of(loaded) == "alex"
    a, b = _images(1, 64, 4), _images(1, 64, 5)
    np.testing.assert_array_equal(jl.lpips_distance(loaded, a, b, "alex"), jl.lpips_distance(params, a, b, "alex"))
    with pytest.raises(ValueError, match="not LPIPS-vgg"):
        jl.load(tmp_path / "lpips_alex", net="vgg")
    with pytest.raises(FileNotFoundError) as err:
        jl.load(tmp_path / "nowhere", net="vgg")
    message = str(err.value)
    for part in ("vgg16-397923af.pth", "alexnet-owt-7be5be79.pth", "download.pytorch.org/models/", "pip install lpips",
                 f"python -m dpi_jax.port vgg16-397923af.pth {tmp_path / 'nowhere'} --model lpips_vgg"):
        assert part in message


def test_folders_pair_by_name(tmp_path):
    from PIL import Image

    _, trunk, _ = _reference("alex")
    params = jl.params_from_state_dicts(trunk, None, "alex")
    rng = np.random.default_rng(1)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    imgs = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    for name, img in zip(["x", "y", "only_a"], imgs, strict=True):
        Image.fromarray(img).save(tmp_path / "a" / f"{name}.png")
    Image.fromarray(imgs[0]).save(tmp_path / "b" / "x.png")
    Image.fromarray(imgs[0]).save(tmp_path / "b" / "y.png")
    Image.fromarray(imgs[2]).save(tmp_path / "b" / "only_b.png")
    result = jl.lpips_folders(params, tmp_path / "a", tmp_path / "b", "alex", batch_size=2, progress=False)
    assert result["only_in_a"] == ["only_a"] and result["only_in_b"] == ["only_b"]
    assert abs(result["per_image"]["x"]) < 1e-12 and result["per_image"]["y"] > 0
    expected = float(jl.lpips_distance(params, imgs[1:2], imgs[:1], "alex")[0])
    assert result["per_image"]["y"] == pytest.approx(expected, rel=1e-6)
    (tmp_path / "c").mkdir()
    Image.fromarray(imgs[0]).save(tmp_path / "c" / "z.png")
    with pytest.raises(ValueError, match="no image of"):
        jl.lpips_folders(params, tmp_path / "a", tmp_path / "c", "alex", progress=False)
