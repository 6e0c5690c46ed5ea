#!/usr/bin/env python
"""Measure the in-process vision pipeline on the shared plate data sets and print the figures.

    python scripts/eval_accuracy.py --datasets ../shared/datasets --split heldout --out reports/accuracy.json

openalpr-eu: whole photos, end to end (detection recall against the loose ground-truth box, then the read).
openalpr-us-crops: each image is the plate region; the reader runs on it directly, and the plate detector is
also tried on it. ``--split`` picks a deterministic half of the US crops by file-name hash: ``tune`` for
training and adjusting the reader (scripts/train_plate_head.py), ``heldout`` (default) for the figures
reported; ``validation`` is the fifth of ``tune`` that the plate head leaves out when trained with
``--validation``, for comparing training runs.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.inference.vision.pipeline import AlprPipeline  # noqa: E402
from services.inference.vision.plates import normalize_plate  # noqa: E402
from services.inference.vision.runner import OnnxRunner  # noqa: E402
from services.inference.vision.settings import VisionSettings  # noqa: E402


def split_of(name: str) -> str:
    return "tune" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "heldout"


def validation_image(name: str) -> bool:
    """A fifth of the tune crops (by a second hash of the file name), kept out of the plate head's training
    (scripts/train_plate_head.py) to choose its epochs and the reader's decoding rules on unseen plates."""
    return split_of(name) == "tune" and hashlib.sha256(f"validation:{name}".encode()).digest()[0] % 5 == 0


def in_split(name: str, split: str) -> bool:
    return split == "all" or (validation_image(name) if split == "validation" else split_of(name) == split)


def edits(truth: str, read: str) -> list[tuple[str, str]]:
    """Aligned differences (truth part, read part); its length weighted by span is the edit distance."""
    matcher = difflib.SequenceMatcher(a=truth, b=read, autojunk=False)
    return [(truth[i1:i2], read[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def distance(truth: str, read: str) -> int:
    return sum(max(len(a), len(b)) for a, b in edits(truth, read))


class Tally:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.confusion: Counter[str] = Counter()
        self.seconds: list[float] = []
        self.failures: list[dict[str, Any]] = []

    def score(self, name: str, truth: str, read: str, candidates: list[str]) -> None:
        self.counts["read"] += 1
        self.counts["exact"] += read == truth
        self.counts["top3"] += truth in candidates[:3]
        self.counts["within_one"] += distance(truth, read) <= 1
        if read != truth:
            for a, b in edits(truth, read):
                self.confusion[f"{a or '_'}->{b or '_'}"] += 1
            self.failures.append({"image": name, "truth": truth, "read": read, "candidates": candidates[:3]})

    def report(self, total: int) -> dict[str, Any]:
        def rate(key: str) -> float:
            return round(self.counts[key] / total, 4) if total else 0.0

        return {
            "images": total,
            **{key: rate(key) for key in ("detected", "exact", "top3", "within_one")},
            "ms_per_frame": round(1000 * float(np.mean(self.seconds)), 1) if self.seconds else 0.0,
            "confusion": dict(self.confusion.most_common(20)),
            "failures": self.failures,
        }


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = np.maximum(a[:2], b[:2])
    x2, y2 = np.minimum(a[:2] + a[2:], b[:2] + b[2:])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return float(inter / (a[2] * a[3] + b[2] * b[3] - inter))


def matches(detected: np.ndarray, truth: np.ndarray) -> bool:
    centre = detected[:2] + detected[2:] / 2
    inside = bool(np.all(centre >= truth[:2]) and np.all(centre <= truth[:2] + truth[2:]))
    return inside or iou(detected, truth) > 0.3


def evaluate_eu(pipeline: AlprPipeline, folder: Path, limit: int | None) -> dict[str, Any]:
    tally = Tally()
    labels = sorted(folder.glob("*.txt"))[:limit]
    for label in tqdm(labels, desc="openalpr-eu", unit="frame"):
        name, x, y, w, h, plate = label.read_text().split()[:6]
        truth, box = normalize_plate(plate), np.array([x, y, w, h], np.float32)
        image = cv2.imread(str(folder / name))
        start = time.perf_counter()
        result = pipeline.run(image)
        tally.seconds.append(time.perf_counter() - start)
        found = [p for p in result.plates if p.text or p.vehicle is None or p.box != p.vehicle.box]
        hits = [p for p in found if matches(np.array(p.box, np.float32), box)]
        if not hits:
            tally.failures.append({"image": name, "truth": truth, "read": None, "candidates": []})
            continue
        tally.counts["detected"] += 1
        best = max(hits, key=lambda p: (p.normalized == truth, iou(np.array(p.box, np.float32), box)))
        tally.score(name, truth, best.normalized, [normalize_plate(c) for c, _ in best.candidates])
    return tally.report(len(labels))


def evaluate_us(pipeline: AlprPipeline, folder: Path, split: str, limit: int | None) -> dict[str, Any]:
    tally = Tally()
    states = Counter()
    with (folder / "groundtruth.csv").open() as handle:
        rows = [row for row in csv.reader(handle) if in_split(row[0], split)][:limit]
    for name, state, plate in tqdm(rows, desc=f"openalpr-us-crops ({split})", unit="crop"):
        image = cv2.imread(str(folder / name))
        start = time.perf_counter()
        text = pipeline.reader.read(image)
        tally.seconds.append(time.perf_counter() - start)
        tally.counts["detected"] += len(pipeline.detect_plates(image)) > 0
        truth = normalize_plate(plate)
        tally.score(name, truth, normalize_plate(text.text), [normalize_plate(c) for c, _ in text.candidates])
        states["named"] += bool(text.region.state)
        states["correct"] += text.region.state.lower() == state.lower()
    report = tally.report(len(rows))
    report["region_named"] = round(states["named"] / len(rows), 4) if rows else 0.0
    report["region_correct"] = round(states["correct"] / len(rows), 4) if rows else 0.0
    report["ms_per_frame_note"] = "reader only (text detection in the crop + recognition)"
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument(
        "--split",
        choices=["tune", "heldout", "validation", "all"],
        default="heldout",
        help="US crops half (validation: the part of tune the plate head is not trained on)",
    )
    parser.add_argument("--limit", type=int, default=None, help="at most this many images per set")
    parser.add_argument("--sets", nargs="+", choices=["eu", "us"], default=["eu", "us"])
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args()

    settings = VisionSettings()
    runner = OnnxRunner.from_settings(settings)
    report: dict[str, Any] = {"split": args.split, "settings": settings.model_dump(mode="json")}
    # Each set is read as a deployment in its region would be (SIGHTLINE_VISION_PLATE_FAMILY).
    if "eu" in args.sets:
        europe = AlprPipeline(runner, settings.model_copy(update={"plate_family": "eu"}))
        report["openalpr-eu"] = evaluate_eu(europe, args.datasets / "openalpr-eu", args.limit)
    if "us" in args.sets:
        us = AlprPipeline(runner, settings.model_copy(update={"plate_family": "us"}))
        report["openalpr-us-crops"] = evaluate_us(us, args.datasets / "openalpr-us-crops", args.split, args.limit)
    for name in ("openalpr-eu", "openalpr-us-crops"):
        if name in report:
            figures = {k: v for k, v in report[name].items() if k not in ("failures", "confusion")}
            print(f"{name}: {json.dumps(figures)}")
            print(f"  top character errors (truth->read): {json.dumps(report[name]['confusion'])}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
