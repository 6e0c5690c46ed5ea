"""Keeps the matcher's in-memory index in step with the active list versions in Redis.

Called before every batch: one GET of the epoch counter when nothing changed. A list whose version or
settings changed is rebuilt off the event loop and swapped in one assignment (matching uses the old one
meanwhile); manual changes to the current version are applied from the list's change log.
"""

from __future__ import annotations

import asyncio
import logging

from services.hotlist.adapters.active_lists import ActiveLists
from services.hotlist.domain.matcher import ListIndex, MatchIndex
from services.hotlist.domain.model import ListConfig

log = logging.getLogger(__name__)


class IndexSync:
    def __init__(self, active: ActiveLists, index: MatchIndex):
        self._active = active
        self.index = index
        self._epoch = -1
        self._applied: dict[str, int] = {}  # list_id -> change-log entries applied

    async def refresh(self) -> bool:
        """True when something changed."""
        if await self._active.epoch() == self._epoch:
            return False
        snap = await self._active.snapshot()
        for list_id in set(self.index.lists) - set(snap.versions):
            del self.index.lists[list_id]
        for list_id, version in snap.versions.items():
            config = snap.configs.get(list_id)
            if config is None:  # a list's config is written with its version: missing only while it is removed
                continue
            current = self.index.lists.get(list_id)
            if current is None or current.version != version or current.config != config:
                await self._load(list_id, version, config)
            await self._apply_changes(list_id)
        self._epoch = snap.epoch
        return True

    async def _load(self, list_id: str, version: int, config: ListConfig) -> None:
        applied = await self._active.log_length(list_id, version)
        entries = [e async for e in self._active.entries(list_id, version)]
        built = await asyncio.to_thread(ListIndex, list_id, version, config, entries)
        self.index.lists[list_id] = built
        # Changes logged while the hash was scanned are applied again: each op is idempotent.
        self._applied[list_id] = applied
        log.info("list loaded", extra={"list_id": list_id, "version": version, "entries": len(built)})

    async def _apply_changes(self, list_id: str) -> None:
        index = self.index.lists[list_id]
        changes = await self._active.changes(list_id, index.version, self._applied.get(list_id, 0))
        for op, entry_id, entry in changes:
            if op == "+" and entry is not None:
                index.add(entry)
            elif op == "-":
                index.remove(entry_id)
        self._applied[list_id] = self._applied.get(list_id, 0) + len(changes)
