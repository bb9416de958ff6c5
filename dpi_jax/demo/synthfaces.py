"""Synthetic frontal cartoon faces: a deterministic, seedable stand-in for FFHQ.

The real face data sets cannot ship with this project, so the small 64x64 diffusion prior and the super-resolution
corrector are trained and evaluated on these instead. Each face is drawn from about seventy random parameters
(background, head shape and size, pose jitter with an in-plane rotation of up to 8 degrees, skin tone from very light
to very dark, side lighting, ears, six hair styles and colours, neck and shirt, eyes with gaze, eyebrows, nose, mouth
and lips, and sometimes glasses, a beard or moustache, earrings, blush), so a prior has to learn the layout of a face,
with its variations, rather than memorise a few pictures. The layout always stays a face: a centred head, two eyes at
the same height, a nose and a mouth.

Splits, by seed: ``TRAIN_SEEDS`` = 0 .. 999,999 and ``HELDOUT_SEEDS`` = 1,000,000 .. 1,999,999 (:func:`split_seeds`).

Determinism: :func:`face` takes every random choice from ``numpy.random.default_rng(seed)`` and nothing global, so a
seed always gives the same uint8 image, whatever the order, process or thread that asks for it. The parameters do not
depend on ``size``: the same seed is the same face at every size. The figure is drawn with PIL at a supersampled
resolution (4x, at least 256 pixels) over black with its coverage mask, rotated, box-downsampled (soft antialiased
edges), lit, and composited (premultiplied alpha) over a background computed at the output size.

Its speed is in the README (the demo's section).

    python -m dpi_jax.demo.synthfaces OUT_DIR [--split heldout] [--count 16] [--size 64] [--start 0] [--overwrite]
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

TRAIN_SEEDS = range(0, 1_000_000)
HELDOUT_SEEDS = range(1_000_000, 2_000_000)
_SPLITS = {"train": TRAIN_SEEDS, "heldout": HELDOUT_SEEDS}

Color = tuple[int, int, int]

# From very light to very dark.
_SKIN_TONES: tuple[Color, ...] = (
    (255, 231, 214), (250, 216, 190), (241, 196, 163), (230, 180, 140), (214, 160, 118), (196, 140, 100),
    (172, 117, 80), (146, 94, 62), (120, 75, 48), (96, 60, 40), (74, 46, 32), (58, 38, 28),
)
_HAIR_COLOURS: tuple[Color, ...] = (
    (22, 18, 16), (40, 28, 22), (64, 42, 28), (98, 66, 40), (140, 100, 62),  # black and browns
    (212, 180, 112), (184, 146, 82), (232, 206, 150),  # blonds
    (150, 62, 30), (196, 96, 42),  # red, ginger
    (140, 138, 136), (196, 194, 190), (234, 232, 226),  # greys, white
)
_HAIR_WEIGHTS = (0.16, 0.14, 0.12, 0.1, 0.07, 0.06, 0.06, 0.04, 0.05, 0.04, 0.06, 0.05, 0.05)
_UNNATURAL_HAIR: tuple[Color, ...] = ((226, 92, 160), (64, 112, 214), (128, 72, 184), (60, 170, 120), (230, 120, 40))
_IRIS_COLOURS: tuple[Color, ...] = (
    (96, 58, 30), (60, 36, 22), (72, 124, 190), (126, 170, 212), (70, 128, 82), (118, 128, 134), (138, 108, 52),
)
_FRAME_COLOURS: tuple[Color, ...] = ((20, 20, 22), (70, 42, 26), (200, 164, 70), (176, 180, 186), (170, 30, 40),
                                     (40, 70, 150))
_METALS: tuple[Color, ...] = ((224, 186, 74), (206, 208, 214), (240, 240, 236))
_LIPSTICKS: tuple[Color, ...] = ((190, 30, 50), (210, 80, 120), (120, 30, 70), (220, 110, 100))
_HAIR_STYLES = ("none", "short", "long", "bun", "fringe", "afro")
_HAIR_STYLE_WEIGHTS = (0.08, 0.3, 0.28, 0.1, 0.14, 0.1)
_HAIRLINES = ("straight", "arched", "part", "jagged")
_DOWNSAMPLE = Image.Resampling.BOX


@dataclasses.dataclass(frozen=True)
class FaceParams:
    """Everything :func:`_render` needs. Positions and lengths are fractions of the image side (x right, y down)."""

    background: str  # "flat", "vertical", "horizontal" or "radial"
    bg_a: Color
    bg_b: Color
    cx: float  # head centre
    cy: float
    hw: float  # head half width / half height
    hh: float
    angle: float  # in-plane rotation of the whole picture about the head centre, degrees
    skin: Color
    light: float  # strength of the side lighting, 0..1
    light_from_left: bool
    ears: bool
    ear_y: float
    neck_hw: float
    neck_len: float
    shoulder_hw: float
    shirt: Color
    neckline: str  # "round", "v", "collar" or "high"
    hair_style: str
    hair: Color
    hair_volume: float  # thickness of the hair above the head, fraction of the head
    hairline_y: float
    hairline_shape: str
    sideburn_y: float
    part_side: int  # -1 or +1: side-swept hair and the direction of the nose hook
    long_hw: float
    long_len: float
    bun_r: float
    bun_dx: float
    hair_highlight: bool
    eye_dx: float  # half the distance between the eye centres
    eye_y: float
    eye_w: float  # half sizes of the eye white
    eye_h: float
    iris_r: float
    iris: Color
    pupil: float  # pupil radius, fraction of the iris radius
    gaze: tuple[float, float]  # in [-1, 1]^2: where both irises look
    brow_gap: float
    brow_len: float
    brow_thick: float
    brow_tilt: float  # degrees, > 0 raises the inner ends
    brow_arch: float
    brow: Color
    nose: str  # "hook", "triangle", "dots" or "button"
    nose_y: float
    nose_size: float
    mouth: str  # "closed", "open" or "laugh"
    mouth_y: float
    mouth_w: float
    mouth_curve: float  # > 0 smile, < 0 frown
    mouth_open: float
    lip_upper: float
    lip_lower: float
    lips: Color
    teeth: bool
    glasses: str | None  # "round", "rect" or None
    frame: Color
    lens_tint: tuple[int, int, int, int] | None
    glasses_w: float
    glasses_h: float
    beard: str | None  # "moustache", "full", "goatee", "stubble" or None
    earrings: str | None  # "stud", "hoop" or None
    earring: Color
    blush: int  # alpha of the cheek blush, 0 for none


# ---------------------------------------------------------------------------------------------------------------------
# Colours


def _clip(c: Iterable[float]) -> Color:
    return tuple(int(min(255, max(0, round(v)))) for v in c)  # type: ignore[return-value]


def _scale(c: Color, f: float) -> Color:
    return _clip(v * f for v in c)


def _mix(a: Color, b: Color, t: float) -> Color:
    return _clip(x + (y - x) * t for x, y in zip(a, b, strict=True))


def _jitter(rng: np.random.Generator, c: Color, common: float, each: float) -> Color:
    shift = rng.uniform(-common, common)
    return _clip(v + shift + rng.uniform(-each, each) for v in c)


def _hsv(h: float, s: float, v: float) -> Color:
    return _clip(255 * x for x in colorsys.hsv_to_rgb(h % 1.0, s, v))


def _pick(rng: np.random.Generator, items: Sequence, weights: Sequence[float] | None = None):
    """One of ``items``, uniformly or with the given (relative) weights."""
    if weights is None:
        return items[int(rng.integers(len(items)))]
    r = rng.random() * sum(weights)
    for item, w in zip(items, weights, strict=True):
        r -= w
        if r < 0:
            return item
    return items[-1]


# ---------------------------------------------------------------------------------------------------------------------
# Drawing the parameters


def _draw_params(rng: np.random.Generator) -> FaceParams:
    """All random choices of one face, in a fixed order."""
    u = rng.uniform
    # Background.
    background = _pick(rng, ("flat", "vertical", "horizontal", "radial"), (0.3, 0.3, 0.15, 0.25))
    bg_a = _hsv(u(), u(0.05, 0.6), u(0.35, 0.97))
    bg_b = _mix(bg_a, _hsv(u(), u(0.05, 0.6), u(0.2, 0.97)), u(0.3, 0.9))
    # Head and pose.
    hw = u(0.19, 0.245)
    hh = hw * u(1.15, 1.38)
    cx = 0.5 + u(-0.035, 0.035)
    cy = 0.46 + u(-0.03, 0.02)
    angle = u(-8.0, 8.0)
    skin = _jitter(rng, _pick(rng, _SKIN_TONES), 10, 5)
    light = u(0.0, 0.45)
    light_from_left = bool(rng.random() < 0.5)
    # Hair (drawn early: it decides the ears).
    hair_style = _pick(rng, _HAIR_STYLES, _HAIR_STYLE_WEIGHTS)
    if rng.random() < 0.05:
        hair = _jitter(rng, _pick(rng, _UNNATURAL_HAIR), 12, 8)
    else:
        hair = _jitter(rng, _pick(rng, _HAIR_COLOURS, _HAIR_WEIGHTS), 8, 4)
    ears = hair_style not in ("long", "afro") and rng.random() < 0.85
    ear_y = cy + hh * u(-0.08, 0.1)
    # Neck and shirt.
    neck_hw = hw * u(0.38, 0.52)
    neck_len = u(0.02, 0.07)
    shoulder_hw = u(0.36, 0.5)
    shirt = _hsv(u(), u(0.0, 0.85), u(0.15, 0.95))
    neckline = _pick(rng, ("round", "v", "collar", "high"), (0.4, 0.25, 0.2, 0.15))
    # Eyes.
    eye_w = hw * u(0.15, 0.23)
    eye_h = eye_w * u(0.55, 0.85)
    eye_dx = hw * u(0.38, 0.52)
    eye_y = cy - hh * u(-0.04, 0.16)
    iris_r = eye_h * u(0.7, 0.92)
    iris = _jitter(rng, _pick(rng, _IRIS_COLOURS), 10, 6)
    pupil = u(0.38, 0.56)
    gaze = (u(-1, 1) if rng.random() < 0.6 else 0.0, u(-1, 1) if rng.random() < 0.4 else 0.0)
    # Eyebrows.
    brow_gap = hh * u(0.05, 0.13)
    brow_len = eye_w * u(1.9, 2.6)
    brow_thick = hh * u(0.022, 0.06)
    brow_tilt = u(-12.0, 14.0)
    brow_arch = u(0.0, 0.12)
    brow_base = hair if hair_style != "none" else _pick(rng, _HAIR_COLOURS[:6])
    brow = _mix(_scale(brow_base, 0.8), skin, 0.15) if sum(brow_base) > 450 else _scale(brow_base, 0.85)
    # Hairline, from the brows up.
    brow_top = eye_y - eye_h - brow_gap - brow_thick
    hair_volume = u(0.04, 0.13) if hair_style != "afro" else u(0.03, 0.06)
    if hair_style == "fringe":
        hairline_y = brow_top - hh * u(0.0, 0.08)
        hairline_shape = _pick(rng, ("straight", "jagged", "part"))
    else:
        hairline_y = max(brow_top - hh * u(0.12, 0.4), cy - hh * 0.85)
        hairline_shape = _pick(rng, _HAIRLINES, (0.35, 0.3, 0.25, 0.1))
    sideburn_y = cy + hh * u(-0.3, 0.05)
    part_side = 1 if rng.random() < 0.5 else -1
    long_hw = hw * u(1.05, 1.35)
    long_len = hh * u(0.7, 1.6)
    bun_r = hw * u(0.28, 0.42)
    bun_dx = hw * u(-0.25, 0.25)
    hair_highlight = bool(rng.random() < 0.4)
    # Nose and mouth.
    nose = _pick(rng, ("hook", "triangle", "dots", "button"))
    nose_size = hw * u(0.1, 0.19)
    nose_y = eye_y + eye_h + nose_size * 0.3 + hh * u(0.05, 0.17)
    chin = cy + hh
    mouth_y = nose_y + nose_size * 0.5 + (chin - nose_y - nose_size * 0.5) * u(0.35, 0.5)
    mouth = _pick(rng, ("closed", "open", "laugh"), (0.65, 0.15, 0.2))
    mouth_w = hw * u(0.22, 0.42)
    mouth_curve = u(-0.5, 1.0)
    mouth_open = mouth_w * u(0.25, 0.5)
    lip_upper = mouth_w * u(0.0, 0.16)
    lip_lower = mouth_w * u(0.0, 0.22)
    if rng.random() < 0.12:
        lips = _jitter(rng, _pick(rng, _LIPSTICKS), 10, 6)
    else:
        lips = _mix(skin, (186, 72, 84), u(0.25, 0.55))
    teeth = bool(rng.random() < 0.6)
    # Accessories.
    glasses = _pick(rng, ("round", "rect")) if rng.random() < 0.2 else None
    frame = _jitter(rng, _pick(rng, _FRAME_COLOURS), 8, 4)
    tint_r = rng.random()
    lens_tint = (20, 20, 26, int(u(150, 220))) if tint_r < 0.2 else (
        (*_hsv(u(), 0.5, 0.8), int(u(40, 90))) if tint_r < 0.4 else None)
    glasses_w = min(eye_w * u(1.3, 1.6), eye_dx * 0.86)
    glasses_h = max(eye_h * 1.6, eye_w * u(1.0, 1.3))
    beard_p = 0.3 if hair_style in ("short", "none") else 0.08
    beard = _pick(rng, ("moustache", "full", "goatee", "stubble")) if rng.random() < beard_p else None
    earrings = _pick(rng, ("stud", "hoop")) if ears and rng.random() < 0.15 else None
    earring = _jitter(rng, _pick(rng, _METALS), 6, 3)
    blush = int(u(35, 80)) if rng.random() < 0.25 else 0
    return FaceParams(
        background=background, bg_a=bg_a, bg_b=bg_b, cx=cx, cy=cy, hw=hw, hh=hh, angle=angle, skin=skin, light=light,
        light_from_left=light_from_left, ears=ears, ear_y=ear_y, neck_hw=neck_hw, neck_len=neck_len,
        shoulder_hw=shoulder_hw, shirt=shirt, neckline=neckline, hair_style=hair_style, hair=hair,
        hair_volume=hair_volume, hairline_y=hairline_y, hairline_shape=hairline_shape, sideburn_y=sideburn_y,
        part_side=part_side, long_hw=long_hw, long_len=long_len, bun_r=bun_r, bun_dx=bun_dx,
        hair_highlight=hair_highlight, eye_dx=eye_dx, eye_y=eye_y, eye_w=eye_w, eye_h=eye_h, iris_r=iris_r,
        iris=iris, pupil=pupil, gaze=gaze, brow_gap=brow_gap, brow_len=brow_len, brow_thick=brow_thick,
        brow_tilt=brow_tilt, brow_arch=brow_arch, brow=brow, nose=nose, nose_y=nose_y, nose_size=nose_size,
        mouth=mouth, mouth_y=mouth_y, mouth_w=mouth_w, mouth_curve=mouth_curve, mouth_open=mouth_open,
        lip_upper=lip_upper, lip_lower=lip_lower, lips=lips, teeth=teeth, glasses=glasses, frame=frame,
        lens_tint=lens_tint, glasses_w=glasses_w, glasses_h=glasses_h, beard=beard, earrings=earrings,
        earring=earring, blush=blush,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Rendering


@dataclasses.dataclass
class _Canvas:
    """A padded supersampled canvas: the picture is rotated about the head, then the centre ``s`` x ``s`` is kept."""

    img: Image.Image  # RGB, (s + 2 pad) square
    draw: ImageDraw.ImageDraw  # blends RGBA fills
    mask: Image.Image  # L: where the figure is (its alpha)
    mask_draw: ImageDraw.ImageDraw
    s: int
    pad: int

    def pt(self, x: float, y: float) -> tuple[float, float]:
        return (self.pad + x * self.s, self.pad + y * self.s)

    def box(self, x: float, y: float, rx: float, ry: float) -> list[float]:
        """Pixel bounding box of the ellipse centred on (x, y) with half sizes (rx, ry)."""
        x0, y0 = self.pt(x - rx, y - ry)
        x1, y1 = self.pt(x + rx, y + ry)
        return [x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)]

    def width(self, v: float) -> int:
        return max(1, round(v * self.s))

    def figure(self, shape: str, xy, fill: Color | None, outline: Color | None = None, **kw) -> None:
        """Draw a shape that widens the figure: on the picture and on its mask."""
        getattr(self.draw, shape)(xy, fill=fill, outline=outline, **kw)
        getattr(self.mask_draw, shape)(xy, fill=None if fill is None else 255, outline=None if outline is None else 255,
                                       **kw)


def _background(p: FaceParams, size: int) -> np.ndarray:
    """The background at the output size, float (size, size, 3): smooth, so it needs no supersampling."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    if p.background == "flat":
        ramp = np.zeros((size, size), np.float32)
    elif p.background == "vertical":
        ramp = np.broadcast_to(t[:, None], (size, size))
    elif p.background == "horizontal":
        ramp = np.broadcast_to(t[None, :], (size, size))
    else:
        ramp = np.minimum(1.0, np.hypot(t[:, None] - 0.5, t[None, :] - 0.5) / 0.6)
    a, b = np.asarray(p.bg_a, np.float32), np.asarray(p.bg_b, np.float32)
    return a + (b - a) * ramp[..., None]


