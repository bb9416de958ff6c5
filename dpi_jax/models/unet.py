"""The ADM UNet of guided-diffusion (Dhariwal & Nichol 2021) in flax.linen, NHWC, and DPI's condition corrector.

Configured by guided-diffusion's own names, so that a checkpoint's config reads the same here. Parameters are float32
whatever ``dtype`` is. ``dtype`` (e.g. bfloat16) is guided-diffusion's ``use_fp16`` policy: the convolutions of the
input, middle and output blocks (attention's qkv/proj_out included) and the attention matmuls run in ``dtype``, while
the linear layers (timestep MLP, each ResBlock's emb_layers), GroupNorm, softmax and the final norm/conv (``out``) run
in float32, as guided-diffusion converts only those blocks' convolutions to fp16. Outputs are float32.

Submodule names follow the PyTorch state_dict (``input_blocks_4_0`` holds ``input_blocks.4.0.*``), which keeps the
weight port (dpi_jax.port) a renaming.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from dpi_jax.errors import InputError

DEFAULT_CHANNEL_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}


def parse_channel_mult(channel_mult, image_size: int) -> tuple:
    """guided-diffusion's channel_mult: "" (the default for image_size), "1,2,2" or a tuple."""
    if channel_mult in ("", None):
        if image_size not in DEFAULT_CHANNEL_MULT:
            raise InputError(f"no default channel_mult for image_size {image_size}; give one")
        return DEFAULT_CHANNEL_MULT[image_size]
    if isinstance(channel_mult, str):
        return tuple(float(m) if "." in m else int(m) for m in channel_mult.split(","))
    return tuple(channel_mult)


