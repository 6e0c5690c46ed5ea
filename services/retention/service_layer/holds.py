"""Placing and releasing evidence holds on stored reads and their images.

Placing a hold: every read in scope (and the image of each) loses `expire_at` (the TTL index no longer
touches it), gains the hold's id in `held_by`, and, when no other hold had it yet, is re-sealed from its day
key to the hold's own key, so that shredding the day does not touch it. Releasing: the hold's id leaves
`held_by`; a record still held by another hold moves to that hold's key; a record held by none goes back to
its day key with `expire_at = captured_at + the agency's retention`, or is deleted at once when that moment
has passed or its day was shredded. Then the hold's key is destroyed.

Callers serialise these operations and the verification job (one lock per process, one retention replica).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import DeleteOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from services.common import sealing
from services.common.data_keys import KeyStore, day_key_id, hold_key_id
from services.common.reads import IMAGES, READS
from services.common.retention_policy import capture_day
from services.common.storage import Document
from services.retention.adapters.store import RetentionStore

Reseal = Callable[[dict[str, Any], bytes, bytes], bytes]
# Per collection: the field that holds the sealed value and how to re-seal it.
SEALED = {READS: ("sealed", sealing.reseal_read), IMAGES: ("data", sealing.reseal_image)}
_PROJECTION = {"_id": 1, "key_id": 1, "held_by": 1, "captured_at": 1, "sealed": 1, "data": 1, "image_ref": 1}


@dataclass
class ReleaseCounts:
    restored: int = 0
    deleted: int = 0


class HoldManager:
    def __init__(self, store: RetentionStore, keys: KeyStore, batch_size: int = 500):
        self._db = store.db
        self._keys = keys
        self._batch = batch_size

    def _resealed(self, coll: str, doc: dict[str, Any], keys: dict[str, bytes | None], new_id: str,
                  new: bytes) -> dict[str, Any] | None:
        """`$set` moving the document's sealed field to key `new_id`; None when its old key is gone."""
        field, reseal = SEALED[coll]
        if "key_id" not in doc or field not in doc or doc["key_id"] == new_id:
            return {}
        old = keys.get(doc["key_id"])
        if old is None:
            return None
        return {field: reseal(doc, old, new), "key_id": new_id}

    async def place(self, agency_id: str, hold_id: str, read_filter: dict[str, Any], now: datetime) -> tuple[int, int]:
        """Hold the reads matching `read_filter` and their images; returns (reads, images) held."""
        new_id, new = await self._keys.hold_key(agency_id, hold_id, now)
        reads = await self._hold(READS, read_filter, hold_id, new_id, new)
        image_refs = sorted({d["image_ref"] for d in reads.values() if d.get("image_ref")})
        images = await self._hold(IMAGES, {"_id": {"$in": image_refs}}, hold_id, new_id, new)
        return len(reads), len(images)

    async def _hold(self, coll: str, flt: dict[str, Any], hold_id: str, new_id: str,
                    new: bytes) -> dict[str, dict[str, Any]]:
        held: dict[str, dict[str, Any]] = {}
        async for batch in _batches(self._db[coll], flt, self._batch):
            keys = await self._keys.keys(d["key_id"] for d in batch if "key_id" in d and not d.get("held_by"))
            ops = []
            for doc in batch:
                change: dict[str, Any] | None = {}
                if not doc.get("held_by"):  # first hold on it: moves to this hold's key
                    change = self._resealed(coll, doc, keys, new_id, new)
                if change is None:  # its day was shredded: nothing left to keep
                    continue
                ops.append(UpdateOne({"_id": doc["_id"]}, {"$set": change, "$unset": {"expire_at": ""},
                                                           "$addToSet": {"held_by": hold_id}}
                                     if change else {"$unset": {"expire_at": ""}, "$addToSet": {"held_by": hold_id}}))
                held[doc["_id"]] = doc
            if ops:
                await self._db[coll].bulk_write(ops, ordered=False)
        return held

    async def release(self, agency_id: str, hold_id: str, retention: timedelta, now: datetime) -> ReleaseCounts:
        """Return the hold's reads and images to normal expiry (deleting those past it); destroy its key."""
        counts = ReleaseCounts()
        for coll in (READS, IMAGES):
            result = await self._release(coll, agency_id, hold_id, retention, now)
            if coll == READS:
                counts = result
        await self._keys.destroy(hold_key_id(hold_id), now)
        return counts

    async def _release(self, coll: str, agency_id: str, hold_id: str, retention: timedelta,
                       now: datetime) -> ReleaseCounts:
        counts = ReleaseCounts()
        this_key = hold_key_id(hold_id)
        async for batch in _batches(self._db[coll], {"held_by": hold_id}, self._batch):
            targets: dict[str, str] = {}
            for doc in batch:
                others = [h for h in doc["held_by"] if h != hold_id]
                targets[doc["_id"]] = (hold_key_id(others[0]) if others
                                       else day_key_id(agency_id, capture_day(doc["captured_at"])))
            keys = await self._keys.keys([*{d.get("key_id", this_key) for d in batch}, *targets.values()])
            ops: list[UpdateOne | DeleteOne] = []
            for doc in batch:
                others = [h for h in doc["held_by"] if h != hold_id]
                target = targets[doc["_id"]]
                expire_at = doc["captured_at"] + retention
                new = keys.get(target)
                shredded = "key_id" in doc and new is None
                if not others and (expire_at <= now or shredded):
                    ops.append(DeleteOne({"_id": doc["_id"]}))
                    counts.deleted += 1
                    continue
                change = {} if doc.get("key_id") != this_key or new is None else \
                    self._resealed(coll, doc, keys, target, new) or {}
                update: dict[str, Any] = {"$pull": {"held_by": hold_id}}
                if not others:
                    change["expire_at"] = expire_at
                    update = {"$unset": {"held_by": ""}}
                    counts.restored += 1
                if change:
                    update["$set"] = change
                ops.append(UpdateOne({"_id": doc["_id"]}, update))
            if ops:
                await self._db[coll].bulk_write(ops, ordered=False)
        return counts


async def _batches(coll: AsyncCollection[Document], flt: dict[str, Any],
                   size: int) -> AsyncIterator[list[dict[str, Any]]]:
    """The matching documents, `size` at a time (projected to what re-sealing needs)."""
    batch: list[dict[str, Any]] = []
    async for doc in coll.find(flt, _PROJECTION, batch_size=size):
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
