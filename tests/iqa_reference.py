"""Torch references of the no-reference IQA metrics, for the equivalence tests: pyiqa 0.1.16's ``clipiqa`` and
``musiq`` (koniq) computations, written here in PyTorch after pyiqa's code (``pyiqa/archs/clip_model.py``,
``clipiqa_arch.py``, ``musiq_arch.py``, ``pyiqa/data/multiscale_trans_util.py``), module by module and with the same
state_dict keys, because pyiqa itself is not a dev dependency: it pulls in ~45 packages (transformers, datasets,
bitsandbytes, tensorboard, numba, pandas, pre-commit, ...), among them ``opencv-python``, which installs a second
``cv2`` over the pinned ``opencv-python-headless``; and its ``import clip`` needs ``pkg_resources``, which current
setuptools no longer has. Where pyiqa computes something in an unusual way (unbiased std in the weight
standardisation, ``masked_fill(-1e3)``, nearest-neighbour hashing of positions through ``F.interpolate``), so does
this file.

Nothing here is used to compute a metric, and nothing is downloaded: the weights are random (``random_*``).
"""

from __future__ import annotations

import importlib.util
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIPIQA_PROMPTS = ["Good image", "bad image", "Sharp image", "blurry image", "sharp edges", "blurry edges",
                   "High resolution image", "low resolution image", "Noise-free image", "noisy image"]


# ============================================================================================== CLIP (RN50)


class ClipBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride > 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)), ("0", nn.Conv2d(inplanes, planes * 4, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * 4))]))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ClipAttentionPool2d(nn.Module):
    """pyiqa's AttentionPool2d: the positional table is added (resized bicubically) only with pos_embedding=True."""

    def __init__(self, spacial_dim, embed_dim, num_heads, output_dim):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spacial_dim ** 2 + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.num_heads = num_heads

    def forward(self, x, pos_embedding=False):
        x = x.flatten(2).permute(2, 0, 1)  # (HW, N, C)
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        if pos_embedding:
            table = F.interpolate(self.positional_embedding[None, None], size=(x.size(0), x.size(2)), mode="bicubic")
            x = x + table[0, 0][:, None, :]
        x, _ = F.multi_head_attention_forward(
            query=x, key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0, out_proj_weight=self.c_proj.weight,
            out_proj_bias=self.c_proj.bias, use_separate_proj_weight=True, training=False, need_weights=False)
        return x[0]


class ClipModifiedResNet(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), output_dim=1024, heads=32, input_resolution=224, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU()
        self._inplanes = width
        for i, blocks in enumerate(layers):
            planes = width * 2 ** i
            stage = [ClipBottleneck(self._inplanes, planes, 1 if i == 0 else 2)]
            self._inplanes = planes * 4
            stage += [ClipBottleneck(self._inplanes, planes) for _ in range(1, blocks)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.attnpool = ClipAttentionPool2d(input_resolution // 32, width * 32, heads, output_dim)

    def forward(self, x, pos_embedding=False):
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = self.relu(bn(conv(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x, pos_embedding)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ClipResidualAttentionBlock(nn.Module):
    def __init__(self, d_model, n_head, attn_mask):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(d_model, d_model * 4)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(d_model * 4, d_model))]))
        self.ln_2 = nn.LayerNorm(d_model)
        self.attn_mask = attn_mask

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=self.attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class ClipTransformer(nn.Module):
    def __init__(self, width, layers, heads, attn_mask):
        super().__init__()
        self.resblocks = nn.Sequential(*[ClipResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class ReferenceCLIP(nn.Module):
    """OpenAI's CLIP RN50 with pyiqa's image tower (``encode_image(x, pos_embedding)``); the keys of ``RN50.pt``."""

    def __init__(self, embed_dim=1024, context_length=77, vocab_size=49408, width=512, heads=8, layers=12):
        super().__init__()
        self.visual = ClipModifiedResNet(output_dim=embed_dim)
        mask = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.transformer = ClipTransformer(width, layers, heads, mask)
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))

    def encode_image(self, image, pos_embedding=False):
        return self.visual(image, pos_embedding)

    def encode_text(self, text):
        x = self.token_embedding(text) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

    def forward(self, image, text, pos_embedding=False):
        image_features = self.encode_image(image, pos_embedding)
        text_features = self.encode_text(text)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


