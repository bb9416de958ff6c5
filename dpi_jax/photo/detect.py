"""Face detection with five landmarks: MTCNN (Zhang et al., 2016) in NumPy, on the weights of the ``mtcnn`` wheel.

Why this detector. The whole-photo path needs, offline, a face box and the five points of the FFHQ alignment template
(two eye centres, the nose tip, two mouth corners). The candidates that install from PyPI were checked:

- ``mtcnn`` 1.0.0 (MIT) ships its three networks' weights inside the wheel (``mtcnn/assets/weights/{pnet,rnet,
  onet}.lz4``, 2 MB, joblib-pickled lists of NumPy arrays) and its O-Net regresses exactly those five points (left
  eye, right eye, nose, left and right mouth corner: the detector whose points CodeFormer/facexlib's RetinaFace
  reproduce). Its own code needs TensorFlow; this module never imports it: it reads the arrays with ``joblib`` (a
  dependency of the wheel, with ``lz4``) and runs the three small networks in NumPy, so nothing is downloaded and no
  deep-learning framework is added.
- ``mediapipe`` >= 0.10.30 (and 1.x) no longer bundles any ``.tflite`` model; 0.10.21 still bundles the face detector
  and face mesh but requires ``numpy<2`` and ``protobuf<5``, which conflict with this project's JAX.
- ``opencv-python-headless`` 5.0 no longer ships the Haar cascades (4.x does: frontal face and eyes, but no nose or
  mouth landmarker), and its YuNet/LBF landmarkers need model files downloaded separately.
- ``facenet-pytorch`` also ships MTCNN but pins an old torch and ``numpy<2``; dlib's 5-point model (eye corners and
  the base of the nose) comes in a separate 100 MB sdist and dlib builds from source.

Coordinates are in pixels with pixel centres at integers; landmarks are ordered as in the FFHQ template: the eye with
the smaller x first ("left" = left in the image), then the nose, then the mouth corners, left first.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

MTCNN_HELP = ("face detection needs the weights shipped in the `mtcnn` wheel (MIT): pip install 'mtcnn==1.0.0' "
              "(its TensorFlow code is not used; only joblib and lz4 are needed)")


@dataclass(frozen=True)
class Face:
    """One detection: ``box`` (x1, y1, x2, y2), ``score`` in [0, 1], ``landmarks`` (5, 2) as (x, y)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def size(self) -> float:
        """The shorter side of the box, in pixels."""
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@functools.cache
def load_weights() -> dict[str, list[np.ndarray]]:
    """The P-, R- and O-Net weights of the ``mtcnn`` wheel as lists of float32 arrays (Keras layer order)."""
    spec = importlib.util.find_spec("mtcnn")  # located, never imported: its __init__ imports TensorFlow
    if spec is None or spec.origin is None:
        raise ImportError(MTCNN_HELP)
    import joblib  # a dependency of the mtcnn wheel

    folder = Path(spec.origin).parent / "assets" / "weights"
    weights = {}
    for net in ("pnet", "rnet", "onet"):
        path = folder / f"{net}.lz4"
        if not path.exists():
            raise ImportError(f"{path} is missing; {MTCNN_HELP}")
        weights[net] = [np.asarray(w, np.float32) for w in joblib.load(path)]
    return weights


# --- layers (NHWC) -------------------------------------------------------------------------------------------------

