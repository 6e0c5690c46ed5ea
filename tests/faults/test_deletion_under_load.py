"""Deletion under load: reads whose retention ends seconds after they arrive, ingested at a few hundred a
second for a minute, are deleted by MongoDB's TTL monitor (every second in the dev mongod) as fast as they
come: the reads past `expire_at` still present stay near zero. Reads under an evidence hold, placed through
the retention service before they expire, survive.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fault_harness import ReadGateway, mongo, record_row, register_cameras, start_fault_stack, token

from services.common.tls import secure_channel
from services.devstack.servers import wait_for
from services.devstack.stack import LocalStack
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from sightline.retention.v1 import retention_pb2, retention_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

RETENTION = timedelta(days=30)  # ingest's default read_retention_days (the agency sets none)
LOAD_S = 60.0
FRAMES_PER_BATCH, BATCHES_PER_S = 25, 16  # ~300 reads/s once the round trips are counted
HELD_FRAMES = 20


@pytest.fixture(scope="module")
def retention_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = start_fault_stack(tmp_path_factory.mktemp("faults-retention"), triton=False,
                              services=("audit", "ingest", "retention"))
    yield stack
    stack.stop()


def expiring_in(low_s: float, high_s: float, rng: random.Random):
    """Capture times just inside the retention period: the read expires `low_s`..`high_s` after it is sent."""
    return lambda: datetime.now(UTC) - RETENTION + timedelta(seconds=rng.uniform(low_s, high_s))


async def test_ttl_expiry_keeps_pace_with_ingest_and_holds_survive(retention_stack: LocalStack) -> None:
    stack = retention_stack
    cameras, credentials = await register_cameras(stack, "ttl", 8)
    rng = random.Random(7)
    stop = asyncio.Event()
    async with secure_channel(stack.address("ingest")) as ingest, \
            secure_channel(stack.address("retention")) as retention:
        # Evidence first: reads expiring in ~20 s, held for a case at once.
        held = ReadGateway(ingest, credentials, cameras, "held", frames_per_batch=HELD_FRAMES,
                           captured_at=expiring_in(20, 20, rng))
        reply = await ingest_pb2_grpc.IngestServiceStub(ingest).SubmitReads(held.next_batch(), metadata=credentials,
                                                                             timeout=10)
        held_ids = [rid for ack in reply.acks if ack.status == ingest_pb2.FRAME_STATUS_STORED for rid in ack.read_ids]
        assert len(held_ids) == HELD_FRAMES
        hold = await retention_pb2_grpc.RetentionServiceStub(retention).PlaceHold(retention_pb2.PlaceHoldRequest(
            case_number="FAULT-TTL-1", justification="deletion under load test",
            read_ids=retention_pb2.ReadIds(ids=held_ids)), metadata=token(stack, "supervisor"), timeout=10)
        assert hold.read_count == HELD_FRAMES
        held_until = time.monotonic() + 22

        gateway = ReadGateway(ingest, credentials, cameras, "ttl", rate=BATCHES_PER_S,
                              frames_per_batch=FRAMES_PER_BATCH, captured_at=expiring_in(2, 10, rng))
        with mongo(stack) as client:
            reads = client["sightline"]["reads"]
            backlog: list[int] = []

            async def watch_backlog() -> None:
                while not stop.is_set():
                    backlog.append(reads.count_documents({"expire_at": {"$lt": datetime.now(UTC)}}))
                    await asyncio.sleep(1)

            started = time.monotonic()
            tasks = [asyncio.create_task(gateway.run(stop)), asyncio.create_task(watch_backlog())]
            await asyncio.sleep(LOAD_S)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            elapsed = time.monotonic() - started
            acked = sum(len(r) for r in gateway.acked.values())
            # The last reads expire within 10 s; the TTL monitor then removes them within a pass or two.
            await asyncio.sleep(max(held_until - time.monotonic(), 0))
            unheld = {"_id": {"$nin": held_ids}}
            with contextlib.suppress(TimeoutError):  # asserted below, with the figures
                await wait_for("the expired reads deleted", lambda: reads.count_documents(unheld) == 0, 20, 0.5)
            remaining = reads.count_documents(unheld)
            kept = reads.count_documents({"_id": {"$in": held_ids}, "held_by": hold.hold_id})
    rate = acked / elapsed
    row = {"kind": "deletion", "reads_acked": acked, "reads_per_s": round(rate), "max_backlog": max(backlog),
           "mean_backlog": round(sum(backlog) / len(backlog)), "final_backlog": remaining,
           "held": HELD_FRAMES, "held_kept": kept, "retried": gateway.counts.batches_resent}
    record_row(row)
    assert acked > 0, row  # the rate itself is a figure (loadtest/fault_suite.py prints it), not a pass mark
    assert remaining == 0, row
    # Never more than about three seconds of ingest waiting for deletion: expiry keeps pace.
    assert max(backlog) <= 3 * rate, row
    assert kept == HELD_FRAMES, row
