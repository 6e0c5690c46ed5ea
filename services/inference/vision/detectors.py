"""Pre- and post-processing of the detection models (pure functions over numpy arrays).

Boxes are ``x1, y1, x2, y2`` float32 rows in image pixels unless a name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from .imaging import Letterbox, fitted_size, letterbox

PLATE_INPUT, PLATE_OUTPUT = "images", "output0"
OBJECT_INPUT, OBJECT_OUTPUT = "tower_0/images:0", "tower_0/detections:0"
FACE_INPUT, FACE_SIZE = "input:0", 256
FACE_SCORES = ("Identity:0", "Identity_1:0")
FACE_BOXES = ("Identity_2:0", "Identity_3:0")

# COCO-80 indices of the classes Sightline uses.
PERSON_CLASS = 0
VEHICLE_CLASSES = {2: "car", 3: "motorcycle", 5: "bus", 7: "truck"}


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (N, 4) x1, y1, x2, y2
    scores: np.ndarray  # (N,)
    labels: np.ndarray  # (N,) int class index

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.scores)


def nms(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, iou_threshold: float) -> np.ndarray:
    """Indices kept by OpenCV's NMS, best first."""
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]]).astype(np.float32)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.astype(float).tolist(), score_threshold, iou_threshold)
    return np.asarray(keep, dtype=np.int64).reshape(-1)


# --- plate detector: YOLOv8n, letterbox to 640 on the long side, output 1x5xA (cx, cy, w, h, score) -------


def plate_input(image_bgr: np.ndarray, long_side: int, max_upscale: float) -> tuple[np.ndarray, Letterbox]:
    """The frame letterboxed to ``long_side`` pixels on its longer side and the next multiple of 32 on the
    other (640x384 for 16:9 at 640), so little of the detector's work goes on padding. A frame smaller than
    that (a plate crop a gateway sends) is enlarged at most ``max_upscale`` times and framed in the padding:
    the detector misses plates that fill its whole input."""
    height, width = image_bgr.shape[:2]
    canvas, geometry = letterbox(image_bgr, fitted_size(width, height, long_side), max_scale=max_upscale)
    return cv2.dnn.blobFromImage(canvas, scalefactor=1 / 255, swapRB=True), geometry  # RGB, NCHW, one pass


def decode_yolo(output: np.ndarray, geometry: Letterbox, score_threshold: float, iou_threshold: float) -> Detections:
    """Decode one image's ``(1, 4 + classes, anchors)`` YOLOv8 output into image-space detections."""
    predictions = output[0].T
    class_scores = predictions[:, 4:]
    labels = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(labels)), labels]
    mask = scores >= score_threshold
    if not mask.any():
        return Detections.empty()
    centre, size = predictions[mask, :2], predictions[mask, 2:4]
    boxes = geometry.to_image(np.column_stack([centre - size / 2, centre + size / 2]))
    keep = nms(boxes, scores[mask], score_threshold, iou_threshold)
    return Detections(boxes[keep], scores[mask][keep], labels[mask][keep])


# --- vehicles and persons: CenterNet MobileNetV3, any multiple of 32, output 1x100x6 -------------------


def object_input(image_bgr: np.ndarray, long_side: int) -> np.ndarray:
    """The frame resized to ``long_side`` pixels on its longer side and a multiple of 32 on the other
    (384x224 for 16:9 at 384; the aspect ratio is kept up to that rounding), RGB 0-255, NHWC."""
    height, width = image_bgr.shape[:2]
    resized = cv2.resize(image_bgr, fitted_size(width, height, long_side), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(resized[:, :, ::-1][None].astype(np.float32))


def decode_centernet(
    output: np.ndarray,
    image_shape: tuple[int, ...],
    input_shape: tuple[int, ...],
    classes: set[int],
    score_threshold: float,
    iou_threshold: float,
) -> Detections:
    """Keep ``classes`` from a ``(1, 100, 6)`` CenterNet output, merge the same object reported under
    several of those classes (class-agnostic NMS keeps the best-scoring label) and scale from the
    ``(1, H, W, 3)`` input to the image."""
    rows = output[0]
    mask = (rows[:, 4] >= score_threshold) & np.isin(rows[:, 5].astype(np.int64), list(classes))
    rows = rows[mask]
    if len(rows) == 0:
        return Detections.empty()
    height, width = image_shape[:2]
    input_h, input_w = input_shape[1:3]
    boxes = rows[:, :4] * np.array([width / input_w, height / input_h] * 2, np.float32)
    boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    keep = nms(boxes, rows[:, 4], score_threshold, iou_threshold)
    return Detections(boxes[keep], rows[keep, 4], rows[keep, 5].astype(np.int64))


# --- faces: MediaPipe BlazeFace (back/far-range model, trained at 256x256; any multiple of 32) ---------


@cache
def blazeface_anchors(height: int = FACE_SIZE, width: int = FACE_SIZE) -> np.ndarray:
    """Anchor centres ``(A, 2)`` normalised to [0, 1], as MediaPipe's SsdAnchorsCalculator builds them
    for BlazeFace: 4 layers, strides 16 then 32 x3, 2 anchors per layer and cell, layers of equal stride
    merged (2 per cell of the stride-16 grid, then 6 per cell of the stride-32 grid), row-major, offset 0.5,
    fixed anchor size 1. 896 anchors at 256x256, 2016 at 288x512."""
    anchors = []
    for stride, per_cell in ((16, 2), (32, 6)):
        rows, cols = height // stride, width // stride
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) / cols, (ys.ravel() + 0.5) / rows], axis=1)
        anchors.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(anchors).astype(np.float32)


def face_input(image_bgr: np.ndarray, size: tuple[int, int] = (FACE_SIZE, FACE_SIZE)) -> tuple[np.ndarray, Letterbox]:
    """The image letterboxed to ``size`` (width, height; multiples of 32) with black padding, RGB in
    [-1, 1], NHWC."""
    canvas, geometry = letterbox(image_bgr, size, fill=0)
    tensor = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).astype(np.float32)[None]
    tensor *= 1 / 127.5
    tensor -= 1.0
    return tensor, geometry


def decode_blazeface(
    raw_scores: np.ndarray,
    raw_boxes: np.ndarray,
    geometry: Letterbox,
    score_threshold: float,
    iou_threshold: float,
    input_hw: tuple[int, int] = (FACE_SIZE, FACE_SIZE),
) -> Detections:
    """Decode one image's ``(A, 1)`` logits and ``(A, 16)`` regressions (box then 6 keypoints, in input
    pixels relative to the anchor centre) into image-space face boxes; ``input_hw`` is the input's size."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.reshape(-1), -80.0, 80.0)))
    mask = scores >= score_threshold
    if not mask.any():
        return Detections.empty()
    height, width = input_hw
    scale = np.array([width, height, width, height], np.float32)
    anchors = blazeface_anchors(height, width)[mask]
    regression = raw_boxes.reshape(-1, 16)[mask, :4] / scale
    centre = anchors + regression[:, :2]
    half = regression[:, 2:4] / 2
    boxes = geometry.to_image(np.column_stack([centre - half, centre + half]) * scale)
    keep = nms(boxes, scores[mask], score_threshold, iou_threshold)
    return Detections(boxes[keep], scores[mask][keep], np.zeros(len(keep), np.int64))
