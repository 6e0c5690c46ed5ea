"""Plate faces for training the recogniser (``scripts/train_recogniser.py``): the renderer's US and European
plates in more fonts, New York's for-hire plates (``T`` + six digits + ``C``), South American layouts (Brazil's
grey ``LLL-NNNN`` and Mercosur ``LLLNLNN``, Argentina's black ``LLLNNN`` and Mercosur ``LLNNNLL``), decorated
with what real plates carry beside the serial (dealer frames, registration stickers, small stacked characters,
glare), and negatives: lines of dealer frames and slogans, which the plate reader must read as nothing.

Every function draws from the ``numpy`` generator it is given, so a seed gives the same plate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from services.common.plates import normalize_plate
from services.simulator import render

# Bold faces beside DejaVu, used where the machine has them (Debian's fonts-liberation).
EXTRA_FONTS = (
    Path("/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf"),
    Path("/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Bold.ttf"),
    Path("/usr/share/fonts/truetype/liberation/LiberationMono-Bold.ttf"),
)
DEALERS = (
    "COLLINS AUTO GROUP", "DOMINION HONDA", "ROUTE 9 TOYOTA", "BAY RIDGE NISSAN", "MAJOR WORLD",
    "HERTZ", "AVIS", "CARMAX", "LIBERTY FORD", "SUNRISE CHEVROLET", "KOEHLER MOTORS", "GOLD COAST KIA",
)  # fmt: skip
SLOGANS = (
    "LIVE FREE OR DIE", "FIRST IN FLIGHT", "GREAT LAKES STATE", "BIG SKY COUNTRY", "THE SUNSHINE STATE",
    "PEACH STATE", "IN GOD WE TRUST", "AMERICA'S DAIRYLAND", "THE FIRST STATE", "PROTECT OUR OCEANS",
    "SUPPORT EDUCATION", "BRASIL", "MERCOSUR", "REPUBLICA ARGENTINA", "SAO PAULO", "RIO DE JANEIRO",
)  # fmt: skip
# (country, name on the plate, layout, style): layouts as in render (L letter, D digit).
SOUTH_AMERICA = (
    ("BR", "SAO PAULO", "LLL-DDDD", "grey"),
    ("BR", "RIO DE JANEIRO", "LLL-DDDD", "red"),
    ("BR", "BRASIL", "LLLDLDD", "mercosur"),
    ("AR", "ARGENTINA", "LLL DDD", "black"),
    ("AR", "REPUBLICA ARGENTINA", "LL DDD LL", "mercosur"),
)
ALL_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MERCOSUR_BLUE = (0, 56, 168)


@dataclass(frozen=True)
class PlateFace:
    image: np.ndarray  # RGB uint8
    serial: str  # what the plate reader must read: A-Z0-9 only


def fonts() -> tuple[Path, ...]:
    """The bold faces a plate may be drawn in: the renderer's and the extra ones present here."""
    return tuple(render.FONT_DIR / name for name in render.PLATE_FONTS) + tuple(p for p in EXTRA_FONTS if p.is_file())


def fill(rng: np.random.Generator, layout: str, letters: str = ALL_LETTERS) -> str:
    return "".join(
        letters[rng.integers(len(letters))] if c == "L" else str(rng.integers(10)) if c == "D" else c for c in layout
    )


def _centred(draw: ImageDraw.ImageDraw, box: tuple[float, ...], text: str, font: Path, fill_rgb: tuple) -> None:  # type: ignore[type-arg]
    """``text`` as large as fits ``box`` (x0, y0, x1, y1), centred; ``font`` is a path (the renderer's fonts
    are named relative to its folder, and an absolute path stands for itself)."""
    face = render._fit_font(str(font), text, box[2] - box[0], box[3] - box[1])
    render._draw_centred(draw, (box[0], box[1], box[2], box[3]), text, face, fill_rgb)


def south_american(rng: np.random.Generator, font: Path) -> PlateFace:
    """A Brazilian or Argentine plate, 600 px wide (about 3:1 for Brazil's old plates and Mercosur's)."""
    country, name, layout, style = SOUTH_AMERICA[int(rng.integers(len(SOUTH_AMERICA)))]
    display = fill(rng, layout)
    pw, ph = 600, 200 if style != "black" else 190
    colours = {"grey": ((200, 200, 196), (20, 20, 20)), "red": ((190, 30, 30), (245, 245, 245)),
               "mercosur": ((246, 246, 246), (15, 15, 15)), "black": ((18, 18, 18), (240, 240, 240))}  # fmt: skip
    background, ink = colours[style]
    img = Image.new("RGB", (pw, ph), background)
    draw = ImageDraw.Draw(img)
    top = 0.26 * ph
    if style == "mercosur":
        draw.rectangle((0, 0, pw, top), fill=MERCOSUR_BLUE)
        _centred(
            draw,
            (pw * 0.2, top * 0.15, pw * 0.8, top * 0.85),
            name,
            render.FONT_DIR / "DejaVuSans-Bold.ttf",
            (255, 255, 255),
        )
        draw.rectangle((pw * 0.03, top * 0.2, pw * 0.1, top * 0.8), outline=(255, 255, 255), width=2)
    else:
        _centred(draw, (pw * 0.15, ph * 0.04, pw * 0.85, top * 0.8), name, render.FONT_DIR / "DejaVuSans-Bold.ttf", ink)
    _centred(draw, (pw * 0.05, top + ph * 0.06, pw * 0.95, ph * 0.92), display, font, ink)
    draw.rectangle((2, 2, pw - 3, ph - 3), outline=ink, width=int(rng.integers(3, 10)))
    return PlateFace(np.asarray(img), normalize_plate(display))


