"""LPIPS (Zhang et al. 2018) as the ``lpips`` package computes it: ``lpips.LPIPS(net=..., version='0.1')`` with its
defaults (linear heads on, no spatial map, inputs already in [-1, 1]).

The computation matched, step by step (``lpips/lpips.py`` and ``lpips/pretrained_networks.py`` of lpips 0.1.4):

1. ScalingLayer: ``(x - shift) / scale`` with shift (-.030, -.088, -.188) and scale (.458, .448, .450);
2. the torchvision trunk (AlexNet, default, or VGG16) up to the same five ReLU outputs (AlexNet ``features`` 1, 4, 7,
   9, 11; VGG16 ``features`` 3, 8, 15, 22, 29), max pools without padding and rounding down as ``nn.MaxPool2d``;
3. per layer, unit normalisation over channels ``f / (sqrt(sum f**2) + 1e-10)``, squared difference, the 1x1 linear
   head without bias (its dropout is the identity at evaluation), the spatial mean;
4. the sum over the five layers: one distance per image pair.

Weights: the trunk from torchvision's ImageNet file (``alexnet-owt-7be5be79.pth`` or ``vgg16-397923af.pth``, its
``classifier.*`` keys are not used), the heads from the lpips package's ``weights/v0.1/{alex,vgg}.pth``; both are
ported once to a dpi-jax checkpoint (:func:`convert`, :func:`save`, :func:`load`).
"""

from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.traverse_util import flatten_dict

from dpi_jax import checkpoint, sharding
from dpi_jax.errors import CheckpointError, InputError
from dpi_jax.images import list_images, read_rgb
from dpi_jax.metrics.batching import map_batches
from dpi_jax.torch_port import PortError, fill_params, load_torch_state_dict

KIND = "lpips"
NETS = ("alex", "vgg")
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10

# torchvision ``features`` layers up to the last ReLU LPIPS reads: ("conv", index, out, kernel, stride, padding),
# ("relu", index) or ("pool", index) (MaxPool2d(kernel_size=kernel, stride=2)).
_ALEX = (("conv", 0, 64, 11, 4, 2), ("relu", 1), ("pool", 2, 3), ("conv", 3, 192, 5, 1, 2), ("relu", 4),
         ("pool", 5, 3), ("conv", 6, 384, 3, 1, 1), ("relu", 7), ("conv", 8, 256, 3, 1, 1), ("relu", 9),
         ("conv", 10, 256, 3, 1, 1), ("relu", 11))
_VGG_WIDTHS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def _vgg_layers():
    layers, index = [], 0
    for width in _VGG_WIDTHS:
        if width == "M":
            layers.append(("pool", index, 2))
            index += 1
        else:
            layers += [("conv", index, width, 3, 1, 1), ("relu", index + 1)]
            index += 2
    return tuple(layers)


TRUNKS = {"alex": _ALEX, "vgg": _vgg_layers()}
TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}  # ReLU outputs, as lpips.pretrained_networks
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
# the published trunk of each net (torchvision's ImageNet weights) and the folder the tools read it from by default
WEIGHTS_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
DEFAULT_DIRS = {net: f"checkpoints/metrics/lpips_{net}" for net in NETS}


def _check_net(net: str) -> str:
    if net not in NETS:
        raise InputError(f"LPIPS net must be one of {NETS}, not {net!r}")
    return net


class Trunk(nn.Module):
    """torchvision's AlexNet / VGG16 ``features`` up to LPIPS's five ReLU outputs (NHWC); module ``features_N`` holds
    torchvision's ``features.N.weight/bias``."""

    net: str = "alex"

    @nn.compact
    def __call__(self, x):
        taps = []
        for layer in TRUNKS[self.net]:
            kind, index = layer[0], layer[1]
            if kind == "conv":
                _, _, features, kernel, stride, pad = layer
                x = nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                            precision=jax.lax.Precision.HIGHEST, name=f"features_{index}")(x)
            elif kind == "relu":
                x = nn.relu(x)
            else:
                x = nn.max_pool(x, (layer[2], layer[2]), strides=(2, 2), padding="VALID")
            if index in TAPS[self.net]:
                taps.append(x)
        return taps


def _unit_normalize(f):
    """``lpips.normalize_tensor``: divide by the channel L2 norm plus 1e-10."""
    return f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + EPS)


