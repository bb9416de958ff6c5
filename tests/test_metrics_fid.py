"""FID and IS against their references with random weights (nothing is downloaded): the Flax FID Inception-v3 against
pytorch-fid's ``InceptionV3`` / ``fid_inception_v3`` and torch-fidelity's ``FeatureExtractorInceptionV3`` fed the same
state_dict; the Fréchet distance against ``calculate_frechet_distance``; the Inception Score against torch-fidelity's
``isc``; folders, statistics files, the weight port and its messages.

Tolerances: the network outputs agree to <= 1e-4 relative to their largest magnitude (float32 convolutions summed
in another order over ~100 layers; measured at most 7.4e-7); the resizes to 1e-6 on [0, 1] (pytorch-fid's; measured
1.8e-7) and 1e-4 on 0..255 (torch-fidelity's; measured 4.6e-5: multiply-adds that XLA fuses under jit); the Fréchet
distance and the Inception Score, float64 computations of the same formula with the same scipy/NumPy calls, to 1e-6
and 1e-9 relative (measured 0 and 2e-15).
"""

import shutil
from unittest import mock

import jax
import numpy as np
import pytest
import torch
from PIL import Image

from dpi_jax import checkpoint
from dpi_jax.metrics import fid, inception
from dpi_jax.metrics.torch_reference import random_fid_inception_state_dict
from dpi_jax.port import PortError, load_torch_state_dict
from tests.torch_compat import import_torchvision

torchvision = import_torchvision()
import pytorch_fid.fid_score as pytorch_fid_score  # noqa: E402 (after torchvision's import fix)
import pytorch_fid.inception as pytorch_fid_inception  # noqa: E402
import torch_fidelity  # noqa: E402
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3  # noqa: E402
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x  # noqa: E402
from torch_fidelity.metric_isc import isc_features_to_metric  # noqa: E402

NET_RTOL = 1e-4


def rel_err(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """The "user's file": a random FID Inception state_dict saved under pytorch-fid's file name."""
    path = tmp_path_factory.mktemp("weights") / inception.WEIGHTS_FILE
    torch.save(random_fid_inception_state_dict(), path)
    return path


@pytest.fixture(scope="module")
def params(weights_file, tmp_path_factory):
    """Ported once through the checkpoint format, as the port command will do."""
    directory = inception.save(tmp_path_factory.mktemp("ckpt") / "fid_inception", inception.convert(weights_file))
    return inception.load(directory)


@pytest.fixture(scope="module")
def pytorch_fid_models(weights_file):
    """``pytorch_fid.inception.InceptionV3([3])`` (pool3) and ``fid_inception_v3()`` itself (for its fc), reading our
    file instead of the URL."""
    with mock.patch.object(pytorch_fid_inception, "load_state_dict_from_url",
                           lambda *args, **kwargs: torch.load(weights_file, weights_only=True)):
        wrapper = pytorch_fid_inception.InceptionV3([3], resize_input=True, normalize_input=True).eval()
        network = pytorch_fid_inception.fid_inception_v3().eval()
    return wrapper, network


def nchw(images) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2)))


# --------------------------------------------------------------------------------------------------- resizes


