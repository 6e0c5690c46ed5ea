"""Turns a SearchReadsRequest into a MongoDB filter, safely.

User input only ever becomes string, number or datetime *values* in the filter (never keys or operators),
and partial and fuzzy plates become anchored regular expressions built from an alphabet of A-Z, 0-9, the
two wildcards and character classes of that alphabet, so no query can inject an operator or a catastrophic
pattern. A fuzzy plate is expanded to every spelling its OCR confusions allow (an indexed `$in`) while
those are few, and becomes an anchored character-class expression beyond that.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.common.plates import InvalidQuery, pattern_to_regex, plate_query, skeleton
from sightline.common.v1 import read_pb2
from sightline.search.v1 import search_pb2

MAX_CAMERAS = 200
MAX_RADIUS_M = 100_000.0
EARTH_RADIUS_M = 6_378_100.0
_NAME_RE = re.compile(r"[a-z][a-z -]{0,31}")
def _vehicle_filter(v: search_pb2.VehicleFilter) -> dict[str, Any]:
    flt: dict[str, Any] = {}
    if v.type:
        name = read_pb2.VehicleType.Name(v.type) if v.type in read_pb2.VehicleType.values() else ""
        if not name or v.type == read_pb2.VEHICLE_TYPE_UNSPECIFIED:
            raise InvalidQuery("vehicle.type is not a known vehicle type")
        flt["vehicle.type"] = name.removeprefix("VEHICLE_TYPE_").lower()
    for field in ("colour", "make"):
        if value := getattr(v, field).strip().lower():
            if not _NAME_RE.fullmatch(value):
                raise InvalidQuery(f"vehicle.{field}: up to 32 letters, spaces or '-'")
            flt[f"vehicle.{field}"] = value if field == "colour" else re.compile(f"^{re.escape(value)}$", re.I)
    if v.no_plate:
        flt["plate_normalized"] = ""
    return flt


def _near_filter(near: search_pb2.GeoCircle) -> dict[str, Any]:
    lat, lon, radius = near.center.latitude, near.center.longitude, near.radius_m
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not math.isfinite(lat + lon):
        raise InvalidQuery("near.center must be a valid latitude/longitude")
    if not (1 <= radius <= MAX_RADIUS_M):
        raise InvalidQuery(f"near.radius_m must be between 1 and {MAX_RADIUS_M:.0f}")
    # GeoJSON order: longitude, latitude; $geoWithin keeps the time ordering (unlike $near).
    return {"$geoWithin": {"$centerSphere": [[lon, lat], radius / EARTH_RADIUS_M]}}


def time_range(req: Any) -> dict[str, datetime]:
    """{"$gte": start, "$lt": end} from a request's optional start_time / end_time."""
    out: dict[str, datetime] = {}
    if req.HasField("start_time"):
        out["$gte"] = req.start_time.ToDatetime(tzinfo=UTC)
    if req.HasField("end_time"):
        out["$lt"] = req.end_time.ToDatetime(tzinfo=UTC)
    if "$gte" in out and "$lt" in out and out["$gte"] >= out["$lt"]:
        raise InvalidQuery("start_time must be before end_time")
    return out


def scoped(flt: dict[str, Any], agencies: tuple[str, ...]) -> dict[str, Any]:
    """Restrict a filter to the reads of the given agencies."""
    scope: dict[str, Any] = {"agency_id": agencies[0] if len(agencies) == 1 else {"$in": list(agencies)}}
    return {"$and": [scope, flt]}


@dataclass(frozen=True)
class PageToken:
    captured_at: datetime
    read_id: str

    def encode(self) -> str:
        raw = json.dumps({"t": self.captured_at.isoformat(), "id": self.read_id}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> PageToken:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = json.loads(raw)
            at = datetime.fromisoformat(data["t"])
            read_id = data["id"]
            if not isinstance(read_id, str) or at.tzinfo is None:
                raise ValueError
        except (binascii.Error, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise InvalidQuery("page_token is not one this service issued") from exc
        return cls(at.astimezone(UTC), read_id)


@dataclass(frozen=True)
class Query:
    filter: dict[str, Any]
    page_size: int


def build_query(req: search_pb2.SearchReadsRequest, default_page_size: int, max_page_size: int) -> Query:
    flt: dict[str, Any] = {}
    kind = req.WhichOneof("plate_query")
    if kind == "plate_exact":
        flt["plate_normalized"] = plate_query(req.plate_exact, "plate_exact")
    elif kind == "plate_pattern":
        flt["plate_normalized"] = {"$regex": pattern_to_regex(req.plate_pattern)}
    elif kind == "plate_fuzzy":
        plate = plate_query(req.plate_fuzzy, "plate_fuzzy")
        flt["plate_skeleton"] = skeleton(plate)
    if req.HasField("vehicle"):
        vehicle = _vehicle_filter(req.vehicle)
        if "plate_normalized" in vehicle and kind:
            raise InvalidQuery("vehicle.no_plate cannot be combined with a plate")
        flt.update(vehicle)
    if req.HasField("near"):
        flt["location"] = _near_filter(req.near)
    if req.camera_ids:
        if len(req.camera_ids) > MAX_CAMERAS:
            raise InvalidQuery(f"at most {MAX_CAMERAS} camera_ids")
        flt["camera_id"] = {"$in": [str(c) for c in req.camera_ids]}
    if window := time_range(req):
        flt["captured_at"] = window
    if not flt:
        raise InvalidQuery("give a plate, a plate pattern, vehicle attributes, a place, cameras or a time range")
    if req.page_size < 0 or req.page_size > max_page_size:
        raise InvalidQuery(f"page_size must be between 1 and {max_page_size}")
    if req.page_token:
        token = PageToken.decode(req.page_token)
        after = {"$or": [{"captured_at": {"$lt": token.captured_at}},
                         {"captured_at": token.captured_at, "_id": {"$lt": token.read_id}}]}
        flt = {"$and": [flt, after]}
    return Query(flt, req.page_size or default_page_size)
