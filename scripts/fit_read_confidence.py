#!/usr/bin/env python
"""Fit the read-confidence model (services/inference/vision/confidence.py) on an evaluation of the tuning
parts, choosing its L2 strength by cross-validation over the parts' five folds, and write the coefficients
to ``services/inference/vision/read_confidence.json``.

    python scripts/eval_accuracy.py --split tune --tag fit        # reports/accuracy-tune-fit-*.json
    python scripts/fit_read_confidence.py reports/accuracy-tune-fit-*.json

Only reads with text count (a plate not found has no confidence). Records of measure-only sets or of a
final part are refused: the final parts judge the fitted model, they never shape it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.eval_accuracy import MEASURE_ONLY  # noqa: E402
from services.inference.vision.confidence import COEFFICIENTS, FEATURES  # noqa: E402

STRENGTHS = (0.01, 0.1, 1.0, 10.0, 100.0)
SURE = 0.9


def fit(x: np.ndarray, y: np.ndarray, strength: float) -> np.ndarray:
    """Logistic regression by Newton's method, L2 on the weights (not the bias); returns [bias, *weights]."""
    design = np.column_stack([np.ones(len(x)), x])
    beta = np.zeros(design.shape[1])
    penalty = np.diag([0.0] + [strength] * x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(design @ beta, -30, 30)))
        gradient = design.T @ (p - y) + penalty @ beta
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def predict(beta: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(beta[0] + x @ beta[1:], -30, 30)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", type=Path, nargs="+", help="eval_accuracy.py JSON reports of --split tune")
    parser.add_argument("--out", type=Path, default=COEFFICIENTS)
    args = parser.parse_args()

    records = [r for report in args.reports for r in json.loads(report.read_text())["records"] if r.get("evidence")]
    refused = [r for r in records if r["part"] != "tune" or r["set"] in MEASURE_ONLY]
    if refused:
        parser.error(f"{len(refused)} records are not of a tuning part (e.g. {refused[0]['set']} {refused[0]['part']})")
    x = np.array([r["evidence"] for r in records], np.float64)
    y = np.array([r["failure"] == "" for r in records], np.float64)
    folds = np.array([r["fold"] for r in records])
    sets = sorted({r["set"] for r in records})
    print(f"{len(records)} reads from the tuning parts of {', '.join(sets)}; {y.mean():.3f} right")

    best: tuple[float, float] | None = None
    for strength in STRENGTHS:
        held = np.zeros(len(y))
        for fold in np.unique(folds):
            inside = folds != fold
            held[~inside] = predict(fit(x[inside], y[inside], strength), x[~inside])
        loss = float(-np.mean(y * np.log(held + 1e-9) + (1 - y) * np.log(1 - held + 1e-9)))
        sure = held >= SURE
        right = float(y[sure].mean()) if sure.any() else float("nan")
        print(f"L2 {strength:>6}: cross-validated log-loss {loss:.4f}; at >= {SURE}: {int(sure.sum())} reads, "
              f"{right:.3f} right")  # fmt: skip
        if best is None or loss < best[0]:
            best = (loss, strength)
    assert best is not None
    beta = fit(x, y, best[1])
    fitted = {
        "features": list(FEATURES),
        "bias": round(float(beta[0]), 6),
        "weights": [round(float(w), 6) for w in beta[1:]],
        "fitted_on": f"tuning parts of {', '.join(sets)} ({len(records)} reads, "
        f"{', '.join(report.name for report in args.reports)}); "
        f"L2 {best[1]} chosen by 5-fold cross-validation (log-loss {best[0]:.4f})",
    }
    args.out.write_text(json.dumps(fitted, indent=1) + "\n")
    print(f"bias {fitted['bias']}, weights {dict(zip(FEATURES, fitted['weights'], strict=True))}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
