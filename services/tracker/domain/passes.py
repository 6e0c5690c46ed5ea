"""Grouping the reads of one camera into vehicle passes (pure: no I/O, the caller supplies the clock).

A read joins an open pass of its camera when it was captured within `gap` of the pass's last sighting and
either its plate is the pass's plate up to one edit under OCR confusions, or, when one side has no plate
text, its box overlaps or follows on from the pass's last box. A pass closes once `gap` has passed without
a sighting (or it has lasted `max_duration`). Its plate is a vote per character position, weighted by read
confidence, over the reads of the commonest length; direction comes from the trend of the plate's height.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from services.common.plates import explain_match

Box = tuple[int, int, int, int]  # x, y, width, height

_PASS_NAMESPACE = uuid.UUID("5b0f3c1e-7d52-4a8e-9c61-2f4d8a9b7e10")


class Direction(StrEnum):
    UNKNOWN = "unknown"
    APPROACHING = "approaching"
    RECEDING = "receding"


@dataclass(frozen=True)
class Sighting:
    """What the tracker needs of one read."""

    read_id: str
    camera_id: str
    captured_at: datetime
    plate: str  # normalised; empty for a vehicle seen without a readable plate
    confidence: float
    plate_box: Box | None = None
    vehicle_box: Box | None = None


@dataclass(frozen=True)
class TrackerConfig:
    gap: timedelta = timedelta(seconds=3)
    max_duration: timedelta = timedelta(seconds=60)
    # The first read at least this confident is published at once as the pass's preview.
    preview_confidence: float = 0.8
    # Plate height ratio (last frames / first frames) beyond which the vehicle is approaching (or, inverted,
    # receding).
    direction_ratio: float = 1.15


@dataclass
class Track:
    pass_id: str
    camera_id: str
    sightings: list[Sighting] = field(default_factory=list)
    opened_at: datetime | None = None  # clock time of the first sighting
    touched_at: datetime | None = None  # clock time of the latest sighting
    preview_sent: bool = False

    @property
    def last(self) -> Sighting:
        return self.sightings[-1]

    def read_ids(self) -> set[str]:
        return {s.read_id for s in self.sightings}


@dataclass(frozen=True)
class PassSummary:
    pass_id: str
    camera_id: str
    plate: str
    confidence: float
    best_read_id: str
    read_ids: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    direction: Direction


def pass_id_for(camera_id: str, first_read_id: str) -> str:
    return str(uuid.uuid5(_PASS_NAMESPACE, f"{camera_id}\x1f{first_read_id}"))


def similar_plates(a: str, b: str) -> bool:
    """Equal, or one substituted, missing or extra character, counting OCR confusions (0/O, 8/B...) as equal."""
    return explain_match(a, b, fuzzy_confusions=True, max_edits=1) is not None


def iou(a: Box, b: Box) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w, h = min(ax2, bx2) - max(a[0], b[0]), min(ay2, by2) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def boxes_follow(a: Box, b: Box) -> bool:
    """Overlapping boxes, or centres closer than the larger box's size (one frame's motion)."""
    if iou(a, b) > 0.1:
        return True
    distance = math.dist((a[0] + a[2] / 2, a[1] + a[3] / 2), (b[0] + b[2] / 2, b[1] + b[3] / 2))
    return distance < max(a[2], a[3], b[2], b[3])


def _same_vehicle(track: Track, sighting: Sighting) -> bool:
    plates = [s.plate for s in track.sightings if s.plate]
    if sighting.plate and plates:
        return similar_plates(sighting.plate, vote(track.sightings)[0]) or similar_plates(sighting.plate, plates[-1])
    for field_name in ("plate_box", "vehicle_box"):
        ours, theirs = getattr(track.last, field_name), getattr(sighting, field_name)
        if ours and theirs:
            return boxes_follow(ours, theirs)
    return False


def vote(sightings: list[Sighting]) -> tuple[str, float]:
    """The plate by a confidence-weighted vote per character position over the reads of the length with
    the most weight, and its confidence: the mean share of the winning characters times the mean
    confidence of those reads. ("", 0) when no read has plate text."""
    by_length: dict[int, list[Sighting]] = defaultdict(list)
    for s in sightings:
        if s.plate:
            by_length[len(s.plate)].append(s)
    if not by_length:
        return "", 0.0
    group = max(by_length.values(), key=lambda g: (sum(max(s.confidence, 1e-6) for s in g), len(g)))
    chars, shares = [], []
    for position in range(len(group[0].plate)):
        weights: dict[str, float] = defaultdict(float)
        for s in group:
            weights[s.plate[position]] += max(s.confidence, 1e-6)
        char, weight = max(weights.items(), key=lambda item: item[1])
        chars.append(char)
        shares.append(weight / sum(weights.values()))
    mean_confidence = sum(s.confidence for s in group) / len(group)
    return "".join(chars), sum(shares) / len(shares) * mean_confidence


def best_sighting(sightings: list[Sighting], plate: str) -> Sighting:
    """The most confident read of the voted plate (the larger plate breaking ties), else the most confident."""
    def key(s: Sighting) -> tuple[bool, float, int]:
        return s.plate == plate, s.confidence, s.plate_box[3] if s.plate_box else 0

    return max(sightings, key=key)


def direction_of(sightings: list[Sighting], ratio: float) -> Direction:
    """Approaching when the plate grows over the pass by more than `ratio`, receding when it shrinks."""
    heights = [s.plate_box[3] for s in sorted(sightings, key=lambda s: s.captured_at) if s.plate_box]
    if len(heights) < 2:
        return Direction.UNKNOWN
    half = max(1, len(heights) // 2)
    early, late = sum(heights[:half]) / half, sum(heights[-half:]) / half
    if late > early * ratio:
        return Direction.APPROACHING
    if early > late * ratio:
        return Direction.RECEDING
    return Direction.UNKNOWN


def heading_of(direction: Direction, camera_bearing: float | None) -> float | None:
    """Compass heading of travel: a receding vehicle drives where the camera looks, an approaching one
    the opposite way."""
    if camera_bearing is None or direction is Direction.UNKNOWN:
        return None
    return (camera_bearing + (180.0 if direction is Direction.APPROACHING else 0.0)) % 360.0


def summarise(track: Track, config: TrackerConfig) -> PassSummary:
    plate, confidence = vote(track.sightings)
    times = [s.captured_at for s in track.sightings]
    return PassSummary(
        pass_id=track.pass_id,
        camera_id=track.camera_id,
        plate=plate,
        confidence=confidence,
        best_read_id=best_sighting(track.sightings, plate).read_id,
        read_ids=tuple(s.read_id for s in track.sightings),
        first_seen=min(times),
        last_seen=max(times),
        direction=direction_of(track.sightings, config.direction_ratio),
    )


@dataclass
class Observed:
    """The outcome of one read: the pass it joined, and whether that pass's preview is due now."""

    track: Track
    preview_due: bool
    duplicate: bool = False


