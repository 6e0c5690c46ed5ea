"""``sightline recognize``: read the plates in image files with the in-process pipeline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from services.inference.vision.pipeline import AlprPipeline, FrameDecodeError, decode_jpeg
from services.inference.vision.runner import OnnxRunner
from services.inference.vision.settings import VisionSettings


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("recognize", help="read licence plates in image files (JPEG or PNG)")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--json", action="store_true", help="one JSON object per plate")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    settings = VisionSettings()
    pipeline = AlprPipeline(OnnxRunner.from_settings(settings), settings)
    status = 0
    for path in args.images:
        try:
            image = decode_jpeg(path.read_bytes(), settings.max_pixels)
        except (OSError, FrameDecodeError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            status = 1
            continue
        result = pipeline.run(image).to_dict()
        for plate in result["plates"]:
            record = {
                "image": str(path),
                "plate": plate["normalized"],
                "confidence": plate["confidence"],
                "box": plate["box"],
                "candidates": plate["candidates"][:5],
                "region": plate["region"],
                "vehicle": plate["vehicle"],
            }
            print(json.dumps(record) if args.json else _readable(record))
    return status


def _readable(record: dict[str, Any]) -> str:
    vehicle = record["vehicle"] or {}
    region = record["region"].get("state") or record["region"].get("country") or "-"
    described = " ".join(v for v in (vehicle.get("colour"), vehicle.get("type"), vehicle.get("view")) if v)
    plate = record["plate"] or "(no plate read)"
    return f"{record['image']}: {plate:<10} conf {record['confidence']:.2f} region {region} {described}".rstrip()
