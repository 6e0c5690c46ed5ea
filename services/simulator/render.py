"""Synthetic street scenes of a vehicle carrying a licence plate whose text is known.

Pure and deterministic: the same seed and options give the same pixels. A scene is drawn in three
steps: `sample_params` draws every random choice from a seeded generator into a `SceneParams`,
`render` turns those parameters into pixels, and `render_scene` / `render_sequence` tie the two
together. Images are OpenCV-style BGR `uint8` arrays; boxes are in pixels of the frame.
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from services.common.plates import normalize_plate

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
PLATE_FONTS = (
    "DejaVuSans-Bold.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansCondensed-Bold.ttf",
    "DejaVuSerifCondensed-Bold.ttf",
)

# Named vehicle colours (RGB). Names follow the colour vocabulary of the vehicle colour classifier.
VEHICLE_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (236, 236, 232),
    "black": (24, 25, 28),
    "silver": (186, 189, 193),
    "grey": (108, 111, 115),
    "red": (172, 22, 28),
    "blue": (28, 58, 142),
    "green": (32, 96, 54),
    "yellow": (228, 192, 34),
    "orange": (222, 112, 22),
    "brown": (102, 66, 40),
}

# Plate letters leave out I, O and Q, as most issuing authorities do.
LETTERS = "".join(c for c in string.ascii_uppercase if c not in "IOQ")
DIGITS = string.digits

# USPS code, name printed on the plate, plate formats (L letter, D digit, anything else literal),
# optional slogan on the bottom line.
US_STATES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("CA", "California", ("DLLLDDD",), "dmv.ca.gov"),
    ("NY", "NEW YORK", ("LLL-DDDD",), "EMPIRE STATE"),
    ("TX", "TEXAS", ("LLL-DDDD", "LLDDDDD"), "THE LONE STAR STATE"),
    ("FL", "FLORIDA", ("LLLD DD", "DDD LLL"), "SUNSHINE STATE"),
    ("WA", "WASHINGTON", ("LLLDDDD",), "EVERGREEN STATE"),
    ("IL", "ILLINOIS", ("LL DDDDD",), "LAND OF LINCOLN"),
    ("AZ", "ARIZONA", ("LLLDDDD",), "GRAND CANYON STATE"),
    ("OR", "OREGON", ("DDD LLL",), "PACIFIC WONDERLAND"),
    ("PA", "PENNSYLVANIA", ("LLL-DDDD",), "visitPA.com"),
    ("NJ", "NEW JERSEY", ("LDDLLL",), "GARDEN STATE"),
)

# ISO country, code in the blue band, plate formats.
EU_COUNTRIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("FR", "F", ("LL-DDD-LL",)),
    ("IT", "I", ("LL DDD LL",)),
    ("ES", "E", ("DDDD LLL",)),
    ("NL", "NL", ("DD-LLL-D", "L-DDD-LL")),
    ("DE", "D", ("L LL DDDD", "LL L DDD")),
    ("BE", "B", ("D-LLL-DDD",)),
)

# (background top, background bottom, text, accent) in RGB.
US_PLATE_COLOURS = (
    ((250, 250, 250), (232, 238, 246), (20, 32, 110), (200, 30, 40)),
    ((255, 255, 255), (255, 255, 255), (10, 10, 10), (20, 40, 130)),
    ((252, 220, 60), (246, 206, 40), (18, 28, 80), (18, 28, 80)),
    ((235, 244, 255), (190, 215, 240), (28, 28, 60), (160, 20, 30)),
    ((250, 248, 240), (240, 232, 212), (120, 20, 30), (30, 60, 30)),
)
EU_PLATE_COLOURS = (
    ((248, 248, 248), (240, 240, 240), (12, 12, 12)),
    ((252, 212, 30), (248, 204, 20), (12, 12, 12)),
)
EU_BLUE = (0, 51, 153)
EU_YELLOW = (255, 204, 0)

Region = Literal["us", "eu"]


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    height: int

    @property
    def area(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class GroundTruth:
    plate_text: str  # normalised: A-Z and 0-9 only
    plate_display: str  # as printed, separators included
    country: str  # ISO 3166-1 alpha-2
    state: str  # USPS code for US plates, "" elsewhere
    state_shown: bool  # whether the state name is printed on the plate
    vehicle_colour: str  # a key of VEHICLE_COLOURS
    plate_box: Box | None  # None when the plate is outside the frame
    vehicle_box: Box | None
    night: bool


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # BGR uint8, before JPEG compression
    jpeg: bytes
    truth: GroundTruth


@dataclass(frozen=True)
class SceneOptions:
    """What a caller may choose; everything else is drawn from the seed."""

    difficulty: float = 0.0  # 0 = clear daylight close-up, 1 = small, skewed, blurred, noisy, often night
    region: Region | None = None  # None: about two US plates for each EU plate
    night: bool | None = None  # None: drawn, more often as difficulty grows
    jpeg_quality: int | None = None
    width: int = 1280
    height: int = 720


@dataclass(frozen=True)
class PlateDesign:
    region: Region
    country: str
    state: str
    display: str
    band_code: str  # EU country code in the blue band
    state_name: str  # printed top line ("" when not shown)
    slogan: str  # printed bottom line ("" when not shown)
    font: str
    background: tuple[tuple[int, int, int], tuple[int, int, int]]
    text_colour: tuple[int, int, int]
    accent: tuple[int, int, int]
    border: Literal["none", "thin", "thick"]


@dataclass(frozen=True)
class SceneParams:
    """Every choice that determines a frame's pixels."""

    width: int
    height: int
    background_seed: int
    noise_seed: int
    horizon: float  # fraction of the frame height
    plate: PlateDesign
    vehicle_colour: str
    body_height: float  # roof height / vehicle width
    vehicle_width: float  # pixels
    vehicle_x: float  # centre, pixels
    vehicle_bottom: float  # ground line under the wheels, pixels
    plate_scale: float  # plate width relative to its nominal share of the vehicle width
    yaw: float  # degrees
    pitch: float
    roll: float
    night: bool
    brightness: float  # added, in 0-255 units
    contrast: float
    gamma: float
    blur_sigma: float
    motion_blur: int  # kernel length in pixels, 0 for none
    noise_sigma: float
    jpeg_quality: int