def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A 'valid' stride-1 convolution, ``w`` (kh, kw, cin, cout)."""
    kh, kw = w.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))  # (N, H', W', cin, kh, kw)
    return np.tensordot(windows, w.transpose(2, 0, 1, 3), axes=([3, 4, 5], [0, 1, 2])) + b


def prelu(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, x * alpha.reshape(-1))


def max_pool(x: np.ndarray, size: int, stride: int, same: bool) -> np.ndarray:
    """Max pooling with TensorFlow's 'same' (pad below total // 2, above the rest) or 'valid' padding."""
    if same:
        pads = []
        for n in x.shape[1:3]:
            total = max((-(-n // stride) - 1) * stride + size - n, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(1, 2))[:, ::stride, ::stride]
    return windows.max(axis=(-2, -1))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def flatten(x: np.ndarray) -> np.ndarray:
    """Flatten in the (W, H, C) order the dense layers were trained with."""
    return x.transpose(0, 2, 1, 3).reshape(len(x), -1)


# --- the three networks ---------------------------------------------------------------------------------------------

def pnet(x: np.ndarray, w: list[np.ndarray]):
    """Proposal net, fully convolutional: (box offsets (N, h, w, 4), face probability (N, h, w))."""
    x = max_pool(prelu(conv(x, w[0], w[1]), w[2]), 2, 2, same=True)
    x = prelu(conv(x, w[3], w[4]), w[5])
    x = prelu(conv(x, w[6], w[7]), w[8])
    return conv(x, w[9], w[10]), softmax(conv(x, w[11], w[12]))[..., 1]


def rnet(x: np.ndarray, w: list[np.ndarray]):
    """Refinement net on 24x24 patches: (box offsets (N, 4), face probability (N,))."""
    x = max_pool(prelu(conv(x, w[0], w[1]), w[2]), 3, 2, same=True)
    x = max_pool(prelu(conv(x, w[3], w[4]), w[5]), 3, 2, same=False)
    x = prelu(flatten(prelu(conv(x, w[6], w[7]), w[8])) @ w[9] + w[10], w[11])
    return x @ w[12] + w[13], softmax(x @ w[14] + w[15])[:, 1]


def onet(x: np.ndarray, w: list[np.ndarray]):
    """Output net on 48x48 patches: (box offsets (N, 4), landmarks (N, 10) as x1..x5, y1..y5 in box units,
    face probability (N,))."""
    x = max_pool(prelu(conv(x, w[0], w[1]), w[2]), 3, 2, same=True)
    x = max_pool(prelu(conv(x, w[3], w[4]), w[5]), 3, 2, same=False)
    x = max_pool(prelu(conv(x, w[6], w[7]), w[8]), 2, 2, same=True)
    x = prelu(flatten(prelu(conv(x, w[9], w[10]), w[11])) @ w[12] + w[13], w[14])
    return x @ w[15] + w[16], x @ w[17] + w[18], softmax(x @ w[19] + w[20])[:, 1]


# --- boxes ---------------------------------------------------------------------------------------------------------

def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression; overlap = intersection / union (or / the smaller area)."""
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]) + 1)
        h = np.maximum(0.0, np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]) + 1)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.asarray(keep, np.int64)


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Boxes moved by the networks' offsets (in units of the box size)."""
    size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
    return boxes + offsets * size


def square(boxes: np.ndarray) -> np.ndarray:
    """The squares of side max(w, h) centred on the boxes."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])[:, None] / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def patches(image: Image.Image, boxes: np.ndarray, size: int) -> np.ndarray:
    """The boxes' contents (zero outside the image) resized to size x size, normalised like the training data."""
    crops = [np.asarray(image.crop(tuple(np.round(b).astype(int)))
                        .resize((size, size), Image.Resampling.BILINEAR), np.float32) for b in boxes]
    return (np.stack(crops) - 127.5) / 128.0


def pyramid(height: int, width: int, min_face: float, factor: float = 0.709) -> list[float]:
    """Scales at which a 12x12 window covers faces from ``min_face`` pixels up to the whole image."""
    scale = 12.0 / min_face
    scales, side = [], min(height, width) * scale
    while side >= 12:
        scales.append(scale)
        scale, side = scale * factor, side * factor
    return scales


def detect_faces(image: np.ndarray, min_face: float = 20.0, thresholds=(0.6, 0.7, 0.8)) -> list[Face]:
    """All faces in a uint8 RGB image with their five landmarks, best score first.

    The three stages of MTCNN: P-Net on an image pyramid proposes 12x12 windows (stride 2), R-Net refines and
    rejects them on 24x24 patches, O-Net on 48x48 patches gives the final box, score and landmarks; each stage ends
    with non-maximum suppression. ``min_face`` is the smallest face searched for, in pixels.
    """
    weights = load_weights()
    height, width = image.shape[:2]
    pil = Image.fromarray(image)

    boxes, scores = [], []
    for scale in pyramid(height, width, min_face):
        size = (max(1, int(np.ceil(width * scale))), max(1, int(np.ceil(height * scale))))
        scaled = (np.asarray(pil.resize(size, Image.Resampling.BILINEAR), np.float32) - 127.5) / 128.0
        offsets, prob = pnet(scaled[None], weights["pnet"])
        ys, xs = np.nonzero(prob[0] > thresholds[0])
        if not len(ys):
            continue
        cells = np.stack([xs * 2, ys * 2, xs * 2 + 12, ys * 2 + 12], axis=1) / scale
        found = regress(cells, offsets[0, ys, xs])
        keep = nms(found, prob[0, ys, xs], 0.5)
        boxes.append(found[keep])
        scores.append(prob[0, ys, xs][keep])
    if not boxes:
        return []
    boxes, scores = np.concatenate(boxes), np.concatenate(scores)
    boxes = square(boxes[nms(boxes, scores, 0.7)])
    boxes = boxes[np.all(boxes[:, 2:] - boxes[:, :2] >= 1, axis=1)]  # a degenerate regression cannot be cropped
    if not len(boxes):
        return []

    offsets, scores = rnet(patches(pil, boxes, 24), weights["rnet"])
    keep = scores > thresholds[1]
    boxes, offsets, scores = boxes[keep], offsets[keep], scores[keep]
    if not len(boxes):
        return []
    keep = nms(boxes, scores, 0.7)
    boxes = square(regress(boxes[keep], offsets[keep]))
    boxes = boxes[np.all(boxes[:, 2:] - boxes[:, :2] >= 1, axis=1)]
    if not len(boxes):
        return []

    offsets, points, scores = onet(patches(pil, boxes, 48), weights["onet"])
    side = (boxes[:, 2:4] - boxes[:, 0:2] + 1)[:, None, :]  # (N, 1, 2): w, h
    landmarks = np.stack([points[:, :5], points[:, 5:]], axis=-1) * side + boxes[:, None, 0:2] - 1
    boxes = regress(boxes, offsets)
    keep = np.nonzero(scores > thresholds[2])[0]
    keep = keep[nms(boxes[keep], scores[keep], 0.7, method="min")]
    return [Face(boxes[i], float(scores[i]), landmarks[i]) for i in keep]
