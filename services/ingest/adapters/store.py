"""MongoDB side of ingest: cameras, and frames stored with their reads and image in one transaction."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson.binary import Binary
from opentelemetry import trace
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.common.reads import CAMERAS, FRAMES, IMAGES, READS, document_to_read, read_to_document
from sightline.common.v1 import read_pb2
from sightline.ingest.v1 import ingest_pb2

tracer = trace.get_tracer(__name__)


@dataclass(frozen=True)
class StoredFrame:
    read_ids: list[str]
    duplicate: bool


class FrameStore:
    def __init__(self, client: AsyncMongoClient, db: AsyncDatabase, camera_cache_s: float = 10.0):
        self._client = client
        self._db = db
        self._camera_cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._camera_cache_s = camera_cache_s

    async def camera(self, camera_id: str) -> dict[str, Any] | None:
        """The active camera's record, or None; cached briefly so each frame costs no lookup."""
        now = time.monotonic()
        hit = self._camera_cache.get(camera_id)
        if hit and now - hit[0] < self._camera_cache_s:
            return hit[1]
        doc = await self._db[CAMERAS].find_one({"_id": camera_id, "active": True})
        self._camera_cache[camera_id] = (now, doc)
        return doc

    async def existing(self, camera_id: str, frame_id: str) -> list[str] | None:
        doc = await self._db[FRAMES].find_one({"_id": f"{camera_id}/{frame_id}"}, {"read_ids": 1})
        return None if doc is None else list(doc["read_ids"])

    async def store(self, key: str, reads: list[read_pb2.Read], image_ref: str, image: bytes,
                    captured_at: datetime, expire_at: datetime, stored_at: datetime) -> StoredFrame:
        """Frame record, reads and redacted image, all or nothing. A concurrent duplicate is reported."""
        frame_doc = {"_id": key, "read_ids": [r.read_id for r in reads], "image_ref": image_ref,
                     "captured_at": captured_at, "stored_at": stored_at, "expire_at": expire_at,
                     "published": False}
        image_doc = {"_id": image_ref, "content_type": "image/jpeg", "data": Binary(image),
                     "captured_at": captured_at, "expire_at": expire_at}
        span = tracer.start_as_current_span("mongodb.store_frame", kind=trace.SpanKind.CLIENT,
                                            attributes={"db.system": "mongodb", "db.namespace": self._db.name,
                                                        "sightline.reads": len(reads)})
        try:
            with span:
                async with self._client.start_session() as session, await session.start_transaction():
                    await self._db[FRAMES].insert_one(frame_doc, session=session)
                    await self._db[IMAGES].insert_one(image_doc, session=session)
                    if reads:
                        await self._db[READS].insert_many([read_to_document(r) for r in reads], session=session)
        except DuplicateKeyError:
            return StoredFrame(await self.existing(*key.split("/", 1)) or [], duplicate=True)
        return StoredFrame(frame_doc["read_ids"], duplicate=False)

    async def mark_published(self, key: str) -> None:
        await self._db[FRAMES].update_one({"_id": key}, {"$set": {"published": True}})

    async def unpublished(self, older_than: datetime, limit: int = 100) -> list[tuple[str, list[read_pb2.Read]]]:
        """Outbox: frames committed but whose reads were not (yet) put on the stream."""
        out = []
        cursor = self._db[FRAMES].find({"published": False, "stored_at": {"$lt": older_than}}).limit(limit)
        async for frame in cursor:
            docs = await self._db[READS].find({"_id": {"$in": frame["read_ids"]}}).to_list(None)
            out.append((frame["_id"], [document_to_read(d) for d in docs]))
        return out

    async def upsert_camera(self, camera: ingest_pb2.Camera) -> None:
        doc: dict[str, Any] = {"agency_id": camera.agency_id, "name": camera.name, "active": camera.active}
        if camera.HasField("location"):
            doc["location"] = {"type": "Point", "coordinates": [camera.location.longitude, camera.location.latitude]}
        if camera.HasField("bearing_degrees"):
            doc["bearing_degrees"] = camera.bearing_degrees
        await self._db[CAMERAS].replace_one({"_id": camera.camera_id}, doc, upsert=True)
        self._camera_cache.pop(camera.camera_id, None)

    async def list_cameras(self, agency_id: str) -> list[dict[str, Any]]:
        query = {"agency_id": agency_id} if agency_id else {}
        return await self._db[CAMERAS].find(query).sort("_id", 1).to_list(None)
