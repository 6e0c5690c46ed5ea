"""The verification job: shred every capture day whose retention has ended, and prove it in a report.

For each agency's day key not yet destroyed, once the last read of that day has expired (`day + 1 day +
the agency's retention days`): count what is held, delete any unheld read or image of the day still there
(the TTL monitor lags by up to a minute, and a lowered retention applies to stored reads too), destroy the
day's key, then check that no unheld record of the day remains and that the key is gone, and save the
report in `retention_reports` (shape in docs/retention.md). Runs in the retention service every
`verify_interval_s`, and as `sightline retention verify`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis.asyncio as aioredis

from services.common.counters import reads_key, vehicles_key
from services.common.data_keys import DATA_KEYS, KeyStore, day_key_id
from services.common.reads import IMAGES, READS
from services.common.retention_policy import CapTable, day_bounds, day_retention_ends, effective_days
from services.retention.adapters.store import RetentionStore

UNHELD = {"held_by": {"$exists": False}}


class Verifier:
    def __init__(self, store: RetentionStore, keys: KeyStore, redis: aioredis.Redis, caps: CapTable,
                 default_days: int):
        self._store = store
        self._db = store.db
        self._keys = keys
        self._redis = redis
        self._caps = caps
        self._default_days = default_days

    async def run(self, now: datetime) -> list[dict[str, Any]]:
        """Shred and report every day whose retention ended by `now`; returns the new reports."""
        agencies: dict[str, int] = {}
        reports = []
        for key in sorted(await self._store.open_day_keys(), key=lambda k: (k["agency_id"], k["day"])):
            agency_id, day = key["agency_id"], key["day"]
            if agency_id not in agencies:
                agencies[agency_id] = effective_days(self._caps, await self._store.agency(agency_id),
                                                     self._default_days)
            if day_retention_ends(day, agencies[agency_id]) <= now:
                reports.append(await self.close_day(agency_id, day, agencies[agency_id], now))
        return reports

    async def close_day(self, agency_id: str, day: str, days: int, now: datetime) -> dict[str, Any]:
        start, end = day_bounds(day)
        of_day = {"agency_id": agency_id, "captured_at": {"$gte": start, "$lt": end}}
        held = {**of_day, "held_by": {"$exists": True}}
        hold_ids = sorted(await self._db[READS].distinct("held_by", held))
        reads_deleted = (await self._db[READS].delete_many({**of_day, **UNHELD})).deleted_count
        images_deleted = (await self._db[IMAGES].delete_many({**of_day, **UNHELD})).deleted_count
        await self._keys.destroy(day_key_id(agency_id, day), now)
        key_doc = await self._db[DATA_KEYS].find_one({"_id": day_key_id(agency_id, day)})
        ingested, vehicles = await self._counters(agency_id, day)
        reads_held = await self._db[READS].count_documents(held)
        report = {
            "_id": f"{agency_id}:{day}",
            "agency_id": agency_id,
            "day": day,
            "retention_days": days,
            "retention_ended_at": day_retention_ends(day, days),
            "verified_at": now,
            "reads_ingested": ingested,
            "vehicles_unique": vehicles,
            "reads_expired": -1 if ingested < 0 else max(ingested - reads_held, 0),
            "reads_deleted_by_job": reads_deleted,
            "images_deleted_by_job": images_deleted,
            "reads_held": reads_held,
            "images_held": await self._db[IMAGES].count_documents(held),
            "hold_ids": hold_ids,
            "unheld_reads_remaining": await self._db[READS].count_documents({**of_day, **UNHELD}),
            "unheld_images_remaining": await self._db[IMAGES].count_documents({**of_day, **UNHELD}),
            "key_destroyed": key_doc is not None and key_doc.get("wrapped") is None,
            "key_destroyed_at": key_doc and key_doc.get("destroyed_at"),
        }
        report["ok"] = (report["key_destroyed"] and report["unheld_reads_remaining"] == 0
                        and report["unheld_images_remaining"] == 0)
        await self._store.save_report(report)
        return report

    async def _counters(self, agency_id: str, day: str) -> tuple[int, int]:
        """(reads, unique vehicles) counted by ingest; -1 each when the counters are gone or unreachable."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(reads_key(agency_id, day))
                pipe.exists(vehicles_key(agency_id, day))
                pipe.pfcount(vehicles_key(agency_id, day))
                count, has_vehicles, vehicles = await pipe.execute()
        except aioredis.RedisError:
            return -1, -1
        return (int(count) if count is not None else -1), (int(vehicles) if has_vehicles else -1)