class PassTracker:
    """Open passes of every camera. Single owner (the tracker's consumer task): not thread-safe."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self._open: dict[str, list[Track]] = defaultdict(list)

    def open_tracks(self) -> list[Track]:
        return [t for tracks in self._open.values() for t in tracks]

    def observe(self, sighting: Sighting, now: datetime) -> Observed:
        """Add a read to the pass it continues, or open a new pass. A read seen before (redelivered) changes
        nothing."""
        tracks = self._open[sighting.camera_id]
        for track in tracks:
            if sighting.read_id in track.read_ids():
                return Observed(track, preview_due=False, duplicate=True)
        near = [t for t in tracks if abs(sighting.captured_at - t.last.captured_at) <= self.config.gap]
        found = next((t for t in reversed(near) if _same_vehicle(t, sighting)), None)
        if found is None:
            track = Track(pass_id_for(sighting.camera_id, sighting.read_id), sighting.camera_id, opened_at=now)
            tracks.append(track)
        else:
            track = found
        track.sightings.append(sighting)
        track.sightings.sort(key=lambda s: s.captured_at)
        track.touched_at = now
        due = (not track.preview_sent and bool(sighting.plate)
               and sighting.confidence >= self.config.preview_confidence)
        if due:
            track.preview_sent = True
        return Observed(track, due)

    def close_due(self, now: datetime) -> list[Track]:
        """Remove and return the passes not seen for `gap` (or open for `max_duration`)."""
        closed: list[Track] = []
        for camera, tracks in list(self._open.items()):
            keep: list[Track] = []
            for t in tracks:
                idle = t.touched_at is not None and now - t.touched_at >= self.config.gap
                too_long = t.opened_at is not None and now - t.opened_at >= self.config.max_duration
                (closed if idle or too_long else keep).append(t)
            if keep:
                self._open[camera] = keep
            else:
                del self._open[camera]
        return closed