class LPIPS(nn.Module):
    """``lpips.LPIPS(net=net, version='0.1')`` (``lpips=True, spatial=False``) in eval mode: (B,) distances of two
    NHWC batches in [-1, 1]. Parameters: ``trunk`` (:class:`Trunk`) and ``lin0``..``lin4`` (1x1 kernels, no bias)."""

    net: str = "alex"

    @nn.compact
    def __call__(self, a, b):
        shift, scale = jnp.asarray(SHIFT, jnp.float32), jnp.asarray(SCALE, jnp.float32)
        trunk = Trunk(self.net, name="trunk")
        feats_a = trunk((a.astype(jnp.float32) - shift) / scale)
        feats_b = trunk((b.astype(jnp.float32) - shift) / scale)
        total = 0.0
        for k, (fa, fb) in enumerate(zip(feats_a, feats_b, strict=True)):
            diff = (_unit_normalize(fa) - _unit_normalize(fb)) ** 2
            head = nn.Conv(1, (1, 1), use_bias=False, precision=jax.lax.Precision.HIGHEST, name=f"lin{k}")(diff)
            total = total + jnp.mean(head, axis=(1, 2, 3))
        return total


def to_lpips_range(images):
    """uint8 images -> float32 in [-1, 1] as ``lpips.im2tensor`` (x / 127.5 - 1); float images pass unchanged."""
    images = jnp.asarray(images)
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 127.5 - 1.0
    return images.astype(jnp.float32)


@partial(jax.jit, static_argnames="net")
def lpips_distance(params, a, b, net: str = "alex"):
    """LPIPS v0.1 distances (B,) between NHWC batches ``a`` and ``b`` (float in [-1, 1], or uint8)."""
    return LPIPS(_check_net(net)).apply({"params": params}, to_lpips_range(a), to_lpips_range(b))


def abstract_params(net: str = "alex") -> dict:
    """The parameter tree of :class:`LPIPS` as ShapeDtypeStructs (no computation)."""
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    return jax.eval_shape(LPIPS(_check_net(net)).init, jax.random.PRNGKey(0), x, x)["params"]


# ----------------------------------------------------------------------------------------------- weights


def _leaf_key(leaf: str) -> str:
    return {"kernel": "weight", "bias": "bias"}[leaf]


def _expected(net: str, part: str) -> dict:
    tree = flatten_dict(abstract_params(net))
    out = {}
    for path, spec in tree.items():
        if part == "trunk" and path[0] == "trunk":
            out[f"features.{path[1].split('_')[1]}.{_leaf_key(path[2])}"] = (path, spec.shape)
        elif part == "heads" and path[0].startswith("lin"):
            out[f"{path[0]}.model.1.{_leaf_key(path[1])}"] = (path, spec.shape)
    return out


