"""Building the VehiclePass message of a tracked pass, and its `passes` document."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from services.common.reads import read_to_document, to_datetime
from services.tracker.domain.passes import Box, Direction, Sighting, Track, TrackerConfig, heading_of, summarise
from sightline.common.v1 import pass_pb2, read_pb2

DIRECTIONS = {Direction.UNKNOWN: pass_pb2.TRAVEL_DIRECTION_UNSPECIFIED,
              Direction.APPROACHING: pass_pb2.TRAVEL_DIRECTION_APPROACHING,
              Direction.RECEDING: pass_pb2.TRAVEL_DIRECTION_RECEDING}


def _box(b: read_pb2.BoundingBox) -> Box | None:
    return (b.x, b.y, b.width, b.height) if b.width and b.height else None


def sighting_of(read: read_pb2.Read) -> Sighting:
    return Sighting(read_id=read.read_id, camera_id=read.camera_id, captured_at=to_datetime(read.captured_at),
                    plate=read.plate_normalized, confidence=read.confidence, plate_box=_box(read.plate_box),
                    vehicle_box=_box(read.vehicle.box) if read.HasField("vehicle") else None)


def build_pass(track: Track, reads: dict[str, read_pb2.Read], stage: int, config: TrackerConfig,
               camera_bearing: float | None) -> pass_pb2.VehiclePass:
    """The pass as it stands; `reads` holds (at least) the track's reads by id."""
    summary = summarise(track, config)
    best = reads[summary.best_read_id]
    out = pass_pb2.VehiclePass(pass_id=summary.pass_id, camera_id=track.camera_id, agency_id=best.agency_id,
                               stage=stage, plate_normalized=summary.plate, confidence=summary.confidence,
                               best_read=best, read_ids=summary.read_ids, frame_count=len(summary.read_ids),
                               direction=DIRECTIONS[summary.direction])
    out.first_seen.FromDatetime(summary.first_seen.astimezone(UTC))
    out.last_seen.FromDatetime(summary.last_seen.astimezone(UTC))
    out.expires_at.CopyFrom(max((reads[i].expires_at for i in summary.read_ids), key=lambda t: t.ToNanoseconds()))
    heading = heading_of(summary.direction, camera_bearing)
    if heading is not None:
        out.heading_degrees = heading
    return out


def pass_to_document(p: pass_pb2.VehiclePass) -> dict[str, Any]:
    """The `passes` document: the pass's own fields, and the best read's region, vehicle and image."""
    best = read_to_document(p.best_read)
    doc: dict[str, Any] = {
        "_id": p.pass_id,
        "camera_id": p.camera_id,
        "agency_id": p.agency_id,
        "plate_normalized": p.plate_normalized,
        "confidence": p.confidence,
        "best_read_id": p.best_read.read_id,
        "image_ref": p.best_read.image_ref,
        "read_ids": list(p.read_ids),
        "frame_count": p.frame_count,
        "first_seen": to_datetime(p.first_seen),
        "last_seen": to_datetime(p.last_seen),
        "expire_at": to_datetime(p.expires_at),
        "direction": pass_pb2.TravelDirection.Name(p.direction).removeprefix("TRAVEL_DIRECTION_").lower(),
        "region": best["region"],
    }
    for key in ("vehicle", "location"):
        if key in best:
            doc[key] = best[key]
    if p.HasField("heading_degrees"):
        doc["heading_degrees"] = p.heading_degrees
    return doc


def single_read_pass(read: read_pb2.Read, stage: int = pass_pb2.PASS_STAGE_FINAL) -> pass_pb2.VehiclePass:
    """A pass seen in one frame only: what the tracker emits for a vehicle read once (and what tests and
    benchmarks publish to drive the hotlist matcher without the tracker)."""
    return pass_pb2.VehiclePass(
        pass_id=f"pass-{read.read_id}", camera_id=read.camera_id, agency_id=read.agency_id, stage=stage,
        plate_normalized=read.plate_normalized, confidence=read.confidence, best_read=read,
        read_ids=[read.read_id], frame_count=1, first_seen=read.captured_at, last_seen=read.captured_at,
        expires_at=read.expires_at)