@pytest.mark.parametrize("size", [(64, 64), (37, 53), (512, 400), (299, 299)])
def test_torch_bilinear_resize_matches_interpolate(size):
    x = np.random.default_rng(0).random((2, *size, 3), dtype=np.float32)
    ours = jax.jit(inception.resize_bilinear_torch)(x)
    ref = torch.nn.functional.interpolate(nchw(x), size=(299, 299), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(np.asarray(ours), ref.permute(0, 2, 3, 1).numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [(64, 64), (37, 53), (512, 400), (299, 299)])
def test_tf1_bilinear_resize_matches_torch_fidelity(size):
    x = np.random.default_rng(1).integers(0, 256, (2, *size, 3)).astype(np.float32)
    ours = jax.jit(inception.resize_bilinear_tf1)(x)
    ref = interpolate_bilinear_2d_like_tensorflow1x(nchw(x), size=(299, 299), align_corners=False)
    np.testing.assert_allclose(np.asarray(ours), ref.permute(0, 2, 3, 1).numpy(), rtol=0, atol=1e-4)


# --------------------------------------------------------------------------------------------------- the network


@pytest.mark.parametrize("size", [64, 299])
@pytest.mark.slow
def test_pytorch_fid_pool_and_logits(params, pytorch_fid_models, size):
    wrapper, network = pytorch_fid_models
    images = np.random.default_rng(size).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    x = images.astype(np.float32) / 255  # torchvision's ToTensor, as pytorch-fid reads files
    with torch.no_grad():
        pool = wrapper(nchw(x))[0][:, :, 0, 0]
        logits = network.fc(pool)
    ours = jax.device_get(jax.jit(inception.pytorch_fid_forward)(params, x))
    assert ours["pool"].shape == (2, 2048) and ours["logits"].shape == (2, 1008)
    assert rel_err(ours["pool"], pool.numpy()) <= NET_RTOL
    assert rel_err(ours["logits"], logits.numpy()) <= NET_RTOL
    assert pool.std() > 0.1  # activations neither vanished nor saturated: the comparison means something


def test_torch_fidelity_features(params, weights_file, pytorch_fid_models):
    """torch-fidelity's extractor loads the same file (strictly: the key sets are equal) and gives the same
    2048-d pool, logits_unbiased (the IS feature: fc without bias) and logits on uint8 input."""
    names = ["2048", "logits_unbiased", "logits"]
    extractor = FeatureExtractorInceptionV3("inception-v3-compat", names,
                                            feature_extractor_weights_path=str(weights_file))
    images = np.random.default_rng(2).integers(0, 256, (2, 80, 72, 3), dtype=np.uint8)
    with torch.no_grad():
        ref = dict(zip(names, extractor(nchw(images)), strict=True))
    ours = jax.device_get(jax.jit(inception.fidelity_forward)(params, images))
    for ours_name, ref_name in (("pool", "2048"), ("logits_unbiased", "logits_unbiased"), ("logits", "logits")):
        assert rel_err(ours[ours_name], ref[ref_name].numpy()) <= NET_RTOL, ours_name
    assert not np.allclose(ours["logits"], ours["logits_unbiased"])
    with pytest.raises(TypeError, match="uint8"):
        inception.fidelity_forward(params, images.astype(np.float32))
    # the other way round: pytorch-fid's network loads torch-fidelity's state_dict strictly, and it converts
    pytorch_fid_models[1].load_state_dict(extractor.state_dict())
    inception.params_from_state_dict({k: v.numpy() for k, v in extractor.state_dict().items()})


# --------------------------------------------------------------------------------------------------- weights


def test_missing_weights_message(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        inception.load(tmp_path / "nowhere")
    message = str(err.value)
    assert inception.WEIGHTS_FILE in message and pytorch_fid_inception.FID_WEIGHTS_URL in message
    assert (f"python -m dpi_jax.port pt_inception-2015-12-05-6726825d.pth {tmp_path / 'nowhere'} "
            "--model fid_inception") in message


def test_port_refuses_misfit_state_dicts(weights_file):
    state_dict = load_torch_state_dict(weights_file)
    without_counters = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    inception.params_from_state_dict(without_counters)  # optional keys
    broken = dict(state_dict)
    del broken["Mixed_6c.branch7x7dbl_3.bn.running_var"]
    broken["Mixed_6c.branch7x7dbl_3.bn.extra"] = np.zeros(3, np.float32)
    broken["fc.weight"] = np.zeros((1000, 2048), np.float32)
    with pytest.raises(PortError) as err:
        inception.params_from_state_dict(broken)
    message = str(err.value)
    assert "missing keys (1)" in message and "unexpected keys (1)" in message and "shape mismatches (1)" in message
    assert "Mixed_6c.branch7x7dbl_3.bn.running_var" in message and "Mixed_6c.branch7x7dbl_3.bn.extra" in message
    assert "fc.weight: checkpoint (1000, 2048), model expects (1008, 2048)" in message


def test_checkpoint_of_another_kind_is_refused(tmp_path, params):
    checkpoint.write_checkpoint(tmp_path / "other", {"w": np.zeros(2, np.float32)}, {"kind": "lpips", "config": {}})
    with pytest.raises(ValueError, match="not the FID Inception"):
        inception.load(tmp_path / "other")


# --------------------------------------------------------------------------------------------------- statistics


def random_statistics(rng, n, dim):
    features = rng.standard_normal((n, dim)) @ rng.standard_normal((dim, dim)) * 0.3 + rng.standard_normal(dim)
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


@pytest.mark.parametrize("n", [500, 40])  # full rank; rank 39 < 64 (singular covariances)
def test_frechet_distance_matches_pytorch_fid(n):
    """Against pytorch-fid's own function (scipy's sqrtm): within 1e-6 relative. At full rank they agree to rounding;
    with singular covariances both add the square roots of rounding-level eigenvalues (see the test below)."""
    rng = np.random.default_rng(n)
    a, b = random_statistics(rng, n, 64), random_statistics(rng, n, 64)
    ours = fid.frechet_distance(*a, *b)
    ref = pytorch_fid_score.calculate_frechet_distance(*a, *b)
    assert abs(ours - ref) <= 1e-6 * abs(ref)
    assert abs(fid.frechet_distance(*a, *a)) <= 1e-6 * np.trace(a[1])


def test_trace_sqrtm_is_the_trace_of_scipys_sqrtm():
    """A full-rank product, a singular one and one with complex eigenvalues (a rotation): the sum of the eigenvalues'
    square roots is the trace of ``scipy.linalg.sqrtm`` (imaginary parts included). At full rank within 1e-12
    relative (rounding). A singular product's zero eigenvalues come out of each computation as rounding noise of up
    to about n eps |M|, whose square roots differ: at most sqrt(n eps |M|) for each of them."""
    from scipy import linalg

    rng = np.random.default_rng(0)
    full = random_statistics(rng, 200, 32)[1] @ random_statistics(rng, 200, 32)[1]
    singular = random_statistics(rng, 10, 32)[1] @ random_statistics(rng, 10, 32)[1]
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 4.0]])
    for matrix in (full, rotation):
        expected = np.trace(linalg.sqrtm(matrix))
        assert abs(fid.trace_sqrtm(matrix) - expected) <= 1e-12 * abs(expected)
    n, rank = 32, 9
    zero_roots = (n - rank) * np.sqrt(n * np.finfo(np.float64).eps * np.linalg.norm(singular, 2))
    assert abs(fid.trace_sqrtm(singular) - np.trace(linalg.sqrtm(singular))) <= zero_roots
    assert fid.trace_sqrtm(rotation) == pytest.approx(2 ** 0.5 + 2)  # sqrt(i) + sqrt(-i) + sqrt(4)


