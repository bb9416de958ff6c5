"""Face-identity metrics with DeepFace's default face-recognition model, VGG-Face, as ``DeepFace.verify(sr, gt,
model_name="VGG-Face", detector_backend="skip")`` computes them on already cropped faces (deepface 0.0.103).

Matched, step by step:

- preprocessing (``detection.extract_faces`` then ``representation.represent`` and ``preprocessing.resize_image``):
  the image in BGR order (DeepFace reads files with ``cv2.imread``), divided by 255 when its maximum exceeds 1, resized
  with ``cv2.resize`` (bilinear, half-pixel centres, no antialiasing) by ``min(224 / h, 224 / w)`` to
  ``(int(w * f), int(h * f))``, zero-padded to 224x224 around the centre; normalisation "base" keeps [0, 1];
- the network (``models/facial_recognition/tf/VGGFace.py``): the Keras Sequential VGG-16-like net (ZeroPadding2D(1) +
  Conv2D 3x3 ReLU, five max pools, Conv2D(4096, 7x7) ReLU, dropout, Conv2D(4096, 1x1) ReLU, dropout, Conv2D(2622, 1x1));
  the embedding is the flattened output of the 4096-channel fc7 layer (``model.layers[-5]``), L2-normalised by
  ``VggFaceClient.forward`` (``x / (||x|| + 1e-10)``);
- the distance (``verification.find_distance``, "cosine"): ``1 - a.b / (|a| |b|)`` in float64, rounded to 6 decimals;
  a pair is verified when ``distance <= threshold``, the pre-tuned VGG-Face cosine threshold 0.68
  (``config/threshold.py``; 0.40 belonged to the 2622-d fc8 descriptor of deepface <= 0.0.85, available here as
  ``descriptor="fc8"`` with ``threshold=0.40``).

ACC is the share of verified (SR, GT) pairs, CS the mean cosine distance.

Weights: DeepFace's ``vgg_face_weights.h5`` (Keras HDF5 weights), read with h5py in the order Keras's legacy
``load_weights`` uses (the layers that hold weights, in ``layer_names`` order), ported once to a dpi-jax checkpoint.
"""

from __future__ import annotations

import difflib
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from dpi_jax import checkpoint, sharding
from dpi_jax.errors import InputError
from dpi_jax.metrics.batching import map_batches
from dpi_jax.torch_port import PortError, misfit_error

KIND = "vggface"
INPUT_SIZE = 224
THRESHOLD = 0.68  # deepface's thresholds["VGG-Face"]["cosine"] for the 4096-d embedding
THRESHOLD_FC8 = 0.40  # deepface <= 0.0.85, 2622-d descriptor
WEIGHTS_FILE = "vgg_face_weights.h5"
DEFAULT_DIR = "checkpoints/metrics/vggface"

# (name, input channels, output channels, kernel size); a 2x2 max pool follows each *_pool name's layer
LAYERS = (("conv1_1", 3, 64, 3), ("conv1_2", 64, 64, 3),
          ("conv2_1", 64, 128, 3), ("conv2_2", 128, 128, 3),
          ("conv3_1", 128, 256, 3), ("conv3_2", 256, 256, 3), ("conv3_3", 256, 256, 3),
          ("conv4_1", 256, 512, 3), ("conv4_2", 512, 512, 3), ("conv4_3", 512, 512, 3),
          ("conv5_1", 512, 512, 3), ("conv5_2", 512, 512, 3), ("conv5_3", 512, 512, 3),
          ("fc6", 512, 4096, 7), ("fc7", 4096, 4096, 1), ("fc8", 4096, 2622, 1))
POOL_AFTER = ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")


class _FullyConvolutional(nn.Module):
    """A Conv2D whose kernel covers its whole input (fc6: 7x7 on 7x7; fc7, fc8: 1x1 on 1x1), computed as the matrix
    product it is (XLA's CPU convolution is far slower on these shapes); parameters keep the Keras/Flax conv layout
    (kh, kw, in, out)."""

    features: int
    kernel_size: int

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        if x.shape[1:3] != (k, k):
            raise ValueError(f"{self.name} expects a {k}x{k} input (a 224x224 image), got {x.shape[1:3]}")
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        y = jnp.dot(x.reshape(x.shape[0], -1), kernel.reshape(-1, self.features), precision=jax.lax.Precision.HIGHEST)
        return (y + bias)[:, None, None, :]


