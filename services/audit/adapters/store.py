"""MongoDB side of the audit trail: the chain head, entries and signed checkpoints.

Appends are serialised twice: an asyncio lock within this process, and a transaction that increments the
head document first (a second writer in another process hits a write conflict and is retried by
`with_transaction`), so sequence numbers are gap-free and each entry links to its true predecessor.
Entries carry `expire_at` (recorded + audit retention) under their own TTL index; checkpoints never expire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument, WriteConcern
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.read_concern import ReadConcern

from services.audit.domain.chain import GENESIS_HASH, new_entry, sign_checkpoint, truncate_ms
from services.audit.domain.review import ALLOWED, SEARCH_ACTIONS, agency_scope

ENTRIES = "audit_entries"
CHECKPOINTS = "audit_checkpoints"
CHAIN = "audit_chain"
HEAD = "head"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ENTRY_INDEXES = [
    IndexModel([("expire_at", ASCENDING)], name="ttl_expire_at", expireAfterSeconds=0),
    IndexModel([("at", DESCENDING)], name="at"),
    *(IndexModel([(f"event.{f}", ASCENDING), ("_id", DESCENDING)], name=f"event_{f}")
      for f in ("user_id", "plates", "case_number", "purpose", "agency_id", "data_agency_ids")),
]


def audit_database(client: AsyncMongoClient, name: str) -> AsyncDatabase:
    return client.get_database(name, write_concern=WriteConcern(w="majority", j=True),
                               read_concern=ReadConcern("majority"))


class AuditStore:
    def __init__(self, client: AsyncMongoClient, db: AsyncDatabase, key: Ed25519PrivateKey | None,
                 retention: timedelta):
        self._client = client
        self._db = db
        self._key = key
        self._retention = retention
        self._lock = asyncio.Lock()
        self.ready = False

    async def ensure(self) -> None:
        """Indexes, the head document and the genesis checkpoint (idempotent)."""
        await self._db[ENTRIES].create_indexes(ENTRY_INDEXES)
        now = truncate_ms(datetime.now(UTC))
        await self._db[CHAIN].update_one({"_id": HEAD}, {"$setOnInsert": {"seq": 0, "hash": GENESIS_HASH, "at": now}},
                                         upsert=True)
        if self._key is not None and await self._db[CHECKPOINTS].find_one({"_id": 0}) is None:
            head = await self.head()
            if head["seq"] == 0:
                await self._db[CHECKPOINTS].update_one(
                    {"_id": 0}, {"$setOnInsert": sign_checkpoint(self._key, 0, GENESIS_HASH, head["at"])},
                    upsert=True)
        self.ready = True

    async def head(self) -> dict[str, Any]:
        return await self._db[CHAIN].find_one({"_id": HEAD}) or {"_id": HEAD, "seq": 0, "hash": GENESIS_HASH,
                                                                  "at": _EPOCH}

    async def append(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Store `event` as the next entry; returns the entry document."""
        if not self.ready:
            await self.ensure()
        async with self._lock, self._client.start_session() as session:
            return await session.with_transaction(lambda s: self._append(s, event))

    async def _append(self, session: AsyncClientSession, event: Mapping[str, Any]) -> dict[str, Any]:
        head = await self._db[CHAIN].find_one_and_update(
            {"_id": HEAD}, {"$inc": {"seq": 1}}, session=session, return_document=ReturnDocument.BEFORE)
        if head is None:
            raise RuntimeError("audit chain head missing")
        at = max(truncate_ms(datetime.now(UTC)), head["at"])
        entry = new_entry(head["seq"] + 1, at, event, head["hash"], at + self._retention)
        await self._db[ENTRIES].insert_one(entry, session=session)
        await self._db[CHAIN].update_one({"_id": HEAD}, {"$set": {"hash": entry["hash"], "at": at}}, session=session)
        return entry

    async def checkpoint(self) -> dict[str, Any] | None:
        """Sign the head when it moved since the last checkpoint."""
        if self._key is None:
            return None
        head = await self.head()
        last = await self._db[CHECKPOINTS].find_one(sort=[("_id", DESCENDING)])
        if last is not None and last["seq"] >= head["seq"]:
            return None
        cp = sign_checkpoint(self._key, head["seq"], head["hash"], head["at"])
        await self._db[CHECKPOINTS].update_one({"_id": cp["_id"]}, {"$setOnInsert": cp}, upsert=True)
        return cp

    async def find(self, flt: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        return await self._db[ENTRIES].find(flt).sort("_id", DESCENDING).limit(limit).to_list(None)

    async def flag_counts(self, agency_id: str, start: datetime, end: datetime) -> dict[str, Any]:
        """Aggregates the flags are computed from, over the agency's entries recorded in [start, end)."""
        base = {"$and": [agency_scope(agency_id), {"at": {"$gte": start, "$lt": end}},
                         {"event.action": {"$in": list(SEARCH_ACTIONS)}}, {"event.outcome": ALLOWED}]}
        by_user = {"_id": {"u": "$event.user_id", "n": "$event.username"}, "count": {"$sum": 1}}
        pipeline = [
            {"$match": base},
            {"$facet": {
                "volume": [{"$match": {"event.action": {"$in": ["search", "convoy"]}}}, {"$group": by_user}],
                "no_case": [{"$match": {"event.case_number": {"$in": [None, ""]}}}, {"$group": by_user}],
                "plates": [{"$match": {"event.action": {"$in": ["search", "convoy"]}}},
                           {"$unwind": "$event.plates"},
                           {"$group": {"_id": "$event.plates", "users": {"$addToSet": "$event.user_id"}}},
                           {"$project": {"users": {"$size": "$users"}}}],
            }},
        ]
        result = await (await self._db[ENTRIES].aggregate(pipeline)).to_list(None)
        facets = result[0] if result else {"volume": [], "no_case": [], "plates": []}
        users = {k: {(r["_id"].get("u", ""), r["_id"].get("n", "")): r["count"] for r in facets[k]}
                 for k in ("volume", "no_case")}
        return {**users, "plates": {r["_id"]: r["users"] for r in facets["plates"]}}
