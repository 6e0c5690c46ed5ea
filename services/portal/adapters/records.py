"""The portal's read-only view of the system's records: MongoDB (agencies, cameras, alerts, the audit
trail, evidence holds and deletion reports) and the daily Redis counters ingest keeps. Nothing here writes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import redis.asyncio as aioredis
from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.common.collections import AGENCIES, ALERTS, AUDIT_CHECKPOINTS, AUDIT_ENTRIES, HOLDS, RETENTION_REPORTS
from services.common.counters import reads_key, vehicles_key
from services.common.reads import CAMERAS
from services.common.service_tokens import SERVICE_SUBJECT_PREFIX
from services.common.storage import Document
from services.portal.domain.transparency import Camera
from sightline.audit.v1 import audit_pb2

ALLOWED = audit_pb2.Outcome.Name(audit_pb2.OUTCOME_ALLOWED)  # as the audit trail stores it

# Searches of reads (SearchReads, FindConvoy, the back-search of a hot list), counted only as the service that
# runs each recorded it (the audit service sets `recorded_by` from the caller's service key), never from events
# another writer made up.
SEARCHES = {"$or": [
    {"event.action": {"$in": ["search", "convoy"]}, "event.recorded_by": SERVICE_SUBJECT_PREFIX + "search"},
    {"event.action": "hotlist.backsearch", "event.recorded_by": SERVICE_SUBJECT_PREFIX + "hotlist"},
]}


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _per_day(field: str) -> dict[str, Any]:
    return {"$dateToString": {"format": "%Y-%m-%d", "date": f"${field}", "timezone": "UTC"}}


class Records:
    def __init__(self, db: AsyncDatabase[Document], audit_db: AsyncDatabase[Document], redis: aioredis.Redis):
        self._db = db
        self._audit = audit_db
        self._redis = redis

    async def agencies(self) -> list[dict[str, Any]]:
        return await self._db[AGENCIES].find({}, {"name": 1}).sort("_id", 1).to_list(None)

    async def agency(self, agency_id: str) -> dict[str, Any] | None:
        return await self._db[AGENCIES].find_one({"_id": agency_id})

    async def shared_by(self, agency_id: str) -> list[str]:
        """Agencies that share their reads with this one."""
        docs = await self._db[AGENCIES].find({"share_with": agency_id}, {"_id": 1}).to_list(None)
        return sorted(d["_id"] for d in docs)

    async def cameras(self, agency_id: str) -> list[Camera]:
        docs = await self._db[CAMERAS].find({"agency_id": agency_id, "active": True}).sort("_id", 1).to_list(None)
        out = []
        for doc in docs:
            lon, lat = (doc.get("location") or {}).get("coordinates", (None, None))
            out.append(Camera(doc["_id"], doc.get("name", ""), lat, lon))
        return out

    async def daily_reads(self, agency_id: str, days: list[date]) -> list[int]:
        values = await self._redis.mget([reads_key(agency_id, d.isoformat()) for d in days])
        return [int(v or 0) for v in values]

    async def daily_vehicles(self, agency_id: str, days: list[date]) -> list[int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for d in days:
                pipe.pfcount(vehicles_key(agency_id, d.isoformat()))
            return [int(v) for v in await pipe.execute()]

    async def unique_vehicles(self, agency_id: str, days: list[date]) -> int:
        return int(await self._redis.pfcount(*(vehicles_key(agency_id, d.isoformat()) for d in days)))

    async def daily_searches(self, agency_id: str, since: datetime) -> tuple[dict[str, int], int]:
        """Searches by the agency's users since `since`: allowed ones per day, and the refused total."""
        pipeline = [
            {"$match": {"event.agency_id": agency_id, **SEARCHES, "at": {"$gte": since}}},
            {"$group": {"_id": {"day": _per_day("at"), "allowed": {"$eq": ["$event.outcome", ALLOWED]}},
                        "n": {"$sum": 1}}},
        ]
        rows = await (await self._audit[AUDIT_ENTRIES].aggregate(pipeline)).to_list(None)
        allowed = {r["_id"]["day"]: r["n"] for r in rows if r["_id"]["allowed"]}
        return allowed, sum(r["n"] for r in rows if not r["_id"]["allowed"])

    async def partner_searches(self, agency_id: str, since: datetime) -> int:
        """Searches that reached this agency's reads, made by other agencies' users."""
        return await self._audit[AUDIT_ENTRIES].count_documents({
            "event.data_agency_ids": agency_id, "event.agency_id": {"$ne": agency_id},
            **SEARCHES, "event.outcome": ALLOWED,
            "at": {"$gte": since}})

    async def latest_checkpoint(self) -> dict[str, Any] | None:
        """The audit trail's latest signed checkpoint, published so that anyone can witness it."""
        return await self._audit[AUDIT_CHECKPOINTS].find_one(sort=[("_id", -1)])

    async def hotlist_hits(self, agency_id: str, since: datetime) -> tuple[dict[str, int], dict[str, int]]:
        """The agency's own hits since `since` (alerts of its lists on its reads): per day, and per disposition.
        A partner's list hitting its reads, or its list hitting a partner's reads, is not its own hit."""
        match = {"$match": {"agency_id": agency_id, "read.agency_id": agency_id, "raised_at": {"$gte": since}}}
        pipeline = [match, {"$facet": {
            "daily": [{"$group": {"_id": _per_day("raised_at"), "n": {"$sum": 1}}}],
            "outcomes": [{"$group": {"_id": {"$ifNull": ["$disposition.disposition", "pending"]},
                                     "n": {"$sum": 1}}}],
        }}]
        result = (await (await self._db[ALERTS].aggregate(pipeline)).to_list(None))[0]
        return ({r["_id"]: r["n"] for r in result["daily"]}, {r["_id"]: r["n"] for r in result["outcomes"]})

    async def latest_deletion_report(self, agency_id: str) -> dict[str, Any] | None:
        """The verification report of the agency's most recent capture day past its retention."""
        return await self._db[RETENTION_REPORTS].find_one({"agency_id": agency_id}, sort=[("day", DESCENDING)])

    async def active_holds(self, agency_id: str) -> int:
        return await self._db[HOLDS].count_documents({"agency_id": agency_id, "status": "active"})
