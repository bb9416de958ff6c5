"""The FID Inception-v3 (TensorFlow's 2015-12-05 graph, as ported by pytorch-fid and torch-fidelity) in Flax, NHWC.

One network and one set of weights serve two reference pipelines:

* :func:`pytorch_fid_forward` is ``pytorch_fid.inception.InceptionV3([3], resize_input=True, normalize_input=True)``
  (the 2048-d pool3 features of the FID): float images in [0, 1], ``F.interpolate(bilinear, align_corners=False)``
  (no antialiasing) to 299x299, then ``2x - 1``.
* :func:`fidelity_forward` is ``torch_fidelity``'s ``FeatureExtractorInceptionV3`` (its ``"logits_unbiased"`` feed
  the Inception Score): uint8 images, TensorFlow 1.x bilinear resize (``interpolate_bilinear_2d_like_tensorflow1x``,
  ``align_corners=False``: source = dst * in/out, no half-pixel offset) to 299x299, then ``(x - 128) / 128``.

The network is ``pytorch_fid.inception.fid_inception_v3()``: torchvision's Inception3 with the FID blocks (average
pools that do not count the padding, a max pool in the last block), BatchNorm (eps 0.001) in eval mode with the stored
running statistics, and the 1008-way ``fc`` of the TensorFlow graph. pytorch-fid's ``fid_inception_v3`` and
torch-fidelity's extractor have the same state_dict keys (each loads the other's strictly; see the tests), so their
files ``pt_inception-2015-12-05-6726825d.pth`` and ``weights-inception-2015-12-05-6726825d.pth`` both convert, with
or without BatchNorm's ``num_batches_tracked`` entries.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict

from dpi_jax import checkpoint
from dpi_jax.torch_port import fill_params, load_torch_state_dict, strip_module_prefix

KIND = "fid_inception"
INPUT_SIZE = 299
NUM_CLASSES = 1008
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
DEFAULT_DIR = "checkpoints/metrics/fid_inception"
BN_EPS = 1e-3
# Flax leaf -> PyTorch state_dict leaf (conv/fc ``weight`` is a ``kernel``, BatchNorm ``weight`` a ``scale``).
LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


class FrozenBatchNorm(nn.Module):
    """``nn.BatchNorm2d(eps=0.001)`` in eval mode: ``x * alpha + beta`` with ``alpha = weight / sqrt(var + eps)`` and
    ``beta = bias - mean * alpha``, the order of PyTorch's CPU inference kernel."""

    eps: float = BN_EPS

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        mean = self.param("mean", nn.initializers.zeros, (c,))
        var = self.param("var", nn.initializers.ones, (c,))
        alpha = scale / jnp.sqrt(var + self.eps)
        return x * alpha + (bias - mean * alpha)


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm + ReLU, torchvision's ``BasicConv2d``."""

    features: int
    kernel_size: tuple[int, int] = (1, 1)
    strides: int = 1
    padding: tuple[int, int] = (0, 0)
    precision: str = "highest"

    @nn.compact
    def __call__(self, x):
        ph, pw = self.padding
        x = nn.Conv(self.features, self.kernel_size, (self.strides, self.strides), padding=((ph, ph), (pw, pw)),
                    use_bias=False, precision=self.precision, name="conv")(x)
        return nn.relu(FrozenBatchNorm(name="bn")(x))


def _avg_pool_3x3_exclude_pad(x):
    """``F.avg_pool2d(kernel_size=3, stride=1, padding=1, count_include_pad=False)`` (TensorFlow's average pool)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x, strides=2, padding=0):
    return nn.max_pool(x, (3, 3), strides=(strides, strides), padding=((padding, padding), (padding, padding)))


class InceptionA(nn.Module):
    """``FIDInceptionA`` (Mixed_5b..5d)."""

    pool_features: int
    precision: str = "highest"

    @nn.compact
    def __call__(self, x):
        conv = partial(BasicConv2d, precision=self.precision)
        b1 = conv(64, name="branch1x1")(x)
        b5 = conv(48, name="branch5x5_1")(x)
        b5 = conv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = conv(64, name="branch3x3dbl_1")(x)
        b3 = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = conv(self.pool_features, name="branch_pool")(_avg_pool_3x3_exclude_pad(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """torchvision's ``InceptionB`` (Mixed_6a)."""

    precision: str = "highest"

    @nn.compact
    def __call__(self, x):
        conv = partial(BasicConv2d, precision=self.precision)
        b3 = conv(384, (3, 3), strides=2, name="branch3x3")(x)
        bd = conv(64, name="branch3x3dbl_1")(x)
        bd = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = conv(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3(x)], axis=-1)


