"""Convoy analysis: vehicles seen with a given vehicle at N or more cameras within a time window. Pure.

Two steps, both on indexes: the sightings of the vehicle of interest (plate_time index), then one
aggregation over the reads at the same camera within ±window of each sighting (camera_time index, one
`$or` branch per sighting), grouped by plate and kept when seen at `min_cameras` distinct cameras.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.common.plates import InvalidQuery, plate_query
from services.search.domain.query import scoped, time_range
from sightline.search.v1 import search_pb2

MAX_PERIOD = timedelta(days=31)
MAX_SIGHTINGS = 500


@dataclass(frozen=True)
class ConvoyQuery:
    plate: str
    sightings_filter: dict[str, Any]
    window: timedelta
    min_cameras: int
    max_results: int


def build_convoy_query(req: search_pb2.FindConvoyRequest, agencies: tuple[str, ...]) -> ConvoyQuery:
    plate = plate_query(req.plate, "plate")
    period = time_range(req)
    if "$gte" not in period or "$lt" not in period:
        raise InvalidQuery("start_time and end_time are required")
    if period["$lt"] - period["$gte"] > MAX_PERIOD:
        raise InvalidQuery(f"the period may span at most {MAX_PERIOD.days} days")
    window = req.window_seconds or 300
    min_cameras = req.min_cameras or 2
    max_results = req.max_results or 50
    if not (1 <= window <= 3600 and 2 <= min_cameras <= 50 and 1 <= max_results <= 200):
        raise InvalidQuery("window_seconds 1..3600, min_cameras 2..50, max_results 1..200")
    flt = scoped({"plate_normalized": plate, "captured_at": period}, agencies)
    return ConvoyQuery(plate, flt, timedelta(seconds=window), min_cameras, max_results)


def companions_pipeline(q: ConvoyQuery, sightings: list[tuple[str, datetime]],
                        agencies: tuple[str, ...]) -> list[dict[str, Any]]:
    """Aggregation over `reads` given the (camera_id, captured_at) sightings of the vehicle of interest."""
    # A top-level $or of (camera, time range) branches: each runs on the camera_time index. The vehicle of
    # interest and plate-less reads are dropped after grouping: a plate condition in (or pushed down into) the
    # $match would lead the planner onto the plate index with near-full bounds.
    near = [scoped({"camera_id": cam, "captured_at": {"$gte": at - q.window, "$lte": at + q.window}}, agencies)
            for cam, at in sightings]
    return [
        {"$match": {"$or": near}},
        {"$group": {"_id": "$plate_normalized", "cameras": {"$addToSet": "$camera_id"}, "sightings": {"$sum": 1},
                    "first": {"$min": "$captured_at"}, "last": {"$max": "$captured_at"}}},
        {"$project": {"cameras": 1, "sightings": 1, "first": 1, "last": 1, "n": {"$size": "$cameras"}}},
        # One $expr over the computed `n`, so that the optimiser cannot move the plate test before $group.
        {"$match": {"$expr": {"$and": [{"$gte": ["$n", q.min_cameras]},
                                       {"$not": [{"$in": ["$_id", ["", q.plate]]}]}]}}},
        {"$sort": {"n": -1, "sightings": -1, "_id": 1}},
        {"$limit": q.max_results},
    ]