def random_clip(seed: int = 0) -> ReferenceCLIP:
    """A ReferenceCLIP with random weights that keep every part of the computation alive: He-normal convolutions,
    random BatchNorm affine parameters and running statistics (CLIP's own initialisation zeroes every ``bn3``, which
    would silence the residual branches), normal embeddings, and ``logit_scale = log(100)`` as the trained CLIP."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ReferenceCLIP().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0, (2 / m.weight[0].numel()) ** 0.5, generator=g)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.2, generator=g)
                m.running_mean.normal_(0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0, m.weight.shape[1] ** -0.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
            elif isinstance(m, nn.MultiheadAttention):
                m.in_proj_weight.normal_(0, m.embed_dim ** -0.5, generator=g)
                m.in_proj_bias.normal_(0, 0.1, generator=g)
            elif isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
        model.token_embedding.weight.normal_(0, 0.02, generator=g)
        model.positional_embedding.normal_(0, 0.01, generator=g)
        model.text_projection.normal_(0, 512 ** -0.5, generator=g)
        model.visual.attnpool.positional_embedding.normal_(0, 2048 ** -0.5, generator=g)
        model.logit_scale.fill_(math.log(100.0))
        for tensor in model.state_dict().values():  # RN50.pt holds float16 weights
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return model


def openai_tokenizer():
    """OpenAI's ``clip.simple_tokenizer.SimpleTokenizer`` from the installed openai-clip package, loaded by file path
    (its package ``__init__`` imports ``pkg_resources``, absent from current setuptools); None when not installed."""
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "simple_tokenizer.py"
    if not path.is_file():
        return None
    module_spec = importlib.util.spec_from_file_location("_openai_clip_simple_tokenizer", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.SimpleTokenizer()


def clip_tokenize(tokenizer, texts, context_length: int = 77) -> torch.Tensor:
    """``clip.tokenize(texts)``: start token, BPE ids, end token, zero-padded to ``context_length``."""
    sot, eot = tokenizer.encoder["<|startoftext|>"], tokenizer.encoder["<|endoftext|>"]
    result = torch.zeros(len(texts), context_length, dtype=torch.int)
    for i, text in enumerate(texts):
        tokens = [sot] + tokenizer.encode(text) + [eot]
        result[i, :len(tokens)] = torch.tensor(tokens)
    return result


def clipiqa_reference(model: ReferenceCLIP, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """pyiqa's ``CLIPIQA(model_type="clipiqa").forward``: x (N, 3, H, W) in [0, 1] -> (N, 1)."""
    x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    logits_per_image, _ = model(x, tokens, pos_embedding=False)
    probs = logits_per_image.reshape(logits_per_image.shape[0], -1, 2).softmax(dim=-1)
    return probs[..., 0].mean(dim=1, keepdim=True)


# ============================================================================================== MUSIQ (KonIQ)


def same_pad(x, kernel, stride):
    """pyiqa's ``exact_padding_2d(mode="same")``: TensorFlow "SAME" zero padding, the smaller half first."""
    h, w = x.shape[-2:]
    pad_h = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pad_w = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class StdConv(nn.Conv2d):
    def forward(self, x):
        x = same_pad(x, self.kernel_size[0], self.stride[0])
        w = self.weight - self.weight.mean((1, 2, 3), keepdim=True)
        w = w / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride)


class MusiqBottleneck(nn.Module):
    def __init__(self, inplanes, outplanes):
        super().__init__()
        self.conv1 = StdConv(inplanes, inplanes, 1, 1, bias=False)
        self.gn1 = nn.GroupNorm(32, inplanes, eps=1e-4)
        self.conv2 = StdConv(inplanes, inplanes, 3, 1, bias=False)
        self.gn2 = nn.GroupNorm(32, inplanes, eps=1e-4)
        self.conv3 = StdConv(inplanes, outplanes, 1, 1, bias=False)
        self.gn3 = nn.GroupNorm(32, outplanes, eps=1e-4)
        self.conv_proj = StdConv(inplanes, outplanes, 1, 1, bias=False)
        self.gn_proj = nn.GroupNorm(32, outplanes, eps=1e-4)

    def forward(self, x):
        identity = self.gn_proj(self.conv_proj(x))
        x = F.relu(self.gn1(self.conv1(x)))
        x = F.relu(self.gn2(self.conv2(x)))
        return F.relu(self.gn3(self.conv3(x)) + identity)


