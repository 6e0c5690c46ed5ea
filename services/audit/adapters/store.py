"""MongoDB side of the audit trail: the chain head, entries and signed checkpoints.

Appends are serialised twice: an asyncio lock within this process, and a transaction that increments the
head document first, so sequence numbers are gap-free and each entry links to its true predecessor.
Entries carry `expire_at` (recorded + audit retention) under their own TTL index; checkpoints never expire.

The service is the chain's only writer (one replica) and trusts only what it wrote itself: it keeps in
memory the head it last wrote and the checkpoint it last signed (at start, both are taken from the
database once the entries since the latest checkpoint check out). Before each append the head document
must still be that head; before each checkpoint the latest stored checkpoint must be its own and the stored
entries since it must hash and link up to that head. Anything else (entries rewritten, hashes recomputed,
the tail cut off and the head restored, checkpoints deleted) marks the chain tampered: the store then
appends and signs nothing more, except one last checkpoint of the head it wrote itself as evidence for
`sightline audit verify`, and the service reports NOT_SERVING until an operator restores the trail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument, WriteConcern
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from pymongo.read_concern import ReadConcern

from services.audit.domain.chain import (
    GENESIS_HASH,
    checkpoint_digest,
    checkpoint_valid,
    new_entry,
    segment_problem,
    sign_checkpoint,
    truncate_ms,
)
from services.audit.domain.review import ALLOWED, SEARCH_ACTIONS, agency_scope
from services.common.collections import AUDIT_CHECKPOINTS, AUDIT_ENTRIES
from services.common.storage import Document

log = logging.getLogger(__name__)

ENTRIES = AUDIT_ENTRIES
CHECKPOINTS = AUDIT_CHECKPOINTS
CHAIN = "audit_chain"
HEAD = "head"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ENTRY_INDEXES = [
    IndexModel([("expire_at", ASCENDING)], name="ttl_expire_at", expireAfterSeconds=0),
    IndexModel([("at", DESCENDING)], name="at"),
    *(IndexModel([(f"event.{f}", ASCENDING), ("_id", DESCENDING)], name=f"event_{f}")
      for f in ("user_id", "plates", "case_number", "purpose", "agency_id", "data_agency_ids")),
]


def audit_database(client: AsyncMongoClient[Document], name: str) -> AsyncDatabase[Document]:
    return client.get_database(name, write_concern=WriteConcern(w="majority", j=True),
                               read_concern=ReadConcern("majority"))


class ChainTampered(Exception):
    """The stored chain is not the one this service wrote."""


class AuditStore:
    def __init__(self, client: AsyncMongoClient[Document], db: AsyncDatabase[Document], key: Ed25519PrivateKey,
                 retention: timedelta):
        self._client = client
        self._db = db
        self._key = key
        self._retention = retention
        self._lock = asyncio.Lock()
        self.ready = False
        # The head this process wrote last (or checked at start) and the checkpoint it signed last.
        self._head: dict[str, Any] = {"seq": 0, "hash": GENESIS_HASH, "at": _EPOCH}
        self._signed: dict[str, Any] | None = None
        # Why the stored chain is not the one this service wrote (None while it is).
        self.tampered: str | None = None

    async def ensure(self) -> None:
        """Indexes, the head document and the genesis checkpoint (idempotent); then checks the stored chain
        since the latest checkpoint and takes its head as its own."""
        await self._db[ENTRIES].create_indexes(ENTRY_INDEXES)
        now = truncate_ms(datetime.now(UTC))
        await self._db[CHAIN].update_one({"_id": HEAD}, {"$setOnInsert": {"seq": 0, "hash": GENESIS_HASH, "at": now}},
                                         upsert=True)
        if await self._db[CHECKPOINTS].find_one({"_id": 0}) is None:
            head = await self.head()
            if head["seq"] == 0:
                await self._db[CHECKPOINTS].update_one(
                    {"_id": 0}, {"$setOnInsert": sign_checkpoint(self._key, 0, GENESIS_HASH, head["at"], GENESIS_HASH)},
                    upsert=True)
        await self._resume()
        self.ready = True

    async def _resume(self) -> None:
        head = await self.head()
        latest = await self._db[CHECKPOINTS].find_one(sort=[("_id", DESCENDING)])
        if latest is None:
            return await self._tamper("the chain has entries but no signed checkpoint")
        prior = await self._db[CHECKPOINTS].find_one({"_id": {"$lt": latest["_id"]}}, sort=[("_id", DESCENDING)])
        if not checkpoint_valid(self._key.public_key(), latest):
            return await self._tamper(f"the latest checkpoint ({latest['_id']}) has an invalid signature")
        if "prev" in latest and latest["prev"] != (checkpoint_digest(prior) if prior else GENESIS_HASH):
            return await self._tamper(f"the latest checkpoint ({latest['_id']}) does not follow the one before it")
        if head["seq"] < latest["seq"]:
            return await self._tamper(f"the chain head ({head['seq']}) is behind the latest signed checkpoint "
                                      f"({latest['seq']}): entries were deleted")
        if await self._db[ENTRIES].find_one({"_id": {"$gt": head["seq"]}}) is not None:
            return await self._tamper(f"entries exist beyond the chain head ({head['seq']})")
        if problem := await self._segment_problem(latest, head):
            return await self._tamper(problem)
        self._head = {"seq": head["seq"], "hash": head["hash"], "at": head["at"]}
        self._signed = latest
        log.info("audit chain checked since the latest checkpoint",
                 extra={"checkpoint": latest["seq"], "head": head["seq"], "unsigned": head["seq"] - latest["seq"]})

    async def _segment_problem(self, start: Mapping[str, Any], end: Mapping[str, Any]) -> str | None:
        entries = await self._db[ENTRIES].find({"_id": {"$gte": start["seq"], "$lte": end["seq"]}}).sort(
            "_id", ASCENDING).to_list(None)
        kept = start["at"] > datetime.now(UTC) - self._retention
        return segment_problem(entries, start["seq"], start["hash"], end["seq"], end["hash"], start_required=kept)

    async def _tamper(self, reason: str, evidence: Mapping[str, Any] | None = None) -> None:
        """Stop appending and signing. `evidence`: the head this process wrote, signed (once) when no
        checkpoint covers it yet, so that verification finds what was cut off or rewritten after it."""
        if self.tampered is None:
            log.error("audit chain tampered: appending and signing stopped", extra={"reason": reason})
        self.tampered = reason
        signed = self._signed
        if evidence is None or signed is None or evidence["seq"] <= signed["seq"]:
            return
        cp = sign_checkpoint(self._key, evidence["seq"], evidence["hash"], evidence["at"], checkpoint_digest(signed))
        try:
            await self._db[CHECKPOINTS].insert_one(cp)
        except DuplicateKeyError:
            log.error("audit checkpoint slot taken by a checkpoint this service did not sign", extra={"seq": cp["seq"]})
            return
        self._signed = cp
        log.error("signed the head this service wrote, as evidence", extra={"seq": cp["seq"]})

    async def head(self) -> dict[str, Any]:
        return await self._db[CHAIN].find_one({"_id": HEAD}) or {"_id": HEAD, "seq": 0, "hash": GENESIS_HASH,
                                                                  "at": _EPOCH}

    async def append(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Store `event` as the next entry; returns the entry document. ChainTampered when the stored head is
        not the one this service wrote (nothing is written then)."""
        if not self.ready:
            await self.ensure()
        async with self._lock, self._client.start_session() as session:
            if self.tampered:
                raise ChainTampered(self.tampered)
            try:
                entry = await session.with_transaction(lambda s: self._append(s, event))
            except ChainTampered as exc:
                await self._tamper(str(exc), self._head)
                raise
            self._head = {"seq": entry["_id"], "hash": entry["hash"], "at": entry["at"]}
            return entry

    async def _append(self, session: AsyncClientSession, event: Mapping[str, Any]) -> dict[str, Any]:
        head = await self._db[CHAIN].find_one_and_update(
            {"_id": HEAD}, {"$inc": {"seq": 1}}, session=session, return_document=ReturnDocument.BEFORE)
        mine = self._head
        if head is None or head["seq"] != mine["seq"] or head["hash"] != mine["hash"]:
            raise ChainTampered(f"the chain head in the database ({head['seq'] if head else 'none'}) is not the one "
                                f"this service wrote ({mine['seq']})")
        at = max(truncate_ms(datetime.now(UTC)), mine["at"])
        entry = new_entry(mine["seq"] + 1, at, event, mine["hash"], at + self._retention)
        try:
            await self._db[ENTRIES].insert_one(entry, session=session)
        except DuplicateKeyError as exc:
            raise ChainTampered(f"an entry {entry['_id']} exists beyond the head this service wrote") from exc
        await self._db[CHAIN].update_one({"_id": HEAD}, {"$set": {"hash": entry["hash"], "at": at}}, session=session)
        return entry

    async def checkpoint(self) -> dict[str, Any] | None:
        """Check the stored chain since the last checkpoint against what this service wrote, then sign the
        head when it moved. Returns the new checkpoint, or None (nothing new, or tampered)."""
        if self.tampered or self._signed is None:
            return None
        async with self._lock:
            mine = dict(self._head)
            stored = await self.head()
        signed = self._signed
        problem = None
        if stored["seq"] != mine["seq"] or stored["hash"] != mine["hash"]:
            problem = (f"the chain head in the database ({stored['seq']}) is not the one this service wrote "
                       f"({mine['seq']})")
        else:
            latest = await self._db[CHECKPOINTS].find_one(sort=[("_id", DESCENDING)])
            if latest is None or latest["_id"] != signed["_id"] or latest.get("signature") != signed["signature"]:
                problem = (f"the latest stored checkpoint is not the one this service signed last ({signed['seq']}): "
                           "checkpoints were deleted or added")
            else:
                problem = await self._segment_problem(signed, mine)
        if problem:
            await self._tamper(problem, mine)
            return None
        if mine["seq"] == signed["seq"]:
            return None
        cp = sign_checkpoint(self._key, mine["seq"], mine["hash"], mine["at"], checkpoint_digest(signed))
        try:
            await self._db[CHECKPOINTS].insert_one(cp)
        except DuplicateKeyError:
            await self._tamper(f"a checkpoint at sequence {cp['seq']} exists that this service did not sign")
            return None
        self._signed = cp
        return cp

    async def find(self, flt: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        return await self._db[ENTRIES].find(flt).sort("_id", DESCENDING).limit(limit).to_list(None)

    async def flag_counts(self, agency_id: str, start: datetime, end: datetime) -> dict[str, Any]:
        """Aggregates the flags are computed from, over the agency's entries recorded in [start, end)."""
        base = {"$and": [agency_scope(agency_id), {"at": {"$gte": start, "$lt": end}},
                         {"event.action": {"$in": list(SEARCH_ACTIONS)}}, {"event.outcome": ALLOWED}]}
        by_user = {"_id": {"u": "$event.user_id", "n": "$event.username"}, "count": {"$sum": 1}}
        pipeline: list[dict[str, Any]] = [
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
