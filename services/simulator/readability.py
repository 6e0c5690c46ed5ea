"""How readable rendered plates are to the real pipeline: plate detector + plate reader, in process.

    python -m services.simulator.readability --seeds 50 [--difficulty 0.5] [--region us]

For each seed it renders a scene, decodes its JPEG, runs the plate detector and reads the detected plate
that overlaps the true plate box best. Prints the detection rate (score above --min-score), the exact
read rate and per-region figures. Plates are synthetic, so full texts may be printed with --verbose.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from services.inference.vision.detectors import Detections
from services.inference.vision.imaging import clip_box, decode_jpeg, expand_box
from services.inference.vision.pipeline import AlprPipeline
from services.inference.vision.runner import OnnxRunner
from services.inference.vision.settings import VisionSettings

from .render import Box, SceneOptions, render_scene


def _iou(a: Box, b: tuple[int, int, int, int]) -> float:
    ax1, ay1, ax2, ay2 = a.x, a.y, a.x + a.width, a.y + a.height
    bx1, by1, bx2, by2 = b
    iw = max(0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = a.area + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union else 0.0


def _best_match(truth: Box, found: Detections, width: int, height: int) -> tuple[int, float] | None:
    scored = [(_iou(truth, clip_box(box, width, height)), i) for i, box in enumerate(found.boxes)]
    scored = [(iou, i) for iou, i in scored if iou > 0.3]
    if not scored:
        return None
    _, index = max(scored)
    return index, float(found.scores[index])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--difficulty", type=float, default=0.0)
    parser.add_argument("--region", choices=("us", "eu"), default=None)
    parser.add_argument("--night", choices=("yes", "no"), default=None)
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--verbose", action="store_true", help="print every scene's truth and read")
    args = parser.parse_args()

    settings = VisionSettings()
    pipeline = AlprPipeline(OnnxRunner.from_settings(settings), settings)
    options = SceneOptions(
        difficulty=args.difficulty,
        region=args.region,
        night=None if args.night is None else args.night == "yes",
    )
    totals: Counter[str] = Counter()
    by_region: Counter[str] = Counter()
    scores: list[float] = []
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        scene = render_scene(seed, options)
        truth = scene.truth
        image = decode_jpeg(scene.jpeg, settings.max_pixels)
        height, width = image.shape[:2]
        region = truth.country if truth.country == "US" else "EU"
        totals["scenes"] += 1
        by_region[f"{region} scenes"] += 1
        if truth.plate_box is None:
            continue
        found = pipeline.detect_plates(image)
        match = _best_match(truth.plate_box, found, width, height)
        text, score = "", 0.0
        if match is not None:
            index, score = match
            scores.append(score)
            margin = expand_box(found.boxes[index], settings.plate_margin_x, settings.plate_margin_y)
            x1, y1, x2, y2 = clip_box(margin, width, height)
            text = pipeline.reader.read(image[y1:y2, x1:x2]).text
        detected = score > args.min_score
        read = detected and "".join(c for c in text.upper() if c.isalnum()) == truth.plate_text
        totals["detected"] += detected
        totals["read"] += read
        by_region[f"{region} detected"] += detected
        by_region[f"{region} read"] += read
        if args.verbose:
            print(
                f"seed {seed:4d} {region} {truth.plate_text:>9s} plate {truth.plate_box.width:3d}px "
                f"night={int(truth.night)} score={score:.2f} read={text!r} {'OK' if read else '--'}"
            )
    elapsed = time.perf_counter() - started
    n = totals["scenes"]
    print(f"scenes: {n}  difficulty: {args.difficulty}  ({elapsed / max(n, 1) * 1000:.0f} ms a scene)")
    print(f"detected (score > {args.min_score}): {totals['detected']}/{n} = {totals['detected'] / n:.0%}")
    print(f"read exactly: {totals['read']}/{n} = {totals['read'] / n:.0%}")
    if scores:
        print(f"detector score of matched plates: median {np.median(scores):.2f}, min {min(scores):.2f}")
    for region in ("US", "EU"):
        m = by_region[f"{region} scenes"]
        if m:
            print(f"  {region}: detected {by_region[f'{region} detected']}/{m}, read {by_region[f'{region} read']}/{m}")


if __name__ == "__main__":
    main()