def _fill_format(rng: np.random.Generator, fmt: str) -> str:
    out = []
    for c in fmt:
        if c == "L":
            out.append(LETTERS[rng.integers(len(LETTERS))])
        elif c == "D":
            out.append(DIGITS[rng.integers(10)])
        else:
            out.append(c)
    return "".join(out)


def _choice(rng: np.random.Generator, items):  # type: ignore[no-untyped-def]
    return items[int(rng.integers(len(items)))]


def _sample_plate(rng: np.random.Generator, region: Region) -> PlateDesign:
    font = _choice(rng, PLATE_FONTS)
    if region == "us":
        state, name, formats, slogan = _choice(rng, US_STATES)
        top, bottom, text_colour, accent = _choice(rng, US_PLATE_COLOURS)
        return PlateDesign(
            region="us",
            country="US",
            state=state,
            display=_fill_format(rng, _choice(rng, formats)),
            band_code="",
            state_name=name if rng.random() < 0.8 else "",
            slogan=slogan if rng.random() < 0.5 else "",
            font=font,
            background=(top, bottom),
            text_colour=text_colour,
            accent=accent,
            border=_choice(rng, ("none", "thin", "thick")),
        )
    country, band, formats = _choice(rng, EU_COUNTRIES)
    top, bottom, text_colour = _choice(rng, EU_PLATE_COLOURS)
    return PlateDesign(
        region="eu",
        country=country,
        state="",
        display=_fill_format(rng, _choice(rng, formats)),
        band_code=band,
        state_name="",
        slogan="",
        font=font,
        background=(top, bottom),
        text_colour=text_colour,
        accent=text_colour,
        border=_choice(rng, ("thin", "thick")),
    )


