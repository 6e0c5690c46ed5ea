"""Picking stills from a camera's decoded frames: pure (images and times in, stills out; the clock passed in).

A pass starts when the trigger zone moves in `confirm_frames` consecutive frames (motion against a
background of the empty zone, learnt while nothing moves, measured on the grey zone scaled down to
`analysis_width`: a fraction of a millisecond, so every decoded frame is looked at) and ends after
`end_frames` still frames or `max_pass_s`. While a pass lasts, each moving frame is scored on the zone at 480
pixels wide: sharpness (variance of the Laplacian) and the largest plate-like region (dense vertical edges in
a box with a plate's proportions). The `frames_per_pass` best frames of a pass are emitted, in capture
order, when it ends. A token bucket caps the stills a camera may emit (`max_frames_per_s`, `burst`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import cv2
import numpy as np

from ..config import PickConfig

_SCORE_WIDTH = 480


@dataclass(frozen=True)
class Still:
    image: np.ndarray  # BGR, full resolution
    captured_at: datetime  # from the stream's timestamps
    sharpness: float
    plate_fraction: float  # largest plate-like region, share of the zone
    score: float
    triggered_at: datetime  # capture time of the frame that started the pass


def zone_pixels(shape: tuple[int, ...], zone: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """The zone as pixel bounds x0, y0, x1, y1 of an image of `shape`."""
    h, w = shape[:2]
    x0, y0, x1, y1 = zone
    return int(x0 * w), int(y0 * h), max(int(x1 * w), int(x0 * w) + 1), max(int(y1 * h), int(y0 * h) + 1)


def _grey(image: np.ndarray, zone: tuple[float, float, float, float], width: int) -> np.ndarray:
    """The zone of a grey (or BGR) image, grey, scaled down to `width` at most."""
    x0, y0, x1, y1 = zone_pixels(image.shape, zone)
    crop = image[y0:y1, x0:x1]
    scale = min(1.0, width / crop.shape[1])
    if scale < 1.0:
        crop = cv2.resize(crop, (width, max(1, round(crop.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop


class MotionDetector:
    """Whether the zone moves, frame by frame, against a running-average background of the empty zone.

    The background learns only while nothing moves (a passing vehicle does not blend into it, so its pass
    ends as soon as the road is empty again); `reset` starts it afresh from the next frame (after a pass
    too long to be traffic: a parked vehicle, a change of light).
    """

    def __init__(self, pick: PickConfig, learning_rate: float = 0.05) -> None:
        self._pick = pick
        self._rate = learning_rate
        self._background: np.ndarray | None = None

    def reset(self) -> None:
        self._background = None

    def moving(self, image: np.ndarray) -> bool:
        """`image`: grey (or BGR)."""
        grey = cv2.GaussianBlur(_grey(image, self._pick.zone, self._pick.analysis_width), (5, 5), 0)
        if self._background is None or self._background.shape != grey.shape:
            self._background = grey.astype(np.float32)
            return False
        changed = cv2.absdiff(grey, cv2.convertScaleAbs(self._background)) > self._pick.motion_threshold
        moving = float(changed.mean()) >= self._pick.motion_fraction
        if not moving:
            cv2.accumulateWeighted(grey, self._background, self._rate)
        return moving


def sharpness(grey: np.ndarray) -> float:
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def plate_fraction(grey: np.ndarray) -> float:
    """Share of the image covered by its largest plate-like region: dense vertical edges (characters) in a
    box 2 to 6 times wider than high, between 1/60 and 1/3 of the image wide."""
    edges = cv2.convertScaleAbs(cv2.Sobel(grey, cv2.CV_16S, 1, 0, ksize=3))
    _, binary = cv2.threshold(edges, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    h, w = grey.shape
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (max(3, w // 60), max(1, h // 120)))
    closed = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
    closed = cv2.morphologyEx(closed, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    best = 0
    for contour in contours:
        _, _, cw, ch = cv2.boundingRect(contour)
        if ch and 2.0 <= cw / ch <= 6.0 and w / 60 <= cw <= w / 3:
            fill = cv2.contourArea(contour) / (cw * ch)
            if fill >= 0.5:
                best = max(best, cw * ch)
    return best / float(h * w)


def score_frame(image: np.ndarray, zone: tuple[float, float, float, float]) -> tuple[float, float, float]:
    """(score, sharpness, plate fraction): a bigger plate region counts most, sharpness breaks ties."""
    grey = _grey(image, zone, _SCORE_WIDTH)
    sharp, plate = sharpness(grey), plate_fraction(grey)
    return (1.0 + 100.0 * plate) * math.sqrt(sharp), sharp, plate


@dataclass
class _Pass:
    started_at: datetime
    best: list[Still] = field(default_factory=list)
    still_run: int = 0


class StillPicker:
    """Feed it every decoded frame (`offer`); it returns the stills of each pass when the pass ends.

    A frame comes as its grey image (the decoder's luma plane: free) and a function that makes its colour
    image, called only for a frame kept as a candidate still (converting every 1080p frame to BGR would cost
    more than decoding it)."""

    def __init__(self, pick: PickConfig) -> None:
        self._pick = pick
        self._motion = MotionDetector(pick)
        self._moving_run = 0
        self._pass: _Pass | None = None

    @property
    def in_pass(self) -> bool:
        return self._pass is not None

    def offer(self, grey: np.ndarray, captured_at: datetime, colour: Callable[[], np.ndarray]) -> list[Still]:
        moving = self._motion.moving(grey)
        self._moving_run = self._moving_run + 1 if moving else 0
        current = self._pass
        if current is None:
            if self._moving_run < self._pick.confirm_frames:
                return []
            current = self._pass = _Pass(captured_at)
        current.still_run = 0 if moving else current.still_run + 1
        if moving:
            self._consider(current, grey, captured_at, colour)
        too_long = (captured_at - current.started_at).total_seconds() >= self._pick.max_pass_s
        if too_long:
            self._motion.reset()
            self._moving_run = 0
        if current.still_run >= self._pick.end_frames or too_long:
            return self.flush()
        return []

    def flush(self) -> list[Still]:
        """End the pass now (the source ended): its stills, in capture order."""
        current, self._pass = self._pass, None
        return [] if current is None else sorted(current.best, key=lambda s: s.captured_at)

    def _consider(self, current: _Pass, grey: np.ndarray, captured_at: datetime,
                  colour: Callable[[], np.ndarray]) -> None:
        keep = self._pick.frames_per_pass
        score, sharp, plate = score_frame(grey, self._pick.zone)
        if len(current.best) >= keep and score <= current.best[-1].score:
            return
        still = Still(colour(), captured_at, sharp, plate, score, current.started_at)
        current.best = sorted([*current.best, still], key=lambda s: -s.score)[:keep]


class RateCap:
    """Token bucket: `rate` stills a second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate, self._burst = rate, float(burst)
        self._tokens = float(burst)
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        if self._last is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def encode_still(image: np.ndarray, max_side: int, quality: int) -> bytes:
    """JPEG of the image, scaled down so that its longest side is at most `max_side`."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1.0:
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def frame_id(captured_at: datetime) -> str:
    """A still's id: its capture time to the microsecond (UTC), the same on every resend."""
    return captured_at.strftime("%Y%m%dT%H%M%S.%fZ")
