#!/usr/bin/env python
"""How often the vehicle detector finds the car that carries the labelled plate, by input size.

For each photo of ``openalpr-eu`` and each ``--sides`` value (the detector's longer input side,
``SIGHTLINE_VISION_OBJECT_DETECTOR_SIDE``), runs the pipeline's own vehicle-and-person pass and counts a hit
when a vehicle box holds the centre of the labelled plate. Prints, per side: hits, the mean score of the
plate's vehicle, vehicles and persons found, and the detector's median time on one core.

    python scripts/eval_vehicles.py --sides 512 384 320

The photos are close-ups of one car each; they do not measure distant vehicles or persons, which are what a
smaller input loses first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.inference.vision.pipeline import AlprPipeline  # noqa: E402
from services.inference.vision.runner import OnnxRunner  # noqa: E402
from services.inference.vision.settings import VisionSettings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=Path(__file__).resolve().parents[2] / "shared/datasets")
    parser.add_argument("--sides", type=int, nargs="+", default=[512, 384])
    args = parser.parse_args()

    folder = args.datasets / "openalpr-eu"
    photos = []
    for label in sorted(folder.glob("*.txt")):
        name, x, y, w, h = label.read_text().split()[:5]
        photos.append((cv2.imread(str(folder / name)), int(x) + int(w) / 2, int(y) + int(h) / 2))
    runner = OnnxRunner.from_settings(VisionSettings(), intra_op_threads=1)
    for side in args.sides:
        pipeline = AlprPipeline(runner, VisionSettings(object_detector_side=side))
        hits, scores, vehicles_found, persons_found, seconds = 0, [], 0, 0, []
        for image, cx, cy in tqdm(photos, desc=f"side {side}", unit="photo"):
            started = time.perf_counter()
            vehicles, persons = pipeline.detect_objects(image)
            seconds.append(time.perf_counter() - started)
            holding = [s for b, s in zip(vehicles.boxes, vehicles.scores, strict=True)
                       if b[0] <= cx <= b[2] and b[1] <= cy <= b[3]]
            hits += bool(holding)
            scores += [max(holding)] if holding else []
            vehicles_found += len(vehicles)
            persons_found += len(persons)
        print(f"side {side}: plate's vehicle found in {hits}/{len(photos)} photos, mean score "
              f"{np.mean(scores):.3f}, {vehicles_found} vehicles, {persons_found} persons, "
              f"median {1000 * np.median(seconds):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