def sample_params(seed: int, options: SceneOptions = SceneOptions()) -> SceneParams:
    """Draw every random choice of one scene from `seed`."""
    rng = np.random.default_rng(seed)
    d = min(max(options.difficulty, 0.0), 1.0)
    region: Region = options.region or ("us" if rng.random() < 0.67 else "eu")
    plate = _sample_plate(rng, region)
    night = bool(rng.random() < 0.1 + 0.35 * d) if options.night is None else options.night
    w, h = options.width, options.height
    horizon = rng.uniform(0.30, 0.42)
    # Vehicle width in pixels; smaller (farther) as difficulty grows.
    vehicle_width = w * rng.uniform(0.50, 0.68) * (1.0 - 0.45 * d * rng.uniform(0.5, 1.0))
    vehicle_bottom = h * horizon + (h * (1 - horizon) * 0.95) * (vehicle_width / (w * 0.68))
    vehicle_bottom = min(vehicle_bottom, h * 0.98)
    return SceneParams(
        width=w,
        height=h,
        background_seed=int(rng.integers(2**31)),
        noise_seed=int(rng.integers(2**31)),
        horizon=horizon,
        plate=plate,
        vehicle_colour=_choice(rng, tuple(VEHICLE_COLOURS)),
        body_height=rng.uniform(0.68, 0.9),
        vehicle_width=vehicle_width,
        vehicle_x=w * rng.uniform(0.36, 0.64),
        vehicle_bottom=vehicle_bottom,
        plate_scale=rng.uniform(0.95, 1.1) * (1.0 - 0.3 * d * rng.random()),
        yaw=rng.uniform(-1, 1) * (8 + 27 * d),
        pitch=rng.uniform(-1, 1) * (5 + 15 * d),
        roll=rng.uniform(-1, 1) * (2 + 8 * d),
        night=night,
        brightness=rng.uniform(-1, 1) * (10 + 35 * d),
        contrast=1.0 + rng.uniform(-1, 1) * (0.1 + 0.35 * d),
        gamma=math.exp(rng.uniform(-1, 1) * (0.1 + 0.4 * d)),
        blur_sigma=rng.uniform(0, 0.6 + 1.9 * d),
        motion_blur=int(rng.integers(3, 4 + int(12 * d))) if rng.random() < 0.6 * d else 0,
        noise_sigma=rng.uniform(0, 3 + 9 * d),
        jpeg_quality=options.jpeg_quality or int(rng.integers(int(85 - 50 * d), 96)),
    )


# --------------------------------------------------------------------------------------------------
# Plate


@lru_cache(maxsize=64)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_DIR / name), size)


def _fit_font(name: str, text: str, max_w: float, max_h: float) -> ImageFont.FreeTypeFont:
    """Largest font whose rendering of `text` fits max_w x max_h (glyph box, not line box)."""
    size = max(int(max_h * 1.4), 4)
    while size > 4:
        font = _font(name, size)
        x0, y0, x1, y1 = font.getbbox(text)
        if x1 - x0 <= max_w and y1 - y0 <= max_h:
            return font
        size = int(size * 0.94)
    return _font(name, 4)


def _draw_centred(
    draw: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    text: str,
    font: ImageFont.FreeTypeFont,
    fill: tuple[int, int, int],
) -> None:
    x0, y0, x1, y1 = font.getbbox(text)
    bx0, by0, bx1, by1 = box
    draw.text(((bx0 + bx1 - (x1 - x0)) / 2 - x0, (by0 + by1 - (y1 - y0)) / 2 - y0), text, font=font, fill=fill)


