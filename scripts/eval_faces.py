#!/usr/bin/env python
"""Face search for redaction: the share of faces covered by the boxes the pipeline blurs, by face size.

A real face (the Grace Hopper portrait that Debian's ``facedetect`` package ships as an example, also used
by tests/unit/test_redaction.py) is scaled so the face is S pixels wide and pasted at a random place of a
rendered 1280x720 scene, ``--scenes`` times for each size. The face counts as covered when the face boxes of
``AlprPipeline.detect_faces`` (searched as when a vehicle is in view) cover at least 90 % of it. Prints, per
size, the covered share, and the search's median time per frame on one core.

    apt-get download facedetect && dpkg -x facedetect_*.deb facedetect
    python scripts/eval_faces.py --portrait facedetect/usr/share/doc/facedetect/examples/grace_hopper_512x512.jpg

One face, pasted: this measures how small a face the search still finds, not how it fares across people,
poses and light.
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
from services.simulator.render import SceneOptions, render_scene  # noqa: E402

PORTRAIT_FACE = (160, 130, 360, 340)  # x1, y1, x2, y2 of the face (brow to chin, cheek to cheek), 512x512 portrait
SIZES = (20, 28, 40, 56, 80, 112, 160, 224, 320, 448)
# From 320 the whole portrait would not fit a 720-pixel frame: the head and shoulders around the face are
# pasted instead (the face grown by a quarter of its size each side).
HEAD = (110, 78, 410, 392)


def covered(face: tuple[int, int, int, int], boxes: list[tuple[int, int, int, int]], height: int, width: int) -> float:
    """Share of the ``face`` box's pixels inside the union of ``boxes``."""
    mask = np.zeros((height, width), bool)
    for x1, y1, x2, y2 in boxes:
        mask[y1:y2, x1:x2] = True
    x1, y1, x2, y2 = face
    return float(mask[y1:y2, x1:x2].mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--portrait", type=Path, required=True)
    parser.add_argument("--scenes", type=int, default=30, help="frames per face size")
    args = parser.parse_args()
    portrait = cv2.imread(str(args.portrait))
    if portrait is None:
        parser.error(f"cannot read {args.portrait}")
    settings = VisionSettings()
    pipeline = AlprPipeline(OnnxRunner.from_settings(settings, intra_op_threads=1), settings)
    rng = np.random.default_rng(0)
    face_w = PORTRAIT_FACE[2] - PORTRAIT_FACE[0]
    seconds: list[float] = []
    for size in SIZES:
        scale = size / face_w
        source, origin = portrait, (0, 0)
        if portrait.shape[0] * scale > 700:
            x1, y1, x2, y2 = HEAD
            source, origin = portrait[y1:y2, x1:x2], (x1, y1)
        pasted = cv2.resize(source, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        hits = 0
        for seed in tqdm(range(args.scenes), desc=f"{size:>3} px faces", unit="frame", leave=False):
            frame = render_scene(seed, SceneOptions(difficulty=0.3)).image.copy()
            height, width = frame.shape[:2]
            x = int(rng.integers(0, width - pasted.shape[1]))
            y = int(rng.integers(0, height - pasted.shape[0]))
            frame[y : y + pasted.shape[0], x : x + pasted.shape[1]] = pasted
            face = tuple(int(round((v - o) * scale)) + offset
                         for v, o, offset in zip(PORTRAIT_FACE, origin * 2, (x, y, x, y), strict=True))
            started = time.perf_counter()
            boxes = pipeline.detect_faces(frame)
            seconds.append(time.perf_counter() - started)
            hits += covered(face, boxes, height, width) >= 0.9  # type: ignore[arg-type]
        print(f"{size:>3} px faces: {hits}/{args.scenes} covered ({hits / args.scenes:.0%})", flush=True)
    print(f"face search: median {1000 * np.median(seconds):.1f} ms a frame on one core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
