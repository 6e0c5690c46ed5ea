"""MongoDB side of the retention service: agencies' retention settings, holds, verification reports."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from services.common.collections import AGENCIES, HOLDS, RETENTION_REPORTS
from services.common.data_keys import DATA_KEYS
from services.common.reads import IMAGES, READS
from services.common.storage import Document

REPORTS = RETENTION_REPORTS


class RetentionStore:
    def __init__(self, db: AsyncDatabase[Document]):
        self.db = db

    async def ensure_indexes(self) -> None:
        # Held records, by hold (release) and for the per-day held counts.
        held = IndexModel([("held_by", ASCENDING)], name="held_by",
                          partialFilterExpression={"held_by": {"$exists": True}})
        await self.db[READS].create_indexes([held])
        await self.db[IMAGES].create_indexes([held])
        await self.db[HOLDS].create_index([("agency_id", ASCENDING), ("created_at", DESCENDING)], name="agency_time")
        await self.db[REPORTS].create_index([("agency_id", ASCENDING), ("day", DESCENDING)], name="agency_day")

    async def agency(self, agency_id: str) -> dict[str, Any] | None:
        return await self.db[AGENCIES].find_one({"_id": agency_id})

    async def count_reads(self, flt: dict[str, Any], limit: int) -> int:
        """Reads matching `flt`, counted up to `limit`."""
        return await self.db[READS].count_documents(flt, limit=limit)

    async def set_retention(self, agency_id: str, state: str, days: int) -> dict[str, Any] | None:
        """The agency's record after the change; None when the agency does not exist."""
        return await self.db[AGENCIES].find_one_and_update(
            {"_id": agency_id}, {"$set": {"state": state, "retention_days": days}},
            return_document=ReturnDocument.AFTER)

    async def insert_hold(self, doc: dict[str, Any]) -> None:
        await self.db[HOLDS].insert_one(doc)

    async def hold(self, agency_id: str, hold_id: str) -> dict[str, Any] | None:
        return await self.db[HOLDS].find_one({"_id": hold_id, "agency_id": agency_id})

    async def update_hold(self, hold_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        doc = await self.db[HOLDS].find_one_and_update({"_id": hold_id}, {"$set": changes},
                                                       return_document=ReturnDocument.AFTER)
        if doc is None:  # only retention writes holds, and it never deletes one
            raise LookupError(f"hold {hold_id} is gone")
        return doc

    async def holds(self, agency_id: str, include_released: bool) -> list[dict[str, Any]]:
        flt: dict[str, Any] = {"agency_id": agency_id}
        if not include_released:
            flt["status"] = "active"
        return await self.db[HOLDS].find(flt).sort("created_at", DESCENDING).to_list(None)

    async def save_report(self, report: dict[str, Any]) -> None:
        await self.db[REPORTS].replace_one({"_id": report["_id"]}, report, upsert=True)

    async def reports(self, agency_id: str, limit: int) -> list[dict[str, Any]]:
        return await self.db[REPORTS].find({"agency_id": agency_id}).sort("day", DESCENDING).limit(limit).to_list(None)

    async def open_day_keys(self) -> list[dict[str, Any]]:
        """Day keys not destroyed yet: the capture days still to shred."""
        return await self.db[DATA_KEYS].find({"kind": "day", "destroyed_at": None},
                                             {"agency_id": 1, "day": 1}).to_list(None)