def _lit(p: FaceParams, fig: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Side lighting of the (premultiplied) figure: darker towards one side, brighter towards the other."""
    size = fig.shape[1]
    x = (np.arange(size, dtype=np.float32) + 0.5) / size
    ramp = np.clip((x - (p.cx - 1.3 * p.hw)) / (2.6 * p.hw), 0.0, 1.0)
    if p.light_from_left:
        ramp = 1.0 - ramp  # 1 on the lit side
    dark = (p.light * (1.0 - ramp))[None, :, None]
    bright = (p.light * 0.45 * ramp)[None, :, None]
    return fig * (1.0 - dark - bright) + alpha * (dark * np.float32((16, 8, 24)) + bright * np.float32((255, 250, 236)))


def _draw_body(c: _Canvas, p: FaceParams) -> None:
    """Shoulders in a shirt and the neckline."""
    top = p.cy + p.hh + p.neck_len
    c.figure("ellipse", c.box(p.cx, top + 0.28, p.shoulder_hw, 0.28), p.shirt)
    neck = _scale(p.skin, 0.86)
    if p.neckline == "round":
        c.figure("chord", c.box(p.cx, top, p.neck_hw * 1.5, p.neck_hw * 0.9), neck, start=0, end=180)
    elif p.neckline == "v":
        c.figure("polygon", [c.pt(p.cx - p.neck_hw * 1.3, top - 0.01), c.pt(p.cx + p.neck_hw * 1.3, top - 0.01),
                             c.pt(p.cx, top + p.neck_hw * 1.6)], neck)
    elif p.neckline == "collar":
        collar = _mix(p.shirt, (255, 255, 255), 0.6)
        for side in (-1, 1):
            c.figure("polygon", [c.pt(p.cx, top + p.neck_hw * 0.9), c.pt(p.cx + side * p.neck_hw * 1.6, top - 0.01),
                                 c.pt(p.cx + side * p.neck_hw * 1.2, top + p.neck_hw * 1.4)], collar)


def _draw_neck(c: _Canvas, p: FaceParams) -> None:
    top = p.cy + p.hh + p.neck_len
    x0, y0 = c.pt(p.cx - p.neck_hw, p.cy + p.hh * 0.5)
    x1, y1 = c.pt(p.cx + p.neck_hw, top + (0.02 if p.neckline == "high" else 0.005))
    c.figure("rectangle", [x0, y0, x1, y1], _scale(p.skin, 0.86))
    if p.neckline == "high":  # a turtleneck: the shirt comes up the neck
        x0, y0 = c.pt(p.cx - p.neck_hw * 1.08, top - p.neck_len * 0.6)
        c.figure("rounded_rectangle", [x0, y0, x1 + (x1 - x0) * 0.04, y1 + c.s * 0.05], p.shirt,
                 radius=c.width(p.neck_hw * 0.3))


def _draw_back_hair(c: _Canvas, p: FaceParams) -> None:
    """Hair behind the head: long hair falling to the shoulders, an afro, a bun."""
    if p.hair_style == "long":
        c.figure("ellipse", c.box(p.cx, p.cy - p.hh * 0.08, p.long_hw, p.hh * (1.08 + p.hair_volume)), p.hair)
        x0, y0 = c.pt(p.cx - p.long_hw, p.cy - p.hh * 0.1)
        x1, y1 = c.pt(p.cx + p.long_hw, p.cy + p.long_len)
        c.figure("rounded_rectangle", [x0, y0, x1, y1], p.hair, radius=c.width(p.long_hw * 0.6))
    elif p.hair_style == "afro":
        c.figure("ellipse", c.box(p.cx, p.cy - p.hh * 0.2, p.hw * 1.55, p.hh * 1.12), p.hair)
    elif p.hair_style == "bun":
        c.figure("ellipse", c.box(p.cx + p.bun_dx, p.cy - p.hh - p.bun_r * 0.55, p.bun_r, p.bun_r * 0.9), p.hair)


def _draw_ears(c: _Canvas, p: FaceParams) -> None:
    if not p.ears:
        return
    for side in (-1, 1):
        x = p.cx + side * p.hw * 0.96
        c.figure("ellipse", c.box(x, p.ear_y, p.hw * 0.14, p.hh * 0.17), p.skin)
        c.figure("ellipse", c.box(x + side * p.hw * 0.03, p.ear_y, p.hw * 0.07, p.hh * 0.1), _scale(p.skin, 0.84))


def _draw_head(c: _Canvas, p: FaceParams) -> None:
    c.figure("ellipse", c.box(p.cx, p.cy, p.hw, p.hh), p.skin)


def _hairline_points(p: FaceParams, n: int = 9) -> list[tuple[float, float]]:
    """The lower edge of the hair across the forehead, from right to left."""
    pts = []
    for i in range(n):
        t = 1.0 - 2.0 * i / (n - 1)
        y = p.hairline_y + p.hh * 0.08 * t * t
        if p.hairline_shape == "arched":
            y -= p.hh * 0.1 * (1 - t * t)
        elif p.hairline_shape == "part":
            y += p.hh * 0.14 * (p.part_side * t + 1) / 2 - p.hh * 0.05
        elif p.hairline_shape == "jagged" and i % 2:
            y += p.hh * 0.07
        pts.append((p.cx + t * p.hw * 0.78, y))
    return pts


def _draw_front_hair(c: _Canvas, p: FaceParams) -> None:
    """The hair over the top of the head down to the hairline, with sideburns."""
    if p.hair_style == "none":
        return
    a, b = p.hw * (1.0 + p.hair_volume * 0.6), p.hh * (1.0 + p.hair_volume)
    side_y = min(p.sideburn_y, p.hairline_y + p.hh * 0.15)
    alpha = math.asin(min(0.95, max(-0.6, (p.cy - side_y) / b)))
    arc = [(p.cx + a * math.cos(phi), p.cy + b * math.sin(phi))
           for phi in np.linspace(math.pi + alpha, 2 * math.pi - alpha, 25)]
    head_half = p.hw * math.sqrt(max(0.0, 1 - ((side_y - p.cy) / p.hh) ** 2))
    pts = arc + [(p.cx + head_half * 0.86, side_y)] + _hairline_points(p) + [(p.cx - head_half * 0.86, side_y)]
    c.figure("polygon", [c.pt(x, y) for x, y in pts], p.hair)
    if p.hair_highlight:
        c.draw.arc(c.box(p.cx - p.hw * 0.1, p.cy, a * 0.8, b * 0.9), 220, 270, fill=(255, 255, 255, 28),
                   width=c.width(p.hh * 0.1))


def _draw_blush(c: _Canvas, p: FaceParams) -> None:
    if not p.blush:
        return
    for side in (-1, 1):
        x, y = p.cx + side * p.hw * 0.55, p.eye_y + p.hh * 0.3
        for k in (1.0, 0.65):
            c.draw.ellipse(c.box(x, y, p.hw * 0.17 * k, p.hw * 0.1 * k), fill=(232, 88, 104, p.blush // 2))


def _draw_eyes(c: _Canvas, p: FaceParams) -> None:
    line = _scale(p.skin, 0.35)
    gx = p.gaze[0] * (p.eye_w - p.iris_r) * 0.7
    gy = p.gaze[1] * (p.eye_h - p.iris_r) * 0.5
    for side in (-1, 1):
        ex = p.cx + side * p.eye_dx
        box = c.box(ex, p.eye_y, p.eye_w, p.eye_h)
        c.draw.ellipse(box, fill=(246, 246, 240))
        ix, iy = ex + gx, p.eye_y + gy
        c.draw.ellipse(c.box(ix, iy, p.iris_r, p.iris_r), fill=p.iris)
        c.draw.ellipse(c.box(ix, iy, p.iris_r * p.pupil, p.iris_r * p.pupil), fill=(10, 8, 8))
        c.draw.ellipse(c.box(ix - p.iris_r * 0.35, iy - p.iris_r * 0.35, p.iris_r * 0.2, p.iris_r * 0.2),
                       fill=(255, 255, 255))
        c.draw.ellipse(box, outline=line, width=c.width(p.eye_h * 0.12))
        c.draw.arc(box, 195, 345, fill=line, width=c.width(p.eye_h * 0.25))  # upper lid


def _draw_brows(c: _Canvas, p: FaceParams) -> None:
    y = p.eye_y - p.eye_h - p.brow_gap
    lift = math.tan(math.radians(p.brow_tilt)) * p.brow_len / 2
    for side in (-1, 1):
        ex = p.cx + side * p.eye_dx
        xi, xo = ex - side * p.brow_len * 0.45, ex + side * p.brow_len * 0.55
        yi, yo = y - lift / 2, y + lift / 2
        top, bottom = [], []
        for t in np.linspace(0, 1, 6):
            bx, by = xi + (xo - xi) * t, yi + (yo - yi) * t - p.brow_arch * p.brow_len * 4 * t * (1 - t)
            half = p.brow_thick * (1 - 0.5 * t) / 2
            top.append(c.pt(bx, by - half))
            bottom.append(c.pt(bx, by + half))
        c.draw.polygon(top + bottom[::-1], fill=p.brow)


def _draw_nose(c: _Canvas, p: FaceParams) -> None:
    x, y, s = p.cx, p.nose_y, p.nose_size
    if p.nose == "hook":
        d = p.part_side
        c.draw.line([c.pt(x + d * s * 0.05, y - s * 1.3), c.pt(x - d * s * 0.35, y + s * 0.2),
                     c.pt(x + d * s * 0.3, y + s * 0.35)], fill=_scale(p.skin, 0.6), width=c.width(s * 0.16),
                    joint="curve")
    elif p.nose == "triangle":
        c.draw.polygon([c.pt(x, y - s * 1.2), c.pt(x - s * 0.6, y + s * 0.4), c.pt(x + s * 0.6, y + s * 0.4)],
                       fill=_scale(p.skin, 0.86))
    else:
        if p.nose == "button":
            c.draw.ellipse(c.box(x, y, s * 0.6, s * 0.45), fill=_scale(p.skin, 0.88))
        for side in (-1, 1):
            c.draw.ellipse(c.box(x + side * s * 0.32, y + s * 0.2, s * 0.14, s * 0.11), fill=_scale(p.skin, 0.5))


def _beard_outline(p: FaceParams, top_deg: float) -> list[tuple[float, float]]:
    """The jaw below ``top_deg`` (angle on the head ellipse, 0 = level with its centre), up to the moustache."""
    arc = [(p.cx + p.hw * math.cos(phi), p.cy + p.hh * math.sin(phi))
           for phi in np.linspace(math.radians(top_deg), math.radians(180 - top_deg), 19)]
    y = p.mouth_y - (p.mouth_y - p.nose_y) * 0.45
    return arc + [(p.cx - p.mouth_w * 1.15, y), (p.cx + p.mouth_w * 1.15, y)]


def _draw_beard(c: _Canvas, p: FaceParams) -> None:
    if p.beard is None:
        return
    hair = p.hair if p.hair_style != "none" else p.brow
    moustache = c.box(p.cx, (p.mouth_y + p.nose_y + p.nose_size * 0.4) / 2, max(p.mouth_w, p.hw * 0.34), p.hh * 0.05)
    if p.beard == "full":
        c.draw.polygon([c.pt(x, y) for x, y in _beard_outline(p, 2)], fill=hair)
    elif p.beard == "stubble":
        c.draw.polygon([c.pt(x, y) for x, y in _beard_outline(p, 10)], fill=(*hair, 80))
        hair = (*hair, 110)
    elif p.beard == "goatee":
        chin = p.cy + p.hh
        c.draw.ellipse(c.box(p.cx, p.mouth_y + (chin - p.mouth_y) * 0.6, p.mouth_w * 0.5, (chin - p.mouth_y) * 0.42),
                       fill=hair)
    c.draw.ellipse(moustache, fill=hair)


def _draw_mouth(c: _Canvas, p: FaceParams) -> None:
    x, y, w = p.cx, p.mouth_y, p.mouth_w
    lw = c.width(w * 0.08)
    dark = (74, 22, 30)
    if p.mouth == "closed":
        ts = np.linspace(-1, 1, 11)
        mid = [(x + t * w, y - p.mouth_curve * 0.35 * w * t * t) for t in ts]
        if p.lip_upper + p.lip_lower > 0.02 * w:
            upper = [c.pt(mx, my - p.lip_upper * (1 - t * t)) for t, (mx, my) in zip(ts, mid, strict=True)]
            lower = [c.pt(mx, my + p.lip_lower * (1 - t * t)) for t, (mx, my) in zip(ts, mid, strict=True)]
            c.draw.polygon(upper + lower[::-1], fill=p.lips)
        c.draw.line([c.pt(*m) for m in mid], fill=_scale(p.lips, 0.55), width=lw, joint="curve")
    elif p.mouth == "open":
        box = c.box(x, y, w * 0.75, p.mouth_open)
        c.draw.ellipse(box, fill=dark)
        if p.teeth:
            c.draw.chord(box, 205, 335, fill=(245, 244, 236))
        c.draw.ellipse(box, outline=p.lips, width=lw)
    else:  # laugh: the lower half of an ellipse
        h = p.mouth_open * 1.3
        box = c.box(x, y, w, h)
        c.draw.chord(box, 0, 180, fill=dark)
        c.draw.chord(c.box(x, y + h * 0.95, w * 0.42, h * 0.38), 180, 360, fill=(206, 86, 96))  # tongue
        if p.teeth:
            x0, y0 = c.pt(x - w * 0.93, y)
            x1, y1 = c.pt(x + w * 0.93, y + h * 0.28)
            c.draw.rectangle([x0, y0, x1, y1], fill=(245, 244, 236))
        c.draw.arc(box, 0, 180, fill=p.lips, width=lw)
        c.draw.line([c.pt(x - w, y), c.pt(x + w, y)], fill=p.lips, width=lw)


def _draw_glasses(c: _Canvas, p: FaceParams) -> None:
    if p.glasses is None:
        return
    fw = c.width(p.hw * 0.035)
    for side in (-1, 1):
        ex = p.cx + side * p.eye_dx
        box = c.box(ex, p.eye_y, p.glasses_w, p.glasses_h)
        if p.glasses == "round":
            c.draw.ellipse(box, fill=p.lens_tint, outline=p.frame, width=fw)
        else:
            c.draw.rounded_rectangle(box, radius=c.width(p.glasses_h * 0.35), fill=p.lens_tint, outline=p.frame,
                                     width=fw)
        arm_y = p.eye_y - p.glasses_h * 0.3
        c.draw.line([c.pt(ex + side * p.glasses_w, arm_y), c.pt(p.cx + side * p.hw * 0.99, arm_y)], fill=p.frame,
                    width=fw)
    bridge_y = p.eye_y - p.glasses_h * 0.25
    c.draw.line([c.pt(p.cx - p.eye_dx + p.glasses_w, bridge_y), c.pt(p.cx + p.eye_dx - p.glasses_w, bridge_y)],
                fill=p.frame, width=fw)


def _draw_earrings(c: _Canvas, p: FaceParams) -> None:
    if p.earrings is None:
        return
    for side in (-1, 1):
        x, y = p.cx + side * p.hw * 0.98, p.ear_y + p.hh * 0.15
        if p.earrings == "stud":
            c.figure("ellipse", c.box(x, y, p.hw * 0.04, p.hw * 0.04), p.earring)
        else:
            r = p.hw * 0.08
            c.figure("ellipse", c.box(x, y + r * 0.8, r, r), None, outline=p.earring, width=c.width(p.hw * 0.025))


def _render(p: FaceParams, size: int) -> np.ndarray:
    """Draw ``p``'s figure at 4x (at least 256 px) over black with its coverage mask, rotate it about the head (nearest
    neighbour: the supersampling antialiases), box-downsample figure and mask to ``size``, light it and lay it over the
    background: premultiplied alpha compositing."""
    s = max(4 * size, 256)
    pad = int(math.ceil(0.14 * s))
    n = s + 2 * pad
    img = Image.new("RGB", (n, n), 0)
    mask = Image.new("L", (n, n), 0)
    c = _Canvas(img, ImageDraw.Draw(img, "RGBA"), mask, ImageDraw.Draw(mask), s, pad)
    _draw_body(c, p)
    _draw_back_hair(c, p)
    _draw_neck(c, p)
    _draw_ears(c, p)
    _draw_head(c, p)
    _draw_front_hair(c, p)
    _draw_blush(c, p)
    _draw_beard(c, p)
    _draw_eyes(c, p)
    _draw_brows(c, p)
    _draw_nose(c, p)
    _draw_mouth(c, p)
    _draw_glasses(c, p)
    _draw_earrings(c, p)
    # Output pixel (u, v) of the s x s crop samples the canvas at R (u + pad - hx, v + pad - hy) + (hx, hy): the
    # rotation of Image.rotate(angle) about the head centre (hx, hy).
    hx, hy = c.pt(p.cx, p.cy)
    cos, sin = math.cos(math.radians(-p.angle)), math.sin(math.radians(-p.angle))
    affine = (cos, sin, cos * (pad - hx) + sin * (pad - hy) + hx, -sin, cos, -sin * (pad - hx) + cos * (pad - hy) + hy)
    small = []
    for layer in (img, mask):
        layer = layer.transform((s, s), Image.Transform.AFFINE, affine, resample=Image.Resampling.NEAREST)
        small.append(np.asarray(layer.resize((size, size), _DOWNSAMPLE), dtype=np.float32))
    alpha = small[1][..., None] / 255.0
    out = _lit(p, small[0], alpha) + _background(p, size) * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------------
# Public API


def face(seed: int, size: int = 64) -> np.ndarray:
    """The face of ``seed`` as a (size, size, 3) uint8 RGB array; the same seed is the same face at every size."""
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    return _render(_draw_params(np.random.default_rng(int(seed))), int(size))


def faces(seeds: Iterable[int], size: int = 64) -> np.ndarray:
    """:func:`face` of each seed, stacked to (N, size, size, 3) uint8."""
    out = [face(s, size) for s in seeds]
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)


def split_seeds(split: str, count: int, start: int = 0) -> list[int]:
    """``count`` seeds of split "train" or "heldout", from offset ``start`` within the split."""
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {sorted(_SPLITS)}")
    seeds = _SPLITS[split]
    if count < 0 or start < 0:
        raise ValueError(f"count and start must be >= 0, got count={count}, start={start}")
    if start + count > len(seeds):
        raise ValueError(f"split {split!r} has {len(seeds)} seeds; start={start} + count={count} runs past its end")
    return list(seeds[start:start + count])


def _write_pngs(directory, split, count, size, start, overwrite) -> tuple[list[Path], int]:
    directory = Path(directory)
    seeds = split_seeds(split, count, start)
    directory.mkdir(parents=True, exist_ok=True)
    paths, written = [], 0
    for seed in seeds:
        path = directory / f"{split}_{seed}.png"
        if overwrite or not path.exists():
            Image.fromarray(face(seed, size)).save(path)
            written += 1
        paths.append(path)
    return paths, written


def write_pngs(directory: str | os.PathLike, split: str = "heldout", count: int = 16, size: int = 64,
               start: int = 0, overwrite: bool = False) -> list[Path]:
    """Write ``<split>_<seed>.png`` for ``count`` seeds of ``split`` into ``directory`` (created if needed).

    An existing file is kept unless ``overwrite``; its path is returned all the same. Returns the paths in seed order.
    """
    return _write_pngs(directory, split, count, size, start, overwrite)[0]


def _define_flags(fv) -> None:
    from absl import flags

    flags.DEFINE_enum("split", "heldout", sorted(_SPLITS), "the split whose seeds to draw", flag_values=fv)
    flags.DEFINE_integer("count", 16, "the number of faces", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("size", 64, "their side, in pixels", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("start", 0, "offset of the first seed within the split", lower_bound=0, flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "replace files that already exist", flag_values=fv)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dpi_jax.demo.synthfaces OUT_DIR [flags]`` (``argv``: the arguments after the program name); the
    exit status. OUT_DIR: the folder to write ``<split>_<seed>.png`` into (created if needed)."""
    from dpi_jax import cli
    from dpi_jax.errors import InputError

    def write(fv, out_dir: str):
        try:
            paths, written = _write_pngs(out_dir, fv.split, fv.count, fv.size, fv.start, fv.overwrite)
        except ValueError as err:  # a split's end passed: the user's numbers
            raise InputError(str(err)) from err
        print(f"wrote {written} files to {out_dir} ({len(paths) - written} existing kept)")

    return cli.main_with_args(argv, _define_flags, write, prog="python -m dpi_jax.demo.synthfaces",
                              description="Write synthetic cartoon faces as PNG files.", positional=("OUT_DIR",))


if __name__ == "__main__":
    raise SystemExit(main())