class VGGFace(nn.Module):
    """DeepFace's VGG-Face (Keras ``base_model()``) on (B, 224, 224, 3) BGR inputs in [0, 1]; returns the flattened
    fc7 output (B, 4096) (``descriptor="fc7"``, DeepFace's embedding before L2 normalisation) or the fc8 logits
    (B, 2622). Dropout is the identity (inference)."""

    descriptor: str = "fc7"

    @nn.compact
    def __call__(self, x):
        outputs = {}
        for name, _, features, kernel in LAYERS:
            if name.startswith("fc"):
                x = _FullyConvolutional(features, kernel, name=name)(x)
            else:  # ZeroPadding2D((1, 1)) then Conv2D 3x3 (padding "valid")
                x = nn.Conv(features, (kernel, kernel), padding=((1, 1), (1, 1)),
                            precision=jax.lax.Precision.HIGHEST, name=name)(x)
            if name != "fc8":  # fc8 has no activation (the softmax comes after Flatten)
                x = nn.relu(x)
            if name in POOL_AFTER:
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
            outputs[name] = x
        return outputs[self.descriptor].reshape(x.shape[0], -1)


def abstract_params() -> dict:
    """The parameter tree of :class:`VGGFace` as ShapeDtypeStructs."""
    x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    return jax.eval_shape(VGGFace().init, jax.random.PRNGKey(0), x)["params"]


# ----------------------------------------------------------------------------------------------- preprocessing


def cv2_linear_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights of ``cv2.resize(..., interpolation=INTER_LINEAR)`` of a floating-point image along one
    axis: source position ``(d + 0.5) * scale - 0.5``, neighbours ``floor`` and ``floor + 1`` clamped to the image,
    weights ``1 - f`` and ``f`` (computed in float64 as OpenCV 5 does for float64 images; OpenCV 4 rounded them to
    float32, a difference below 4e-5 of the [0, 1] range). Returned as float32."""
    scale = 1.0 / (dst / src)
    pos = (np.arange(dst) + 0.5) * scale - 0.5
    left = np.floor(pos)
    frac = pos - left
    left = left.astype(np.int64)
    weights = np.zeros((dst, src), np.float64)
    rows = np.arange(dst)
    np.add.at(weights, (rows, np.clip(left, 0, src - 1)), 1 - frac)
    np.add.at(weights, (rows, np.clip(left + 1, 0, src - 1)), frac)
    return weights.astype(np.float32)


def deepface_geometry(height: int, width: int, size: int = INPUT_SIZE) -> tuple[tuple[int, int], tuple[int, ...]]:
    """``preprocessing.resize_image``'s resized (h, w) and zero padding (top, bottom, left, right)."""
    factor = min(size / height, size / width)
    h, w = int(height * factor), int(width * factor)
    dh, dw = size - h, size - w
    return (h, w), (dh // 2, dh - dh // 2, dw // 2, dw - dw // 2)


def deepface_preprocess(images):
    """(B, H, W, 3) RGB images (uint8, 0..255) -> (B, 224, 224, 3) float32 BGR model inputs, as ``DeepFace.verify``
    with ``detector_backend="skip"`` prepares them for VGG-Face (see the module docstring). Jittable."""
    images = jnp.asarray(images)
    _, height, width, _ = images.shape
    x = images[..., ::-1].astype(jnp.float32)  # RGB -> BGR
    peak = jnp.max(x, axis=(1, 2, 3), keepdims=True)
    x = jnp.where(peak > 1, x / 255.0, x)  # extract_faces: "if current_img.max() > 1: current_img / 255"
    (h, w), (top, bottom, left, right) = deepface_geometry(height, width)
    if (h, w) != (height, width):
        ry, rx = cv2_linear_matrix(height, h), cv2_linear_matrix(width, w)
        hp = jax.lax.Precision.HIGHEST
        x = jnp.einsum("oh,bhwc->bowc", ry, x, precision=hp)
        x = jnp.einsum("pw,bowc->bopc", rx, x, precision=hp)
    return jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


def _l2_normalize(x):
    """``verification.l2_normalize``: ``x / (||x|| + 1e-10)``."""
    return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + 1e-10)