class InceptionC(nn.Module):
    """``FIDInceptionC`` (Mixed_6b..6e)."""

    channels_7x7: int
    precision: str = "highest"

    @nn.compact
    def __call__(self, x):
        conv = partial(BasicConv2d, precision=self.precision)
        c7 = self.channels_7x7
        b1 = conv(192, name="branch1x1")(x)
        b7 = conv(c7, name="branch7x7_1")(x)
        b7 = conv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = conv(c7, name="branch7x7dbl_1")(x)
        bd = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = conv(192, name="branch_pool")(_avg_pool_3x3_exclude_pad(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """torchvision's ``InceptionD`` (Mixed_7a)."""

    precision: str = "highest"

    @nn.compact
    def __call__(self, x):
        conv = partial(BasicConv2d, precision=self.precision)
        b3 = conv(192, name="branch3x3_1")(x)
        b3 = conv(320, (3, 3), strides=2, name="branch3x3_2")(b3)
        b7 = conv(192, name="branch7x7x3_1")(x)
        b7 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = conv(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3(x)], axis=-1)


class InceptionE(nn.Module):
    """``FIDInceptionE_1`` (``pool="avg"``, Mixed_7b: average pool without the padding) and ``FIDInceptionE_2``
    (``pool="max"``, Mixed_7c: a 3x3 max pool, stride 1, padding 1)."""

    pool: str = "avg"
    precision: str = "highest"

    @nn.compact
    def __call__(self, x):
        conv = partial(BasicConv2d, precision=self.precision)
        b1 = conv(320, name="branch1x1")(x)
        b3 = conv(384, name="branch3x3_1")(x)
        b3 = jnp.concatenate([conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                              conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
        bd = conv(448, name="branch3x3dbl_1")(x)
        bd = conv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                              conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
        pooled = _avg_pool_3x3_exclude_pad(x) if self.pool == "avg" else _max_pool_3x3(x, strides=1, padding=1)
        bp = conv(192, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """``fid_inception_v3()`` from an input already resized and scaled (NHWC, 299x299, about [-1, 1]).

    Returns ``{"pool": (N, 2048) pool3 features, "logits_unbiased": pool @ fc.weight.T, "logits": ... + fc.bias}``.
    ``precision`` applies to every convolution and the fc ("highest": full float32 also on GPUs/TPUs, whose default
    would use TF32/bfloat16 passes)."""

    precision: str = "highest"

    @nn.compact
    def __call__(self, x):
        conv = partial(BasicConv2d, precision=self.precision)
        p = self.precision
        x = conv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
        x = conv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = conv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3(x)
        x = conv(80, name="Conv2d_3b_1x1")(x)
        x = conv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3(x)
        x = InceptionA(32, p, name="Mixed_5b")(x)
        x = InceptionA(64, p, name="Mixed_5c")(x)
        x = InceptionA(64, p, name="Mixed_5d")(x)
        x = InceptionB(p, name="Mixed_6a")(x)
        x = InceptionC(128, p, name="Mixed_6b")(x)
        x = InceptionC(160, p, name="Mixed_6c")(x)
        x = InceptionC(160, p, name="Mixed_6d")(x)
        x = InceptionC(192, p, name="Mixed_6e")(x)
        x = InceptionD(p, name="Mixed_7a")(x)
        x = InceptionE("avg", p, name="Mixed_7b")(x)
        x = InceptionE("max", p, name="Mixed_7c")(x)
        pool = jnp.mean(x, axis=(1, 2))
        logits_unbiased, logits = _Linear(NUM_CLASSES, p, name="fc")(pool)
        return {"pool": pool, "logits_unbiased": logits_unbiased, "logits": logits}


class _Linear(nn.Module):
    """``nn.Linear``, with its output before the bias too (torch-fidelity's ``logits_unbiased = x.mm(fc.weight.T)``,
    then ``+ fc.bias``)."""

    features: int
    precision: str = "highest"

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        y = jnp.dot(x, kernel, precision=self.precision)
        return y, y + bias


# --------------------------------------------------------------------------------------------------- resizing


def _torch_linear_taps(in_size: int, out_size: int):
    """Source indices and weights of ``F.interpolate(mode="bilinear", align_corners=False)`` along one axis, as
    PyTorch's kernels compute them: ``scale = float32(in) / float32(out)``, ``src = max(scale * (i + 0.5) - 0.5, 0)``
    with one rounding to float32 (the fused multiply-add that its AVX2 CPU and CUDA builds use; verified bit-exact
    against torch 2.13 on CPU), ``lo = floor(src)``, ``hi = lo + 1`` but within the image."""
    scale = np.float32(in_size) / np.float32(out_size)
    i = np.arange(out_size, dtype=np.float64)
    src = np.maximum((np.float64(scale) * (i + 0.5) - 0.5).astype(np.float32), np.float32(0))
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    hi = np.where(lo < in_size - 1, lo + 1, lo)
    w1 = (src - lo.astype(np.float32)).astype(np.float32)
    return lo, hi, np.float32(1) - w1, w1


def resize_bilinear_torch(x, size: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)):
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` (no antialiasing, unlike ``jax.image.resize``
    when it downsamples) of NHWC float images."""
    (ylo, yhi, y0, y1), (xlo, xhi, x0, x1) = (_torch_linear_taps(x.shape[1], size[0]),
                                              _torch_linear_taps(x.shape[2], size[1]))
    x = x[:, ylo] * y0[:, None, None] + x[:, yhi] * y1[:, None, None]
    return x[:, :, xlo] * x0[:, None] + x[:, :, xhi] * x1[:, None]


def _tf1_linear_taps(in_size: int, out_size: int):
    """torch-fidelity's ``resample_manually`` along one axis: ``src = i * float32(in/out)``, ``lo = trunc(src)``,
    ``hi = min(lo + 1, in - 1)``."""
    src = np.arange(out_size, dtype=np.float32) * np.float32(in_size / out_size)
    lo = src.astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    return lo, hi, (src - lo.astype(np.float32)).astype(np.float32)


def resize_bilinear_tf1(x, size: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)):
    """``interpolate_bilinear_2d_like_tensorflow1x(x, size, align_corners=False)`` (torch-fidelity's exact "slow"
    method, TensorFlow 1.x ``resize_bilinear``) of NHWC float images, with its order of operations: bit-exact op by
    op; under ``jit`` XLA's CPU backend fuses the lerps' multiply-adds (a few float32 ulps, 5e-5 on 0..255)."""
    ylo, yhi, dy = _tf1_linear_taps(x.shape[1], size[0])
    xlo, xhi, dx = _tf1_linear_taps(x.shape[2], size[1])
    top, bottom = x[:, ylo], x[:, yhi]
    in_00, in_01, in_10, in_11 = top[:, :, xlo], top[:, :, xhi], bottom[:, :, xlo], bottom[:, :, xhi]
    dx = dx[:, None]
    in_0 = in_00 + (in_01 - in_00) * dx
    in_1 = in_10 + (in_11 - in_10) * dx
    return in_0 + (in_1 - in_0) * dy[:, None, None]


# --------------------------------------------------------------------------------------------------- forwards


def pytorch_fid_forward(params, images, precision: str = "highest") -> dict:
    """pytorch-fid's ``InceptionV3([3], resize_input=True, normalize_input=True)`` of NHWC float images in [0, 1]
    (any size): resize to 299x299 as ``F.interpolate(bilinear, align_corners=False)``, ``2x - 1``, the network.
    ``"pool"`` is the (N, 2048) FID feature; ``"logits"`` the 1008-way fc output. Jittable."""
    x = jnp.asarray(images, jnp.float32)
    if x.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
        x = resize_bilinear_torch(x)
    return FIDInceptionV3(precision).apply({"params": params}, 2 * x - 1)


def fidelity_forward(params, images, precision: str = "highest") -> dict:
    """torch-fidelity's ``FeatureExtractorInceptionV3`` of NHWC uint8 images (any size): float32, TensorFlow 1.x
    bilinear resize to 299x299, ``(x - 128) / 128``, the network. ``"logits_unbiased"`` (the fc without its bias)
    is the Inception Score's feature, ``"pool"`` its ``"2048"``. Jittable."""
    images = jnp.asarray(images)
    if images.dtype != jnp.uint8:
        raise TypeError(f"torch-fidelity's Inception takes uint8 images, got {images.dtype}")
    x = images.astype(jnp.float32)
    x = resize_bilinear_tf1(x)
    return FIDInceptionV3(precision).apply({"params": params}, (x - 128) / 128)


# --------------------------------------------------------------------------------------------------- weights


def abstract_params() -> dict:
    """The parameter tree (ShapeDtypeStructs) of the network."""
    dummy = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    return jax.eval_shape(lambda x: FIDInceptionV3().init(jax.random.key(0), x), dummy)["params"]


def torch_key(path: tuple[str, ...]) -> str:
    """The state_dict key of a parameter path: ('Mixed_5b', 'branch1x1', 'bn', 'mean') ->
    'Mixed_5b.branch1x1.bn.running_mean'."""
    *modules, leaf = path
    return ".".join([*modules, LEAF_NAMES[leaf]])


def params_from_state_dict(state_dict: dict) -> dict:
    """Flax params from the state_dict of ``fid_inception_v3()`` (pytorch-fid) or torch-fidelity's
    ``FeatureExtractorInceptionV3`` (the same keys; BatchNorm ``num_batches_tracked`` entries are optional and
    unused). Raises :class:`~dpi_jax.torch_port.PortError` listing all missing keys, unexpected keys and shape
    mismatches."""
    expected = {torch_key(path): (path, spec.shape) for path, spec in flatten_dict(abstract_params()).items()}
    optional = {k.rsplit(".", 1)[0] + ".num_batches_tracked" for k in expected if k.endswith(".bn.running_mean")}
    return fill_params(expected, strip_module_prefix(dict(state_dict)), "FID Inception-v3",
                       ignore=lambda key: key in optional)


def convert(src) -> dict:
    """The params of ``pt_inception-2015-12-05-6726825d.pth`` (or torch-fidelity's file of the same network), read
    with ``torch.load(weights_only=True)``. Raises PortError when the file does not fit."""
    return params_from_state_dict(load_torch_state_dict(src))


def save(directory, params, *, overwrite: bool = False) -> Path:
    """Write converted params as a dpi-jax checkpoint of kind ``"fid_inception"``."""
    meta = {"kind": KIND, "config": {"source": WEIGHTS_FILE, "num_classes": NUM_CLASSES}}
    return checkpoint.write_checkpoint(directory, params, meta, overwrite=overwrite)


def missing_message(directory) -> str:
    """What to download and the port command that makes the checkpoint ``directory``."""
    return (f"no FID Inception weights at {directory}. Download {WEIGHTS_FILE} (pytorch-fid's FID Inception-v3, "
            f"published on the pytorch-fid GitHub releases page: {WEIGHTS_URL}) and port it once with\n"
            f"    python -m dpi_jax.port {WEIGHTS_FILE} {directory} --model {KIND}\n"
            f"(torch-fidelity's weights-inception-2015-12-05-6726825d.pth holds the same network and is accepted "
            f"too).")


def load(directory=DEFAULT_DIR) -> dict:
    """The params of a ported FID Inception checkpoint (``None``: :data:`DEFAULT_DIR`). A missing directory raises
    FileNotFoundError saying which file to download and how to port it."""
    directory = Path(DEFAULT_DIR if directory is None else directory)
    return checkpoint.load_network(directory, KIND, "the FID Inception", lambda config: abstract_params(),
                                   missing_message(directory))