def test_frechet_distance_imaginary_check_and_bad_statistics():
    """A product with a negative eigenvalue has an imaginary square root: ValueError, as in pytorch-fid; so do
    statistics of different sizes or with NaN."""
    mu = np.zeros(3)
    negative = np.diag([1.0, 1.0, -1.0])  # not a covariance: sqrt(-1) = 1j in the trace
    with pytest.raises(ValueError, match="Imaginary component"):
        fid.frechet_distance(mu, negative, mu, np.eye(3))
    with pytest.raises(ValueError, match="Imaginary component"):
        pytorch_fid_score.calculate_frechet_distance(mu, negative, mu, np.eye(3))
    with pytest.raises(ValueError, match="not finite"):
        fid.frechet_distance(mu, np.full((3, 3), np.nan), mu, np.eye(3))
    with pytest.raises(ValueError, match="differ in shape"):
        fid.frechet_distance(mu, np.eye(3), mu, np.eye(2))


def test_statistics_and_stats_file(tmp_path):
    features = np.random.default_rng(3).standard_normal((30, 16)).astype(np.float32)
    mu, sigma = fid.statistics(features)
    np.testing.assert_array_equal(mu, np.mean(features.astype(np.float64), axis=0))
    np.testing.assert_array_equal(sigma, np.cov(features.astype(np.float64), rowvar=False))
    path = fid.save_stats(tmp_path / "stats.npz", mu, sigma)
    ref_mu, ref_sigma = pytorch_fid_score.compute_statistics_of_path(str(path), None, 50, 2048, "cpu")
    np.testing.assert_array_equal(ref_mu, mu)
    np.testing.assert_array_equal(ref_sigma, sigma)
    np.testing.assert_array_equal(fid.load_stats(path)[1], sigma)
    with pytest.raises(ValueError, match=".npz"):
        fid.save_stats(tmp_path / "stats", mu, sigma)


