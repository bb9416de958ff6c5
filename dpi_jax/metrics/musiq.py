"""MUSIQ (Ke et al., ICCV 2021) as pyiqa (0.1.16) computes its default ``pyiqa.create_metric("musiq")``:
``MUSIQ(pretrained="koniq10k")`` with ``longer_side_lengths=[224, 384]`` and ``max_seq_len_from_original_res=-1``.

The computation matched, step by step (``pyiqa/archs/musiq_arch.py``, ``pyiqa/data/multiscale_trans_util.py``):

1. the image as read (RGB in [0, 1], ``x / 255`` of 8-bit pixels), then ``(x - 0.5) * 2``;
2. the multi-scale representation: for each longer side L in (224, 384), the image resized, aspect ratio kept, to
   ``(round(h * L / max(h, w)), round(w * L / max(h, w)))`` by ``F.interpolate(mode="bicubic",
   align_corners=False)`` (cubic coefficient -0.75, edge pixels repeated, no antialiasing;
   :func:`resize_bicubic_torch`), then the image at its own size;
3. per scale, 32x32 patches with TensorFlow "SAME" zero padding (the remainder split, the smaller half first), in
   row-major order, each with its hashed spatial position (the patch grid mapped to a 10x10 grid by nearest-neighbour
   ``F.interpolate``: ``floor(i * float32(10 / count))``, index ``10 * row + column``), its scale id (0, 1, 2) and an
   input mask of 1; the two resized scales are padded with zero rows (position 0, scale 0, mask 0) to ``ceil(L / 32)
   ** 2`` patches (49 and 144); the original size keeps all its patches: ``49 + 144 + ceil(h / 32) * ceil(w / 32)``
   tokens per image (:func:`multiscale_patches`);
4. each patch through the ResNet stem: a weight-standardised 7x7/2 convolution (``w - mean``, divided by the unbiased
   std + 1e-5; "SAME" padding), GroupNorm (32 groups, eps 1e-6), ReLU, a 3x3/2 max pool with "SAME" zero padding, one
   bottleneck (weight-standardised convolutions, GroupNorm eps 1e-4, a projection shortcut), flattened in (h, w, c)
   order and embedded to 384;
5. the transformer encoder: the hashed-position and scale embeddings added, a CLS token in front, 14 pre-norm blocks
   (6-head attention whose masked entries are set to -1000 before the softmax, as pyiqa's ``masked_fill``; an MLP of
   1152 with exact GELU; LayerNorm eps 1e-6), the final LayerNorm, and the head (one output) on the CLS token: the
   score (KonIQ-10k mean opinion scale, about 0 to 100; higher is better).

Weights: pyiqa's converted KonIQ checkpoint ``musiq_koniq_ckpt-e95806b9.pth`` (a PyTorch state_dict of exactly this
module), ported once (``python -m dpi_jax.port musiq_koniq_ckpt-e95806b9.pth checkpoints/metrics/musiq --model
musiq``). It is the file pyiqa's ``musiq`` loads, so the ported scores are the numbers pyiqa reports; the official
MUSIQ release (TensorFlow/Flax ``.npz`` checkpoints) would need the conversion pyiqa already made.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.traverse_util import flatten_dict

from dpi_jax import checkpoint, sharding
from dpi_jax.metrics.clipiqa import folder_scores, scores_by_size, to_unit_range
from dpi_jax.torch_port import fill_params, load_torch_state_dict

KIND = "musiq"
WEIGHTS_FILE = "musiq_koniq_ckpt-e95806b9.pth"
WEIGHTS_URL = f"https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/{WEIGHTS_FILE}"
DEFAULT_DIR = "checkpoints/metrics/musiq"
PRECISION = jax.lax.Precision.HIGHEST
PATCH = 32
GRID = 10  # hashed spatial positions: a GRID x GRID table
LONGER_SIDES = (224, 384)
HIDDEN, MLP_DIM, HEADS, LAYERS, NUM_SCALES = 384, 1152, 6, 14, 3
TOKEN_DIM = 64  # the ResNet stem's width; the bottleneck gives 4 * 64 channels on 8x8
MASK_FILL = -1e3  # pyiqa's attn.masked_fill(mask == 0, -1e3)
CUBIC_A = -0.75
LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias"}


# ----------------------------------------------------------------------------------------------- preprocessing


def _cubic_taps(in_size: int, out_size: int):
    """Source indices (out, 4) and weights (out, 4) of ``F.interpolate(mode="bicubic", align_corners=False)`` along
    one axis, as PyTorch's CPU kernel computes them in float32: ``scale = float32(in) / out``, ``src = scale * (i +
    0.5) - 0.5`` (rounded once to float32, its fused multiply-add), ``lo = min(floor(src), in - 1)``, ``t`` clipped
    to [0, 1], Keys' coefficients with A = -0.75 and the four indices ``lo - 1 .. lo + 2`` clamped into the image."""
    scale = np.float32(in_size) / np.float32(out_size)
    i = np.arange(out_size, dtype=np.float64)
    src = (np.float64(scale) * (i + 0.5) - 0.5).astype(np.float32)
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    t = np.clip(src - lo.astype(np.float32), np.float32(0), np.float32(1)).astype(np.float32)
    a = np.float32(CUBIC_A)
    near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # |x| <= 1
    far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # 1 < |x| < 2
    one = np.float32(1)
    weights = np.stack([far(t + one), near(t), near(one - t), far((one - t) + one)], axis=1).astype(np.float32)
    index = np.clip(lo[:, None] + np.arange(-1, 3)[None], 0, in_size - 1)
    return index, weights


