"""CLIP-IQA (Wang et al., AAAI 2023) as pyiqa (0.1.16) computes its default ``pyiqa.create_metric("clipiqa")``:
``CLIPIQA(model_type="clipiqa", backbone="RN50", pos_embedding=False)`` on OpenAI's CLIP ResNet-50.

The computation matched, step by step (``pyiqa/archs/clipiqa_arch.py`` and ``pyiqa/archs/clip_model.py``):

1. the image as read (RGB in [0, 1], ``x / 255`` of 8-bit pixels), at its own size: no resize, no crop;
2. ``(x - mean) / std`` with CLIP's mean (0.48145466, 0.4578275, 0.40821073) and std (0.26862954, 0.26130258,
   0.27577711);
3. CLIP's ``ModifiedResNet`` (RN50: blocks 3, 4, 6, 3, width 64): a three-convolution stem and a 2x2 average pool,
   bottlenecks whose stride is an average pool, BatchNorm (eps 1e-5) with the stored running statistics; pools round
   down, as ``nn.AvgPool2d``, so any height and width work;
4. its attention pool without positional embedding (``pos_embedding=False``: pyiqa leaves CLIP's 7x7 table out
   whatever the size, which is how it takes images other than 224x224): the tokens of every position with their mean
   in front, 32-head attention of that mean token (q/k/v projections, ``c_proj``): the 1024-d image feature;
5. the cosine similarity to the text features of pyiqa's five antonym pairs (:data:`PROMPTS`: "Good image" / "bad
   image", "Sharp image" / "blurry image", "sharp edges" / "blurry edges", "High resolution image" / "low resolution
   image", "Noise-free image" / "noisy image"), times ``exp(logit_scale)``, a softmax within each pair, and the mean
   over the pairs of the first ("good") prompt's probability: one score in [0, 1] per image.

Note: the CLIP-IQA paper used one pair, "Good photo." / "Bad photo."; pyiqa's default (the number image-restoration
papers report as CLIPIQA) uses the five pairs above, and so does this module.

The text tower (CLIP's 12-layer causal transformer on the BPE tokens of :data:`PROMPT_TOKENS`, its EOT token's
feature through ``text_projection``) depends on nothing but the weights, so it runs once, when the weights are ported
(:class:`CLIPTextTower`, :func:`convert`): the checkpoint holds the image tower, the ten text features and
``logit_scale``. The token ids are those of OpenAI's ``clip.tokenize`` (checked against its tokenizer in the tests).

Weights: OpenAI's ``RN50.pt`` (a TorchScript archive, read with ``torch.jit.load``, whose state_dict is CLIP's; a
plain state_dict file of the same keys is read with ``torch.load(weights_only=True)``), ported once
(``python -m dpi_jax.port RN50.pt checkpoints/metrics/clipiqa --model clipiqa``).
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.traverse_util import flatten_dict

from dpi_jax import checkpoint, sharding
from dpi_jax.errors import InputError
from dpi_jax.images import list_images, read_rgb
from dpi_jax.metrics.batching import map_batches
from dpi_jax.metrics.inception import FrozenBatchNorm
from dpi_jax.torch_port import PortError, fill_params, finite_arrays, load_torch_state_dict

KIND = "clipiqa"
WEIGHTS_FILE = "RN50.pt"
WEIGHTS_URL = ("https://openaipublic.azureedge.net/clip/models/"
               "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt")
DEFAULT_DIR = "checkpoints/metrics/clipiqa"
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
BN_EPS = 1e-5
LN_EPS = 1e-5
PRECISION = jax.lax.Precision.HIGHEST

# RN50: CLIP's build_model reads these from the state_dict's shapes; they are fixed here and checked by the port.
LAYERS = (3, 4, 6, 3)
WIDTH = 64
EMBED_DIM = 1024
VISION_HEADS = WIDTH * 32 // 64
CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408
TEXT_WIDTH = 512
TEXT_HEADS = TEXT_WIDTH // 64
TEXT_LAYERS = 12

# pyiqa's CLIPIQA.prompt_pairs, in its order (good, bad) and their clip.tokenize ids (start 49406 ... end 49407).
PROMPTS = ("Good image", "bad image", "Sharp image", "blurry image", "sharp edges", "blurry edges",
           "High resolution image", "low resolution image", "Noise-free image", "noisy image")
PROMPT_TOKENS = ((49406, 886, 2867, 49407), (49406, 2103, 2867, 49407), (49406, 8157, 2867, 49407),
                 (49406, 21977, 2867, 49407), (49406, 8157, 20938, 49407), (49406, 21977, 20938, 49407),
                 (49406, 1400, 9977, 2867, 49407), (49406, 1042, 9977, 2867, 49407),
                 (49406, 9307, 268, 1139, 2867, 49407), (49406, 33495, 2867, 49407))
# Keys of RN50.pt that the metric does not read: build_model's three size entries (it deletes them), BatchNorm's
# counters, and the attention pool's 7x7 positional table (pyiqa's clipiqa runs with pos_embedding=False).
_SIZE_KEYS = ("input_resolution", "context_length", "vocab_size")
_UNUSED_TABLE = "visual.attnpool.positional_embedding"
# Flax leaf -> state_dict leaf; other leaves (in_proj_weight, text_projection, ...) keep their names.
LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def token_array() -> np.ndarray:
    """(10, 77) int32: :data:`PROMPT_TOKENS` zero-padded to CLIP's context length, as ``clip.tokenize``."""
    out = np.zeros((len(PROMPT_TOKENS), CONTEXT_LENGTH), np.int32)
    for i, tokens in enumerate(PROMPT_TOKENS):
        out[i, :len(tokens)] = tokens
    return out


