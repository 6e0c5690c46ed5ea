"""Back-search: the stored reads still within retention that a list's entries match (HotlistService.BackSearch).

A search of reads like any other: only the reads of the agencies whose reads the list may match
(HotlistSharing.read_agencies), at most `max_hits` matches and `timeout_ms` of MongoDB time. It finds; the
server audits the search, then raises the hits as historical alerts (same idempotent ids, so a read the live
matcher already alerted on is not alerted twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.common.reads import READS
from services.common.storage import Document
from services.hotlist.domain.fuzzy_index import candidate_regex
from services.hotlist.domain.matcher import ListIndex, Match

# Up to this many entries, only the reads whose plate may match one of them are read (index-backed regexes);
# a larger search reads every stored read of the agencies searched.
NARROW_ENTRIES = 100


@dataclass(frozen=True)
class Found:
    hits: list[tuple[dict[str, Any], list[Match]]]
    # Stopped at max_hits.
    truncated: bool

    @property
    def count(self) -> int:
        return sum(len(matches) for _, matches in self.hits)


class BackSearch:
    def __init__(self, db: AsyncDatabase[Document], max_hits: int, timeout_ms: int):
        self._db = db
        self._max_hits = max_hits
        self._timeout_ms = timeout_ms

    async def find(self, index: ListIndex, agencies: list[str]) -> Found:
        """The stored reads of `agencies` that `index` matches, each with its matches."""
        now = datetime.now(UTC)
        query: dict[str, Any] = {"agency_id": {"$in": agencies}, "plate_normalized": {"$ne": ""},
                                 "expire_at": {"$gt": now}}
        if len(index) <= NARROW_ENTRIES:
            config = index.config
            query["$or"] = [{"plate_normalized": {"$regex": regex}} for regex in dict.fromkeys(
                candidate_regex(e.plate, config.fuzzy_confusions, config.max_edits) for e in index.entries.values())]
        cursor = self._db[READS].find(query).max_time_ms(self._timeout_ms).batch_size(1000)
        hits: list[tuple[dict[str, Any], list[Match]]] = []
        count = 0
        async for doc in cursor:
            if matches := index.match(doc["plate_normalized"], doc.get("region", {}).get("state", ""), now):
                hits.append((doc, matches))
                count += len(matches)
                if count >= self._max_hits:
                    return Found(hits, truncated=True)
        return Found(hits, truncated=False)