@pytest.mark.parametrize("n,splits,shuffle", [(103, 10, True), (50, 3, False)])
def test_inception_score_matches_torch_fidelity(n, splits, shuffle):
    logits = (np.random.default_rng(n).standard_normal((n, 1008)) * 3).astype(np.float32)
    ours = fid.inception_score(logits, splits, shuffle=shuffle)
    ref = isc_features_to_metric(torch.from_numpy(logits), splits, shuffle)
    assert ours[0] == pytest.approx(ref["inception_score_mean"], rel=1e-9)
    assert ours[1] == pytest.approx(ref["inception_score_std"], rel=1e-9, abs=1e-12)
    with pytest.raises(ValueError, match="cannot be split"):
        fid.inception_score(logits[:2], splits)


# --------------------------------------------------------------------------------------------------- folders


def write_images(folder, sizes, seed):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Images of two sizes (pytorch-fid needs one size per batch: batch size 1 there)."""
    return write_images(tmp_path_factory.mktemp("images") / "a", [(64, 64), (40, 48), (64, 64), (40, 48)], seed=4)


@pytest.mark.slow
def test_folder_activations_match_pytorch_fid_and_are_cached(params, pytorch_fid_models, folder, tmp_path):
    ours = fid.folder_activations(params, folder, batch_size=2, progress=False)
    files = sorted(folder.glob("*.png"))
    ref = pytorch_fid_score.get_activations(files, pytorch_fid_models[0], batch_size=1, device="cpu", num_workers=0)
    assert ours.shape == (4, 2048)
    assert rel_err(ours, ref) <= NET_RTOL
    same_size = np.stack([fid.read_image(f) for f in files[::2]])  # the 64x64 ones
    np.testing.assert_allclose(fid.image_activations(params, same_size, batch_size=2), ours[::2], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="no images"):
        fid.folder_activations(params, tmp_path, progress=False)

    cache = tmp_path / "a_stats.npz"
    mu, sigma = fid.folder_statistics(params, folder, batch_size=2, progress=False, cache=cache)
    np.testing.assert_array_equal(mu, np.mean(ours.astype(np.float64), axis=0))
    ref_mu, ref_sigma = pytorch_fid_score.compute_statistics_of_path(str(cache), None, 50, 2048, "cpu")
    np.testing.assert_array_equal(ref_mu, mu)
    np.testing.assert_array_equal(ref_sigma, sigma)
    with mock.patch.object(fid, "folder_activations", side_effect=AssertionError("recomputed")):
        np.testing.assert_array_equal(fid.folder_statistics(params, folder, progress=False, cache=cache)[1], sigma)
        copy = shutil.copytree(folder, tmp_path / "copy")
        shutil.copy(copy / "000.png", copy / "004.png")  # another file: the cache no longer applies
        with pytest.raises(AssertionError, match="recomputed"):
            fid.folder_statistics(params, copy, progress=False, cache=cache)


@pytest.mark.slow
def test_fid_of_a_folder_with_itself_is_zero(params, folder):
    """2048-d statistics of 4 images (singular covariances): the trace of the square root still cancels."""
    assert abs(fid.fid_folders(params, folder, folder, batch_size=2, progress=False)) < 1e-3


def test_is_folder_matches_torch_fidelity(params, weights_file, tmp_path):
    folder = write_images(tmp_path / "b", [(64, 64)] * 6, seed=5)
    (folder / "notes.txt").write_text("not an image")
    ours = fid.is_folder(params, folder, splits=3, batch_size=2, progress=False)
    ref = torch_fidelity.calculate_metrics(input1=str(folder), isc=True, isc_splits=3, cuda=False, cache=False,
                                           verbose=False, save_cpu_ram=True, batch_size=2,
                                           feature_extractor_weights_path=str(weights_file))
    assert ours[0] == pytest.approx(ref["inception_score_mean"], rel=1e-5)
    assert ours[1] == pytest.approx(ref["inception_score_std"], rel=1e-3, abs=1e-6)
