"""Indexes on `reads` that the search service's queries need beyond those ingest creates."""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, GEOSPHERE, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from services.common.reads import READS
from services.common.storage import Document

SEARCH_INDEXES = [
    # Distance from a point: GeoJSON [lon, lat] in `location`, then time.
    IndexModel([("location", GEOSPHERE), ("captured_at", DESCENDING)], name="location_time"),
    # Vehicle attributes (colour, type; no-plate vehicles have plate_normalized "") within a time range.
    IndexModel([("vehicle.colour", ASCENDING), ("vehicle.type", ASCENDING), ("captured_at", DESCENDING),
                ("_id", DESCENDING)], name="vehicle_time"),
    # GetImage: which read (and so which agency) an image belongs to.
    IndexModel([("image_ref", ASCENDING)], name="image_ref"),
]


async def ensure_search_indexes(db: AsyncDatabase[Document]) -> None:
    await db[READS].create_indexes(SEARCH_INDEXES)