def resize_bicubic_torch(x, size: tuple[int, int]):
    """``F.interpolate(x, size, mode="bicubic", align_corners=False)`` (no antialiasing, unlike ``jax.image.resize``)
    of NHWC float images: the width taps first, then the height taps, as PyTorch's separable CPU kernel."""
    (yi, yw), (xi, xw) = _cubic_taps(x.shape[1], size[0]), _cubic_taps(x.shape[2], size[1])
    rows = sum(x[:, :, xi[:, j]] * xw[:, j][:, None] for j in range(4))
    return sum(rows[:, yi[:, j]] * yw[:, j][:, None, None] for j in range(4))


def resized_size(h: int, w: int, longer_side: int) -> tuple[int, int]:
    """pyiqa's ``resize_preserve_aspect_ratio`` size: ``(round(h * r), round(w * r))`` with ``r = L / max(h, w)``
    (Python's round, halves to even)."""
    ratio = longer_side / max(h, w)
    return round(h * ratio), round(w * ratio)


def hashed_positions(count_h: int, count_w: int, grid: int = GRID) -> np.ndarray:
    """(count_h * count_w,) int32 indices into the ``grid x grid`` position table: each patch row and column mapped by
    nearest-neighbour ``F.interpolate`` of ``arange(grid)`` to the patch count (``floor(i * float32(grid / count))``,
    the index itself when the counts agree, ``i // 2`` when the count is twice the grid)."""

    def nearest(count):
        if count == grid:
            return np.arange(count)
        if count == 2 * grid:
            return np.arange(count) >> 1
        scale = np.float32(grid) / np.float32(count)
        return np.minimum(np.floor(np.arange(count, dtype=np.float32) * scale).astype(np.int64), grid - 1)

    return (nearest(count_h)[:, None] * grid + nearest(count_w)[None, :]).reshape(-1).astype(np.int32)


def _patches(x, patch: int = PATCH):
    """(N, count_h * count_w, patch, patch, C) row-major patches of NHWC ``x`` with TensorFlow "SAME" zero padding."""
    n, h, w, c = x.shape
    ch, cw = math.ceil(h / patch), math.ceil(w / patch)
    ph, pw = ch * patch - h, cw * patch - w
    x = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    x = x.reshape(n, ch, patch, cw, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, ch * cw, patch, patch, c), ch, cw


