"""The read store as search sees it: scoped queries with a time limit, and the sealed records opened.

A query that runs past `query_timeout_ms` is DEADLINE_EXCEEDED (narrow it); MongoDB unreachable is
UNAVAILABLE. Both are raised as `Rejected`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ExecutionTimeout, PyMongoError

from services.common.data_keys import KeyStore
from services.common.reads import IMAGES, READS
from services.common.rejected import Code, Rejected
from services.common.storage import Document

log = logging.getLogger(__name__)
T = TypeVar("T")


async def _run(query: Callable[[], Awaitable[T]]) -> T:
    try:
        return await query()
    except ExecutionTimeout as exc:
        raise Rejected(Code.DEADLINE_EXCEEDED, "query took too long: narrow it") from exc
    except PyMongoError as exc:
        log.warning("search failed", extra={"error": repr(exc)[:200]})
        raise Rejected(Code.UNAVAILABLE, "read store unavailable") from exc


class ReadStore:
    def __init__(self, db: AsyncDatabase[Document], keys: KeyStore, timeout_ms: int):
        self._db = db
        self.keys = keys
        self._timeout_ms = timeout_ms

    async def newest(self, flt: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """Reads matching `flt`, newest first (ties by id), at most `limit`, still sealed."""
        return await _run(lambda: self._db[READS].find(flt).sort([("captured_at", DESCENDING), ("_id", DESCENDING)])
                          .limit(limit).max_time_ms(self._timeout_ms).to_list(None))

    async def sightings(self, flt: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """Camera and time of the reads matching `flt`, newest first."""
        return await _run(lambda: self._db[READS].find(flt, {"camera_id": 1, "captured_at": 1})
                          .sort("captured_at", DESCENDING).limit(limit).max_time_ms(self._timeout_ms).to_list(None))

    async def aggregate(self, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
        async def run() -> list[dict[str, Any]]:
            cursor = await self._db[READS].aggregate(pipeline, maxTimeMS=self._timeout_ms)
            return await cursor.to_list(None)

        return await _run(run)

    async def read(self, flt: dict[str, Any], projection: dict[str, Any] | None = None) -> dict[str, Any] | None:
        return await _run(lambda: self._db[READS].find_one(flt, projection))

    async def image(self, image_ref: str) -> dict[str, Any] | None:
        return await _run(lambda: self._db[IMAGES].find_one({"_id": image_ref}))
