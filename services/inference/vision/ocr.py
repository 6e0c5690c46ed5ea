"""PP-OCR text detection and recognition, restricted to the characters plates use.

Pre-processing follows PaddleOCR (BGR input, ``(x / 255 - 0.5) / 0.5``); the DB box post-processing and
the perspective crop are RapidOCR's own.
"""

from __future__ import annotations

import itertools
import math
import string
from dataclasses import dataclass, field

import cv2
import numpy as np
from rapidocr.ch_ppocr_det.utils import DBPostProcess
from rapidocr.utils.process_img import get_rotate_crop_image

TEXT_DET_INPUT, TEXT_DET_OUTPUT = "x", "fetch_name_0"
REC_INPUT, REC_HEIGHT = "x", 48
# Lines are padded to the widest in their batch and to at least 144 pixels (T = 18 steps), not to PP-OCR's
# 320: a plate crop's batch costs about half. The plate head is trained on features padded this same way.
REC_MIN_RATIO = 144 / 48
# plate_reader's outputs, both [N, T, 38] over blank, A-Z0-9 and other: PP-OCR's own reading folded by
# PlateAlphabet (any text: state names, slogans) and the plate head's (the serial only, empty elsewhere).
TEXT_OUTPUT, PLATE_OUTPUT = "text_probs", "plate_probs"

PLATE_CHARS = string.ascii_uppercase + string.digits
BLANK, OTHER = 0, len(PLATE_CHARS) + 1  # reduced classes: blank, A-Z 0-9, anything else


@dataclass(frozen=True)
class Reading:
    """One recognised line: text over ``PLATE_CHARS``, mean character confidence, ranked alternatives."""

    text: str
    confidence: float
    char_confidences: tuple[float, ...] = ()
    candidates: tuple[tuple[str, float], ...] = field(default=())


class PlateAlphabet:
    """Folds the recogniser's classes (blank, dictionary, trailing space) into blank, ``A-Z0-9`` and other.

    Lower-case and full-width letters add their probability to the upper-case letter, so a plate is never
    lost to case; any other symbol (plate graphics, punctuation, CJK) is read as "other" and dropped.
    """

    def __init__(self, charset: list[str]) -> None:
        classes = ["<blank>", *charset, " "]
        groups = np.full(len(classes), OTHER, dtype=np.int64)
        groups[0] = BLANK
        for index, char in enumerate(classes[1:], start=1):
            folded = char.upper() if char.isascii() else char.upper().translate(_FULL_WIDTH)
            if len(folded) == 1 and folded in PLATE_CHARS:
                groups[index] = PLATE_CHARS.index(folded) + 1
        self.projection = np.zeros((len(classes), OTHER + 1), np.float32)
        self.projection[np.arange(len(classes)), groups] = 1.0

    def reduce(self, probs: np.ndarray) -> np.ndarray:
        """``(N, T, classes)`` softmax output to ``(N, T, 38)``."""
        return probs @ self.projection


_FULL_WIDTH = str.maketrans(
    {chr(0xFF21 + i): chr(0x41 + i) for i in range(26)} | {chr(0xFF10 + i): chr(0x30 + i) for i in range(10)}
)


