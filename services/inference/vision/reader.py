"""Reads the number on a plate crop: PP-OCR text lines inside the crop, the main line chosen, the rest
used to name the region."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import ocr
from .confidence import Evidence, calibrated
from .plate_text import (
    Region,
    choose_candidate,
    family_for,
    is_state_text,
    matches_format,
    plausibility,
    region_from_text,
)
from .runner import ModelRunner

TEXT_DETECTOR, RECOGNISER = "plate_text_detector", "plate_reader"
FORMAT_BONUS = 1.25  # a candidate that fits a known serial layout outranks a slightly likelier one
# PP-OCR's own reading of each line is a second opinion beside the plate head's: it still reads the vanity
# plates and all-letter serials that the head (trained mostly on mixed serials) passes over as state names.
SECOND_READER = 0.3
SECOND_READER_CANDIDATES = 3


@dataclass(frozen=True)
class PlateText:
    text: str
    confidence: float
    candidates: tuple[tuple[str, float], ...]
    region: Region
    evidence: Evidence | None = None


@dataclass(frozen=True)
class TextLine:
    image: np.ndarray
    whole: bool


def merge_row_boxes(quads: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Axis-aligned boxes of the text quads, joining pieces of one row (a plate split by an emblem or a
    gap) when they overlap vertically by most of the smaller height and are of similar height."""
    boxes = sorted(
        (float(q[:, 0].min()), float(q[:, 1].min()), float(q[:, 0].max()), float(q[:, 1].max())) for q in quads
    )
    merged: list[tuple[float, float, float, float]] = []
    for box in boxes:
        for index, other in enumerate(merged):
            overlap = min(box[3], other[3]) - max(box[1], other[1])
            h1, h2 = box[3] - box[1], other[3] - other[1]
            if overlap > 0.6 * min(h1, h2) and min(h1, h2) > 0.7 * max(h1, h2):
                merged[index] = (
                    min(box[0], other[0]),
                    min(box[1], other[1]),
                    max(box[2], other[2]),
                    max(box[3], other[3]),
                )
                break
        else:
            merged.append(box)
    return merged


class PlateReader:
    def __init__(self, runner: ModelRunner, detector_side: int, family: str = "us") -> None:
        self._runner = runner
        self._side = detector_side
        self._family = family

    def lines(self, crop: np.ndarray) -> list[TextLine]:
        """The whole crop, then each text row PP-OCR's detector finds in it."""
        probability = self._runner.infer(TEXT_DETECTOR, {ocr.TEXT_DET_INPUT: ocr.text_det_input(crop, self._side)})
        quads, _ = ocr.text_det_postprocess(probability[ocr.TEXT_DET_OUTPUT], crop.shape)
        height, width = crop.shape[:2]
        lines = [TextLine(crop, whole=True)]
        for x1, y1, x2, y2 in merge_row_boxes(quads):
            pad = 0.08 * (y2 - y1)
            x1, y1 = int(max(0, x1 - pad)), int(max(0, y1 - pad))
            x2, y2 = int(min(width, x2 + pad + 1)), int(min(height, y2 + pad + 1))
            if x2 - x1 >= 4 and y2 - y1 >= 4:
                lines.append(TextLine(crop[y1:y2, x1:x2], whole=False))
        return lines

    def read(self, crop: np.ndarray) -> PlateText:
        """The serial from the readings of the crop and its rows, the plate head's counting in full and
        PP-OCR's own (other than state names and slogans) at ``SECOND_READER`` (a reading found on several
        lines adds up); the region from PP-OCR's reading of the rows on which the head found no serial."""
        lines = self.lines(crop)
        outputs = self._runner.infer(RECOGNISER, {ocr.REC_INPUT: ocr.rec_input([line.image for line in lines])})
        serials = [ocr.ctc_decode(row) for row in outputs[ocr.PLATE_OUTPUT]]
        texts = [ocr.ctc_decode(row, top_k=SECOND_READER_CANDIDATES) for row in outputs[ocr.TEXT_OUTPUT]]
        others = [
            text.text
            for line, text, serial in zip(lines, texts, serials, strict=True)
            if not line.whole and not serial.text
        ]
        region = region_from_text(others)
        family = family_for(self._family, region)  # a state's own series, where the plate names the state
        opinions = [(reading, 1.0) for reading in serials]
        opinions += [(reading, SECOND_READER) for reading in texts if reading.text and not is_state_text(reading.text)]
        candidates: dict[str, float] = {}
        for reading, weight in opinions:
            for text, score in reading.candidates:
                score *= weight * plausibility(text) * (FORMAT_BONUS if matches_format(text, family) else 1.0)
                candidates[text] = candidates.get(text, 0.0) + score
        ranked = sorted(candidates.items(), key=lambda item: item[1], reverse=True)
        if not ranked:
            return PlateText("", 0.0, (), region)
        total = sum(score for _, score in ranked)
        chosen, score, top = choose_candidate(ranked, family)
        # The confidence: the surest reading (of either reader) that offered the chosen text, weighed with the
        # rest of the evidence by the fitted model (confidence.py) into the probability that the read is right.
        offered = [reading for reading, _ in opinions if chosen in dict(reading.candidates)]
        agreeing = [reading for reading in offered if reading.text == chosen]
        evidence = Evidence(
            reading=max(reading.confidence for reading in offered),
            share=score / total,
            head_read_it=any(serial.text == chosen for serial in serials),
            pp_ocr_read_it=any(text.text == chosen for text in texts),
            fits_layout=matches_format(top, family),
            plausibility=plausibility(top),
            height_px=crop.shape[0],
            weakest=max((min(reading.char_confidences) for reading in agreeing), default=0.0),
            agreeing_lines=len(agreeing),
        )
        ranked = [(top, score), *[(t, c) for t, c in ranked if t not in (chosen, top)]]
        return PlateText(top, calibrated(evidence), tuple((t, c / total) for t, c in ranked[:5]), region, evidence)
