"""MongoDB: lists and entries of record, and alerts with their workflow.

Entries are stored per (list, version); a bulk import inserts the new version, moves the list's `version`
pointer with a compare-and-set (two concurrent imports: one wins, the other is told), then deletes the old
version's entries. Alerts are keyed by their idempotent id: inserting one twice is a no-op.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError
from pymongo.read_concern import ReadConcern

from services.common.collections import ALERTS
from services.common.storage import Document
from services.hotlist.adapters.codec import entry_to_doc
from services.hotlist.domain.alerts import Status
from services.hotlist.domain.model import SHARED_SOURCES, Entry

LISTS = "hotlists"
ENTRIES = "hotlist_entries"
_INSERT_BATCH = 10_000


class ConcurrentImport(Exception):
    """Another import of the same list moved its version first."""


class HotlistStore:
    def __init__(self, db: AsyncDatabase[Document]):
        self._db = db

    async def ensure_indexes(self) -> None:
        await self._db[ENTRIES].create_indexes([IndexModel([("list_id", ASCENDING), ("version", ASCENDING)],
                                                           name="list_version")])
        await self._db[ALERTS].create_indexes([
            IndexModel([("raised_at", ASCENDING)], name="raised_at"),
            IndexModel([("list_id", ASCENDING), ("raised_at", ASCENDING)], name="list_raised"),
        ])

    async def upsert_list(self, list_id: str, owner: str, fields: dict[str, Any],
                          now: datetime) -> dict[str, Any] | None:
        """Creates the list for `owner`, or updates it when `owner` owns it; None when another agency does."""
        try:
            return await self._db[LISTS].find_one_and_update(
                {"_id": list_id, "owner": owner},
                {"$set": {**fields, "updated_at": now}, "$setOnInsert": {"version": 0, "entry_count": 0}},
                upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:  # the id exists with another owner: the upsert tried to insert it again
            return None

    async def get_list(self, list_id: str) -> dict[str, Any] | None:
        return await self._db[LISTS].find_one({"_id": list_id})

    async def lists(self, agency_id: str | None = None) -> list[dict[str, Any]]:
        """Every list, or those `agency_id` sees: its own and the shared sources (NCIC, state, NCMEC)."""
        flt = {} if agency_id is None else {"$or": [{"owner": agency_id}, {"source": {"$in": list(SHARED_SOURCES)}}]}
        return await self._db[LISTS].find(flt).sort("_id", 1).to_list(None)

    async def replace_entries(self, list_id: str, old_version: int, entries: Sequence[Entry],
                              now: datetime) -> dict[str, Any]:
        """Stores `entries` as version old_version + 1 and makes it the list's version of record."""
        version = old_version + 1
        await self._db[ENTRIES].delete_many({"list_id": list_id, "version": version})  # an earlier failed try
        for start in range(0, len(entries), _INSERT_BATCH):
            docs = [{**entry_to_doc(e), "_id": f"{list_id}:{version}:{e.entry_id}", "version": version}
                    for e in entries[start:start + _INSERT_BATCH]]
            await self._db[ENTRIES].insert_many(docs, ordered=False)
        doc = await self._db[LISTS].find_one_and_update(
            {"_id": list_id, "version": old_version},
            {"$set": {"version": version, "entry_count": len(entries), "updated_at": now}},
            return_document=ReturnDocument.AFTER)
        if doc is None:
            await self._db[ENTRIES].delete_many({"list_id": list_id, "version": version})
            raise ConcurrentImport(f"list {list_id} was changed by another import; try again")
        await self._db[ENTRIES].delete_many({"list_id": list_id, "version": {"$lt": version}})
        return doc

    async def add_entry(self, version: int, entry: Entry) -> None:
        doc = {**entry_to_doc(entry), "_id": f"{entry.list_id}:{version}:{entry.entry_id}", "version": version}
        result = await self._db[ENTRIES].replace_one({"_id": doc["_id"]}, doc, upsert=True)
        if result.upserted_id is not None:
            await self._db[LISTS].update_one({"_id": entry.list_id}, {"$inc": {"entry_count": 1}})

    async def remove_entry(self, list_id: str, version: int, entry_id: str) -> bool:
        result = await self._db[ENTRIES].delete_one({"_id": f"{list_id}:{version}:{entry_id}"})
        if result.deleted_count:
            await self._db[LISTS].update_one({"_id": list_id}, {"$inc": {"entry_count": -1}})
        return bool(result.deleted_count)

    async def entries(self, list_id: str, version: int) -> AsyncIterator[dict[str, Any]]:
        async for doc in self._db[ENTRIES].find({"list_id": list_id, "version": version}):
            yield doc

    async def entries_by_id(self, list_id: str, version: int, entry_ids: Iterable[str]) -> list[dict[str, Any]]:
        ids = [f"{list_id}:{version}:{e}" for e in entry_ids]
        return await self._db[ENTRIES].find({"_id": {"$in": ids}}).to_list(None)

    async def partial_plates(self, list_id: str, version: int) -> int:
        """Entries of the list's version whose plate is partial ('?' or '*')."""
        return await self._db[ENTRIES].count_documents({"list_id": list_id, "version": version,
                                                        "plate": {"$regex": r"[?*]"}})

    async def stored_alert_ids(self, alert_ids: list[str]) -> set[str]:
        docs = await self._db[ALERTS].find({"_id": {"$in": alert_ids}}, {"_id": 1}).to_list(None)
        return {d["_id"] for d in docs}

    async def insert_alerts(self, docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Stores the alerts not stored before; returns those (a redelivered read yields none)."""
        docs = list(docs)
        if not docs:
            return []
        try:
            await self._db[ALERTS].insert_many(docs, ordered=False)
            return docs
        except BulkWriteError as exc:
            dup = {docs[e["index"]]["_id"] for e in exc.details["writeErrors"] if e["code"] == 11000}
            if len(dup) != len(exc.details["writeErrors"]):
                raise
            return [d for d in docs if d["_id"] not in dup]
        except DuplicateKeyError:
            return []

    async def alert(self, alert_id: str) -> dict[str, Any] | None:
        # An officer acts on an alert the moment it is pushed: read the primary's latest, not the majority
        # snapshot (which may trail it by a moment); the workflow's compare-and-set keeps steps consistent.
        alerts = self._db[ALERTS].with_options(read_concern=ReadConcern("local"))
        return await alerts.find_one({"_id": alert_id})

    async def alerts_since(self, since: datetime, flt: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """The newest `limit` alerts raised since `since`, oldest first."""
        cursor = self._db[ALERTS].find({**flt, "raised_at": {"$gte": since}}).sort("raised_at", -1).limit(limit)
        return (await cursor.to_list(None))[::-1]

    async def advance(self, alert_id: str, expected: Status, new: Status, step: str,
                      record: dict[str, Any]) -> dict[str, Any] | None:
        """Records a workflow step if the alert is still in `expected` (compare-and-set); else None."""
        return await self._db[ALERTS].find_one_and_update(
            {"_id": alert_id, "status": expected.value},
            {"$set": {"status": new.value, step: record}}, return_document=ReturnDocument.AFTER)
