"""Redis stream consumer groups and the one consuming loop every stream consumer runs (tracker, hotlist matcher).

At-least-once and crash-safe: a consumer acknowledges an entry only once its work is durable; after a
restart it first re-reads its own unacknowledged entries, and it periodically takes over entries left idle
by a consumer that died (XAUTOCLAIM). Consumers make their work idempotent, so a redelivery changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import ResponseError

Entry = tuple[bytes, dict[bytes, bytes]]
log = logging.getLogger(__name__)


class ConsumerSettings(BaseModel):
    """How one consumer reads its stream; each consuming service nests one (SIGHTLINE_<NAME>__<FIELD>)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: str = Field(description="Consumer group on the stream; every replica of the consumer joins it.")
    consumer: str = Field(
        default="",
        description="This replica's consumer name; empty: host name and process id (a restarted process is a new "
                    "consumer and takes over its predecessor's pending entries through XAUTOCLAIM).")
    start_id: str = Field(
        default="$",
        description="Where a newly created group starts: \"$\" only entries added from then on, \"0\" the whole "
                    "stream.")
    batch: int = Field(default=200, ge=1, le=10_000, description="Entries read or claimed from the stream at once.")
    block_ms: int = Field(
        default=200, ge=10, le=5000,
        description="Milliseconds a read waits for new entries (XREADGROUP block); also the longest between two "
                    "rounds of the consumer's own work (refreshing an index, closing passes).")
    claim_idle_ms: int = Field(
        default=30_000, ge=100,
        description="Milliseconds an entry may stay pending, unacknowledged, with another consumer (one that "
                    "died) before this one claims it.")
    claim_interval_s: float = Field(default=5.0, gt=0, description="Seconds between looks for entries to claim.")


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
    def __init__(self, redis: aioredis.Redis, stream: str, config: ConsumerSettings):
        self.config = config
        self.stream, self.group, self.consumer = stream, config.group, consumer_name(config.consumer)
        self._r = redis
        self._batch = config.batch
        self._claim_idle_ms = config.claim_idle_ms

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


def _cancelled() -> bool:
    """This task was asked to stop, even if a client library swallowed the CancelledError."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def consume(group: ConsumerGroup, process: Callable[[list[Entry]], Awaitable[object]],
                  each_round: Callable[[], Awaitable[object]]) -> None:
    """Until cancelled: this consumer's own pending entries first, then rounds of `each_round`, claims of idle
    entries every claim_interval_s, and the next new batch. `process` acknowledges what it has made durable;
    Redis or storage errors restart the loop after a second, and what was not acknowledged comes back."""
    config = group.config
    log.info("consumer starting", extra={"stream": group.stream, "consumer": group.consumer, "group": group.group})
    loop = asyncio.get_running_loop()
    next_claim = 0.0
    while True:
        try:
            await group.ensure(config.start_id)
            async for entries in group.own_pending():
                await process(entries)
            while not _cancelled():
                await each_round()
                if loop.time() >= next_claim:
                    async for entries in group.claimed():
                        await process(entries)
                    next_claim = loop.time() + config.claim_interval_s
                await process(await group.new(config.block_ms))
            raise asyncio.CancelledError
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - unacknowledged entries are redelivered (own_pending, claimed)
            if _cancelled():  # a client turned the cancellation into its own error
                raise asyncio.CancelledError from exc
            log.warning("consumer error; retrying", extra={"stream": group.stream, "error": repr(exc)[:300]})
            await asyncio.sleep(1)