def parse_attention_ds(attention_resolutions, image_size: int) -> tuple[int, ...]:
    """Resolutions ("16,8" or (16, 8)) to the downsampling rates at which attention is used: image_size // res."""
    if isinstance(attention_resolutions, str):
        attention_resolutions = [int(r) for r in attention_resolutions.split(",") if r.strip()]
    return tuple(image_size // int(r) for r in attention_resolutions)


def timestep_embedding(t, dim: int, max_period: float = 10000.0):
    """Sinusoidal embedding of (B,) timesteps, [cos, sin] halves, float32."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.concatenate([emb, jnp.zeros_like(emb[:, :1])], axis=-1)
    return emb


def group_norm(x, name: str):
    """GroupNorm(32 groups, eps 1e-5) computed in float32, cast back to the input dtype. For channel counts that 32
    does not divide (small models only; guided-diffusion's are all multiples of 32): gcd(32, channels) groups."""
    norm = nn.GroupNorm(num_groups=math.gcd(32, x.shape[-1]), epsilon=1e-5, dtype=jnp.float32,
                        param_dtype=jnp.float32, name=name)
    return norm(x.astype(jnp.float32)).astype(x.dtype)


def conv(features: int, kernel: int, dtype, name: str, stride: int = 1, zero_init: bool = False) -> nn.Conv:
    """A PyTorch-padded convolution (pad k // 2 on every side; flax "SAME" differs for strided convs).
    ``zero_init``: starts at zero, as guided-diffusion's ``zero_module`` (residual branches and the output)."""
    pad = kernel // 2
    zeros = dict(kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros) if zero_init else {}
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   dtype=dtype, param_dtype=jnp.float32, name=name, **zeros)


def downsample_avg(x):
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


def upsample_nearest(x):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _fold_taps(kernel, phase: int, axis: int):
    """The 3 taps of a 3x3 kernel along ``axis`` as seen by output phase ``phase`` (0 or 1) of a nearest x2
    upsampled input: phase 0 reads the low-resolution pixels (i-1, i, i) with taps (0, 1, 2), phase 1 reads (i, i,
    i+1); so the 2 taps per phase are (t0, t1 + t2) and (t0 + t1, t2)."""
    t0, t1, t2 = (jax.lax.index_in_dim(kernel, n, axis, keepdims=False) for n in range(3))
    return jnp.stack([t0, t1 + t2] if phase == 0 else [t0 + t1, t2], axis=axis)


def conv3x3_of_upsampled(x, kernel, bias):
    """``conv3x3(upsample_nearest(x))`` (padding 1) computed at the resolution of ``x`` (sub-pixel form).

    Each of the 4 output phases (row and column parity) is a 2x2 convolution of the zero-padded ``x`` with the
    kernel's taps summed as :func:`_fold_taps` says: 16 taps per low-resolution pixel instead of 36, 2.25x fewer
    FLOPs and no upsampled copy of the input. The same function as the direct form up to float rounding."""
    b, h, w, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows = []
    for row in (0, 1):
        k_row = _fold_taps(kernel, row, 0)
        cols = [jax.lax.conv_general_dilated(xp[:, row:row + h + 1, col:col + w + 1], _fold_taps(k_row, col, 1),
                                             (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
                for col in (0, 1)]
        rows.append(jnp.stack(cols, axis=3))  # (B, h, w, 2 column phases, C)
    return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, -1) + bias  # row 2i + r, column 2j + c


class UpsampleConv3x3(nn.Module):
    """A 3x3 convolution (padding 1) of the nearest x2 upsampled input, with the parameters of ``nn.Conv`` (kernel
    (3, 3, C_in, C_out), bias; same initialisers and names), computed by :func:`conv3x3_of_upsampled`."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features),
                            jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        # The taps are summed in float32, then everything is cast to the compute dtype (as nn.Conv does).
        return conv3x3_of_upsampled(x.astype(self.dtype), kernel.astype(self.dtype), bias.astype(self.dtype))


class Downsample(nn.Module):
    """Stride-2 3x3 convolution (guided-diffusion's Downsample with use_conv)."""

    channels: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        return conv(self.channels, 3, self.dtype, "op", stride=2)(x)


class Upsample(nn.Module):
    """Nearest x2 then a 3x3 convolution (guided-diffusion's Upsample with use_conv)."""

    channels: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        return UpsampleConv3x3(self.channels, self.dtype, name="conv")(x)


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding; optionally resampling (``up``/``down``)."""

    out_channels: int
    use_scale_shift_norm: bool
    dropout: float = 0.0
    up: bool = False
    down: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, emb, train: bool = False):
        h = nn.silu(group_norm(x, "in_layers_0"))
        if self.up:  # the convolution of the upsampled h, computed at h's resolution
            h = UpsampleConv3x3(self.out_channels, self.dtype, name="in_layers_2")(h)
            x = upsample_nearest(x)
        else:
            if self.down:
                h, x = downsample_avg(h), downsample_avg(x)
            h = conv(self.out_channels, 3, self.dtype, "in_layers_2")(h)
        emb_out = nn.Dense(2 * self.out_channels if self.use_scale_shift_norm else self.out_channels,
                           param_dtype=jnp.float32, name="emb_layers_1")(nn.silu(emb))  # float32, as in PyTorch
        emb_out = emb_out[:, None, None, :].astype(h.dtype)
        if self.use_scale_shift_norm:
            scale, shift = jnp.split(emb_out, 2, axis=-1)
            h = group_norm(h, "out_layers_0") * (1 + scale) + shift
        else:
            h = group_norm(h + emb_out, "out_layers_0")
        h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
        h = conv(self.out_channels, 3, self.dtype, "out_layers_3", zero_init=True)(h)
        if x.shape[-1] != self.out_channels:
            x = conv(self.out_channels, 1, self.dtype, "skip_connection")(x)
        return x + h


class AttentionBlock(nn.Module):
    """Spatial self-attention with a residual; ``legacy`` is guided-diffusion's QKVAttentionLegacy head layout."""

    num_heads: int
    legacy: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        b, hgt, wid, c = x.shape
        heads, ch = self.num_heads, c // self.num_heads
        qkv = nn.Dense(3 * c, dtype=self.dtype, param_dtype=jnp.float32, name="qkv")(
            group_norm(x, "norm").reshape(b, hgt * wid, c))
        if self.legacy:  # channels ordered [head][q, k, v][ch]
            q, k, v = jnp.split(qkv.reshape(b, hgt * wid, heads, 3 * ch), 3, axis=-1)
        else:  # [q, k, v][head][ch]
            q, k, v = (a.reshape(b, hgt * wid, heads, ch) for a in jnp.split(qkv, 3, axis=-1))
        scale = 1 / math.sqrt(math.sqrt(ch))
        logits = jnp.einsum("bthc,bshc->bhts", q * scale, k * scale)
        weights = nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        a = jnp.einsum("bhts,bshc->bthc", weights, v).reshape(b, hgt * wid, c)
        out = nn.Dense(c, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=nn.initializers.zeros,
                       name="proj_out")(a)  # zero-initialised, as guided-diffusion
        return x + out.reshape(b, hgt, wid, c).astype(x.dtype)


class UNet(nn.Module):
    """guided-diffusion's UNetModel (2-D, unconditional), NHWC. Apply as ``m.apply({'params': p}, x, t)``.

    With ``y`` given (the CRT, Eq. 16 of DPI): after the first convolution ``h += 0.1 * mean_c(y)``, and the output is
    the network's output plus ``y``.
    """

    image_size: int
    num_channels: int
    num_res_blocks: int
    channel_mult: Any = ""
    attention_resolutions: Any = "16"
    num_heads: int = 1
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = False
    resblock_updown: bool = False
    learn_sigma: bool = False
    dropout: float = 0.0
    use_new_attention_order: bool = False
    in_channels: int = 3
    conv_resample: bool = True
    dtype: Any = jnp.float32

    def _attention(self, channels: int, num_heads: int, name: str) -> AttentionBlock:
        heads = num_heads if self.num_head_channels == -1 else channels // self.num_head_channels
        return AttentionBlock(heads, legacy=not self.use_new_attention_order, dtype=self.dtype, name=name)

    def _res(self, out_channels: int, name: str, up: bool = False, down: bool = False) -> ResBlock:
        return ResBlock(out_channels, self.use_scale_shift_norm, self.dropout, up=up, down=down, dtype=self.dtype,
                        name=name)

    def _resample(self, h, emb, train: bool, channels: int, name: str, up: bool):
        """x2 up or down between levels: a resampling ResBlock, a convolution, or plain nearest / average pooling."""
        if self.resblock_updown:
            return self._res(channels, name, up=up, down=not up)(h, emb, train)
        if self.conv_resample:
            return (Upsample if up else Downsample)(channels, self.dtype, name=name)(h)
        return upsample_nearest(h) if up else downsample_avg(h)

    @nn.compact
    def __call__(self, x, t, y=None, train: bool = False):
        chex.assert_rank(x, 4)
        chex.assert_shape(t, (x.shape[0],))
        mult = parse_channel_mult(self.channel_mult, self.image_size)
        attention_ds = parse_attention_ds(self.attention_resolutions, self.image_size)
        heads_up = self.num_heads if self.num_heads_upsample == -1 else self.num_heads_upsample
        ch = int(mult[0] * self.num_channels)

        emb = timestep_embedding(t, self.num_channels)
        emb = nn.Dense(4 * self.num_channels, param_dtype=jnp.float32, name="time_embed_0")(emb)
        emb = nn.Dense(4 * self.num_channels, param_dtype=jnp.float32, name="time_embed_2")(nn.silu(emb))

        h = conv(ch, 3, self.dtype, "input_blocks_0_0")(x.astype(self.dtype))
        if y is not None:
            h = h + (0.1 * jnp.mean(y, axis=-1, keepdims=True)).astype(h.dtype)
        skips, block, ds = [h], 1, 1
        for level, m in enumerate(mult):
            for _ in range(self.num_res_blocks):
                ch = int(m * self.num_channels)
                h = self._res(ch, f"input_blocks_{block}_0")(h, emb, train)
                if ds in attention_ds:
                    h = self._attention(ch, self.num_heads, f"input_blocks_{block}_1")(h)
                skips.append(h)
                block += 1
            if level != len(mult) - 1:
                h = self._resample(h, emb, train, ch, f"input_blocks_{block}_0", up=False)
                skips.append(h)
                block, ds = block + 1, ds * 2

        h = self._res(ch, "middle_block_0")(h, emb, train)
        h = self._attention(ch, self.num_heads, "middle_block_1")(h)
        h = self._res(ch, "middle_block_2")(h, emb, train)

        block = 0
        for level, m in reversed(list(enumerate(mult))):
            for i in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                ch = int(m * self.num_channels)
                h = self._res(ch, f"output_blocks_{block}_0")(h, emb, train)
                layer = 1
                if ds in attention_ds:
                    h = self._attention(ch, heads_up, f"output_blocks_{block}_{layer}")(h)
                    layer += 1
                if level and i == self.num_res_blocks:
                    h = self._resample(h, emb, train, ch, f"output_blocks_{block}_{layer}", up=True)
                    ds //= 2
                block += 1

        h = nn.silu(group_norm(h.astype(jnp.float32), "out_0"))  # `out` stays float32, as in guided-diffusion
        out_channels = 2 * self.in_channels if self.learn_sigma else self.in_channels
        out = conv(out_channels, 3, jnp.float32, "out_2", zero_init=True)(h)
        return out if y is None else out + y


class ADM(UNet):
    """The pretrained prior: ``ADM(**config).apply({'params': p}, x, t)`` -> eps (and v when learn_sigma)."""

    kind: ClassVar[str] = "adm"  # the checkpoint kind (dpi_jax.checkpoint) and the training task (dpi_jax.tasks)

    def example_inputs(self, batch: int = 1) -> tuple:
        """Zero inputs of the right shapes, ``(x, t)``, for ``init`` and shape inference."""
        x = jnp.zeros((batch, self.image_size, self.image_size, self.in_channels))
        return x, jnp.zeros((batch,), jnp.int32)

    def __call__(self, x, t, train: bool = False):
        return super().__call__(x, t, None, train)


class CRT(UNet):
    """DPI's condition corrector (Eq. 16): ``CRT(**config).apply({'params': p}, x, t, y)`` with y = m_f * y_T."""

    kind: ClassVar[str] = "crt"

    def example_inputs(self, batch: int = 1) -> tuple:
        """Zero inputs of the right shapes, ``(x, t, y)``, for ``init`` and shape inference."""
        x = jnp.zeros((batch, self.image_size, self.image_size, self.in_channels))
        return x, jnp.zeros((batch,), jnp.int32), x

    def __call__(self, x, t, y, train: bool = False):
        chex.assert_equal_shape([x, y])
        return super().__call__(x, t, y, train)