def multiscale_patches(x, longer_sides=LONGER_SIDES, patch: int = PATCH):
    """pyiqa's ``get_multiscale_patches`` of NHWC images already in [-1, 1]: ``(patches (N, L, 32, 32, 3), spatial
    (L,), scale (L,), mask (L,))`` for the two resized scales (zero-padded to ``ceil(side / 32) ** 2`` tokens each)
    and the original size, L = 49 + 144 + ceil(h / 32) * ceil(w / 32). The positions depend only on the size."""
    n, h, w, _ = x.shape
    parts, spatial, scales, masks = [], [], [], []
    for scale_id, side in enumerate(sorted(longer_sides)):
        resized = resize_bicubic_torch(x, resized_size(h, w, side))
        p, ch, cw = _patches(resized, patch)
        max_len = math.ceil(side / patch) ** 2
        pad = max_len - ch * cw
        if pad < 0:
            raise ValueError(f"{ch}x{cw} patches at the {side} scale exceed {max_len}")
        parts.append(jnp.pad(p, ((0, 0), (0, pad), (0, 0), (0, 0), (0, 0))))
        spatial.append(np.pad(hashed_positions(ch, cw), (0, pad)))
        scales.append(np.pad(np.full(ch * cw, scale_id, np.int32), (0, pad)))
        masks.append(np.pad(np.ones(ch * cw, np.int32), (0, pad)))
    p, ch, cw = _patches(x, patch)
    parts.append(p)
    spatial.append(hashed_positions(ch, cw))
    scales.append(np.full(ch * cw, len(longer_sides), np.int32))
    masks.append(np.ones(ch * cw, np.int32))
    return jnp.concatenate(parts, axis=1), *(np.concatenate(v) for v in (spatial, scales, masks))


# ----------------------------------------------------------------------------------------------- network


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """pyiqa's ``exact_padding_2d(mode="same")`` along one axis: TensorFlow "SAME", the smaller half first."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class StdConv(nn.Module):
    """pyiqa's ``StdConv``: a convolution without bias whose kernel is standardised per output channel (``w -
    mean``, divided by ``std + 1e-5``, the unbiased std over input channels and taps), with "SAME" zero padding."""

    features: int
    kernel: int
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        w = self.param("kernel", nn.initializers.lecun_normal(), (self.kernel, self.kernel, x.shape[-1],
                                                                   self.features))
        w = w - jnp.mean(w, axis=(0, 1, 2), keepdims=True)
        w = w / (jnp.std(w, axis=(0, 1, 2), keepdims=True, ddof=1) + 1e-5)
        pads = [_same_pads(x.shape[i], self.kernel, self.stride) for i in (1, 2)]
        return jax.lax.conv_general_dilated(x, w, (self.stride, self.stride), pads,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=PRECISION)


def _group_norm(eps, name):
    return nn.GroupNorm(num_groups=32, epsilon=eps, use_fast_variance=False, name=name)


class Bottleneck(nn.Module):
    """pyiqa's MUSIQ ``Bottleneck`` (width = input channels): three standardised convolutions with GroupNorm (eps
    1e-4) and a projection shortcut (``conv_proj``, ``gn_proj``)."""

    features: int

    @nn.compact
    def __call__(self, x):
        width = x.shape[-1]
        identity = _group_norm(1e-4, "gn_proj")(StdConv(self.features, 1, name="conv_proj")(x))
        y = nn.relu(_group_norm(1e-4, "gn1")(StdConv(width, 1, name="conv1")(x)))
        y = nn.relu(_group_norm(1e-4, "gn2")(StdConv(width, 3, name="conv2")(y)))
        y = _group_norm(1e-4, "gn3")(StdConv(self.features, 1, name="conv3")(y))
        return nn.relu(y + identity)


class MultiHeadAttention(nn.Module):
    """pyiqa's ``MultiHeadAttention`` (query/key/value/out with bias): entries between two tokens of which one is
    masked out get -1000 before the softmax."""

    heads: int = HEADS

    @nn.compact
    def __call__(self, x, mask):
        n, length, c = x.shape
        dense = lambda name: nn.Dense(c, precision=PRECISION, name=name)
        split = lambda t: t.reshape(n, length, self.heads, c // self.heads).transpose(0, 2, 1, 3)
        q, k, v = split(dense("query")(x)), split(dense("key")(x)), split(dense("value")(x))
        logits = jnp.einsum("nhqd,nhkd->nhqk", q, k, precision=PRECISION) * (c // self.heads) ** -0.5
        pair = (mask[:, None, :, None] * mask[:, None, None, :]) != 0
        weights = jax.nn.softmax(jnp.where(pair, logits, MASK_FILL), axis=-1)
        out = jnp.einsum("nhqk,nhkd->nhqd", weights, v, precision=PRECISION)
        return dense("out")(out.transpose(0, 2, 1, 3).reshape(n, length, c))


class _Mlp(nn.Module):
    @nn.compact
    def __call__(self, x):
        y = jax.nn.gelu(nn.Dense(MLP_DIM, precision=PRECISION, name="fc1")(x), approximate=False)
        return nn.Dense(x.shape[-1], precision=PRECISION, name="fc2")(y)


class TransformerBlock(nn.Module):
    @nn.compact
    def __call__(self, x, mask):
        ln = lambda name: nn.LayerNorm(1e-6, use_fast_variance=False, name=name)
        x = x + MultiHeadAttention(name="attention")(ln("norm1")(x), mask)
        return x + _Mlp(name="mlp")(ln("norm2")(x))


class _Table(nn.Module):
    """A parameter table read by index; ``transposed`` tables (2-D ones) are held as their transpose, the layout
    :func:`~dpi_jax.torch_port.to_flax` gives a 2-D tensor."""

    name_: str
    shape: tuple[int, ...]
    transposed: bool = False

    @nn.compact
    def __call__(self):
        table = self.param(self.name_, nn.initializers.normal(0.02), self.shape)
        return table.T if self.transposed else table


class TransformerEncoder(nn.Module):
    """pyiqa's ``TransformerEncoder``: hashed-position (``posembed_input.position_emb``, (1, 100, 384)) and scale
    (``scaleembed_input.scale_emb``, (3, 384), held transposed) embeddings, the CLS token, the blocks, the norm."""

    @nn.compact
    def __call__(self, x, spatial, scale, mask):
        position = _Table("position_emb", (1, GRID * GRID, HIDDEN), name="posembed_input")()[0]
        scales = _Table("scale_emb", (HIDDEN, NUM_SCALES), transposed=True, name="scaleembed_input")()
        cls = self.param("cls", nn.initializers.zeros, (1, 1, HIDDEN))
        x = x + position[spatial] + scales[scale]
        x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, HIDDEN)), x], axis=1)
        mask = jnp.concatenate([jnp.ones((x.shape[0], 1), mask.dtype), mask], axis=1)
        x = _Blocks(name="transformer")(x, mask)
        return nn.LayerNorm(1e-6, use_fast_variance=False, name="encoder_norm")(x)


class _Blocks(nn.Module):
    """pyiqa's ``transformer`` ModuleDict: ``encoderblock_0`` .. ``encoderblock_13`` in order."""

    @nn.compact
    def __call__(self, x, mask):
        for i in range(LAYERS):
            x = TransformerBlock(name=f"encoderblock_{i}")(x, mask)
        return x