@partial(jax.jit, static_argnames="descriptor")
def vggface_embeddings(params, images, descriptor: str = "fc7"):
    """DeepFace's VGG-Face embeddings (B, 4096), L2-normalised, of (B, H, W, 3) uint8 RGB face crops."""
    return _l2_normalize(VGGFace(descriptor).apply({"params": params}, deepface_preprocess(images)))


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``verification.find_distance(a, b, "cosine")`` row by row: ``1 - a.b / (|a| |b|)`` in float64, rounded to 6
    decimals."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = 1 - np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.round(d, 6)


# ----------------------------------------------------------------------------------------------- metrics


def identity_distances(params, sr: np.ndarray, gt: np.ndarray, batch_size: int = 32, progress: bool = True,
                       descriptor: str = "fc7") -> np.ndarray:
    """DeepFace VGG-Face cosine distances (N,) of the pairs (sr[i], gt[i]); each side (N, H, W, 3) uint8 RGB (the two
    sides may differ in size)."""
    sr, gt = np.asarray(sr), np.asarray(gt)
    if len(sr) != len(gt):
        raise InputError(f"identity metrics need as many SR as GT images, got {len(sr)} and {len(gt)}")
    params = sharding.replicate(params, sharding.local_mesh())  # once, not at every batch
    fn = lambda x: vggface_embeddings(params, x, descriptor)
    emb_sr = map_batches(fn, sr, batch_size=batch_size, desc="VGG-Face SR", progress=progress)
    emb_gt = map_batches(fn, gt, batch_size=batch_size, desc="VGG-Face GT", progress=progress)
    return cosine_distance(emb_sr, emb_gt)


def identity_metrics(params, sr: np.ndarray, gt: np.ndarray, threshold: float = THRESHOLD, batch_size: int = 32,
                     progress: bool = True, descriptor: str = "fc7") -> dict:
    """``{"acc": share of pairs with distance <= threshold (DeepFace.verify's "verified"), "cs": mean cosine
    distance, "distances": (N,)}``."""
    d = identity_distances(params, sr, gt, batch_size, progress, descriptor)
    return {"acc": float(np.mean(d <= threshold)), "cs": float(np.mean(d)), "distances": d}


def identity_folders(params, sr_dir, gt_dir, threshold: float = THRESHOLD, batch_size: int = 32,
                     progress: bool = True, descriptor: str = "fc7") -> dict:
    """:func:`identity_metrics` of two folders paired by file name (suffix ignored), plus ``per_image`` and the
    names found on one side only (``only_in_sr``, ``only_in_gt``)."""
    from dpi_jax.images import read_rgb
    from dpi_jax.metrics.lpips import pair_files

    pairs, only_sr, only_gt = pair_files(sr_dir, gt_dir)
    if not pairs:
        raise InputError(f"no image of {sr_dir} has a namesake in {gt_dir} (only in the first: {only_sr[:5]}, only "
                         f"in the second: {only_gt[:5]})")
    sides = []
    for k in range(2):
        images = [read_rgb(pair[k]) for pair in pairs]
        if len({im.shape for im in images}) > 1:
            raise InputError(f"the images of {(sr_dir, gt_dir)[k]} differ in size; one size per folder is needed")
        sides.append(np.stack(images))
    result = identity_metrics(params, sides[0], sides[1], threshold, batch_size, progress, descriptor)
    result["per_image"] = {p.stem: float(d) for (p, _), d in zip(pairs, result["distances"], strict=True)}
    return {**result, "only_in_sr": only_sr, "only_in_gt": only_gt}


# ----------------------------------------------------------------------------------------------- weights


