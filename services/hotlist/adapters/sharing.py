"""The agencies' hot-list sharing, read from their records (services/common/agencies.py)."""

from __future__ import annotations

import time

from pymongo.asynchronous.database import AsyncDatabase

from services.common.agencies import AGENCIES, HOTLIST_SHARE_WITH
from services.common.storage import Document
from services.hotlist.domain.model import HotlistSharing


class SharingDirectory:
    def __init__(self, db: AsyncDatabase[Document], refresh_s: float):
        self._db = db
        self._refresh_s = refresh_s
        self._cached: HotlistSharing | None = None
        self._loaded_at = 0.0

    async def load(self) -> HotlistSharing:
        """As recorded now (a back-search reads it afresh)."""
        docs = await self._db[AGENCIES].find({HOTLIST_SHARE_WITH: {"$nin": [None, []]}},
                                             {HOTLIST_SHARE_WITH: 1}).to_list(None)
        return HotlistSharing({d["_id"]: frozenset(str(a) for a in d[HOTLIST_SHARE_WITH]) for d in docs})

    async def current(self) -> HotlistSharing:
        """At most `refresh_s` old (the matcher asks before every batch)."""
        if self._cached is None or time.monotonic() - self._loaded_at >= self._refresh_s:
            self._cached, self._loaded_at = await self.load(), time.monotonic()
        return self._cached