def ctc_decode(reduced: np.ndarray, max_alternatives: int = 3, top_k: int = 5, drop_below: float = 0.5) -> Reading:
    """Greedy CTC decode of one ``(T, 38)`` line, plus candidates from the runner-up of the least
    certain characters and from leaving out a character below ``drop_below``, ranked by the geometric
    mean of the character probabilities; ``text`` is the best-ranked candidate."""
    best = reduced.argmax(axis=1)
    chars: list[int] = []
    confs: list[float] = []
    alts: list[tuple[int, float]] = []
    previous = BLANK
    for t, group in enumerate(best):
        if group != previous and group not in (BLANK, OTHER):
            chars.append(int(group))
            confs.append(float(reduced[t, group]))
            alts.append((0, 0.0))
        elif group == previous and group not in (BLANK, OTHER):
            confs[-1] = max(confs[-1], float(reduced[t, group]))
        if group not in (BLANK, OTHER):
            runner = reduced[t, 1:OTHER].copy()
            runner[group - 1] = 0.0
            alt = int(runner.argmax()) + 1
            if runner[alt - 1] > alts[-1][1]:
                alts[-1] = (alt, float(runner[alt - 1]))
        previous = group
    if not chars:
        return Reading("", 0.0)
    uncertain = sorted(range(len(chars)), key=lambda i: alts[i][1], reverse=True)[:max_alternatives]
    uncertain = [i for i in uncertain if alts[i][1] > 0.02]
    # A character much less certain than the rest is most often a plate graphic (an orange, a peach,
    # a county sticker) read as a letter: a candidate without it competes on the same footing.
    optional = [i for i in np.argsort(confs)[:2] if confs[i] < drop_below and len(chars) > 4]
    scored: dict[str, float] = {}
    for drop in itertools.chain([()], ((int(i),) for i in optional)):
        for size in range(len(uncertain) + 1):
            for positions in itertools.combinations(uncertain, size):
                letters, probs = list(chars), list(confs)
                for i in positions:
                    letters[i], probs[i] = alts[i]
                kept = [i for i in range(len(chars)) if i not in drop]
                candidate = "".join(PLATE_CHARS[letters[i] - 1] for i in kept)
                score = math.exp(float(np.mean(np.log(np.maximum([probs[i] for i in kept], 1e-6)))))
                scored[candidate] = max(scored.get(candidate, 0.0), score)
    ranked = sorted(scored.items(), key=lambda item: item[1], reverse=True)[:top_k]
    return Reading(ranked[0][0], float(np.mean(confs)), tuple(confs), tuple(ranked))


def text_det_input(image_bgr: np.ndarray, side: int) -> np.ndarray:
    """Scale so the longer side is about ``side`` pixels (both sides multiples of 32), normalise, NCHW."""
    height, width = image_bgr.shape[:2]
    scale = side / max(height, width)
    new_h = max(32, round(height * scale / 32) * 32)
    new_w = max(32, round(width * scale / 32) * 32)
    resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    tensor = (resized.astype(np.float32) / 255.0 - 0.5) / 0.5
    return np.ascontiguousarray(tensor.transpose(2, 0, 1)[None])


def text_det_postprocess(
    probability_map: np.ndarray, image_shape: tuple[int, ...], box_threshold: float = 0.5
) -> tuple[np.ndarray, list[float]]:
    """DB post-processing of a ``(1, 1, H, W)`` map into ``(M, 4, 2)`` quadrilaterals in image pixels."""
    post = DBPostProcess(thresh=0.3, box_thresh=box_threshold, unclip_ratio=1.6, use_dilation=True)
    boxes, scores = post(probability_map, image_shape[:2])
    return np.asarray(boxes, np.float32).reshape(-1, 4, 2), list(scores)


def crop_quad(image_bgr: np.ndarray, quad: np.ndarray) -> np.ndarray:
    return get_rotate_crop_image(image_bgr, quad.astype(np.float32))


def rec_input(lines: list[np.ndarray]) -> np.ndarray:
    """Resize each line to height 48 keeping its aspect ratio, right-pad to a common width, NCHW."""
    ratio = max([REC_MIN_RATIO] + [line.shape[1] / max(1, line.shape[0]) for line in lines])
    width = math.ceil(REC_HEIGHT * ratio)
    batch = np.zeros((len(lines), 3, REC_HEIGHT, width), np.float32)
    for index, line in enumerate(lines):
        resized_w = min(width, math.ceil(REC_HEIGHT * line.shape[1] / max(1, line.shape[0])))
        resized = cv2.resize(line, (max(1, resized_w), REC_HEIGHT), interpolation=cv2.INTER_LINEAR)
        batch[index, :, :, : resized.shape[1]] = ((resized.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    return batch
