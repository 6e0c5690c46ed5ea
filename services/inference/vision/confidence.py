"""A read's confidence as the probability that it is right: a logistic model over the evidence the reader
has, fitted by ``scripts/fit_read_confidence.py`` on the tuning parts of the data sets that allow it (never
their final parts, never a measure-only set) and stored beside this module in ``read_confidence.json``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

COEFFICIENTS = Path(__file__).with_name("read_confidence.json")
# The evidence, in this order: the reader's own confidence (as a logit), the chosen text's share of all
# candidates' scores (the margin over the rest), whether the plate head and PP-OCR's reading each offered it
# as a line's best reading, whether it fits one of the family's serial layouts, how plate-like it is
# (plate_text.plausibility: length, letters and digits mixed), the crop's height (plate size, in 100 px), the
# least certain character of the surest line that read it (as a logit: one doubtful character is the commonest
# error, a letter for a digit or a dropped character) and how many lines' best readings were it.
FEATURES = (
    "reading_logit", "share", "head_read_it", "pp_ocr_read_it", "fits_layout", "plausibility", "height",
    "weakest_logit", "agreeing_lines",
)  # fmt: skip


@dataclass(frozen=True)
class Evidence:
    reading: float
    share: float
    head_read_it: bool
    pp_ocr_read_it: bool
    fits_layout: bool
    plausibility: float
    height_px: int
    weakest: float
    agreeing_lines: int

    def vector(self) -> tuple[float, ...]:
        return (
            _logit(self.reading),
            self.share,
            float(self.head_read_it),
            float(self.pp_ocr_read_it),
            float(self.fits_layout),
            self.plausibility,
            min(self.height_px, 300) / 100,
            _logit(self.weakest),
            float(min(self.agreeing_lines, 4)),
        )


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


@cache
def _model() -> tuple[float, tuple[float, ...]]:
    fitted = json.loads(COEFFICIENTS.read_text())
    if tuple(fitted["features"]) != FEATURES:
        raise ValueError(f"{COEFFICIENTS} was fitted on features {fitted['features']}, not {FEATURES}")
    return float(fitted["bias"]), tuple(float(w) for w in fitted["weights"])


def calibrated(evidence: Evidence) -> float:
    """The probability that the read is right, as the fitted model puts it."""
    bias, weights = _model()
    z = bias + sum(w * x for w, x in zip(weights, evidence.vector(), strict=True))
    return 1 / (1 + math.exp(-max(-30.0, min(30.0, z))))