# --------------------------------------------------------------------------------------------------- image tower


def _conv(features, kernel, name, stride=1, pad=0):
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   use_bias=False, precision=PRECISION, name=name)


def _avg_pool(x, k):
    """``nn.AvgPool2d(k)``: k x k windows, stride k, no padding, the remainder dropped."""
    return nn.avg_pool(x, (k, k), strides=(k, k), padding="VALID")


class Bottleneck(nn.Module):
    """CLIP's ``Bottleneck`` (expansion 4): 1x1, 3x3, [k x k average pool], 1x1, each with BatchNorm; the shortcut is
    an average pool, a 1x1 convolution and BatchNorm (``downsample.0``, ``downsample.1``) when the shape changes."""

    planes: int
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        out = nn.relu(FrozenBatchNorm(BN_EPS, name="bn1")(_conv(self.planes, 1, "conv1")(x)))
        out = nn.relu(FrozenBatchNorm(BN_EPS, name="bn2")(_conv(self.planes, 3, "conv2", pad=1)(out)))
        if self.stride > 1:
            out = _avg_pool(out, self.stride)
        out = FrozenBatchNorm(BN_EPS, name="bn3")(_conv(self.planes * 4, 1, "conv3")(out))
        identity = x
        if self.stride > 1 or x.shape[-1] != self.planes * 4:
            identity = _avg_pool(x, self.stride) if self.stride > 1 else x
            identity = FrozenBatchNorm(BN_EPS, name="downsample_1")(_conv(self.planes * 4, 1, "downsample_0")(identity))
        return nn.relu(out + identity)