class MUSIQ(nn.Module):
    """pyiqa's ``MUSIQ`` network on prepared patches: (N, L, 32, 32, 3) patches and their (L,) spatial, scale and mask
    vectors -> (N,) scores (``head`` on the CLS token; KonIQ's head has one output, so ``dist_to_mos`` keeps it)."""

    @nn.compact
    def __call__(self, patches, spatial, scale, mask):
        n, length = patches.shape[:2]
        x = patches.reshape((n * length,) + patches.shape[2:])
        x = nn.relu(_group_norm(1e-6, "gn_root")(StdConv(TOKEN_DIM, 7, 2, name="conv_root")(x)))
        x = jnp.pad(x, ((0, 0), _same_pads(x.shape[1], 3, 2), _same_pads(x.shape[2], 3, 2), (0, 0)))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")
        x = Bottleneck(TOKEN_DIM * 4, name="block1")(x)
        x = nn.Dense(HIDDEN, precision=PRECISION, name="embedding")(x.reshape(n, length, -1))
        mask = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), (n, length))
        x = TransformerEncoder(name="transformer_encoder")(x, jnp.asarray(spatial), jnp.asarray(scale), mask)
        return nn.Dense(1, precision=PRECISION, name="head")(x[:, 0])[:, 0]


# ----------------------------------------------------------------------------------------------- the metric


def prepare(images):
    """NHWC images (uint8, or float in [0, 1]) -> :func:`multiscale_patches` of ``(x - 0.5) * 2``."""
    return multiscale_patches((to_unit_range(images) - 0.5) * 2)


