import numpy as np
import pytest

from services.inference.vision.ocr import BLANK, OTHER, PLATE_CHARS, PlateAlphabet, ctc_decode

pytestmark = pytest.mark.unit


def _frames(sequence: list[tuple[int, float, int, float]]) -> np.ndarray:
    """(best class, p, runner-up class, p) per frame -> (T, 38)."""
    out = np.zeros((len(sequence), OTHER + 1), np.float32)
    for t, (best, p, alt, q) in enumerate(sequence):
        out[t, best], out[t, alt] = p, q
    return out


def g(char: str) -> int:
    return PLATE_CHARS.index(char) + 1


def test_ctc_decode_collapses_repeats_drops_blank_and_other_and_ranks_alternatives() -> None:
    reduced = _frames(
        [
            (g("A"), 0.9, BLANK, 0.1), (g("A"), 0.95, BLANK, 0.05), (BLANK, 0.9, OTHER, 0.1),
            (g("A"), 0.9, BLANK, 0.1), (OTHER, 0.8, BLANK, 0.2), (g("0"), 0.55, g("O"), 0.45),
            (g("7"), 0.99, BLANK, 0.01),
        ]
    )  # fmt: skip
    reading = ctc_decode(reduced)
    assert reading.text == "AA07"
    assert reading.candidates[0][0] == "AA07"
    assert reading.candidates[1][0] == "AAO7"


def test_alphabet_folds_case_and_sends_symbols_to_other() -> None:
    alphabet = PlateAlphabet(["a", "A", "0", "中", "-"])
    probs = np.zeros((1, 1, 7), np.float32)  # blank, a, A, 0, 中, -, space
    probs[0, 0, [1, 2, 4]] = [0.3, 0.3, 0.4]
    reduced = alphabet.reduce(probs)[0, 0]
    assert reduced[g("A")] == pytest.approx(0.6)
    assert reduced[OTHER] == pytest.approx(0.4)
