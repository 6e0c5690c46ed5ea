"""The one consuming loop (services.common.streams.consume) against a real Redis: a dead consumer's entries are
claimed, new ones follow, and a batch whose work failed comes back instead of being lost."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from services.common.settings import RedisSettings
from services.common.storage import redis_client
from services.common.streams import ConsumerGroup, ConsumerSettings, Entry, consume

pytestmark = pytest.mark.integration


def config(consumer: str) -> ConsumerSettings:
    return ConsumerSettings(group="g", consumer=consumer, start_id="0", batch=10, block_ms=50, claim_idle_ms=100,
                            claim_interval_s=0.05)


async def test_claims_a_dead_consumers_entries_then_reads_new_ones_and_retries_a_failed_batch(redis_url: str) -> None:
    redis = redis_client(RedisSettings(redis_url=redis_url))
    stream = f"test:streams:{uuid.uuid4().hex}"
    try:
        dead = ConsumerGroup(redis, stream, config("dead"))
        await dead.ensure("0")
        await redis.xadd(stream, {b"n": b"0"})
        assert len(await dead.new(50)) == 1  # delivered to a consumer that then dies, never acknowledged
        for n in (1, 2):
            await redis.xadd(stream, {b"n": str(n).encode()})

        live = ConsumerGroup(redis, stream, config("live"))
        done: list[int] = []
        failures = [RuntimeError("storage down")]
        rounds = 0
        all_done = asyncio.Event()

        async def process(entries: list[Entry]) -> None:
            if entries and failures:
                raise failures.pop()
            done.extend(int(fields[b"n"]) for _, fields in entries)
            await live.ack(eid for eid, _ in entries)
            if len(done) >= 3:
                all_done.set()

        async def each_round() -> None:
            nonlocal rounds
            rounds += 1

        task = asyncio.create_task(consume(live, process, each_round))
        try:
            await asyncio.wait_for(all_done.wait(), 20)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)  # a cancelled consumer stops, whatever its client was doing
        assert sorted(done) == [0, 1, 2] and len(done) == 3  # the failed batch came back once, nothing twice
        assert rounds > 1
        assert (await redis.xpending(stream, "g"))["pending"] == 0
    finally:
        await redis.delete(stream)
        await redis.aclose()
