"""Back-search: when entries are added, past reads still within retention are matched against them and
hits are raised as historical alerts (same idempotent ids, so a read the live matcher already alerted on
is not alerted twice)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.common.reads import READS
from services.hotlist.alerting import AlertRaiser
from services.hotlist.domain.matcher import ListIndex
from services.hotlist.domain.plates import candidate_regex


class BackSearch:
    def __init__(self, db: AsyncDatabase, raiser: AlertRaiser, max_alerts: int, timeout_ms: int):
        self._db = db
        self._raiser = raiser
        self._max_alerts = max_alerts
        self._timeout_ms = timeout_ms

    async def run(self, index: ListIndex, flt: dict[str, Any] | None = None) -> int:
        """Matches stored reads (all, or those `flt` selects) against `index`; returns alerts raised."""
        now = datetime.now(UTC)
        query = {"plate_normalized": {"$ne": ""}, "expire_at": {"$gt": now}, **(flt or {})}
        cursor = self._db[READS].find(query).max_time_ms(self._timeout_ms).batch_size(1000)
        raised, hits = 0, []
        async for doc in cursor:
            if matches := index.match(doc["plate_normalized"], doc.get("region", {}).get("state", ""), now):
                hits.append((doc, matches))
            if len(hits) >= 100 or raised + len(hits) >= self._max_alerts:
                raised += await self._raiser.raise_alerts(hits, historical=True)
                hits = []
                if raised >= self._max_alerts:
                    break
        if hits:
            raised += await self._raiser.raise_alerts(hits, historical=True)
        return raised

    async def for_entry(self, index: ListIndex, plate: str) -> int:
        """One new entry: only reads whose plate can match it are read (index-backed regex)."""
        regex = candidate_regex(plate, index.config.fuzzy_confusions, index.config.max_edits)
        return await self.run(index, {"plate_normalized": {"$regex": regex}})