def _vertical_gradient(w: int, h: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> np.ndarray:
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    grad = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return np.broadcast_to(grad, (h, w, 3)).astype(np.uint8)


def plate_aspect(region: Region) -> float:
    """Width / height of a plate: US 12 x 6 in, EU 520 x 110 mm."""
    return 2.0 if region == "us" else 520 / 110


def render_plate(design: PlateDesign) -> np.ndarray:
    """The plate face, RGB uint8, at 600 px wide (US 600x300, EU 600x127)."""
    pw = 600
    ph = round(pw / plate_aspect(design.region))
    img = Image.fromarray(_vertical_gradient(pw, ph, *design.background))
    draw = ImageDraw.Draw(img)
    text_x0, text_x1 = pw * 0.05, pw * 0.95
    if design.region == "us":
        number_box = (text_x0, ph * 0.27, text_x1, ph * 0.76)
        if design.state_name:
            font = _fit_font("DejaVuSerif-Bold.ttf", design.state_name, pw * 0.6, ph * 0.13)
            _draw_centred(draw, (0, ph * 0.05, pw, ph * 0.21), design.state_name, font, design.accent)
        if design.slogan:
            font = _fit_font("DejaVuSans-Bold.ttf", design.slogan, pw * 0.55, ph * 0.075)
            _draw_centred(draw, (0, ph * 0.82, pw, ph * 0.93), design.slogan, font, design.accent)
        for hx in (pw * 0.25, pw * 0.75):  # mounting holes
            draw.ellipse((hx - 8, ph * 0.11 - 8, hx + 8, ph * 0.11 + 8), fill=(150, 150, 150))
    else:
        band_w = pw * 0.085
        draw.rounded_rectangle((0, 0, band_w, ph - 1), radius=8, fill=EU_BLUE)
        cx, cy, r = band_w / 2, ph * 0.3, band_w * 0.3
        for k in range(12):  # the ring of stars, as dots
            a = 2 * math.pi * k / 12
            sx, sy = cx + r * math.cos(a), cy + r * math.sin(a)
            draw.ellipse((sx - 2.5, sy - 2.5, sx + 2.5, sy + 2.5), fill=EU_YELLOW)
        font = _fit_font("DejaVuSans-Bold.ttf", design.band_code, band_w * 0.8, ph * 0.22)
        _draw_centred(draw, (0, ph * 0.6, band_w, ph * 0.9), design.band_code, font, (255, 255, 255))
        text_x0 = band_w + pw * 0.03
        number_box = (text_x0, ph * 0.14, text_x1 + pw * 0.02, ph * 0.86)
    bx0, by0, bx1, by1 = number_box
    font = _fit_font(design.font, design.display, bx1 - bx0, by1 - by0)
    _draw_centred(draw, number_box, design.display, font, design.text_colour)
    if design.border != "none":
        width = 4 if design.border == "thin" else 12
        draw.rounded_rectangle((1, 1, pw - 2, ph - 2), radius=18, outline=design.accent, width=width)
    return np.asarray(img)


# --------------------------------------------------------------------------------------------------
# Background


@lru_cache(maxsize=8)
def _background(w: int, h: int, seed: int, horizon: float, night: bool) -> np.ndarray:
    """Sky, buildings, road and kerbs, BGR uint8, read-only (frames of one pass share it)."""
    rng = np.random.default_rng(seed)
    hy = int(h * horizon)
    if night:
        sky = _vertical_gradient(w, hy, (8, 10, 30), (30, 34, 60))
    else:
        sky = _vertical_gradient(w, hy, (120, 170, 225), (200, 220, 240))
    img = np.empty((h, w, 3), np.uint8)
    img[:hy] = sky[..., ::-1]
    # Buildings along the horizon, with windows.
    x = -int(rng.integers(0, 60))
    while x < w:
        bw = int(rng.integers(80, 240))
        bh = int(rng.integers(int(hy * 0.3), max(hy - 5, int(hy * 0.3) + 1)))
        shade = int(rng.integers(70, 170))
        tint = rng.integers(-15, 16, 3)
        colour = np.clip(shade + tint, 0, 255) * (0.35 if night else 1.0)
        cv2.rectangle(img, (x, hy - bh), (x + bw, hy), colour.tolist(), -1)
        for wy in range(hy - bh + 10, hy - 20, 26):
            for wx in range(x + 8, x + bw - 18, 22):
                lit = night and rng.random() < 0.35
                wc = (90, 200, 240) if lit else (colour * 0.6 + 40).tolist()
                cv2.rectangle(img, (wx, wy), (wx + 10, wy + 14), wc, -1)
        x += bw + int(rng.integers(0, 30))
    # Road: asphalt with texture, kerbs and lane markings converging at the vanishing point.
    asphalt = 40 if night else int(rng.integers(85, 120))
    road = rng.normal(asphalt, 6, (h - hy, w, 1)).clip(0, 255).astype(np.uint8)
    img[hy:] = np.repeat(road, 3, axis=2)
    vx = w * rng.uniform(0.4, 0.6)
    kerb = (70, 70, 75) if night else (165, 165, 160)
    for side in (-1, 1):
        foot = vx + side * w * rng.uniform(0.9, 1.3)
        pts = np.array([[vx + side * 25, hy], [foot, h], [foot + side * w, h], [vx + side * 60, hy]], np.int32)
        cv2.fillPoly(img, [pts], kerb, cv2.LINE_AA)
    line = (120, 170, 190) if night else (230, 235, 235)
    for side in (-1, 1):
        foot = vx + side * w * 0.45
        for k in range(8):
            t0, t1 = (k / 8) ** 1.6, ((k + 0.5) / 8) ** 1.6
            p0 = (vx + (foot - vx) * t0, hy + (h - hy) * t0)
            p1 = (vx + (foot - vx) * t1, hy + (h - hy) * t1)
            cv2.line(img, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), line, max(1, int(6 * t1)), cv2.LINE_AA)
    img.flags.writeable = False
    return img


