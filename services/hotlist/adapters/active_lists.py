"""The active version of every list, in Redis, as the matcher sees it.

Keys (prefix P):
  P:version            hash list_id -> active version (the pointer)
  P:config             hash list_id -> JSON {fuzzy_confusions, max_edits, agency_id}
  P:{list}:{v}:entries hash entry_id -> JSON entry, one per version
  P:{list}:{v}:log     list of "+entry_id" / "-entry_id": manual changes to version v, in order
  P:epoch              counter raised by every change; the matcher compares it each batch
A bulk import writes the new version's hash, then swaps the pointer in one MULTI (readers see the old or
the new version, never a mix); the old version's keys expire later, so a matcher still loading it finishes.
Manual changes go through a Lua script that applies them only while their version is the active one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from services.hotlist.adapters.codec import entry_from_json, entry_to_json
from services.hotlist.domain.model import Entry, ListConfig

_WRITE_BATCH = 10_000
_OLD_VERSION_TTL_S = 600

# KEYS: version-hash, entries, log, epoch. ARGV: list_id, version, op ("+"/"-"), entry_id, entry JSON.
_CHANGE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '+' then redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
elseif redis.call('HDEL', KEYS[2], ARGV[4]) == 0 then return 2 end
redis.call('RPUSH', KEYS[3], ARGV[3] .. ARGV[4])
redis.call('INCR', KEYS[4])
return 1
"""


class StaleVersion(Exception):
    """The list's active version changed under a manual change (a bulk import swapped it)."""


@dataclass(frozen=True)
class Snapshot:
    epoch: int
    versions: dict[str, int]
    configs: dict[str, ListConfig]


class ActiveLists:
    def __init__(self, client: aioredis.Redis, prefix: str):
        self._r = client
        self._p = prefix
        self._change = client.register_script(_CHANGE)

    def _entries(self, list_id: str, version: int) -> str:
        return f"{self._p}:{list_id}:{version}:entries"

    def _log(self, list_id: str, version: int) -> str:
        return f"{self._p}:{list_id}:{version}:log"

    async def epoch(self) -> int:
        return int(await self._r.get(f"{self._p}:epoch") or 0)

    async def snapshot(self) -> Snapshot:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.get(f"{self._p}:epoch")
            pipe.hgetall(f"{self._p}:version")
            pipe.hgetall(f"{self._p}:config")
            epoch, versions, configs = await pipe.execute()
        return Snapshot(int(epoch or 0), {k.decode(): int(v) for k, v in versions.items()},
                        {k.decode(): ListConfig(**json.loads(v)) for k, v in configs.items()})

    async def publish_version(self, list_id: str, version: int, config: ListConfig, entries: Iterable[Entry]) -> None:
        """Writes version `version` in full, then makes it the active one in one step."""
        key = self._entries(list_id, version)
        await self._r.delete(key, self._log(list_id, version))
        batch: dict[FieldT, EncodableT] = {}
        for entry in entries:
            batch[entry.entry_id] = entry_to_json(entry)
            if len(batch) >= _WRITE_BATCH:
                await self._r.hset(key, mapping=batch)
                batch = {}
        if batch:
            await self._r.hset(key, mapping=batch)
        old = await self._r.hget(f"{self._p}:version", list_id)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(f"{self._p}:version", list_id, version)
            pipe.hset(f"{self._p}:config", list_id, json.dumps(asdict(config)))
            if old is not None and int(old) != version:
                pipe.expire(self._entries(list_id, int(old)), _OLD_VERSION_TTL_S)
                pipe.expire(self._log(list_id, int(old)), _OLD_VERSION_TTL_S)
            pipe.incr(f"{self._p}:epoch")
            await pipe.execute()

    async def set_config(self, list_id: str, config: ListConfig) -> None:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(f"{self._p}:config", list_id, json.dumps(asdict(config)))
            pipe.incr(f"{self._p}:epoch")
            await pipe.execute()

    async def _apply(self, list_id: str, version: int, op: str, entry_id: str, payload: str = "") -> int:
        keys = [f"{self._p}:version", self._entries(list_id, version), self._log(list_id, version),
                f"{self._p}:epoch"]
        result = int(await self._change(keys=keys, args=[list_id, version, op, entry_id, payload]))
        if result == 0:
            raise StaleVersion(f"list {list_id} is no longer at version {version}")
        return result

    async def add_entry(self, version: int, entry: Entry) -> None:
        await self._apply(entry.list_id, version, "+", entry.entry_id, entry_to_json(entry))

    async def remove_entry(self, list_id: str, version: int, entry_id: str) -> bool:
        return await self._apply(list_id, version, "-", entry_id) == 1

    async def log_length(self, list_id: str, version: int) -> int:
        return int(await self._r.llen(self._log(list_id, version)))

    async def entries(self, list_id: str, version: int) -> AsyncIterator[Entry]:
        async for _, raw in self._r.hscan_iter(self._entries(list_id, version), count=10_000):
            yield entry_from_json(raw)

    async def changes(self, list_id: str, version: int, since: int) -> list[tuple[str, str, Entry | None]]:
        """Manual changes from position `since` of the log: (op, entry_id, entry or None when gone since)."""
        logged = await self._r.lrange(self._log(list_id, version), since, -1)
        ops = [raw.decode() if isinstance(raw, bytes) else raw for raw in logged]
        if not ops:
            return []
        payloads = await self._r.hmget(self._entries(list_id, version), [op[1:] for op in ops])
        return [(op[0], op[1:], entry_from_json(raw) if raw is not None else None)
                for op, raw in zip(ops, payloads, strict=True)]