def bundled_heads_path(net: str = "alex") -> Path:
    """The v0.1 linear heads that ship inside the installed ``lpips`` package (found without importing it)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the LPIPS v0.1 heads ship inside the lpips package: pip install lpips==0.1.4, "
                                "or pass the heads file (lpips/weights/v0.1/{alex,vgg}.pth) explicitly")
    path = Path(spec.submodule_search_locations[0]) / "weights" / "v0.1" / f"{_check_net(net)}.pth"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed lpips package")
    return path


def params_from_state_dicts(backbone_state_dict: dict, heads_state_dict: dict | None = None, net: str = "alex") -> dict:
    """LPIPS params from torchvision's trunk state_dict (``features.N.weight/bias``; ``classifier.*`` is ignored) and
    the lpips heads state_dict (``linK.model.1.weight``; None: the v0.1 heads of the installed lpips package).
    Raises :class:`PortError` listing all missing, unexpected and mis-shaped keys of both."""
    _check_net(net)
    if heads_state_dict is None:
        heads_state_dict = load_torch_state_dict(bundled_heads_path(net))
    problems, params = [], {}
    for part, state, what, ignore in (
            ("trunk", backbone_state_dict, f"torchvision {net} trunk", lambda k: k.startswith("classifier.")),
            ("heads", heads_state_dict, f"LPIPS {net} v0.1 heads", lambda k: False)):
        try:
            params.update(fill_params(_expected(net, part), dict(state), what, ignore))
        except PortError as err:
            problems.append(str(err))
    if problems:
        raise PortError("\n".join(problems))
    return jax.tree.map(np.asarray, params)


def convert(src, heads=None, net: str = "alex") -> dict:
    """:func:`params_from_state_dicts` of two files: torchvision's ``alexnet-owt-7be5be79.pth`` /
    ``vgg16-397923af.pth`` (``src``) and the v0.1 heads (None: the lpips package's own)."""
    heads_state_dict = None if heads is None else load_torch_state_dict(heads)
    return params_from_state_dicts(load_torch_state_dict(src), heads_state_dict, net)


def save(directory, params, net: str = "alex", *, overwrite: bool = False) -> Path:
    """Write LPIPS params as a dpi-jax checkpoint (kind "lpips", config {"net": net})."""
    return checkpoint.write_checkpoint(directory, params, {"kind": KIND, "config": {"net": _check_net(net)}},
                                       overwrite=overwrite)


def missing_message(directory, net: str = "alex") -> str:
    """What to download and the port command that makes the LPIPS-``net`` checkpoint ``directory``."""
    return (f"no LPIPS-{net} checkpoint at {directory}. Port the ImageNet trunk once: download torchvision's "
            f"{WEIGHTS_FILES[net]} (published at download.pytorch.org/models/), then run\n"
            f"  python -m dpi_jax.port {WEIGHTS_FILES[net]} {directory} --model lpips_{net} [--heads PATH]\n"
            f"(the v0.1 linear heads ship inside `pip install lpips`; --heads gives another file). LPIPS-alex needs "
            f"{WEIGHTS_FILES['alex']}, LPIPS-vgg {WEIGHTS_FILES['vgg']}.")


def load(directory=None, net: str | None = None) -> dict:
    """The params of an LPIPS checkpoint (``None``: :data:`DEFAULT_DIRS` of ``net``, or of alex), whichever its trunk
    (:func:`net_of` tells); ``net``, when given, must be the checkpoint's. A missing directory raises
    FileNotFoundError naming the files and the port command."""
    directory = Path(DEFAULT_DIRS[net or "alex"] if directory is None else directory)

    def abstract(config):
        if net is not None and config["net"] != net:
            raise CheckpointError(f"{directory} holds LPIPS-{config['net']}, not LPIPS-{net}")
        return abstract_params(config["net"])

    return checkpoint.load_network(directory, KIND, "LPIPS", abstract, missing_message(directory, net or "alex"))


def net_of(params) -> str:
    """The trunk of LPIPS params: "vgg" when they hold VGG16's convolutions, else "alex"."""
    return "vgg" if len(params["trunk"]) == sum(layer[0] == "conv" for layer in TRUNKS["vgg"]) else "alex"


# ----------------------------------------------------------------------------------------------- many images


def lpips_images(params, a: np.ndarray, b: np.ndarray, net: str = "alex", batch_size: int = 50,
                 progress: bool = True) -> np.ndarray:
    """LPIPS of the pairs (a[i], b[i]) of two (N, H, W, 3) image arrays (uint8, or float in [-1, 1]) -> (N,)."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"LPIPS needs two image sets of one shape, got {np.shape(a)} and {np.shape(b)}")
    params = sharding.replicate(params, sharding.local_mesh())  # once, not at every batch
    fn = lambda x, y: lpips_distance(params, x, y, net)
    return map_batches(fn, (np.asarray(a), np.asarray(b)), batch_size=batch_size, desc=f"LPIPS-{net}",
                       progress=progress)


def pair_files(dir_a, dir_b) -> tuple[list[tuple[Path, Path]], list[str], list[str]]:
    """Files of two folders paired by name without suffix: (pairs, names only in a, names only in b)."""
    sides = []
    for folder in (dir_a, dir_b):
        by_stem = {}
        for path in list_images(folder):
            if path.stem in by_stem:
                raise InputError(f"{folder}: two images named {path.stem!r} ({by_stem[path.stem].name}, {path.name})")
            by_stem[path.stem] = path
        sides.append(by_stem)
    a, b = sides
    pairs = [(a[s], b[s]) for s in sorted(set(a) & set(b))]
    return pairs, sorted(set(a) - set(b)), sorted(set(b) - set(a))


def lpips_folders(params, dir_a, dir_b, net: str = "alex", batch_size: int = 50, progress: bool = True) -> dict:
    """LPIPS between the images of two folders paired by name (suffix ignored): ``{"mean": float, "per_image":
    {name: distance}, "only_in_a": [...], "only_in_b": [...]}``. All images must have one size (one compiled batch
    shape; LPIPS itself compares images of one size)."""
    pairs, only_a, only_b = pair_files(dir_a, dir_b)
    if not pairs:
        raise InputError(f"no image of {dir_a} has a namesake in {dir_b} (only in the first: {only_a[:5]}, only in "
                         f"the second: {only_b[:5]})")
    images = [(read_rgb(p), read_rgb(q)) for p, q in pairs]
    shapes = {}
    for (x, y), (p, q) in zip(images, pairs, strict=True):
        shapes.setdefault(x.shape, p)
        shapes.setdefault(y.shape, q)
    if len(shapes) > 1:
        raise InputError("LPIPS over folders needs images of one size; found "
                         + ", ".join(f"{s[:2]} ({path})" for s, path in shapes.items()))
    a, b = np.stack([x for x, _ in images]), np.stack([y for _, y in images])
    distances = lpips_images(params, a, b, net, batch_size, progress)
    per_image = {p.stem: float(d) for (p, _), d in zip(pairs, distances, strict=True)}
    return {"mean": float(np.mean(distances)), "per_image": per_image, "only_in_a": only_a, "only_in_b": only_b}
