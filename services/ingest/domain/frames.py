"""Pure rules for accepting a frame and turning the pipeline's output into reads."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from io import BytesIO
from typing import Any

from PIL import Image, UnidentifiedImageError

from services.common.ids import valid_id
from services.common.plates import MAX_PLATE_LEN, normalize_plate
from services.common.reads import VEHICLE_TYPES, VEHICLE_VIEWS, set_box
from services.common.rejected import Code, Rejected
from sightline.common.v1 import read_pb2
from sightline.ingest.v1 import ingest_pb2

MAX_READS_PER_FRAME = 32
_READ_NAMESPACE = uuid.UUID("5b1c6a53-6d0e-4f0e-9d8a-1b7e3c2f9a10")


@dataclass(frozen=True)
class FrameLimits:
    max_bytes: int
    max_pixels: int
    max_clock_skew: timedelta


def frame_key(camera_id: str, frame_id: str) -> str:
    return f"{camera_id}/{frame_id}"


def read_id(camera_id: str, frame_id: str, index: int) -> str:
    """Stable per (camera, frame, position): a frame sent twice yields the same read ids."""
    return str(uuid.uuid5(_READ_NAMESPACE, f"{camera_id}/{frame_id}/{index}"))


def validate_camera_id(camera_id: str) -> None:
    if not valid_id(camera_id):
        raise Rejected(Code.INVALID_ARGUMENT,
                            "camera_id must be 1-128 characters of A-Z a-z 0-9 . _ : -")


def validate_site_id(site_id: str) -> None:
    """A camera names the gateway site that owns it (the site in that gateway's client certificate)."""
    if not valid_id(site_id):
        raise Rejected(Code.INVALID_ARGUMENT,
                       "site_id is required: the camera gateway site (named by its client certificate) that "
                       "owns the camera, 1-128 characters of A-Z a-z 0-9 . _ : -")


def _validate_header(frame: ingest_pb2.Frame | ingest_pb2.FrameReads, limits: FrameLimits, now: datetime) -> None:
    invalid = Code.INVALID_ARGUMENT
    validate_camera_id(frame.camera_id)
    if not valid_id(frame.frame_id):
        raise Rejected(invalid, "frame_id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    if not frame.HasField("captured_at"):
        raise Rejected(invalid, "captured_at is required")
    if frame.captured_at.ToDatetime(tzinfo=now.tzinfo) > now + limits.max_clock_skew:
        raise Rejected(invalid, "captured_at is in the future: check the camera's clock")
    if frame.HasField("location") and not (-90 <= frame.location.latitude <= 90
                                           and -180 <= frame.location.longitude <= 180):
        raise Rejected(invalid, "location is not a valid latitude/longitude")


def validate_frame(frame: ingest_pb2.Frame, limits: FrameLimits, now: datetime) -> tuple[int, int]:
    """Check a frame before any work is spent on it; returns the JPEG's (width, height)."""
    invalid = Code.INVALID_ARGUMENT
    _validate_header(frame, limits, now)
    if not frame.jpeg:
        raise Rejected(invalid, "frame has no image (jpeg is empty)")
    if len(frame.jpeg) > limits.max_bytes:
        raise Rejected(invalid, f"frame is {len(frame.jpeg)} bytes, over the limit of {limits.max_bytes}")
    try:
        with Image.open(BytesIO(frame.jpeg)) as img:
            fmt, (width, height) = img.format, img.size
    except Image.DecompressionBombError as exc:  # a header claiming billions of pixels: refused, never retried
        raise Rejected(invalid, f"frame header claims too many pixels (limit {limits.max_pixels})") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise Rejected(invalid, "frame is not a readable JPEG image") from exc
    if fmt != "JPEG":
        raise Rejected(invalid, f"frame is {fmt}, not JPEG")
    if width * height > limits.max_pixels:
        raise Rejected(invalid, f"frame is {width}x{height}, over the limit of {limits.max_pixels} pixels")
    return width, height


def validate_frame_reads(frame: ingest_pb2.FrameReads, limits: FrameLimits, now: datetime) -> None:
    """Check the reads a gateway made itself: the frame's header as for an image, and each plate."""
    _validate_header(frame, limits, now)
    invalid = Code.INVALID_ARGUMENT
    if len(frame.reads) > MAX_READS_PER_FRAME:
        raise Rejected(invalid, f"at most {MAX_READS_PER_FRAME} reads per frame")
    for read in frame.reads:
        if len(normalize_plate(read.plate)) > MAX_PLATE_LEN or len(read.plate) > 2 * MAX_PLATE_LEN:
            raise Rejected(invalid, f"a plate has more than {MAX_PLATE_LEN} letters or digits")
        if not 0 <= read.confidence <= 1 or len(read.candidates) > MAX_READS_PER_FRAME:
            raise Rejected(invalid, "confidence must be within 0-1, with at most 32 candidates")
        if len(read.vehicle.colour) > 32 or len(read.vehicle.make) > 64:
            raise Rejected(invalid, "vehicle colour or make is too long")


def gateway_reads(frame: ingest_pb2.FrameReads, agency_id: str, stored_at: datetime,
                  expire_at: datetime) -> list[read_pb2.Read]:
    """The reads of a gateway's FrameReads as stored: the same ids, fields and normalisation as a frame's."""
    reads = []
    for i, plate in enumerate(frame.reads):
        read = _new_read(frame, i, agency_id, "", stored_at, expire_at)
        if normalized := normalize_plate(plate.plate):
            read.plate, read.plate_normalized, read.confidence = plate.plate, normalized, plate.confidence
            read.candidates.extend(plate.candidates)
            read.region.CopyFrom(plate.region)
            read.plate_box.CopyFrom(plate.plate_box)
        if plate.HasField("vehicle"):
            read.vehicle.CopyFrom(plate.vehicle)
            read.vehicle.colour = plate.vehicle.colour.strip().lower()
        reads.append(read)
    return reads


def _new_read(frame: ingest_pb2.Frame | ingest_pb2.FrameReads, index: int, agency_id: str, image_ref: str,
              stored_at: datetime, expire_at: datetime) -> read_pb2.Read:
    """A read's identity, times and place, the same whether the pipeline or the gateway read the plate."""
    read = read_pb2.Read(read_id=read_id(frame.camera_id, frame.frame_id, index), camera_id=frame.camera_id,
                         agency_id=agency_id, frame_id=frame.frame_id, image_ref=image_ref)
    read.captured_at.CopyFrom(frame.captured_at)
    read.stored_at.FromDatetime(stored_at)
    read.expires_at.FromDatetime(expire_at)
    if frame.HasField("location"):
        read.location.CopyFrom(frame.location)
    if frame.HasField("heading_degrees"):
        read.heading_degrees = frame.heading_degrees
    return read


def _vehicle(v: dict[str, Any]) -> read_pb2.Vehicle:
    out = read_pb2.Vehicle(
        type=VEHICLE_TYPES.get(v.get("type") or "", read_pb2.VEHICLE_TYPE_UNSPECIFIED),
        type_confidence=float(v.get("confidence") or 0.0),
        colour=v.get("colour") or "",
        colour_confidence=float(v.get("colour_confidence") or 0.0),
        view=VEHICLE_VIEWS.get(v.get("view") or "", read_pb2.VEHICLE_VIEW_UNSPECIFIED),
        make=v.get("make") or "",
    )
    set_box(out.box, v.get("box"))
    return out


def build_reads(
    frame: ingest_pb2.Frame,
    agency_id: str,
    result: dict[str, Any],
    image_ref: str,
    stored_at: datetime,
    expire_at: datetime,
) -> list[read_pb2.Read]:
    """One read per entry of the pipeline's `plates`: a read plate, or (text empty) a vehicle seen without a
    readable plate, so it can still be found by its attributes."""
    reads = []
    for i, plate in enumerate(result.get("plates", [])):
        read = _new_read(frame, i, agency_id, image_ref, stored_at, expire_at)
        if plate.get("normalized"):
            read.plate = plate.get("text", "")
            read.plate_normalized = plate["normalized"]
            read.confidence = float(plate.get("confidence", 0.0))
            for text, conf in plate.get("candidates", []):
                read.candidates.add(text=text, confidence=float(conf))
            region = plate.get("region") or {}
            read.region.country = region.get("country") or ""
            read.region.state = region.get("state") or ""
            read.region.confidence = float(region.get("confidence") or 0.0)
            set_box(read.plate_box, plate.get("box"))
        if vehicle := plate.get("vehicle"):
            read.vehicle.CopyFrom(_vehicle(vehicle))
        reads.append(read)
    return reads
