"""Redis stream consumer groups, shared by every service that consumes a stream (tracker, hotlist matcher).

At-least-once and crash-safe: a consumer acknowledges an entry only once its work is durable; after a
restart it first re-reads its own unacknowledged entries, and it periodically takes over entries left idle
by a consumer that died (XAUTOCLAIM). Consumers make their work idempotent, so a redelivery changes nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

Entry = tuple[bytes, dict[bytes, bytes]]


def consumer_name(configured: str = "") -> str:
    """The configured name (stable across restarts), else one unique to this process."""
    return configured or f"{socket.gethostname()}-{os.getpid()}"


def trace_carrier(fields: dict[bytes, bytes]) -> dict[str, str]:
    """The W3C trace context a producer put in the entry, for opentelemetry.propagate.extract."""
    return {"traceparent": fields[b"traceparent"].decode()} if b"traceparent" in fields else {}


def _entries(reply: Any) -> list[Entry]:
    """The entries of an XREADGROUP reply ([[stream, [entry, ...]], ...], or None when nothing came)."""
    return [entry for _, batch in reply or () for entry in batch]


class ConsumerGroup:
    def __init__(self, redis: aioredis.Redis, stream: str, group: str, consumer: str, batch: int,
                 claim_idle_ms: int):
        self.stream, self.group, self.consumer = stream, group, consumer
        self._r = redis
        self._batch = batch
        self._claim_idle_ms = claim_idle_ms

    async def ensure(self, start_id: str) -> None:
        """Create the group (and the stream) unless it exists; a new group starts at `start_id`."""
        try:
            await self._r.xgroup_create(self.stream, self.group, id=start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def own_pending(self) -> AsyncIterator[list[Entry]]:
        """Batches of the entries this consumer took but has not acknowledged (a restart, or an error)."""
        start: bytes | str = "0"
        while True:
            reply = await self._r.xreadgroup(self.group, self.consumer, {self.stream: start}, count=self._batch)
            entries = _entries(reply)
            if not entries:
                return
            yield entries
            start = entries[-1][0]

    async def claimed(self) -> AsyncIterator[list[Entry]]:
        """Batches of entries idle for claim_idle_ms with any consumer, now this one's."""
        start = "0-0"
        while True:
            start, entries, *_ = await self._r.xautoclaim(self.stream, self.group, self.consumer,
                                                          self._claim_idle_ms, start_id=start, count=self._batch)
            yield entries
            if start in (b"0-0", "0-0"):
                return

    async def new(self, block_ms: int) -> list[Entry]:
        """The next batch of entries never delivered to the group, waiting up to block_ms for one."""
        reply = await self._r.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=self._batch,
                                         block=block_ms)
        return _entries(reply)

    async def ack(self, entry_ids: Iterable[bytes]) -> None:
        if ids := list(entry_ids):
            await self._r.xack(self.stream, self.group, *ids)
