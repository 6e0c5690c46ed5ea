"""PlateReader's choice among its two readers' readings, on scripted model outputs (no text rows found, so
the whole crop is the one line read)."""

import numpy as np
import pytest

from services.inference.vision import ocr
from services.inference.vision.reader import RECOGNISER, TEXT_DETECTOR, PlateReader, PlateText

pytestmark = pytest.mark.unit


def probs(text: str, steps: int = 18, confidence: float = 0.95) -> np.ndarray:
    """A ``(T, 38)`` CTC output that spells ``text``, each character followed by a blank."""
    out = np.zeros((steps, ocr.OTHER + 1), np.float32)
    out[:, ocr.BLANK] = 1.0
    for index, char in enumerate(text):
        row = out[2 * index]
        row[:] = (1 - confidence) / ocr.OTHER
        row[ocr.PLATE_CHARS.index(char) + 1] = confidence
    return out


class ScriptedRunner:
    def __init__(self, plate_head: str, pp_ocr: str) -> None:
        self.plate_head, self.pp_ocr = plate_head, pp_ocr

    def infer(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if model == TEXT_DETECTOR:
            _, _, height, width = inputs[ocr.TEXT_DET_INPUT].shape
            return {ocr.TEXT_DET_OUTPUT: np.zeros((1, 1, height, width), np.float32)}
        assert model == RECOGNISER
        return {ocr.PLATE_OUTPUT: probs(self.plate_head)[None], ocr.TEXT_OUTPUT: probs(self.pp_ocr)[None]}


CROP = np.full((60, 120, 3), 200, np.uint8)


def read(plate_head: str, pp_ocr: str) -> PlateText:
    return PlateReader(ScriptedRunner(plate_head, pp_ocr), detector_side=128).read(CROP)


def test_the_plate_head_outvotes_pp_ocr_where_both_read() -> None:
    assert read("ABC1234", "ABC1Z34").text == "ABC1234"


def test_pp_ocr_reads_a_vanity_plate_the_plate_head_passes_over() -> None:
    vanity = read("", "DRIFTER")
    # Read, but less surely than a serial both readers agree on and that fits a layout: the confidence is the
    # fitted probability of being right (confidence.py), and one reader alone is right less often.
    assert vanity.text == "DRIFTER"
    assert 0 < vanity.confidence < read("ABC1234", "ABC1234").confidence


def test_a_state_name_is_never_taken_for_the_plate() -> None:
    assert read("", "FLORIDA").text == ""
    assert read("", "SUNSHINE").text == ""