# New York's designs (background, serial ink, band, band ink, band text), RGB: Empire Gold (2010) and
# Excelsior (2020).
NEW_YORK_DESIGNS = (
    ((236, 184, 46), (22, 40, 96), (22, 40, 96), (250, 250, 250), "EMPIRE STATE"),
    ((246, 246, 242), (24, 42, 110), (226, 170, 40), (24, 42, 110), "EXCELSIOR"),
)


def for_hire(rng: np.random.Generator, font: Path) -> PlateFace:
    """A New York for-hire (Taxi and Limousine Commission) plate, 600x300: ``T`` + six digits + ``C``, eight
    characters across the plate, ``NEW YORK`` above, ``T&LC`` small at the left and the design's band below."""
    background, ink, band, band_ink, motto = NEW_YORK_DESIGNS[int(rng.integers(len(NEW_YORK_DESIGNS)))]
    serial = fill(rng, "TDDDDDDC")
    pw, ph = 600, 300
    img = Image.new("RGB", (pw, ph), background)
    draw = ImageDraw.Draw(img)
    bold = render.FONT_DIR / "DejaVuSans-Bold.ttf"
    _centred(draw, (pw * 0.3, ph * 0.04, pw * 0.7, ph * 0.2), "NEW YORK", bold, ink)
    draw.rectangle((0, ph * 0.84, pw, ph), fill=band)
    _centred(draw, (pw * 0.25, ph * 0.855, pw * 0.75, ph * 0.985), motto, bold, band_ink)
    _centred(draw, (pw * 0.02, ph * 0.3, pw * 0.09, ph * 0.72), "T&LC", bold, ink)
    _centred(draw, (pw * 0.1, ph * 0.24, pw * 0.97, ph * 0.8), serial, font, ink)
    return PlateFace(np.asarray(img), serial)


def us_or_eu(rng: np.random.Generator, font: Path) -> PlateFace:
    """The renderer's plate (US or European), in ``font``, any letter in the serial."""
    design = render._sample_plate(rng, "us" if rng.random() < 0.65 else "eu")
    layout = "".join("L" if c.isalpha() else "D" if c.isdigit() else c for c in design.display)
    letters = ALL_LETTERS if rng.random() < 0.5 else render.LETTERS
    design = dataclasses.replace(design, display=fill(rng, layout, letters))
    face = render.render_plate(design)
    if font.parent != render.FONT_DIR or font.name != design.font:  # redraw the serial in the other font
        face = _redraw_serial(face, design, font)
    return PlateFace(face, normalize_plate(design.display))


