"""Accuracy of the vehicle colour naming (services/inference/vision/attributes.py) on synthetic scenes.

Renders N scenes with services/simulator/render.py, whose vehicle colour is known, and names the colour two
ways: from the ground-truth vehicle box (the colour naming alone) and, with --pipeline, through the whole
in-process pipeline (the detected vehicle that overlaps the true one most; "-" when none was detected).
Prints accuracy, by day and night, and the confusion matrix (rows: truth, columns: named).

The synthetic vehicle bodies are drawn flat-shaded shapes in ten paint colours, so these figures measure the
naming rules under the renderer's light, blur, noise and JPEG; they say little about real paint, reflections
and sky glare.

    python scripts/eval_colour.py --scenes 300 --difficulty 0.5 --pipeline
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import cv2
import numpy as np

from services.inference.vision.attributes import exposure_gain, vehicle_colour
from services.inference.vision.pipeline import AlprPipeline
from services.inference.vision.runner import OnnxRunner
from services.inference.vision.settings import VisionSettings
from services.simulator.render import VEHICLE_COLOURS, Box, SceneOptions, render_scene
from services.tracker.domain.passes import iou


def colour_from_truth(image: np.ndarray, vehicle: Box, plate: Box | None) -> str:
    x, y = vehicle.x, vehicle.y
    crop = image[max(0, y) : y + vehicle.height, max(0, x) : x + vehicle.width]
    exclude = [(plate.x - x, plate.y - y, plate.x + plate.width - x, plate.y + plate.height - y)] if plate else []
    return vehicle_colour(crop, exclude, exposure_gain(image))[0]


def colour_from_pipeline(pipeline: AlprPipeline, image: np.ndarray, truth: Box) -> str:
    vehicle = (truth.x, truth.y, truth.width, truth.height)
    found = pipeline.run(image).vehicles
    best = max(found, key=lambda v: iou(v.box, vehicle), default=None)
    return best.colour if best is not None and iou(best.box, vehicle) > 0.3 else "-"


def report(name: str, rows: list[tuple[str, str, bool]]) -> dict:
    correct = sum(t == p for t, p, _ in rows)
    by_light = {light: [(t, p) for t, p, night in rows if night == (light == "night")] for light in ("day", "night")}
    confusion = Counter((t, p) for t, p, _ in rows)
    named = sorted({p for _, p, _ in rows} | set(VEHICLE_COLOURS))
    print(f"\n{name}: accuracy {correct / len(rows):.3f} ({correct}/{len(rows)})", end="")
    for light, pairs in by_light.items():
        if pairs:
            print(f", {light} {sum(t == p for t, p in pairs) / len(pairs):.3f} (n={len(pairs)})", end="")
    print("\n" + "truth \\ named".ljust(14) + "".join(n[:6].rjust(7) for n in named))
    for truth in VEHICLE_COLOURS:
        print(truth.ljust(14) + "".join(str(confusion[(truth, n)] or ".").rjust(7) for n in named))
    return {"accuracy": correct / len(rows), "n": len(rows),
            **{light: sum(t == p for t, p in pairs) / len(pairs) for light, pairs in by_light.items() if pairs}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=10_000, help="first scene's seed")
    parser.add_argument("--difficulty", type=float, default=0.5)
    parser.add_argument("--pipeline", action="store_true", help="also name colours of detected vehicles")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args()

    pipeline = None
    if args.pipeline:
        settings = VisionSettings()
        pipeline = AlprPipeline(OnnxRunner.from_settings(settings), settings)
    truth_rows: list[tuple[str, str, bool]] = []
    pipeline_rows: list[tuple[str, str, bool]] = []
    for seed in range(args.seed, args.seed + args.scenes):
        scene = render_scene(seed, SceneOptions(difficulty=args.difficulty))
        truth = scene.truth
        if truth.vehicle_box is None:
            continue
        image = cv2.imdecode(np.frombuffer(scene.jpeg, np.uint8), cv2.IMREAD_COLOR)  # as cameras send it
        truth_rows.append((truth.vehicle_colour, colour_from_truth(image, truth.vehicle_box, truth.plate_box),
                           truth.night))
        if pipeline is not None:
            pipeline_rows.append((truth.vehicle_colour, colour_from_pipeline(pipeline, image, truth.vehicle_box),
                                  truth.night))
    figures = {"truth_box": report("colour of the true vehicle box", truth_rows)}
    if pipeline_rows:
        figures["pipeline"] = report("colour through the pipeline ('-': vehicle not detected)", pipeline_rows)
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
