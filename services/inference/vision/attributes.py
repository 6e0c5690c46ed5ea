"""Vehicle body colour from pixels: each pixel of the body sample is named, the commonest name wins."""

from __future__ import annotations

import cv2
import numpy as np

COLOURS = (
    "white", "silver", "grey", "black", "red", "orange", "yellow", "green", "blue", "purple", "brown", "beige",
)  # fmt: skip


def name_pixels(bgr_pixels: np.ndarray) -> np.ndarray:
    """Index into ``COLOURS`` for each ``(N, 3)`` BGR ``uint8`` pixel, from OpenCV HSV and Lab values."""
    pixels = bgr_pixels.reshape(-1, 1, 3).astype(np.uint8)
    hsv = cv2.cvtColor(pixels, cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(np.float32)
    lab = cv2.cvtColor(pixels, cv2.COLOR_BGR2LAB).reshape(-1, 3).astype(np.float32)
    hue = hsv[:, 0] * 2.0  # degrees
    value = hsv[:, 2] / 255.0
    lightness = lab[:, 0] / 255.0 * 100.0
    chroma = np.hypot(lab[:, 1] - 128.0, lab[:, 2] - 128.0)

    names = np.full(len(pixels), COLOURS.index("grey"), np.int64)
    achromatic = (chroma < 12) | (value < 0.18)
    names[achromatic & (lightness >= 82)] = COLOURS.index("white")
    names[achromatic & (lightness >= 60) & (lightness < 82)] = COLOURS.index("silver")
    names[achromatic & (lightness >= 28) & (lightness < 60)] = COLOURS.index("grey")
    names[achromatic & (lightness < 28)] = COLOURS.index("black")

    chromatic = ~achromatic
    warm = (hue < 50) | (hue >= 330)
    # Low-chroma warm tones: beige when light, brown when dark.
    muted_warm = chromatic & warm & (chroma < 35) & ((hue >= 15) & (hue < 50))
    names[muted_warm & (lightness >= 60)] = COLOURS.index("beige")
    names[muted_warm & (lightness < 60)] = COLOURS.index("brown")
    vivid = chromatic & ~muted_warm
    bands = (
        (0, 15, "red"), (15, 40, "orange"), (40, 70, "yellow"), (70, 170, "green"),
        (170, 260, "blue"), (260, 330, "purple"), (330, 361, "red"),
    )  # fmt: skip
    for low, high, name in bands:
        names[vivid & (hue >= low) & (hue < high)] = COLOURS.index(name)
    dark_orange = vivid & (hue >= 15) & (hue < 40) & (value < 0.55)
    names[dark_orange] = COLOURS.index("brown")
    return names


def body_sample(vehicle_bgr: np.ndarray, exclude: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Pixels of the vehicle box centre below the windows (rows 45-85 %, columns 20-80 %), without the
    excluded ``x1, y1, x2, y2`` boxes (plates, in vehicle-crop coordinates)."""
    height, width = vehicle_bgr.shape[:2]
    mask = np.zeros((height, width), bool)
    mask[int(height * 0.45) : int(height * 0.85), int(width * 0.2) : int(width * 0.8)] = True
    for x1, y1, x2, y2 in exclude:
        mask[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = False
    return vehicle_bgr[mask]


MAX_SAMPLE = 8192  # body pixels named per vehicle, at most

# Low-light frames are brightened until their 90th brightness percentile reaches EXPOSURE_TARGET, by at most
# EXPOSURE_MAX_GAIN: a dark frame otherwise names almost every body black.
EXPOSURE_TARGET, EXPOSURE_MAX_GAIN = 150.0, 3.2


def exposure_gain(frame_bgr: np.ndarray) -> float:
    """The gain that brings a dark frame to daylight brightness (1 for a frame bright enough), measured on a
    small copy of the frame."""
    height, width = frame_bgr.shape[:2]
    scale = min(1.0, 256 / max(height, width))
    small = cv2.resize(frame_bgr, (max(1, int(width * scale)), max(1, int(height * scale))),
                       interpolation=cv2.INTER_AREA)
    bright = float(np.percentile(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), 90))
    return float(np.clip(EXPOSURE_TARGET / max(bright, 1.0), 1.0, EXPOSURE_MAX_GAIN))


def vehicle_colour(
    vehicle_bgr: np.ndarray, exclude: list[tuple[int, int, int, int]], gain: float = 1.0
) -> tuple[str, float]:
    """The body colour name and its confidence: the share of sampled pixels that carry it, divided by the
    exposure ``gain`` applied first (a colour named in a brightened dark frame is less sure)."""
    pixels = body_sample(vehicle_bgr, exclude)
    if len(pixels) == 0:
        return "", 0.0
    pixels = pixels[:: max(1, len(pixels) // MAX_SAMPLE)]  # an even spread of the body votes as well as all of it
    if gain != 1.0:
        pixels = cv2.convertScaleAbs(pixels, alpha=gain)
    counts = np.bincount(name_pixels(pixels), minlength=len(COLOURS))
    best = int(counts.argmax())
    return COLOURS[best], float(counts[best] / counts.sum() / gain)


def vehicle_view(vehicle_bgr: np.ndarray, colour: str) -> tuple[str, float]:
    """Front or rear from lamp colour: lit or red tail-lamp lenses fill the outer thirds of the lamp band
    of a rear view, a front view shows none. A red body makes the cue useless (``unknown``)."""
    height, width = vehicle_bgr.shape[:2]
    band = vehicle_bgr[int(height * 0.3) : int(height * 0.75)]
    sides = np.concatenate([band[:, : max(1, width // 3)], band[:, width - max(1, width // 3) :]], axis=1)
    if sides.size == 0 or colour in ("red", "orange", "purple", "brown"):
        return "unknown", 0.0
    hsv = cv2.cvtColor(sides, cv2.COLOR_BGR2HSV).reshape(-1, 3)
    red = ((hsv[:, 0] < 8) | (hsv[:, 0] > 170)) & (hsv[:, 1] > 120) & (hsv[:, 2] > 90)
    share = float(red.mean())
    if share > 0.03:
        return "rear", min(1.0, 0.5 + share * 5)
    if share < 0.003:
        return "front", 0.5
    return "unknown", 0.0