def _redraw_serial(face: np.ndarray, design: render.PlateDesign, font: Path) -> np.ndarray:
    pw, ph = face.shape[1], face.shape[0]
    box = (
        (pw * 0.05, ph * 0.27, pw * 0.95, ph * 0.76)
        if design.region == "us"
        else (pw * 0.145, ph * 0.14, pw * 0.97, ph * 0.86)
    )
    img = Image.fromarray(face)
    draw = ImageDraw.Draw(img)
    paper = face[int(ph * 0.24), pw // 2] if design.region == "us" else face[int(ph * 0.07), pw // 2]
    draw.rectangle(box, fill=tuple(int(v) for v in paper))
    _centred(draw, box, design.display, font, design.text_colour)
    return np.asarray(img)


def stacked(rng: np.random.Generator, face: np.ndarray) -> np.ndarray:
    """Two small characters stacked at the left edge (as on New York and New Jersey plates); not the serial."""
    img = Image.fromarray(face)
    draw = ImageDraw.Draw(img)
    pw, ph = img.size
    colour = tuple(int(v) for v in rng.integers(0, 120, 3))
    for k in range(2):
        box = (pw * 0.005, ph * (0.3 + 0.2 * k), pw * 0.045, ph * (0.48 + 0.2 * k))
        _centred(draw, box, ALL_LETTERS[int(rng.integers(26))], render.FONT_DIR / "DejaVuSans-Bold.ttf", colour)
    return np.asarray(img)


def sticker(rng: np.random.Generator, face: np.ndarray) -> np.ndarray:
    """A registration sticker (a coloured label with a month or year) in a corner."""
    img = Image.fromarray(face)
    draw = ImageDraw.Draw(img)
    pw, ph = img.size
    w, h = pw * rng.uniform(0.08, 0.14), ph * rng.uniform(0.12, 0.2)
    x = pw * 0.02 if rng.random() < 0.5 else pw * 0.98 - w
    y = ph * 0.03 if rng.random() < 0.5 else ph * 0.97 - h
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    draw.rectangle((x, y, x + w, y + h), fill=colour)
    label = str(int(rng.integers(1, 13))) if rng.random() < 0.5 else f"{int(rng.integers(20, 30))}"
    _centred(
        draw,
        (x + w * 0.15, y + h * 0.15, x + w * 0.85, y + h * 0.85),
        label,
        render.FONT_DIR / "DejaVuSans-Bold.ttf",
        (0, 0, 0),
    )
    return np.asarray(img)


def dealer_frame(rng: np.random.Generator, face: np.ndarray) -> np.ndarray:
    """The plate in a dealer's frame: a band around it with the dealer's name below (and a slogan above)."""
    ph, pw = face.shape[:2]
    side, top, bottom = int(pw * 0.04), int(ph * rng.uniform(0.08, 0.2)), int(ph * rng.uniform(0.18, 0.32))
    colour = tuple(int(v) for v in (rng.integers(0, 60, 3) if rng.random() < 0.7 else rng.integers(150, 256, 3)))
    ink = (235, 235, 235) if sum(colour) < 300 else (20, 20, 20)
    img = Image.new("RGB", (pw + 2 * side, ph + top + bottom), colour)
    img.paste(Image.fromarray(face), (side, top))
    draw = ImageDraw.Draw(img)
    font = render.FONT_DIR / "DejaVuSans-Bold.ttf"
    _centred(
        draw,
        (side * 2, ph + top + bottom * 0.12, pw, ph + top + bottom * 0.88),
        DEALERS[int(rng.integers(len(DEALERS)))],
        font,
        ink,
    )
    if rng.random() < 0.5 and top > 12:
        _centred(
            draw, (side * 4, top * 0.15, pw - side * 2, top * 0.85), SLOGANS[int(rng.integers(len(SLOGANS)))], font, ink
        )
    return np.asarray(img)


def glare(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A bright elliptical reflection somewhere on the image."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    rx, ry = w * rng.uniform(0.1, 0.4), h * rng.uniform(0.2, 0.8)
    blob = np.exp(-(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2))[..., None] * rng.uniform(80, 220)
    return np.clip(image.astype(np.float32) + blob, 0, 255).astype(np.uint8)


def night(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A night view: an infrared camera's grey image, or a dark, noisy colour one."""
    img = image.astype(np.float32)
    if rng.random() < 0.5:
        img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2) * rng.uniform(0.8, 1.3)
    else:
        img = img * rng.uniform(0.15, 0.4)
    img += rng.normal(0, rng.uniform(3, 14), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def plate_face(rng: np.random.Generator) -> PlateFace:
    """A plate face with its serial: US (a tenth of all New York for-hire), European or South American, in any
    of the fonts, with a dealer frame, a sticker, stacked characters and glare each on some of them."""
    choices = fonts()
    font = choices[int(rng.integers(len(choices)))]
    pick = rng.random()
    plate = south_american(rng, font) if pick < 0.3 else for_hire(rng, font) if pick < 0.4 else us_or_eu(rng, font)
    face = plate.image
    if rng.random() < 0.2:
        face = stacked(rng, face)
    if rng.random() < 0.3:
        face = sticker(rng, face)
    if rng.random() < 0.3:
        face = dealer_frame(rng, face)
    if rng.random() < 0.1:
        face = glare(rng, face)
    return PlateFace(face, plate.serial)


def negative_line(rng: np.random.Generator) -> np.ndarray:
    """A line of text that is not a serial (a dealer's name or a slogan) on a plate or frame colour; RGB."""
    text = (DEALERS + SLOGANS)[int(rng.integers(len(DEALERS) + len(SLOGANS)))]
    choices = fonts()
    height = 64
    background = tuple(int(v) for v in rng.integers(0, 256, 3))
    ink = (20, 20, 20) if sum(background) > 380 else (235, 235, 235)
    img = Image.new("RGB", (int(height * rng.uniform(4, 7)), height), background)
    _centred(
        ImageDraw.Draw(img), (4, 8, img.size[0] - 4, height - 8), text, choices[int(rng.integers(len(choices)))], ink
    )
    return np.asarray(img)
