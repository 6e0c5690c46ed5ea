"""The tracker's use case (services/tracker/service_layer/pass_builder.py) on fakes of the consumer group, the pass
store and the pass stream: a read is acknowledged only once its pass is stored and published, a confident read
publishes the preview once, a malformed entry is acknowledged and dropped, and a failed store leaves every
read of the pass pending for a successor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.tracker.domain.passes import TrackerConfig
from services.tracker.service_layer.pass_builder import PassBuilder
from sightline.common.v1 import pass_pb2, read_pb2

pytestmark = pytest.mark.unit

T0 = datetime.now(UTC) - timedelta(seconds=5)


class FakeGroup:
    def __init__(self) -> None:
        self.acked: list[bytes] = []

    async def ack(self, entry_ids: list[bytes]) -> None:
        self.acked.extend(entry_ids)


class FakeStore:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.saved: list[dict[str, Any]] = []

    async def save(self, docs: list[dict[str, Any]]) -> None:
        if self.fail:
            raise ConnectionError("mongod went away")
        self.saved.extend(docs)

    async def bearing(self, camera_id: str) -> float | None:
        return None


class FakePublisher:
    def __init__(self) -> None:
        self.stages: list[tuple[int, str]] = []

    async def publish(self, passes: list[tuple[pass_pb2.VehiclePass, Any]]) -> None:
        self.stages.extend((p.stage, p.plate_normalized) for p, _ in passes)


def entry(n: int, plate: str, confidence: float) -> tuple[bytes, dict[bytes, bytes]]:
    read = read_pb2.Read(read_id=f"r{n}", camera_id="cam-1", agency_id="pd-a", plate=plate, plate_normalized=plate,
                         confidence=confidence)
    read.captured_at.FromDatetime(T0 + timedelta(milliseconds=200 * n))
    read.expires_at.FromDatetime(T0 + timedelta(days=30))
    return f"1-{n}".encode(), {b"read": read.SerializeToString(), b"read_id": read.read_id.encode()}


def builder(store: FakeStore, close_at_once: bool = True) -> tuple[PassBuilder, FakeGroup, FakePublisher]:
    """Reads 200 ms apart join one pass; with `close_at_once` every open pass is due at the next close_due."""
    group, publisher = FakeGroup(), FakePublisher()
    config = TrackerConfig(gap=timedelta(seconds=1), max_duration=timedelta(0 if close_at_once else 60),
                           preview_confidence=0.8)
    return PassBuilder(group, config, store, publisher), group, publisher  # type: ignore[arg-type]


async def test_reads_are_acknowledged_only_after_their_pass_is_stored_and_published() -> None:
    store = FakeStore()
    passes, group, publisher = builder(store)
    await passes.process([entry(1, "ABC123", 0.6), entry(2, "ABC123", 0.9), entry(3, "ABC123", 0.95)])
    assert publisher.stages == [(pass_pb2.PASS_STAGE_PREVIEW, "ABC123")]  # once, at the first confident read
    assert group.acked == []
    assert await passes.close_due() == 1
    assert len(store.saved) == 1 and store.saved[0]["frame_count"] == 3
    assert publisher.stages[-1] == (pass_pb2.PASS_STAGE_FINAL, "ABC123")
    assert sorted(group.acked) == [b"1-1", b"1-2", b"1-3"]


async def test_a_malformed_or_trimmed_entry_is_acknowledged_and_dropped() -> None:
    passes, group, publisher = builder(FakeStore(), close_at_once=False)
    await passes.process([(b"1-1", {b"read": b"\xff not a read", b"read_id": b"r1"}), (b"1-2", {})])
    assert group.acked == [b"1-1", b"1-2"] and publisher.stages == []


async def test_a_pass_that_cannot_be_stored_leaves_its_reads_pending() -> None:
    passes, group, publisher = builder(FakeStore(fail=True))
    await passes.process([entry(1, "XYZ789", 0.5), entry(2, "XYZ789", 0.5)])
    with pytest.raises(ConnectionError):
        await passes.close_due()
    assert group.acked == [] and publisher.stages == []


async def test_a_redelivered_read_changes_nothing() -> None:
    store = FakeStore()
    passes, group, publisher = builder(store)
    await passes.process([entry(1, "ABC123", 0.9)])
    await passes.process([entry(1, "ABC123", 0.9)])
    assert publisher.stages == [(pass_pb2.PASS_STAGE_PREVIEW, "ABC123")]
    await passes.close_due()
    assert group.acked == [b"1-1"] and len(store.saved) == 1
