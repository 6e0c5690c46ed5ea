#!/usr/bin/env python
"""Measure the plate path of the vision pipeline on every set in ``../shared/datasets``, end to end from the
image a camera would send, and write one report per run (JSON and an HTML page) under ``reports/``.

    nice -n 10 python scripts/eval_accuracy.py --split final            # the figures to report
    python scripts/eval_accuracy.py --split tune --sets openalpr-br-crops --limit 100   # cheap iteration

Every image goes through the plate path of ``AlprPipeline.run`` (the vehicle detector, then ``read_plates``: the
plate detector on the whole image and on each vehicle without a plate found, then the reader on each plate
found): a crop in which no plate is found is a miss, as it would be in service.

Parts (``part_of``), fixed by a SHA-256 of the set's name and the sample's group, never by a choice:
- ``final``: about 30 % of each set, frozen: no weight, rule or threshold is ever chosen on it; report it.
  Sets whose licence allows measuring only (``reported-us-crops``) are final whole.
- ``tune``: the rest, in five cross-validation folds (``fold``) to choose rules and fit the confidence on.
- ``trained``: the half of ``openalpr-us-crops`` the plate head was trained on (``split_of``), never scored.
Samples of one group share a part: crops of one plate (or, in ``openalpr-br-crops``, of one photo).

Per set: exact, top-3, within one character, detection recall (``plate-scenes`` and ``openalpr-eu``: by plate
width band, IoU >= 0.3 with the labelled box), failure classes, and calibration: the share of wrong reads in
each confidence band, drawn as a reliability plot on the page.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import hashlib
import html
import json
import math
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.plates import normalize_plate  # noqa: E402
from services.inference.vision.pipeline import AlprPipeline, PlateRead  # noqa: E402
from services.inference.vision.runner import OnnxRunner  # noqa: E402
from services.inference.vision.settings import VisionSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Each set is read as a deployment in its region would read it (SIGHTLINE_VISION_PLATE_FAMILY).
FAMILIES = {
    "openalpr-eu": "eu",
    "openalpr-us-crops": "us",
    "reported-us-crops": "us",
    "openalpr-br-crops": "br",
    "argentina-crops": "ar",
    "plate-scenes": "auto",
}
MEASURE_ONLY = frozenset({"reported-us-crops"})  # its source states no licence: never trained or tuned on
FINAL_SHARE, FOLDS = 0.3, 5
WIDTH_BANDS = ((0, 25, "<25 px"), (25, 50, "25-50 px"), (50, 10**9, ">=50 px"))
CONFIDENCE_BANDS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0001)
FAILURES = ("no plate", "no text", "wrong text", "one off", "other")


def split_of(name: str) -> str:
    """The half of ``openalpr-us-crops`` the plate head trains on (``tune``) or never sees (``heldout``)."""
    return "tune" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "heldout"


def validation_image(name: str) -> bool:
    """A fifth of the head's training half (by a second hash of the file name), kept out of its training
    (scripts/train_plate_head.py --validation) to compare training runs."""
    return split_of(name) == "tune" and hashlib.sha256(f"validation:{name}".encode()).digest()[0] % 5 == 0


def part_of(dataset: str, group: str, name: str) -> tuple[str, int]:
    """(part, fold) of a sample: see the module docstring."""
    if dataset == "openalpr-us-crops" and split_of(name) == "tune":
        return "trained", -1
    digest = hashlib.sha256(f"{dataset}:{group}".encode()).digest()
    if dataset in MEASURE_ONLY or int.from_bytes(digest[:4], "big") / 2**32 < FINAL_SHARE:
        return "final", -1
    return "tune", digest[4] % FOLDS


def edits(truth: str, read: str) -> list[tuple[str, str]]:
    """Aligned differences (truth part, read part); its length weighted by span is the edit distance."""
    matcher = difflib.SequenceMatcher(a=truth, b=read, autojunk=False)
    return [(truth[i1:i2], read[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def distance(truth: str, read: str) -> int:
    return sum(max(len(a), len(b)) for a, b in edits(truth, read))


def failure_class(truth: str, read: str | None) -> str:
    """``no plate`` (none found), ``no text`` (found, nothing read), ``one off`` (one character inserted,
    dropped or changed), ``wrong text`` (under half of it is the plate: a frame, a slogan, a fragment), or
    ``other`` (the plate with two or more characters wrong); empty when exact."""
    if read is None:
        return "no plate"
    if not read:
        return "no text"
    if read == truth:
        return ""
    if distance(truth, read) == 1:
        return "one off"
    same = difflib.SequenceMatcher(a=truth, b=read, autojunk=False).ratio()
    return "wrong text" if same < 0.5 else "other"


@dataclass(frozen=True)
class Sample:
    dataset: str
    name: str
    path: Path
    truth: str  # empty where the set labels boxes only
    boxes: tuple[tuple[float, float, float, float], ...]  # x, y, w, h; empty for crops (the plate fills it)
    part: str
    fold: int


def load(dataset: str, folder: Path) -> list[Sample]:
    def sample(name: str, truth: str, boxes: tuple = (), group: str | None = None) -> Sample:
        part, fold = part_of(dataset, group or truth or name, name)
        return Sample(dataset, name, folder / name, truth, boxes, part, fold)

    if dataset == "openalpr-eu":
        samples = []
        for label in sorted(folder.glob("*.txt")):
            name, x, y, w, h, plate = label.read_text().split()[:6]
            box = (float(x), float(y), float(w), float(h))
            samples.append(sample(name, normalize_plate(plate), (box,), group=name))
        return samples
    if dataset == "plate-scenes":
        scenes = json.loads((folder / "boxes.json").read_text())
        return [sample(s["file"], "", tuple(tuple(map(float, b)) for b in s["plates"]), s["file"]) for s in scenes]
    with (folder / "groundtruth.csv").open() as handle:
        rows = list(csv.reader(handle))
    if dataset == "openalpr-us-crops":  # no header: file, state, plate
        return [sample(name, normalize_plate(plate)) for name, _, plate in rows]
    header, rows = rows[0], rows[1:]
    plate_at, group_at = header.index("plate"), header.index("source_photo") if "source_photo" in header else None
    return [
        sample(row[0], normalize_plate(row[plate_at]), group=row[group_at] if group_at is not None else None)
        for row in rows
    ]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def width_band(width: float) -> str:
    return next(name for low, high, name in WIDTH_BANDS if low <= width < high)


def evaluate(pipeline: AlprPipeline, sample: Sample) -> dict[str, Any]:
    """One image: the plates found and, where the set labels the text, the read scored as the system gives
    it (the plate matching the labelled box best, or in a crop the surest detection; never the read nearest
    the truth)."""
    image = cv2.imread(str(sample.path))
    start = time.perf_counter()
    vehicles, _ = pipeline.detect_objects(image)
    reads = pipeline.read_plates(image, vehicles)
    record: dict[str, Any] = {
        "set": sample.dataset, "image": sample.name, "part": sample.part, "fold": sample.fold,
        "ms": round(1000 * (time.perf_counter() - start), 1), "truth": sample.truth,
    }  # fmt: skip
    chosen: PlateRead | None = None
    if sample.boxes:
        record["boxes"] = []
        for box in sample.boxes:
            overlaps = [(iou(read.box, box), read) for read in reads]
            best = max(overlaps, key=lambda item: item[0], default=(0.0, None))
            record["boxes"].append({"width": box[2], "found": best[0] >= 0.3})
            if best[0] >= 0.3 and chosen is None:
                chosen = best[1]
    else:
        chosen = max(reads, key=lambda read: read.detection_confidence, default=None)
    if not sample.truth:
        return record
    read = None if chosen is None else chosen.normalized
    candidates = [] if chosen is None else [normalize_plate(text) for text, _ in chosen.candidates]
    record.update(
        read=read,
        confidence=0.0 if chosen is None else round(chosen.confidence, 4),
        candidates=candidates[:3],
        plate_width=None if chosen is None else chosen.box[2],
        failure=failure_class(sample.truth, read),
        top3=sample.truth in candidates[:3],
        within_one=read is not None and distance(sample.truth, read) <= 1,
        evidence=None if chosen is None or chosen.evidence is None else chosen.evidence.vector(),
    )
    return record


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"images": len(records), "ms_per_image": _mean([r["ms"] for r in records])}
    boxes = [box for r in records for box in r.get("boxes", [])]
    if boxes:
        summary["detection_recall"] = _share(sum(b["found"] for b in boxes), len(boxes))
        summary["detection_by_width"] = {
            name: {"plates": len(band), "recall": _share(sum(b["found"] for b in band), len(band))}
            for _, _, name in WIDTH_BANDS
            for band in [[b for b in boxes if width_band(b["width"]) == name]]
        }
    scored = [r for r in records if r["truth"]]
    if not scored:
        return summary
    total = len(scored)
    failures = Counter(r["failure"] for r in scored)
    summary.update(
        reads=total,
        exact=_share(failures[""], total),
        top3=_share(sum(r["top3"] for r in scored), total),
        within_one=_share(sum(r["within_one"] for r in scored), total),
        plate_found=_share(total - failures["no plate"], total),
        failures={name: _share(failures[name], total) for name in FAILURES},
        calibration=calibration(scored),
    )
    confusion: Counter[str] = Counter()
    for r in scored:
        if r["failure"] in ("one off", "other"):
            confusion.update(f"{a or '_'}->{b or '_'}" for a, b in edits(r["truth"], r["read"]))
    summary["confusion"] = dict(confusion.most_common(15))
    return summary


def calibration(scored: list[dict[str, Any]]) -> dict[str, Any]:
    """Reads (with text) by confidence band: how many, and the share of them that is wrong."""
    bands = []
    reads = [r for r in scored if r["read"]]
    for low, high in zip(CONFIDENCE_BANDS, CONFIDENCE_BANDS[1:], strict=False):
        band = [r for r in reads if low <= r["confidence"] < high]
        wrong = sum(r["failure"] != "" for r in band)
        bands.append({"band": f"{low:.2f}-{min(high, 1):.2f}", "reads": len(band), "wrong": _share(wrong, len(band))})
    sure = [r for r in reads if r["confidence"] >= 0.9]
    return {
        "bands": bands,
        "reads_at_0.9": len(sure),
        "right_at_0.9": _share(sum(r["failure"] == "" for r in sure), len(sure)),
        "share_of_reads_at_0.9": _share(len(sure), len(reads)),
    }


def _share(count: float, total: int) -> float | None:
    return round(count / total, 4) if total else None


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 1) if values else None


def page(report: dict[str, Any]) -> str:
    """The run as one HTML page: a table per set and its reliability plot (inline SVG)."""
    parts = [
        "<!doctype html><meta charset=utf-8><title>Sightline plate accuracy</title>",
        "<style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style>",
        f"<h1>Plate accuracy: split {html.escape(report['split'])}</h1>",
        f"<p>{html.escape(report['started'])}, commit {html.escape(report['commit'])}, "
        f"plate detector {'INT8' if report['settings']['int8'] else 'FP32'}</p>",
    ]
    for name, summary in report["sets"].items():
        parts.append(f"<h2>{html.escape(name)} (family {FAMILIES[name]}, {summary['images']} images)</h2><table>")
        for key in ("exact", "top3", "within_one", "plate_found", "detection_recall", "ms_per_image"):
            if summary.get(key) is not None:
                parts.append(f"<tr><th>{key}</th><td>{summary[key]}</td></tr>")
        for key, value in summary.get("failures", {}).items():
            parts.append(f"<tr><th>failure: {key}</th><td>{value}</td></tr>")
        for key, value in summary.get("detection_by_width", {}).items():
            parts.append(f"<tr><th>found, {html.escape(key)}</th><td>{value['recall']} of {value['plates']}</td></tr>")
        parts.append("</table>")
        if "calibration" in summary:
            parts.append(_reliability_svg(summary["calibration"]))
    return "\n".join(parts)


def _reliability_svg(cal: dict[str, Any]) -> str:
    """Bars: share right per confidence band (the diagonal is perfect calibration); counts under the bars."""
    width, height, pad = 420, 220, 30
    out = [f'<svg width="{width}" height="{height + 2 * pad}" style="background:#fafafa">']
    out.append(
        f'<line x1="{pad}" y1="{height + pad}" x2="{width - pad}" y2="{pad}" stroke="#999" stroke-dasharray="4"/>'
    )
    span = width - 2 * pad
    for band, low, high in zip(cal["bands"], CONFIDENCE_BANDS, CONFIDENCE_BANDS[1:], strict=False):
        if not band["reads"]:
            continue
        right = 1 - band["wrong"]
        x, w = pad + low * span, (min(high, 1) - low) * span - 2
        out.append(
            f'<rect x="{x:.0f}" y="{pad + (1 - right) * height:.0f}" width="{w:.0f}" height="{right * height:.0f}" '
            f'fill="#4a7"><title>{band["band"]}: {band["reads"]} reads, {band["wrong"]} wrong</title></rect>'
            f'<text x="{x:.0f}" y="{height + pad + 14}" font-size="10">{band["reads"]}</text>'
        )
    out.append(
        f'<text x="{pad}" y="{pad - 8}" font-size="11">share right by confidence band; at >= 0.9: '
        f"{cal['right_at_0.9']} of {cal['reads_at_0.9']} reads</text></svg>"
    )
    return "".join(out)


def _commit() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def selected(samples: list[Sample], split: str, limit: int | None, folds: list[int] | None = None) -> list[Sample]:
    """The split's samples (of ``folds`` alone where given: a model trained without them is measured on
    them); with ``limit``, at most that many spread evenly over the set (its files are in the order of their
    source: states or cameras together)."""
    chosen = [s for s in samples if s.part == split or (split == "all" and s.part != "trained")]
    chosen = [s for s in chosen if folds is None or s.fold in folds]
    return chosen[:: math.ceil(len(chosen) / limit)] if limit and len(chosen) > limit else chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--split", choices=["tune", "final", "all"], default="final")
    parser.add_argument("--sets", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--limit", type=int, default=None, help="at most this many images per set, spread evenly")
    parser.add_argument("--folds", type=int, nargs="+", default=None, help="only these folds of the tune parts")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per model")
    parser.add_argument("--out", type=Path, default=ROOT / "reports", help="folder for the JSON and HTML report")
    parser.add_argument("--tag", default="", help="added to the report's file names")
    args = parser.parse_args()

    settings = VisionSettings()
    runner = OnnxRunner.from_settings(settings, intra_op_threads=args.threads)
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "split": args.split, "started": started.isoformat(timespec="seconds"), "commit": _commit(),
        "settings": settings.model_dump(mode="json"), "sets": {}, "records": [],
    }  # fmt: skip
    for dataset in args.sets:
        if args.split == "tune" and dataset in MEASURE_ONLY:
            print(f"{dataset}: measure only, it has no tuning part")
            continue
        pipeline = AlprPipeline(runner, settings.model_copy(update={"plate_family": FAMILIES[dataset]}))
        if not (args.datasets / dataset).is_dir():
            parser.error(f"no set {dataset!r} in {args.datasets}")
        samples = selected(load(dataset, args.datasets / dataset), args.split, args.limit, args.folds)
        records = [evaluate(pipeline, s) for s in tqdm(samples, desc=dataset, unit="image", file=sys.stderr)]
        summary = summarise(records)
        report["sets"][dataset] = summary
        report["records"] += records
        figures = {k: v for k, v in summary.items() if k not in ("confusion", "calibration")}
        print(f"{dataset}: {json.dumps(figures)}")
        if "calibration" in summary:
            cal = summary["calibration"]
            bands = " ".join(f"{b['band']}:{b['reads']}/{b['wrong']}" for b in cal["bands"])
            print(f"  calibration (band:reads/wrong) {bands}; right at >=0.9: {cal['right_at_0.9']} "
                  f"of {cal['reads_at_0.9']}")  # fmt: skip
            print(f"  character errors (truth->read): {json.dumps(summary['confusion'])}")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"accuracy-{args.split}{'-' + args.tag if args.tag else ''}-{started:%Y%m%dT%H%M%S}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / f"{stem}.html").write_text(page(report))
    print(f"report: {args.out / stem}.json and .html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