# --------------------------------------------------------------------------------------------------
# Vehicle


def _poly(points: list[tuple[float, float]], cx: float, ground: float, w: float) -> np.ndarray:
    """Vehicle coordinates (u across, v up, in vehicle widths) to canvas pixels."""
    return np.array([[cx + u * w, ground - v * w] for u, v in points], np.float32)


def _roi(pts: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, slice, np.ndarray]:
    """The polygon's bounding rectangle within the canvas, and the polygon relative to it."""
    x0, y0 = np.maximum(np.floor(pts.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 2
    x1, y1 = min(x1, shape[1]), min(y1, shape[0])
    return slice(y0, y1), slice(x0, x1), pts - np.array([x0, y0], np.float32)


def _fill(canvas: np.ndarray, alpha: np.ndarray, pts: np.ndarray, colour, a: float = 1.0) -> None:  # type: ignore[no-untyped-def]
    ys, xs, local = _roi(pts, alpha.shape)
    mask = np.zeros((ys.stop - ys.start, xs.stop - xs.start), np.uint8)
    cv2.fillPoly(mask, [np.round(local * 4).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
    m = mask.astype(np.float32)[..., None] * (a / 255.0)
    canvas[ys, xs] = canvas[ys, xs] * (1 - m) + np.asarray(colour, np.float32) * m
    alpha[ys, xs] = np.maximum(alpha[ys, xs], m[..., 0])


def _shade(canvas: np.ndarray, pts: np.ndarray, top: float, bottom: float) -> None:
    """Multiply a region by a vertical light gradient (lighter at the top)."""
    ys, xs, local = _roi(pts, canvas.shape)
    mask = np.zeros((ys.stop - ys.start, xs.stop - xs.start), np.uint8)
    cv2.fillPoly(mask, [np.round(local).astype(np.int32)], 255)
    t = np.linspace(top, bottom, mask.shape[0], dtype=np.float32)[:, None, None]
    region = canvas[ys, xs]
    canvas[ys, xs] = np.where(mask[..., None] > 0, region * t, region)


def _ellipse(u: float, v: float, ru: float, rv: float, n: int = 24) -> list[tuple[float, float]]:
    return [(u + ru * math.cos(2 * math.pi * k / n), v + rv * math.sin(2 * math.pi * k / n)) for k in range(n)]


def _vehicle_canvas(params: SceneParams, plate: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Rear view of the vehicle on its own canvas: premultiplied BGR float, alpha, and key outlines."""
    w = params.vehicle_width
    bh = params.body_height
    cw, ch = int(w * 1.2), int(w * (bh + 0.2))
    cx, ground = cw / 2, ch - w * 0.08
    canvas = np.zeros((ch, cw, 3), np.float32)
    alpha = np.zeros((ch, cw), np.float32)
    body = np.asarray(VEHICLE_COLOURS[params.vehicle_colour][::-1], np.float32)

    _fill(canvas, alpha, _poly(_ellipse(0, 0.0, 0.56, 0.05), cx, ground, w), (10, 10, 10), 0.55)  # shadow
    for side in (-1, 1):  # tyres
        _fill(
            canvas,
            alpha,
            _poly([(side * 0.47, 0.0), (side * 0.32, 0.0), (side * 0.32, 0.18), (side * 0.47, 0.18)], cx, ground, w),
            (22, 22, 24),
        )
    lower = [(-0.5, 0.1), (0.5, 0.1), (0.5, 0.47), (0.47, 0.5), (-0.47, 0.5), (-0.5, 0.47)]
    roof_half = 0.33
    cabin = [
        (-0.47, 0.5),
        (0.47, 0.5),
        (roof_half + 0.02, bh - 0.02),
        (roof_half - 0.03, bh),
        (-roof_half + 0.03, bh),
        (-roof_half - 0.02, bh - 0.02),
    ]
    _fill(canvas, alpha, _poly(lower, cx, ground, w), body)
    _fill(canvas, alpha, _poly(cabin, cx, ground, w), body)
    _shade(canvas, _poly(lower, cx, ground, w), 1.12, 0.78)
    _shade(canvas, _poly(cabin, cx, ground, w), 1.2, 0.95)
    # Rear window with a sky reflection.
    glass = [(-0.42, 0.53), (0.42, 0.53), (roof_half - 0.02, bh - 0.04), (-roof_half + 0.02, bh - 0.04)]
    glass_pts = _poly(glass, cx, ground, w)
    _fill(canvas, alpha, glass_pts, (45, 40, 35))
    _shade(canvas, glass_pts, 2.2, 0.8)
    # Bumper, tail lights, boot line.
    bumper = [(-0.5, 0.1), (0.5, 0.1), (0.5, 0.2), (-0.5, 0.2)]
    _fill(canvas, alpha, _poly(bumper, cx, ground, w), body * 0.55 + 15)
    for side in (-1, 1):
        light = [(side * 0.49, 0.33), (side * 0.34, 0.33), (side * 0.34, 0.43), (side * 0.49, 0.45)]
        lit = (60, 60, 255) if params.night else (30, 30, 175)
        _fill(canvas, alpha, _poly(light, cx, ground, w), lit)
    boot_line = _poly([(-0.3, 0.455), (0.3, 0.455)], cx, ground, w).astype(np.int32)
    cv2.line(canvas, tuple(boot_line[0]), tuple(boot_line[1]), (body * 0.6).tolist(), max(1, int(w / 300)), cv2.LINE_AA)
    # Plate, centred on the boot above the bumper, in a slightly recessed dark surround.
    share = 0.2 if params.plate.region == "us" else 0.27
    pw = w * share * params.plate_scale
    ph = pw / plate_aspect(params.plate.region)
    pv = 0.3  # plate centre height, in vehicle widths
    pcx, pcy = cx, ground - pv * w
    recess = np.array(
        [
            [pcx - pw * 0.56, pcy - ph * 0.62],
            [pcx + pw * 0.56, pcy - ph * 0.62],
            [pcx + pw * 0.56, pcy + ph * 0.62],
            [pcx - pw * 0.56, pcy + ph * 0.62],
        ],
        np.float32,
    )
    _fill(canvas, alpha, recess, body * 0.4)
    px0, py0 = round(pcx - pw / 2), round(pcy - ph / 2)
    pw_px, ph_px = max(round(pw), 2), max(round(ph), 2)
    canvas[py0 : py0 + ph_px, px0 : px0 + pw_px] = cv2.resize(
        plate[..., ::-1], (pw_px, ph_px), interpolation=cv2.INTER_AREA
    )
    plate_quad = np.array([[px0, py0], [px0 + pw_px, py0], [px0 + pw_px, py0 + ph_px], [px0, py0 + ph_px]], np.float32)
    np.clip(canvas, 0, 255, out=canvas)
    outline = np.array(
        [[cx - w / 2, ground - bh * w], [cx + w / 2, ground - bh * w], [cx + w / 2, ground], [cx - w / 2, ground]],
        np.float32,
    )
    return canvas * alpha[..., None], alpha, {"plate": plate_quad, "vehicle": outline}


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _placement(params: SceneParams, canvas_shape: tuple[int, int], anchor: tuple[float, float]) -> np.ndarray:
    """Homography from the vehicle canvas to the frame: a small 3D turn, then a move to the scene spot."""
    ch, cw = canvas_shape
    ax, ay = anchor
    f = 2.5 * cw
    rot = _rotation(params.yaw, params.pitch, params.roll)
    src = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32)
    dst = []
    for x, y in src:
        px, py, pz = rot @ np.array([x - ax, y - ay, 0.0])
        dst.append([f * px / (f + pz) + params.vehicle_x, f * py / (f + pz) + params.vehicle_bottom])
    return cv2.getPerspectiveTransform(src, np.array(dst, np.float32))


def _box(points: np.ndarray, m: np.ndarray, w: int, h: int) -> Box | None:
    pts = cv2.perspectiveTransform(points[None], m)[0]
    x0, y0 = np.floor(pts.min(axis=0))
    x1, y1 = np.ceil(pts.max(axis=0))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return Box(int(x0), int(y0), int(x1 - x0), int(y1 - y0))


# --------------------------------------------------------------------------------------------------
# Light and camera


def _tone_lut(params: SceneParams) -> np.ndarray:
    """Brightness, contrast, gamma (and the blue cast of night) as one per-channel lookup table."""
    levels = np.arange(256, dtype=np.float32)
    levels = np.clip((levels - 128) * params.contrast + 128 + params.brightness, 0, 255)
    tone = 255 * (levels / 255) ** params.gamma
    cast = np.array([1.1, 1.0, 1.0] if params.night else [1.0, 1.0, 1.0], np.float32)
    return np.clip(tone[:, None] * cast[None, :], 0, 255).round().astype(np.uint8).reshape(256, 1, 3)


def _apply_camera(image: np.ndarray, params: SceneParams) -> np.ndarray:
    """Tone, optics and sensor noise on a uint8 BGR frame."""
    out = cv2.LUT(image, _tone_lut(params))
    if params.motion_blur:
        k = np.zeros((params.motion_blur, params.motion_blur), np.float32)
        k[params.motion_blur // 2, :] = 1.0 / params.motion_blur
        out = cv2.filter2D(out, -1, k)
    if params.blur_sigma > 0.2:
        out = cv2.GaussianBlur(out, (0, 0), params.blur_sigma)
    if params.noise_sigma > 0:
        noise = np.random.default_rng(params.noise_seed).standard_normal(out.shape[:2], dtype=np.float32)
        noise = np.float32(params.noise_sigma) * noise[..., None]  # luminance noise, one draw per pixel
        out = cv2.add(out, np.broadcast_to(noise, out.shape), dtype=cv2.CV_8U)
    return out


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def render(params: SceneParams) -> Scene:
    """Draw the scene that `params` describes."""
    w, h = params.width, params.height
    night_gain = 0.32  # at night the scene is dark, but the retroreflective plate returns the IR light
    frame = _background(w, h, params.background_seed, params.horizon, params.night)
    frame = cv2.convertScaleAbs(frame, alpha=night_gain) if params.night else frame.copy()
    canvas, alpha, outlines = _vehicle_canvas(params, render_plate(params.plate))
    ground_anchor = (canvas.shape[1] / 2, canvas.shape[0] - params.vehicle_width * 0.08)
    m = _placement(params, canvas.shape[:2], ground_anchor)
    # Warp and blend only inside the vehicle canvas's footprint.
    ch, cw = canvas.shape[:2]
    footprint = _box(np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32), m, w, h)
    if footprint is not None:
        x0, y0, rw, rh = footprint.x, footprint.y, footprint.width, footprint.height
        local = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64) @ m
        warped = cv2.warpPerspective(canvas, local, (rw, rh), flags=cv2.INTER_LINEAR)
        walpha = cv2.warpPerspective(alpha, local, (rw, rh), flags=cv2.INTER_LINEAR)[..., None]
        if params.night:
            plate_mask = np.zeros((rh, rw), np.float32)
            plate_px = cv2.perspectiveTransform(outlines["plate"][None], local)[0]
            cv2.fillPoly(plate_mask, [np.round(plate_px).astype(np.int32)], 1.0)
            warped = warped * (night_gain + 0.5 * plate_mask)[..., None]
        roi = frame[y0 : y0 + rh, x0 : x0 + rw]
        roi[:] = np.clip(roi * (1 - walpha) + warped, 0, 255).astype(np.uint8)
    image = _apply_camera(frame, params)
    plate = params.plate
    truth = GroundTruth(
        plate_text=normalize_plate(plate.display),
        plate_display=plate.display,
        country=plate.country,
        state=plate.state,
        state_shown=bool(plate.state_name),
        vehicle_colour=params.vehicle_colour,
        plate_box=_box(outlines["plate"], m, w, h),
        vehicle_box=_box(outlines["vehicle"], m, w, h),
        night=params.night,
    )
    return Scene(image=image, jpeg=encode_jpeg(image, params.jpeg_quality), truth=truth)


def render_scene(seed: int, options: SceneOptions = SceneOptions()) -> Scene:
    """One frame: a vehicle seen from behind, its plate readable at difficulty 0."""
    return render(sample_params(seed, options))


def render_sequence(
    seed: int,
    frames: int = 10,
    options: SceneOptions = SceneOptions(),
    direction: Literal["approach", "recede"] = "approach",
) -> Iterator[Scene]:
    """Consecutive frames of one vehicle pass on one camera.

    "approach": the vehicle comes toward the camera (its box grows and moves down the frame);
    "recede": the reverse. The plate, vehicle, background and light stay the same; the sampled
    scene is the pass's closest frame, and the farthest frame shows the vehicle at 45 % of that size.
    """
    if frames < 1:
        raise ValueError("frames must be at least 1")
    base = sample_params(seed, options)
    horizon_y = base.height * base.horizon
    vanishing_x = base.width / 2
    for i in range(frames):
        t = i / max(frames - 1, 1)
        if direction == "recede":
            t = 1 - t
        k = 0.45 + 0.55 * t  # size relative to the closest frame
        yield render(
            dataclasses.replace(
                base,
                noise_seed=base.noise_seed + i,
                vehicle_width=base.vehicle_width * k,
                vehicle_x=vanishing_x + (base.vehicle_x - vanishing_x) * k,
                vehicle_bottom=horizon_y + (base.vehicle_bottom - horizon_y) * k,
            )
        )
