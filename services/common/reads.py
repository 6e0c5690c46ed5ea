"""The `reads` collection: document layout, proto mapping and indexes, shared by ingest and search.

Every read and its redacted image carry `expire_at`; a TTL index (expireAfterSeconds=0) deletes them at
that instant. Retention is therefore decided when a read is written (capture time + the agency's days) and
can be changed per document (evidence holds unset it and list themselves in `held_by`).

As stored by ingest, a read's raw `plate` and `candidates` are sealed into `sealed` (with `key_id`), and an
image's `data` is sealed, under the agency's key for the capture day (services/common/data_keys.py); open
them with `KeyStore.open_reads` / `KeyStore.open_image` before `document_to_read`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from services.common.plates import skeleton
from sightline.common.v1 import read_pb2

READS = "reads"
IMAGES = "images"
FRAMES = "frames"
CAMERAS = "cameras"

VEHICLE_TYPES = {
    "car": read_pb2.VEHICLE_TYPE_CAR,
    "truck": read_pb2.VEHICLE_TYPE_TRUCK,
    "bus": read_pb2.VEHICLE_TYPE_BUS,
    "motorcycle": read_pb2.VEHICLE_TYPE_MOTORCYCLE,
}
VEHICLE_VIEWS = {"front": read_pb2.VEHICLE_VIEW_FRONT, "rear": read_pb2.VEHICLE_VIEW_REAR}

READ_INDEXES = [
    IndexModel([("expire_at", ASCENDING)], name="ttl_expire_at", expireAfterSeconds=0),
    IndexModel([("plate_normalized", ASCENDING), ("captured_at", DESCENDING), ("_id", DESCENDING)], name="plate_time"),
    IndexModel([("plate_skeleton", ASCENDING), ("captured_at", DESCENDING), ("_id", DESCENDING)],
               name="skeleton_time"),
    IndexModel([("camera_id", ASCENDING), ("captured_at", DESCENDING), ("_id", DESCENDING)], name="camera_time"),
    IndexModel([("captured_at", DESCENDING), ("_id", DESCENDING)], name="time"),
]
IMAGE_INDEXES = [
    IndexModel([("expire_at", ASCENDING)], name="ttl_expire_at", expireAfterSeconds=0),
    # The retention job's per-day checks.
    IndexModel([("agency_id", ASCENDING), ("captured_at", ASCENDING)], name="agency_time"),
]
FRAME_INDEXES = [
    IndexModel([("expire_at", ASCENDING)], name="ttl_expire_at", expireAfterSeconds=0),
    # The outbox: frames stored but not yet published on the read stream.
    IndexModel([("published", ASCENDING), ("stored_at", ASCENDING)], name="unpublished",
               partialFilterExpression={"published": False}),
]


async def ensure_indexes(db: AsyncDatabase[dict[str, Any]]) -> None:
    await db[READS].create_indexes(READ_INDEXES)
    await db[IMAGES].create_indexes(IMAGE_INDEXES)
    await db[FRAMES].create_indexes(FRAME_INDEXES)
    await db[CAMERAS].create_index([("agency_id", ASCENDING)], name="agency")


def to_timestamp(dt: datetime | None) -> Timestamp | None:
    if dt is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(dt.astimezone(UTC))
    return ts


def to_datetime(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def _box(b: read_pb2.BoundingBox) -> list[int] | None:
    return [b.x, b.y, b.width, b.height] if (b.width or b.height) else None


def read_to_document(read: read_pb2.Read) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": read.read_id,
        "camera_id": read.camera_id,
        "agency_id": read.agency_id,
        "frame_id": read.frame_id,
        "captured_at": to_datetime(read.captured_at),
        "stored_at": to_datetime(read.stored_at),
        "expire_at": to_datetime(read.expires_at),
        "plate": read.plate,
        "plate_normalized": read.plate_normalized,
        # OCR-confusion skeleton: fuzzy search is an indexed equality on it.
        "plate_skeleton": skeleton(read.plate_normalized),
        "confidence": read.confidence,
        "candidates": [{"text": c.text, "confidence": c.confidence} for c in read.candidates],
        "region": {"country": read.region.country, "state": read.region.state,
                   "confidence": read.region.confidence},
        "plate_box": _box(read.plate_box),
        "image_ref": read.image_ref,
    }
    if read.HasField("vehicle"):
        v = read.vehicle
        doc["vehicle"] = {
            "type": read_pb2.VehicleType.Name(v.type).removeprefix("VEHICLE_TYPE_").lower(),
            "type_confidence": v.type_confidence,
            "colour": v.colour,
            "colour_confidence": v.colour_confidence,
            "box": _box(v.box),
            "view": read_pb2.VehicleView.Name(v.view).removeprefix("VEHICLE_VIEW_").lower(),
            "make": v.make,
        }
    if read.HasField("location"):
        # GeoJSON order: longitude, latitude.
        doc["location"] = {"type": "Point", "coordinates": [read.location.longitude, read.location.latitude]}
    if read.HasField("heading_degrees"):
        doc["heading_degrees"] = read.heading_degrees
    return doc


def set_box(target: read_pb2.BoundingBox, box: list[int] | None) -> None:
    if box:
        target.x, target.y, target.width, target.height = (int(v) for v in box)


def document_to_read(doc: dict[str, Any]) -> read_pb2.Read:
    read = read_pb2.Read(
        read_id=doc["_id"],
        camera_id=doc.get("camera_id", ""),
        agency_id=doc.get("agency_id", ""),
        frame_id=doc.get("frame_id", ""),
        plate=doc.get("plate", ""),
        plate_normalized=doc.get("plate_normalized", ""),
        confidence=doc.get("confidence", 0.0),
        image_ref=doc.get("image_ref", ""),
        candidates=[read_pb2.PlateCandidate(**c) for c in doc.get("candidates", [])],
        region=read_pb2.Region(**doc.get("region", {})),
    )
    for field in ("captured_at", "stored_at"):
        getattr(read, field).CopyFrom(to_timestamp(doc[field]))
    if doc.get("expire_at") is not None:
        read.expires_at.CopyFrom(to_timestamp(doc["expire_at"]))
    set_box(read.plate_box, doc.get("plate_box"))
    if v := doc.get("vehicle"):
        read.vehicle.type = VEHICLE_TYPES.get(v.get("type", ""), read_pb2.VEHICLE_TYPE_UNSPECIFIED)
        read.vehicle.type_confidence = v.get("type_confidence", 0.0)
        read.vehicle.colour = v.get("colour", "")
        read.vehicle.colour_confidence = v.get("colour_confidence", 0.0)
        read.vehicle.view = VEHICLE_VIEWS.get(v.get("view", ""), read_pb2.VEHICLE_VIEW_UNSPECIFIED)
        read.vehicle.make = v.get("make", "")
        set_box(read.vehicle.box, v.get("box"))
    if loc := doc.get("location"):
        read.location.longitude, read.location.latitude = loc["coordinates"]
    if "heading_degrees" in doc:
        read.heading_degrees = doc["heading_degrees"]
    return read
