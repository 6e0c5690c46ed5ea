"""The `passes` collection (searchable grouped reads, expiring with their latest read) and camera bearings."""

from __future__ import annotations

import time
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase

from services.common.reads import CAMERAS
from services.common.storage import Document

PASSES = "passes"
PASS_INDEXES = [
    IndexModel([("expire_at", ASCENDING)], name="ttl_expire_at", expireAfterSeconds=0),
    IndexModel([("plate_normalized", ASCENDING), ("first_seen", DESCENDING), ("_id", DESCENDING)],
               name="plate_time"),
    IndexModel([("camera_id", ASCENDING), ("first_seen", DESCENDING), ("_id", DESCENDING)], name="camera_time"),
    IndexModel([("read_ids", ASCENDING)], name="read_ids"),
]


class PassStore:
    def __init__(self, db: AsyncDatabase[Document], camera_cache_s: float):
        self._db = db
        self._cache_s = camera_cache_s
        self._bearings: dict[str, tuple[float, float | None]] = {}

    async def ensure_indexes(self) -> None:
        await self._db[PASSES].create_indexes(PASS_INDEXES)

    async def save(self, docs: list[dict[str, Any]]) -> None:
        """Idempotent: a pass rebuilt after a crash replaces itself."""
        await self._db[PASSES].bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs],
                                          ordered=False)

    async def bearing(self, camera_id: str) -> float | None:
        """The camera's registered bearing in degrees, or None (cached for `camera_cache_s`)."""
        now = time.monotonic()
        hit = self._bearings.get(camera_id)
        if hit and now - hit[0] < self._cache_s:
            return hit[1]
        doc = await self._db[CAMERAS].find_one({"_id": camera_id}, {"bearing_degrees": 1})
        value = (doc or {}).get("bearing_degrees")
        self._bearings[camera_id] = (now, value)
        return value