class AttentionPool(nn.Module):
    """pyiqa's ``AttentionPool2d`` with ``pos_embedding=False``: ``F.multi_head_attention_forward`` of the sequence
    [mean token, every position's token] (row-major, as ``reshape(N, C, H*W)``), of which only the first output (the
    mean token's) is kept, so only that query is computed."""

    heads: int = VISION_HEADS
    output_dim: int = EMBED_DIM

    @nn.compact
    def __call__(self, x):
        n, h, w, c = x.shape
        tokens = x.reshape(n, h * w, c)
        mean = jnp.mean(tokens, axis=1, keepdims=True)
        seq = jnp.concatenate([mean, tokens], axis=1)
        dense = lambda features, name: nn.Dense(features, precision=PRECISION, name=name)
        split = lambda t: t.reshape(n, t.shape[1], self.heads, c // self.heads).transpose(0, 2, 1, 3)
        q = split(dense(c, "q_proj")(mean))
        k, v = split(dense(c, "k_proj")(seq)), split(dense(c, "v_proj")(seq))
        logits = jnp.einsum("nhqd,nhkd->nhqk", q * (c // self.heads) ** -0.5, k, precision=PRECISION)
        out = jnp.einsum("nhqk,nhkd->nhqd", jax.nn.softmax(logits, axis=-1), v, precision=PRECISION)
        return dense(self.output_dim, "c_proj")(out.transpose(0, 2, 1, 3).reshape(n, c))


class CLIPImageTower(nn.Module):
    """CLIP's ``ModifiedResNet`` (``visual``) with pyiqa's attention pool: (N, 1024) image features of NHWC images
    already normalised with :data:`MEAN` / :data:`STD`. Module ``layer2_0`` holds ``visual.layer2.0.*``."""

    layers: tuple[int, ...] = LAYERS
    width: int = WIDTH

    @nn.compact
    def __call__(self, x):
        for i, (features, stride) in enumerate(((self.width // 2, 2), (self.width // 2, 1), (self.width, 1))):
            x = _conv(features, 3, f"conv{i + 1}", stride=stride, pad=1)(x)
            x = nn.relu(FrozenBatchNorm(BN_EPS, name=f"bn{i + 1}")(x))
        x = _avg_pool(x, 2)
        for stage, blocks in enumerate(self.layers):
            for b in range(blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                x = Bottleneck(self.width * 2 ** stage, stride, name=f"layer{stage + 1}_{b}")(x)
        return AttentionPool(name="attnpool")(x)


# --------------------------------------------------------------------------------------------------- text tower


class _MultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` (one ``in_proj_weight`` for q, k and v, held transposed; ``out_proj``) with an
    additive mask."""

    heads: int

    @nn.compact
    def __call__(self, x, mask):
        n, length, c = x.shape
        w = self.param("in_proj_weight", nn.initializers.lecun_normal(), (c, 3 * c))
        b = self.param("in_proj_bias", nn.initializers.zeros, (3 * c,))
        q, k, v = jnp.split(jnp.dot(x, w, precision=PRECISION) + b, 3, axis=-1)
        split = lambda t: t.reshape(n, length, self.heads, c // self.heads).transpose(0, 2, 1, 3)
        logits = jnp.einsum("nhqd,nhkd->nhqk", split(q) * (c // self.heads) ** -0.5, split(k), precision=PRECISION)
        out = jnp.einsum("nhqk,nhkd->nhqd", jax.nn.softmax(logits + mask, axis=-1), split(v), precision=PRECISION)
        return nn.Dense(c, precision=PRECISION, name="out_proj")(out.transpose(0, 2, 1, 3).reshape(n, length, c))


class _MLP(nn.Module):
    """``c_fc``, QuickGELU ``x * sigmoid(1.702 x)``, ``c_proj``."""

    @nn.compact
    def __call__(self, x):
        y = nn.Dense(4 * x.shape[-1], precision=PRECISION, name="c_fc")(x)
        return nn.Dense(x.shape[-1], precision=PRECISION, name="c_proj")(y * jax.nn.sigmoid(1.702 * y))


class _ResidualAttentionBlock(nn.Module):
    heads: int

    @nn.compact
    def __call__(self, x, mask):
        ln = lambda name: nn.LayerNorm(LN_EPS, use_fast_variance=False, name=name)
        x = x + _MultiheadAttention(self.heads, name="attn")(ln("ln_1")(x), mask)
        return x + _MLP(name="mlp")(ln("ln_2")(x))


class CLIPTextTower(nn.Module):
    """CLIP's ``encode_text``: token embedding + positional embedding, the causal transformer (``transformer
    .resblocks.N``), ``ln_final``, the EOT token's (the largest id's) feature times ``text_projection``. Its 2-D
    tables are held transposed (the layout :func:`~dpi_jax.torch_port.to_flax` gives a Linear weight)."""

    @nn.compact
    def __call__(self, tokens):
        table = self.param("token_embedding", nn.initializers.normal(0.02), (TEXT_WIDTH, VOCAB_SIZE))
        position = self.param("positional_embedding", nn.initializers.normal(0.01), (TEXT_WIDTH, CONTEXT_LENGTH))
        x = table.T[tokens] + position.T
        mask = jnp.triu(jnp.full((CONTEXT_LENGTH, CONTEXT_LENGTH), -jnp.inf, jnp.float32), 1)
        for i in range(TEXT_LAYERS):
            x = _ResidualAttentionBlock(TEXT_HEADS, name=f"resblocks_{i}")(x, mask)
        x = nn.LayerNorm(LN_EPS, use_fast_variance=False, name="ln_final")(x)
        eot = x[jnp.arange(x.shape[0]), jnp.argmax(tokens, axis=-1)]
        projection = self.param("text_projection", nn.initializers.normal(0.02), (EMBED_DIM, TEXT_WIDTH))
        return jnp.dot(eot, projection.T, precision=PRECISION)


# --------------------------------------------------------------------------------------------------- the metric


def to_unit_range(images):
    """uint8 images -> float32 ``x / 255`` (torchvision's ``to_tensor``, pyiqa's reading); float images in [0, 1]
    pass unchanged."""
    images = jnp.asarray(images)
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def image_features(params, images):
    """(N, 1024) CLIP RN50 image features (pyiqa's ``clip_model.encode_image(x, pos_embedding=False)``) of NHWC
    images (uint8, or float in [0, 1]) of any size."""
    x = (to_unit_range(images) - jnp.asarray(MEAN, jnp.float32)) / jnp.asarray(STD, jnp.float32)
    return CLIPImageTower().apply({"params": params["visual"]}, x)


def scores_from_features(params, features):
    """pyiqa's CLIPIQA head: cosine similarities to the stored prompt features times ``exp(logit_scale)``, a softmax
    within each (good, bad) pair, the mean over pairs of the good prompt's probability -> (N,)."""
    image = features / jnp.linalg.norm(features, axis=-1, keepdims=True)
    text = params["text_features"] / jnp.linalg.norm(params["text_features"], axis=-1, keepdims=True)
    logits = jnp.exp(params["logit_scale"]) * jnp.dot(image, text.T, precision=PRECISION)
    probs = jax.nn.softmax(logits.reshape(logits.shape[0], -1, 2), axis=-1)
    return jnp.mean(probs[..., 0], axis=1)


@jax.jit
def clipiqa_score(params, images):
    """CLIP-IQA scores (N,) of NHWC images (uint8, or float in [0, 1]): pyiqa's ``clipiqa`` (higher is better)."""
    return scores_from_features(params, image_features(params, images))


def abstract_params() -> dict:
    """The checkpoint's parameter tree as ShapeDtypeStructs: ``visual`` (:class:`CLIPImageTower`), ``text_features``
    (10, 1024) and ``logit_scale`` ()."""
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    visual = jax.eval_shape(CLIPImageTower().init, jax.random.key(0), x)["params"]
    return {"visual": visual, "text_features": jax.ShapeDtypeStruct((len(PROMPTS), EMBED_DIM), jnp.float32),
            "logit_scale": jax.ShapeDtypeStruct((), jnp.float32)}


def abstract_text_params() -> dict:
    """The parameter tree of :class:`CLIPTextTower` as ShapeDtypeStructs."""
    tokens = jax.ShapeDtypeStruct((1, CONTEXT_LENGTH), jnp.int32)
    return jax.eval_shape(CLIPTextTower().init, jax.random.key(0), tokens)["params"]


# --------------------------------------------------------------------------------------------------- weights


def torch_key(path: tuple[str, ...]) -> str:
    """The state_dict key of a Flax path: ('layer2_0', 'downsample_1', 'mean') -> 'layer2.0.downsample.1.running_mean',
    ('resblocks_3', 'ln_1', 'scale') -> 'resblocks.3.ln_1.weight'."""
    *modules, leaf = path
    modules = [re.sub(r"^(layer\d|downsample|resblocks)_(\d+)$", r"\1.\2", m) for m in modules]
    return ".".join(modules + [LEAF_NAMES.get(leaf, leaf)])


def _expected() -> dict:
    """{state_dict key: (path, shape)} of both towers; image-tower paths start with "visual", text ones with "text"."""
    out = {}
    for path, spec in flatten_dict(abstract_params()["visual"]).items():
        out["visual." + torch_key(path)] = (("visual",) + path, spec.shape)
    for path, spec in flatten_dict(abstract_text_params()).items():
        key = torch_key(path) if len(path) > 1 else {"token_embedding": "token_embedding.weight"}.get(path[0], path[0])
        if path[0].startswith("resblocks_"):
            key = "transformer." + key
        out[key] = (("text",) + path, spec.shape)
    out["logit_scale"] = (("logit_scale",), ())
    return out


def _ignored(key: str) -> bool:
    return key in _SIZE_KEYS or key == _UNUSED_TABLE or key.endswith(".num_batches_tracked")


@jax.jit
def _text_features(text_params, tokens):
    return CLIPTextTower().apply({"params": text_params}, tokens)


def params_from_state_dict(state_dict: dict) -> dict:
    """The checkpoint params from CLIP RN50's state_dict (``RN50.pt``'s keys: ``visual.*``, ``transformer.*``,
    ``token_embedding.weight``, ``positional_embedding``, ``ln_final.*``, ``text_projection``, ``logit_scale``): the
    image tower, the text features of :data:`PROMPTS` (computed here by :class:`CLIPTextTower`) and ``logit_scale``.
    Raises :class:`PortError` listing every missing key, unexpected key and shape mismatch before anything is
    computed. Ignored: ``input_resolution``, ``context_length``, ``vocab_size``, ``*.num_batches_tracked`` and the
    attention pool's positional table (pyiqa's clipiqa does not use it)."""
    params = fill_params(_expected(), {k: np.asarray(v) for k, v in dict(state_dict).items()},
                         "CLIP RN50 (image and text towers)", ignore=_ignored)
    text = _text_features(params["text"], jnp.asarray(token_array()))
    return {"visual": jax.tree.map(np.asarray, params["visual"]), "text_features": np.asarray(text, np.float32),
            "logit_scale": np.asarray(params["logit_scale"], np.float32)}


def is_torchscript(path) -> bool:
    """Whether ``path`` is a TorchScript archive (OpenAI's CLIP files are): a zip with a ``code/`` folder."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in f"/{name}" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_clip_state_dict(path) -> dict:
    """CLIP's state_dict as float32 arrays: from a TorchScript archive such as OpenAI's ``RN50.pt`` with
    ``torch.jit.load(path).state_dict()`` (TorchScript's own loader; as ``clip.load``), otherwise with
    ``torch.load(weights_only=True)``. The fp16 weights of ``RN50.pt`` become float32, as in pyiqa on the CPU
    (``model.float()``). Tensors holding NaN or Inf are refused (PortError naming each)."""
    if not is_torchscript(path):
        return load_torch_state_dict(path)
    import torch

    try:
        with warnings.catch_warnings():  # torch 2.13 marks TorchScript deprecated; OpenAI's files are TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except Exception as err:  # torch raises many types for unreadable archives
        raise PortError(f"{path}: cannot read as a TorchScript archive ({type(err).__name__}: {err})") from err
    return finite_arrays(state, path)


def convert(src) -> dict:
    """The checkpoint params of OpenAI's ``RN50.pt`` (:func:`read_clip_state_dict`, then
    :func:`params_from_state_dict`: the text features included). Raises PortError when the file does not fit."""
    return params_from_state_dict(read_clip_state_dict(src))


def save(directory, params, *, overwrite: bool = False) -> Path:
    """Write ported params as a dpi-jax checkpoint of kind ``"clipiqa"`` (the prompts are recorded in model.json)."""
    meta = {"kind": KIND, "config": {"source": WEIGHTS_FILE, "backbone": "RN50", "prompts": list(PROMPTS)}}
    return checkpoint.write_checkpoint(directory, params, meta, overwrite=overwrite)


def missing_message(directory) -> str:
    """What to download, where it is published, and the port command that makes the checkpoint ``directory``."""
    return (f"no CLIP-IQA weights at {directory}. Download {WEIGHTS_FILE} (OpenAI's CLIP ResNet-50, published by "
            f"openai/CLIP at {WEIGHTS_URL}; pyiqa's clipiqa downloads the same file) and port it once with\n"
            f"    python -m dpi_jax.port {WEIGHTS_FILE} {directory} --model {KIND}")


def load(directory=DEFAULT_DIR) -> dict:
    """The params of a ported CLIP-IQA checkpoint (``None``: :data:`DEFAULT_DIR`). A missing directory raises
    FileNotFoundError naming the file, where it is published and the port command."""
    directory = Path(DEFAULT_DIR if directory is None else directory)
    return checkpoint.load_network(directory, KIND, "CLIP-IQA", lambda config: abstract_params(),
                                   missing_message(directory))


# ----------------------------------------------------------------------------------------------- many images


def scores_by_size(score_fn, images, batch_size: int = 50, desc: str | None = None,
                   progress: bool = True) -> np.ndarray:
    """``score_fn`` (jitted, a batch of NHWC images -> (B,)) of a list of images of any sizes, grouped by size (one
    compilation per size, as the references take one image, or a batch of one size, at a time) -> (N,) float32."""
    if isinstance(images, np.ndarray):
        images = list(images) if images.ndim == 4 else [images]
    if not images:
        raise InputError("no images to measure")
    groups: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(np.shape(image), []).append(i)
    out = np.empty(len(images), np.float32)
    for indices in groups.values():
        out[indices] = map_batches(score_fn, np.stack([images[i] for i in indices]), batch_size=batch_size,
                                   desc=desc, progress=progress)
    return out


def clipiqa_images(params, images, batch_size: int = 50, progress: bool = True) -> np.ndarray:
    """CLIP-IQA of images (an (N, H, W, 3) array, or a list of (H, W, 3) arrays of any sizes; uint8 or float in
    [0, 1]) -> (N,)."""
    params = sharding.replicate(params, sharding.local_mesh())
    return scores_by_size(lambda x: clipiqa_score(params, x), images, batch_size, "CLIP-IQA", progress)


def folder_scores(score_images, folder) -> dict:
    """``{"mean": float, "per_image": {name: score}}`` of ``score_images(list of uint8 images)`` over the images of
    ``folder`` (:func:`dpi_jax.images.list_images`, read as RGB)."""
    files = list_images(folder)
    if not files:
        raise InputError(f"no images in {folder}")
    scores = score_images([read_rgb(f) for f in files])
    return {"mean": float(np.mean(scores)), "per_image": {f.stem: float(s) for f, s in zip(files, scores, strict=True)}}


def clipiqa_folder(params, folder, batch_size: int = 50, progress: bool = True) -> dict:
    """CLIP-IQA of every image of ``folder``: ``{"mean": ..., "per_image": {name: score}}``."""
    return folder_scores(lambda images: clipiqa_images(params, images, batch_size, progress), folder)