class MusiqAttention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads, self.scale = num_heads, (dim // num_heads) ** -0.5
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.out = nn.Linear(dim, dim)

    def forward(self, x, mask):
        b, n, c = x.shape
        heads = lambda t: t.reshape(b, n, self.num_heads, c // self.num_heads).permute(0, 2, 1, 3)
        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        attn = (q @ k.transpose(-2, -1)) * self.scale
        mask2d = mask.reshape(b, 1, n, 1) * mask.reshape(b, 1, 1, n)
        attn = attn.masked_fill(mask2d == 0, -1e3).softmax(dim=-1)
        return self.out((attn @ v).transpose(1, 2).reshape(b, n, c))


class MusiqMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class MusiqBlock(nn.Module):
    def __init__(self, dim, mlp_dim, num_heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attention = MusiqAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MusiqMlp(dim, mlp_dim)

    def forward(self, x, mask):
        x = x + self.attention(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class _Table(nn.Module):
    def __init__(self, name, *shape):
        super().__init__()
        self.register_parameter(name, nn.Parameter(torch.randn(*shape) * 0.02))
        self.name = name

    def forward(self, index):
        return getattr(self, self.name).reshape(-1, getattr(self, self.name).shape[-1])[index.long()]


class MusiqEncoder(nn.Module):
    def __init__(self, dim=384, mlp_dim=1152, num_heads=6, num_layers=14, num_scales=3, grid=10):
        super().__init__()
        self.posembed_input = _Table("position_emb", 1, grid * grid, dim)
        self.scaleembed_input = _Table("scale_emb", num_scales, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.transformer = nn.ModuleDict({f"encoderblock_{i}": MusiqBlock(dim, mlp_dim, num_heads)
                                          for i in range(num_layers)})

    def forward(self, x, spatial, scale, mask):
        x = x + self.posembed_input(spatial) + self.scaleembed_input(scale)
        x = torch.cat([self.cls.repeat(x.shape[0], 1, 1), x], dim=1)
        mask = torch.cat([torch.ones((x.shape[0], 1)).to(mask), mask], dim=1)
        for block in self.transformer.values():
            x = block(x, mask)
        return self.encoder_norm(x)


class ReferenceMUSIQ(nn.Module):
    """pyiqa's ``MUSIQ(num_class=1)`` (the KonIQ model) in eval mode: ``forward(x)`` of (N, 3, H, W) in [0, 1]."""

    def __init__(self, patch_size=32, hidden=384):
        super().__init__()
        self.patch_size = patch_size
        self.conv_root = StdConv(3, 64, 7, 2, bias=False)
        self.gn_root = nn.GroupNorm(32, 64, eps=1e-6)
        self.block1 = MusiqBottleneck(64, 256)
        self.embedding = nn.Linear(256 * (patch_size // 4) ** 2, hidden)
        self.transformer_encoder = MusiqEncoder(hidden)
        self.head = nn.Linear(hidden, 1)

    def forward_patches(self, x):
        """The network on get_multiscale_patches' output (N, L, 3 * 32 * 32 + 3) -> (N, 1)."""
        b, seq_len, _ = x.shape
        spatial, scale, mask = x[:, :, -3], x[:, :, -2], x[:, :, -1].bool()
        x = x[:, :, :-3].reshape(-1, 3, self.patch_size, self.patch_size)
        x = F.relu(self.gn_root(self.conv_root(x)))
        x = F.max_pool2d(same_pad(x, 3, 2), 3, 2)
        x = self.block1(x).permute(0, 2, 3, 1).reshape(b, seq_len, -1)
        x = self.transformer_encoder(self.embedding(x), spatial, scale, mask)
        return self.head(x[:, 0])  # dist_to_mos of one class: the value itself

    def forward(self, x):
        return self.forward_patches(get_multiscale_patches((x - 0.5) * 2))


def extract_patches(x, patch):
    """pyiqa's ``extract_image_patches``: "SAME" zero padding then ``F.unfold`` -> (N, C * patch * patch, L)."""
    return F.unfold(same_pad(x, patch, patch), patch, stride=patch)


def hashed_positions(grid, count_h, count_w):
    """pyiqa's ``get_hashed_spatial_pos_emb_index``: nearest-neighbour ``F.interpolate`` of the grid -> (1, L)."""
    g = torch.arange(grid).float().reshape(1, 1, grid)
    pos_w = F.interpolate(g, count_w, mode="nearest").repeat(1, count_h, 1)
    pos_h = F.interpolate(g, count_h, mode="nearest").transpose(1, 2).repeat(1, 1, count_w)
    return (pos_h * grid + pos_w).reshape(1, -1)


def get_multiscale_patches(image, patch=32, grid=10, longer_side_lengths=(224, 384)):
    """pyiqa's ``get_multiscale_patches`` with ``max_seq_len_from_original_res=-1``: (N, L, 3 * 32 * 32 + 3) rows of
    patch pixels, hashed position, scale id and mask."""
    n, c, h, w = image.shape
    outputs = []
    scales = [(s, round(h * s / max(h, w)), round(w * s / max(h, w))) for s in sorted(longer_side_lengths)]
    for scale_id, (side, rh, rw) in enumerate(scales + [(None, h, w)]):
        resized = image if side is None else F.interpolate(image, (rh, rw), mode="bicubic", align_corners=False)
        p = extract_patches(resized, patch)
        spatial = hashed_positions(grid, math.ceil(rh / patch), math.ceil(rw / patch)).unsqueeze(1).repeat(n, 1, 1)
        out = torch.cat([p, spatial.to(p), torch.ones_like(spatial).to(p) * scale_id, torch.ones_like(spatial).to(p)],
                        dim=1)
        if side is not None:
            max_len = math.ceil(side / patch) ** 2
            out = torch.cat([out, torch.zeros((n, out.shape[1], max_len)).to(out)], dim=-1)[:, :, :max_len]
        outputs.append(out)
    return torch.cat(outputs, dim=-1).transpose(1, 2)


def random_musiq(seed: int = 0) -> ReferenceMUSIQ:
    """A ReferenceMUSIQ with random weights: PyTorch's default initialisation, random GroupNorm/LayerNorm affine
    parameters, embeddings, CLS token (zero at initialisation) and head."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = ReferenceMUSIQ().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
        model.transformer_encoder.posembed_input.position_emb.normal_(0, 0.5, generator=g)
        model.transformer_encoder.scaleembed_input.scale_emb.normal_(0, 0.5, generator=g)
        model.transformer_encoder.cls.normal_(0, 0.5, generator=g)
        model.head.weight.normal_(0, 1.0, generator=g)  # scores of order 10, of which every part is alive
    return model
