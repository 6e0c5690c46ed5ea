"""MongoDB side of ingest: cameras, agencies' retention, and frames stored with their reads and image (sealed
under the agency's day key) in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson.binary import Binary
from cachetools import TTLCache
from opentelemetry import trace
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.common import sealing
from services.common.collections import AGENCIES
from services.common.data_keys import KeyStore
from services.common.reads import CAMERAS, FRAMES, IMAGES, READS, document_to_read, read_to_document
from services.common.retention_policy import capture_day
from services.common.storage import Document
from sightline.common.v1 import read_pb2
from sightline.ingest.v1 import ingest_pb2

tracer = trace.get_tracer(__name__)


@dataclass(frozen=True)
class StoredFrame:
    read_ids: list[str]
    duplicate: bool


@dataclass(frozen=True)
class ReadOnlyFrame:
    """A frame a gateway read itself: its reads, no image."""

    key: str
    reads: list[read_pb2.Read]
    captured_at: datetime
    expire_at: datetime
    agency_id: str


def _frame_doc(key: str, reads: list[read_pb2.Read], image_ref: str, captured_at: datetime, stored_at: datetime,
               expire_at: datetime) -> dict[str, Any]:
    return {"_id": key, "read_ids": [r.read_id for r in reads], "image_ref": image_ref, "captured_at": captured_at,
            "stored_at": stored_at, "expire_at": expire_at, "published": False}



class FrameStore:
    def __init__(self, client: AsyncMongoClient[Document], db: AsyncDatabase[Document], keys: KeyStore,
                 cache_s: float = 10.0, cache_size: int = 10_000):
        self._client = client
        self._db = db
        self.keys = keys
        # Bounded and expiring, and only records that exist go in: ids presented by unauthenticated callers
        # (unknown cameras) are looked up every time and never grow the cache.
        self._cache: TTLCache[tuple[str, str], dict[str, Any]] = TTLCache(maxsize=cache_size, ttl=cache_s)

    @property
    def cached_records(self) -> int:
        return len(self._cache)

    async def _find_cached(self, collection: str, query: dict[str, Any]) -> dict[str, Any] | None:
        """One record by `query["_id"]`, cached briefly so each frame costs no lookup."""
        key = (collection, query["_id"])
        if (hit := self._cache.get(key)) is not None:
            return hit
        doc = await self._db[collection].find_one(query)
        if doc is not None:
            self._cache[key] = doc
        return doc

    async def camera(self, camera_id: str) -> dict[str, Any] | None:
        """The active camera's record, or None."""
        return await self._find_cached(CAMERAS, {"_id": camera_id, "active": True})

    async def agency(self, agency_id: str) -> dict[str, Any] | None:
        """The agency's record (its `state` and `retention_days`), or None."""
        return await self._find_cached(AGENCIES, {"_id": agency_id})

    async def existing(self, camera_id: str, frame_id: str) -> list[str] | None:
        doc = await self._db[FRAMES].find_one({"_id": f"{camera_id}/{frame_id}"}, {"read_ids": 1})
        return None if doc is None else list(doc["read_ids"])

    async def store(self, key: str, reads: list[read_pb2.Read], image_ref: str, image: bytes,
                    captured_at: datetime, expire_at: datetime, stored_at: datetime, agency_id: str) -> StoredFrame:
        """Frame record, reads and redacted image, all or nothing. A concurrent duplicate is reported.

        The image and the reads' plate text are sealed under the agency's key for the capture day; KeyShredded
        when that day's retention has already ended.
        """
        key_id, data_key = await self.keys.day_key(agency_id, capture_day(captured_at), stored_at)
        frame_doc = _frame_doc(key, reads, image_ref, captured_at, stored_at, expire_at)
        image_doc = {"_id": image_ref, "content_type": "image/jpeg", "agency_id": agency_id,
                     "data": Binary(sealing.seal_image(image_ref, image, data_key)), "key_id": key_id,
                     "captured_at": captured_at, "expire_at": expire_at}
        read_docs = [sealing.seal_read(read_to_document(r), key_id, data_key) for r in reads]
        span = tracer.start_as_current_span("mongodb.store_frame", kind=trace.SpanKind.CLIENT,
                                            attributes={"db.system": "mongodb", "db.namespace": self._db.name,
                                                        "sightline.reads": len(reads)})
        try:
            with span:
                async with self._client.start_session() as session, await session.start_transaction():
                    await self._db[FRAMES].insert_one(frame_doc, session=session)
                    await self._db[IMAGES].insert_one(image_doc, session=session)
                    if read_docs:
                        await self._db[READS].insert_many(read_docs, session=session)
        except DuplicateKeyError:
            return StoredFrame(await self.existing(*key.split("/", 1)) or [], duplicate=True)
        return StoredFrame(frame_doc["read_ids"], duplicate=False)

    async def store_batch(self, frames: list[ReadOnlyFrame], stored_at: datetime) -> list[StoredFrame]:
        """Frames without an image (gateways that read plates themselves): the frame records and reads of every
        frame not stored before, sealed like `store`'s, in one transaction. Frames stored before (or twice in
        the batch) are reported as duplicates; a concurrent duplicate makes the batch go one frame at a time.
        """
        keys = [f.key for f in frames]
        stored = {d["_id"]: list(d["read_ids"])
                  for d in await self._db[FRAMES].find({"_id": {"$in": keys}}, {"read_ids": 1}).to_list(None)}
        fresh: dict[str, ReadOnlyFrame] = {}
        for f in frames:
            if f.key not in stored:
                fresh.setdefault(f.key, f)
        frame_docs, read_docs = [], []
        for f in fresh.values():
            key_id, data_key = await self.keys.day_key(f.agency_id, capture_day(f.captured_at), stored_at)
            frame_docs.append(_frame_doc(f.key, f.reads, "", f.captured_at, stored_at, f.expire_at))
            read_docs += [sealing.seal_read(read_to_document(r), key_id, data_key) for r in f.reads]
        try:
            if frame_docs:
                async with self._client.start_session() as session, await session.start_transaction():
                    await self._db[FRAMES].insert_many(frame_docs, session=session)
                    if read_docs:
                        await self._db[READS].insert_many(read_docs, session=session)
        except DuplicateKeyError:
            if len(frames) == 1:
                return [StoredFrame(await self.existing(*frames[0].key.split("/", 1)) or [], duplicate=True)]
            return [(await self.store_batch([f], stored_at))[0] for f in frames]
        out = []
        for f in frames:
            first = fresh.get(f.key)
            ids = stored[f.key] if first is None else [r.read_id for r in first.reads]
            out.append(StoredFrame(ids, duplicate=first is not f))
        return out

    async def mark_published(self, key: str) -> None:
        await self._db[FRAMES].update_one({"_id": key}, {"$set": {"published": True}})

    async def mark_published_many(self, keys: list[str]) -> None:
        await self._db[FRAMES].update_many({"_id": {"$in": keys}}, {"$set": {"published": True}})

    async def unpublished(self, older_than: datetime, limit: int = 100) -> list[tuple[str, list[read_pb2.Read]]]:
        """Outbox: frames committed but whose reads were not (yet) put on the stream."""
        out = []
        cursor = self._db[FRAMES].find({"published": False, "stored_at": {"$lt": older_than}}).limit(limit)
        async for frame in cursor:
            docs = await self.keys.open_reads(await self._db[READS].find({"_id": {"$in": frame["read_ids"]}})
                                              .to_list(None))
            out.append((frame["_id"], [document_to_read(d) for d in docs]))
        return out

    async def upsert_camera(self, camera: ingest_pb2.Camera, new_secret_hash: str) -> bool | None:
        """Create or update the camera of `camera.agency_id`; True when created (its secret hash set then),
        None when the id belongs to another agency's camera."""
        doc: dict[str, Any] = {"agency_id": camera.agency_id, "name": camera.name, "active": camera.active,
                               "site_id": camera.site_id}
        unset = {}
        if camera.HasField("location"):
            doc["location"] = {"type": "Point", "coordinates": [camera.location.longitude, camera.location.latitude]}
        else:
            unset["location"] = ""
        if camera.HasField("bearing_degrees"):
            doc["bearing_degrees"] = camera.bearing_degrees
        else:
            unset["bearing_degrees"] = ""
        update: dict[str, Any] = {"$set": doc, "$setOnInsert": {"secret_hash": new_secret_hash}}
        if unset:
            update["$unset"] = unset
        try:
            result = await self._db[CAMERAS].update_one({"_id": camera.camera_id, "agency_id": camera.agency_id},
                                                        update, upsert=True)
        except DuplicateKeyError:  # the _id exists with another agency_id
            return None
        self._cache.pop((CAMERAS, camera.camera_id), None)
        return result.upserted_id is not None

    async def camera_site(self, camera_id: str) -> str | None:
        doc = await self._db[CAMERAS].find_one({"_id": camera_id}, {"site_id": 1})
        return None if doc is None else doc.get("site_id")

    async def camera_agency(self, camera_id: str) -> str | None:
        doc = await self._db[CAMERAS].find_one({"_id": camera_id}, {"agency_id": 1})
        return None if doc is None else doc["agency_id"]

    async def set_camera_secret(self, camera_id: str, agency_id: str, new_secret_hash: str) -> bool:
        """Replace the secret hash of the agency's camera; False when it has no such camera."""
        result = await self._db[CAMERAS].update_one({"_id": camera_id, "agency_id": agency_id},
                                                    {"$set": {"secret_hash": new_secret_hash}})
        self._cache.pop((CAMERAS, camera_id), None)
        return result.matched_count == 1

    async def list_cameras(self, agency_id: str) -> list[dict[str, Any]]:
        query = {"agency_id": agency_id} if agency_id else {}
        return await self._db[CAMERAS].find(query).sort("_id", 1).to_list(None)