def _attr_list(node, name: str) -> list[str]:
    """A Keras HDF5 string-list attribute, also when split in chunks (``name0``, ``name1``, ...)."""
    if name in node.attrs:
        values = list(node.attrs[name])
    else:
        values, k = [], 0
        while f"{name}{k}" in node.attrs:
            values += list(node.attrs[f"{name}{k}"])
            k += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def read_keras_h5(path) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """The layers that hold weights in a Keras HDF5 weights file (legacy format: ``layer_names`` and per layer
    ``weight_names``; a full-model file's ``model_weights`` group too), in file order: ``[(layer name, [(weight name,
    float32 array), ...]), ...]``. Read with h5py; TensorFlow is not needed."""
    try:
        import h5py
    except ImportError as err:
        raise ImportError("reading a Keras .h5 weights file needs h5py: pip install h5py") from err
    try:
        f = h5py.File(Path(path), "r")
    except OSError as err:
        raise PortError(f"{path}: cannot read as an HDF5 file ({err})") from err
    with f:
        root = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        if not _attr_list(root, "layer_names"):
            raise PortError(f"{path}: not a Keras HDF5 weights file (no layer_names attribute)")
        layers = []
        for name in _attr_list(root, "layer_names"):
            group = root[name]
            weights = [(w, np.asarray(group[w], np.float32)) for w in _attr_list(group, "weight_names")]
            if weights:
                layers.append((name, weights))
    return layers


def convert(path) -> dict:
    """VGG-Face params from DeepFace's ``vgg_face_weights.h5``. The layers holding weights are matched in order, as
    Keras's ``load_weights`` does (names are free); each must hold a (kh, kw, in, out) kernel and an (out,) bias of
    the expected shapes. Otherwise raises :class:`PortError` listing every missing layer, unexpected layer and shape
    mismatch."""
    return params_from_layers(read_keras_h5(path))


def params_from_layers(layers) -> dict:
    """:func:`convert` of already read layers (see :func:`read_keras_h5`)."""
    expected = [(name, ((k, k, cin, cout), (cout,))) for name, cin, cout, k in LAYERS]
    found = [(name, tuple(tuple(w.shape) for _, w in weights)) for name, weights in layers]
    matcher = difflib.SequenceMatcher(a=[s for _, s in expected], b=[s for _, s in found], autojunk=False)
    params, missing, unexpected, mismatched = {}, [], [], []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for (name, _), (_, weights) in zip(expected[i1:i2], layers[j1:j2], strict=True):
                params[name] = {"kernel": weights[0][1], "bias": weights[1][1]}
        elif op == "replace" and i2 - i1 == j2 - j1:
            for i, (name, shapes), (file_name, file_shapes) in zip(range(i1, i2), expected[i1:i2], found[j1:j2],
                                                                    strict=True):
                mismatched.append(f"{name} (layer #{i + 1}): file layer {file_name!r} holds "
                                  f"{_shapes(file_shapes)}, model expects {_shapes(shapes)}")
        else:
            missing += [f"{name} (layer #{i + 1}): {_shapes(shapes)}"
                        for i, (name, shapes) in zip(range(i1, i2), expected[i1:i2], strict=True)]
            unexpected += [f"{name}: {_shapes(shapes)}" for name, shapes in found[j1:j2]]
    if missing or unexpected or mismatched:
        raise misfit_error(f"the Keras weights do not fit DeepFace's VGG-Face ({len(expected)} layers with weights "
                           f"expected, kernel and bias each, in this order; the file has {len(found)}):",
                           {"missing layers": missing, "unexpected layers": unexpected,
                            "shape mismatches": mismatched})
    return params


def _shapes(shapes) -> str:
    return " + ".join(str(tuple(s)) for s in shapes)


def save(directory, params, *, overwrite: bool = False) -> Path:
    """Write VGG-Face params as a dpi-jax checkpoint (kind "vggface")."""
    return checkpoint.write_checkpoint(directory, params, {"kind": KIND, "config": {"input_size": INPUT_SIZE}},
                                       overwrite=overwrite)


def missing_message(directory) -> str:
    """What to download, where it is published, and the port command that makes the checkpoint ``directory``."""
    return (f"no VGG-Face checkpoint at {directory}. Port DeepFace's weights once: download {WEIGHTS_FILE} "
            f"(published on the deepface GitHub releases page, serengil/deepface_models, release v1.0), then run\n"
            f"  python -m dpi_jax.port {WEIGHTS_FILE} {directory} --model {KIND}")


def load(directory=DEFAULT_DIR) -> dict:
    """The params of a VGG-Face checkpoint (``None``: :data:`DEFAULT_DIR`); a missing directory raises
    FileNotFoundError naming the weights file and the port command."""
    directory = Path(DEFAULT_DIR if directory is None else directory)
    return checkpoint.load_network(directory, KIND, "VGG-Face", lambda config: abstract_params(),
                                   missing_message(directory))
