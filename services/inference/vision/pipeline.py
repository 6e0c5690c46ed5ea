"""The ALPR frame pipeline: plates, their text and region, vehicles and their attributes, redaction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from services.common.plates import normalize_plate

from . import detectors
from .attributes import exposure_gain, vehicle_colour, vehicle_view
from .confidence import Evidence
from .imaging import (
    CorruptFrameError,
    EmptyFrameError,
    FrameDecodeError,
    OversizedFrameError,
    blur_regions,
    clip_box,
    decode_jpeg,
    expand_box,
    fitted_size,
)
from .reader import PlateReader
from .runner import ModelRunner
from .settings import VisionSettings

__all__ = [
    "AlprPipeline",
    "CorruptFrameError",
    "EmptyFrameError",
    "FrameDecodeError",
    "FrameResult",
    "OversizedFrameError",
    "PlateRead",
    "VehicleObs",
    "decode_jpeg",
    "normalize_plate",
]

PLATE_DETECTOR, OBJECT_DETECTOR, FACE_DETECTOR = "plate_detector", "vehicle_detector", "face_detector"

Box = tuple[int, int, int, int]  # x, y, width, height
# A small frame is a plate crop when it is this many times as wide as high (plates with margins are 2:1 or
# wider; scenes are 4:3 or 16:9), or when a plate found in it covers this share of it (in the crops of the
# tuning parts, 95 % of plates found cover 0.42 or more; in a scene, a few per cent).
CROP_COVER, CROP_ASPECT = 0.25, 1.8
# A plate crop is read twice, whole and with this share of its width and height trimmed from each side (a
# frame, bolts or a sticker at its edge), and the surer read is kept.
CROP_TRIM = (1 / 24, 1 / 12)
# Vehicles narrower than this are not searched again for a plate: a plate is about a fifth of a car's width,
# and one under about 12 pixels wide cannot be read.
MIN_VEHICLE_WIDTH = 60


@dataclass(frozen=True)
class VehicleObs:
    type: str
    colour: str
    colour_confidence: float
    box: Box
    view: str = "unknown"
    confidence: float = 0.0


@dataclass(frozen=True)
class PlateRead:
    """A plate (``box`` is the plate) or, with empty ``text``, a vehicle seen without a readable plate
    (``box`` is then the vehicle's)."""

    text: str
    normalized: str
    confidence: float
    candidates: list[tuple[str, float]]
    box: Box
    region: dict[str, Any]
    vehicle: VehicleObs | None
    detection_confidence: float = 0.0
    evidence: Evidence | None = None  # what the read's confidence was computed from (confidence.py)


@dataclass
class FrameResult:
    plates: list[PlateRead]
    vehicles: list[VehicleObs]
    redacted: np.ndarray = field(repr=False)
    faces: int = 0
    persons: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view of the reads (the redacted pixels are left out)."""
        return {
            "plates": [_json_safe(asdict(plate)) for plate in self.plates],
            "vehicles": [_json_safe(asdict(vehicle)) for vehicle in self.vehicles],
            "faces": self.faces,
            "persons": self.persons,
        }


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float | np.floating):
        return round(float(value), 4)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _xywh(box: Box) -> Box:
    x1, y1, x2, y2 = box
    return (x1, y1, x2 - x1, y2 - y1)


class AlprPipeline:
    def __init__(
        self,
        runner: ModelRunner,
        settings: VisionSettings | None = None,
    ) -> None:
        self.settings = settings or VisionSettings()
        self._runner = runner
        self.reader = PlateReader(runner, self.settings.text_detector_side, self.settings.plate_family)

    # --- detection stages -------------------------------------------------------------------------

    def detect_plates(self, image: np.ndarray, side: int | None = None) -> detectors.Detections:
        tensor, geometry = detectors.plate_input(
            image, side or self.settings.plate_detector_side, self.settings.plate_detector_max_upscale
        )
        output = self._runner.infer(PLATE_DETECTOR, {detectors.PLATE_INPUT: tensor})[detectors.PLATE_OUTPUT]
        return detectors.decode_yolo(
            output, geometry, self.settings.plate_score_threshold, self.settings.plate_iou_threshold
        )

    def detect_objects(self, image: np.ndarray) -> tuple[detectors.Detections, detectors.Detections]:
        """Vehicles and persons from one CenterNet pass."""
        tensor = detectors.object_input(image, self.settings.object_detector_side)
        output = self._runner.infer(OBJECT_DETECTOR, {detectors.OBJECT_INPUT: tensor})[detectors.OBJECT_OUTPUT]
        s = self.settings
        vehicles = detectors.decode_centernet(
            output, image.shape, tensor.shape, set(detectors.VEHICLE_CLASSES), s.vehicle_score_threshold,
            s.object_iou_threshold,
        )
        persons = detectors.decode_centernet(
            output, image.shape, tensor.shape, {detectors.PERSON_CLASS}, s.person_score_threshold,
            s.object_iou_threshold,
        )
        return vehicles, persons

    def detect_faces(self, image: np.ndarray, small: bool = True) -> list[Box]:
        """Face boxes (``x1, y1, x2, y2``, grown to cover the head) from one pass over the whole frame: at
        ``face_search_side`` on the longer side with ``small`` (512x288 for 16:9, where a face 28 pixels wide
        in a 1280x720 frame is still found, and one filling most of its height too), else at 256x256, the
        model's own size, which finds faces from about 56 pixels."""
        height, width = image.shape[:2]
        size = (detectors.FACE_SIZE, detectors.FACE_SIZE)
        if small and self.settings.face_search_side:
            size = fitted_size(width, height, self.settings.face_search_side)
        tensor, geometry = detectors.face_input(image, size)
        outputs = self._runner.infer(FACE_DETECTOR, {detectors.FACE_INPUT: tensor})
        scores = np.concatenate([outputs[name][0] for name in detectors.FACE_SCORES])
        boxes = np.concatenate([outputs[name][0] for name in detectors.FACE_BOXES])
        found = detectors.decode_blazeface(
            scores, boxes, geometry, self.settings.face_score_threshold, 0.3, tensor.shape[1:3]
        )
        return [clip_box(expand_box(box, 0.2, 0.25), width, height) for box in found.boxes]

    # --- the frame --------------------------------------------------------------------------------

    def read_plates(self, image_bgr: np.ndarray, vehicles: detectors.Detections | None = None) -> list[PlateRead]:
        """The plates found in the frame and their reads (``vehicle`` left empty): the plate path of ``run``.

        A small frame (``plate_crop_max_side``) with a plate's shape, or mostly covered by a plate found in it,
        is a plate crop (cameras with their own plate finder send these): it is read whole and trimmed
        (``CROP_TRIM``), and the surer read stands for the boxes found in it. In a crop it fills, the
        detector's box is often cut short, not found at all (small infrared crops), or found on a dealer's
        name, while the whole crop reads best (scripts/eval_accuracy.py, tuning parts).

        Each of ``vehicles`` in which the frame-wide pass found no plate is searched again on its own
        (``plate_vehicle_side``): far plates, too small at the frame's scale."""
        height, width = image_bgr.shape[:2]
        plates = self.detect_plates(image_bgr)
        boxes = [clip_box(box, width, height) for box in plates.boxes]
        scores = [float(score) for score in plates.scores]
        if max(height, width) <= self.settings.plate_crop_max_side and (
            width >= CROP_ASPECT * height
            or any((x2 - x1) * (y2 - y1) >= CROP_COVER * width * height for x1, y1, x2, y2 in boxes)
        ):
            frame = (0, 0, width, height)
            dx, dy = round(width * CROP_TRIM[0]), round(height * CROP_TRIM[1])
            views = [self._read(image_bgr, frame, region, max(scores, default=0.0))
                     for region in (frame, (dx, dy, width - dx, height - dy))]  # fmt: skip
            surest = max(views, key=lambda read: read.confidence)
            if surest.text:
                return [surest]
        if vehicles is not None and self.settings.plate_vehicle_side:
            for box, score in self._plates_on_vehicles(image_bgr, vehicles, boxes):
                boxes.append(box)
                scores.append(score)
        reads = []
        for box, score in zip(boxes, scores, strict=True):
            margin = expand_box(np.array(box), self.settings.plate_margin_x, self.settings.plate_margin_y)
            reads.append(self._read(image_bgr, box, clip_box(margin, width, height), score))
        return reads

    def _plates_on_vehicles(
        self, image_bgr: np.ndarray, vehicles: detectors.Detections, found: list[Box]
    ) -> list[tuple[Box, float]]:
        """Plates found by searching each vehicle (at least ``MIN_VEHICLE_WIDTH`` wide) that holds no plate
        centre of ``found``, the vehicle scaled to ``plate_vehicle_side``; a plate whose centre is in one
        already found (two overlapping vehicles) is left out."""
        height, width = image_bgr.shape[:2]
        added: list[tuple[Box, float]] = []
        for x1, y1, x2, y2 in (clip_box(box, width, height) for box in vehicles.boxes):
            if x2 - x1 < MIN_VEHICLE_WIDTH or any(_holds_centre((x1, y1, x2, y2), box) for box in found):
                continue
            plates = self.detect_plates(image_bgr[y1:y2, x1:x2], self.settings.plate_vehicle_side)
            for box, score in zip(plates.boxes, plates.scores, strict=True):
                box = clip_box(box + np.array([x1, y1, x1, y1], np.float32), width, height)
                if not any(_holds_centre(other, box) for other, _ in added):
                    added.append((box, float(score)))
        return added

    def _read(self, image_bgr: np.ndarray, box: Box, region: Box, detection_confidence: float) -> PlateRead:
        """The read of the plate at ``box`` (``x1, y1, x2, y2``) from the pixels of ``region`` around it."""
        x1, y1, x2, y2 = region
        text = self.reader.read(image_bgr[y1:y2, x1:x2])
        return PlateRead(
            text=text.text,
            normalized=normalize_plate(text.text),
            confidence=text.confidence,
            candidates=list(text.candidates),
            box=_xywh(box),
            region=asdict(text.region) if text.region.state or text.region.country else {},
            vehicle=None,
            detection_confidence=detection_confidence,
            evidence=text.evidence,
        )

    def run(self, image_bgr: np.ndarray) -> FrameResult:
        height, width = image_bgr.shape[:2]
        vehicles, persons = self.detect_objects(image_bgr)
        plate_reads = self.read_plates(image_bgr, vehicles)
        # Small faces are drivers' and passengers' (or people's the person detector missed): the finer pass
        # that finds them runs only when a vehicle or a person is in view. Detected persons are blurred whole.
        faces = self.detect_faces(image_bgr, small=bool(len(vehicles) or len(persons)))

        plate_boxes = [(x, y, x + w, y + h) for x, y, w, h in (read.box for read in plate_reads)]
        vehicle_boxes = [clip_box(box, width, height) for box in vehicles.boxes]
        owner = {i: _owning_vehicle(plate_boxes[i], vehicle_boxes) for i in range(len(plate_boxes))}

        observations: list[VehicleObs] = []
        gain = exposure_gain(image_bgr) if vehicle_boxes else 1.0
        for index, (x1, y1, x2, y2) in enumerate(vehicle_boxes):
            crop = image_bgr[y1:y2, x1:x2]
            inside = [
                (px1 - x1, py1 - y1, px2 - x1, py2 - y1)
                for p, (px1, py1, px2, py2) in enumerate(plate_boxes)
                if owner[p] == index
            ]
            colour, colour_confidence = vehicle_colour(crop, inside, gain)
            view = vehicle_view(crop, colour)[0] if inside else "unknown"
            observations.append(
                VehicleObs(
                    type=detectors.VEHICLE_CLASSES[int(vehicles.labels[index])],
                    colour=colour,
                    colour_confidence=colour_confidence,
                    box=_xywh(vehicle_boxes[index]),
                    view=view,
                    confidence=float(vehicles.scores[index]),
                )
            )

        reads = [
            replace(read, vehicle=observations[owner[i]] if owner[i] is not None else None)
            for i, read in enumerate(plate_reads)
        ]
        with_plate = {owner[i] for i in owner if reads[i].text}
        for index, vehicle in enumerate(observations):
            if index not in with_plate:
                reads.append(PlateRead("", "", 0.0, [], vehicle.box, {}, vehicle, vehicle.confidence))

        private = faces + [clip_box(box, width, height) for box in persons.boxes]
        return FrameResult(reads, observations, blur_regions(image_bgr, private), len(faces), len(persons))


def _holds_centre(outer: Box, inner: Box) -> bool:
    """Whether the centre of ``inner`` lies in ``outer`` (both ``x1, y1, x2, y2``)."""
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


def _owning_vehicle(plate: Box, vehicles: list[Box]) -> int | None:
    """The smallest vehicle box that contains the plate centre."""
    cx, cy = (plate[0] + plate[2]) / 2, (plate[1] + plate[3]) / 2
    inside = [
        (abs((x2 - x1) * (y2 - y1)), index)
        for index, (x1, y1, x2, y2) in enumerate(vehicles)
        if x1 <= cx <= x2 and y1 <= cy <= y2
    ]
    return min(inside)[1] if inside else None