@jax.jit
def musiq_score(params, images):
    """MUSIQ (KonIQ) scores (N,) of NHWC images (uint8, or float in [0, 1]) of one size: pyiqa's ``musiq``."""
    return MUSIQ().apply({"params": params}, *prepare(images))


def abstract_params() -> dict:
    """The parameter tree of :class:`MUSIQ` as ShapeDtypeStructs (no computation)."""
    patches = jax.ShapeDtypeStruct((1, 2, PATCH, PATCH, 3), jnp.float32)
    vec = np.zeros(2, np.int32)
    return jax.eval_shape(lambda p: MUSIQ().init(jax.random.key(0), p, vec, vec, vec + 1), patches)["params"]


# ----------------------------------------------------------------------------------------------- weights


def torch_key(path: tuple[str, ...]) -> str:
    """The state_dict key of a Flax path; module names are pyiqa's: ('transformer_encoder', 'transformer',
    'encoderblock_3', 'norm1', 'scale') -> 'transformer_encoder.transformer.encoderblock_3.norm1.weight'."""
    *modules, leaf = path
    return ".".join(modules + [LEAF_NAMES.get(leaf, leaf)])


def params_from_state_dict(state_dict: dict) -> dict:
    """Flax params from the state_dict of pyiqa's ``MUSIQ(num_class=1)`` (``musiq_koniq_ckpt-e95806b9.pth``).
    Raises :class:`~dpi_jax.torch_port.PortError` listing every missing key, unexpected key and shape mismatch (the
    AVA checkpoint's 10-way head, for instance, is refused by its shape)."""
    expected = {torch_key(path): (path, spec.shape) for path, spec in flatten_dict(abstract_params()).items()}
    params = fill_params(expected, {k: np.asarray(v) for k, v in dict(state_dict).items()}, "MUSIQ (KonIQ)")
    return jax.tree.map(np.asarray, params)


def convert(src) -> dict:
    """The params of ``musiq_koniq_ckpt-e95806b9.pth``, read with ``torch.load(weights_only=True)``. Raises PortError
    when the file does not fit."""
    return params_from_state_dict(load_torch_state_dict(src))


def save(directory, params, *, overwrite: bool = False) -> Path:
    """Write ported params as a dpi-jax checkpoint of kind ``"musiq"``."""
    meta = {"kind": KIND, "config": {"source": WEIGHTS_FILE, "longer_side_lengths": list(LONGER_SIDES)}}
    return checkpoint.write_checkpoint(directory, params, meta, overwrite=overwrite)


def missing_message(directory) -> str:
    """What to download, where it is published, and the port command that makes the checkpoint ``directory``."""
    return (f"no MUSIQ weights at {directory}. Download {WEIGHTS_FILE} (pyiqa's MUSIQ trained on KonIQ-10k, the "
            f"weights of its default `musiq` metric, published on the IQA-PyTorch GitHub releases page: "
            f"{WEIGHTS_URL}) and port it once with\n"
            f"    python -m dpi_jax.port {WEIGHTS_FILE} {directory} --model {KIND}")


def load(directory=DEFAULT_DIR) -> dict:
    """The params of a ported MUSIQ checkpoint (``None``: :data:`DEFAULT_DIR`). A missing directory raises
    FileNotFoundError naming the file, where it is published and the port command."""
    directory = Path(DEFAULT_DIR if directory is None else directory)
    return checkpoint.load_network(directory, KIND, "MUSIQ", lambda config: abstract_params(),
                                   missing_message(directory))


# ----------------------------------------------------------------------------------------------- many images


def musiq_images(params, images, batch_size: int = 8, progress: bool = True) -> np.ndarray:
    """MUSIQ of images (an (N, H, W, 3) array, or a list of (H, W, 3) arrays of any sizes; uint8 or float in
    [0, 1]) -> (N,)."""
    params = sharding.replicate(params, sharding.local_mesh())
    return scores_by_size(partial(musiq_score, params), images, batch_size, "MUSIQ", progress)


def musiq_folder(params, folder, batch_size: int = 8, progress: bool = True) -> dict:
    """MUSIQ of every image of ``folder``: ``{"mean": ..., "per_image": {name: score}}``."""
    return folder_scores(lambda images: musiq_images(params, images, batch_size, progress), folder)
