"""Frame intake (services/ingest/service_layer/intake.py) on fakes of its ports: the frame store, Triton, the
read stream and the counters. What is refused before any work, and what a stored frame goes through."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from PIL import Image

from services.common.rejected import Code, Rejected
from services.common.retention_policy import CapTable
from services.ingest.adapters.store import StoredFrame
from services.ingest.domain.frames import FrameLimits
from services.ingest.service_layer.intake import FrameIntake
from sightline.ingest.v1 import ingest_pb2

pytestmark = pytest.mark.unit


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "grey").save(out, "JPEG")
    return out.getvalue()


def a_frame(frame_id: str = "f-1") -> ingest_pb2.Frame:
    frame = ingest_pb2.Frame(camera_id="cam-1", frame_id=frame_id, jpeg=jpeg())
    frame.captured_at.FromDatetime(datetime.now(UTC) - timedelta(seconds=1))
    return frame


class FakeStore:
    def __init__(self) -> None:
        self.stored: dict[str, list[str]] = {}
        self.published: list[str] = []

    async def camera(self, camera_id: str) -> dict[str, Any] | None:
        return {"agency_id": "pd-a"} if camera_id == "cam-1" else None

    async def agency(self, agency_id: str) -> dict[str, Any] | None:
        return None

    async def existing(self, camera_id: str, frame_id: str) -> list[str] | None:
        return self.stored.get(f"{camera_id}/{frame_id}")

    async def store(self, key: str, reads: list[Any], *rest: Any) -> StoredFrame:
        self.stored[key] = [r.read_id for r in reads]
        return StoredFrame(self.stored[key], duplicate=False)

    async def mark_published_many(self, keys: list[str]) -> None:
        self.published.extend(keys)


class FakeAlpr:
    def __init__(self) -> None:
        self.calls = 0

    async def recognise(self, jpeg: bytes) -> tuple[dict[str, Any], bytes]:
        self.calls += 1
        return {"plates": [{"text": "ABC 123", "normalized": "ABC123", "confidence": 0.97}]}, jpeg


class FakeStream:
    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.reads: list[str] = []

    async def publish(self, reads: list[Any]) -> None:
        if self.down:
            raise ConnectionError("redis down")
        self.reads.extend(r.plate_normalized for r in reads)


class FakeCounters:
    async def count(self, agency_id: str, day: str, reads: list[Any], days: int) -> None:
        return None


def intake(store: FakeStore, alpr: FakeAlpr, stream: FakeStream) -> FrameIntake:
    limits = FrameLimits(max_bytes=1 << 20, max_pixels=10_000_000, max_clock_skew=timedelta(seconds=60))
    return FrameIntake(store, alpr, stream, FakeCounters(), limits, CapTable(365, {}), 30)  # type: ignore[arg-type]


async def test_a_frame_is_recognised_stored_published_and_a_resend_is_a_duplicate() -> None:
    store, alpr, stream = FakeStore(), FakeAlpr(), FakeStream()
    ack = await intake(store, alpr, stream).process(a_frame(), frozenset({"cam-1"}))
    assert ack.status == ingest_pb2.FRAME_STATUS_STORED and [r.plate_normalized for r in ack.reads] == ["ABC123"]
    assert stream.reads == ["ABC123"] and store.published == ["cam-1/f-1"]
    again = await intake(store, alpr, stream).process(a_frame(), frozenset({"cam-1"}))
    assert again.status == ingest_pb2.FRAME_STATUS_DUPLICATE and list(again.read_ids) == list(ack.read_ids)
    assert alpr.calls == 1  # a resend spends no inference


async def test_a_camera_the_call_did_not_authenticate_is_refused_before_any_work() -> None:
    store, alpr = FakeStore(), FakeAlpr()
    with pytest.raises(Rejected) as err:
        await intake(store, alpr, FakeStream()).process(a_frame(), frozenset({"cam-2"}))
    assert err.value.code is Code.PERMISSION_DENIED and alpr.calls == 0 and not store.stored


async def test_with_the_stream_down_the_frame_is_stored_and_left_for_the_outbox() -> None:
    store = FakeStore()
    ack = await intake(store, FakeAlpr(), FakeStream(down=True)).process(a_frame(), frozenset({"cam-1"}))
    assert ack.status == ingest_pb2.FRAME_STATUS_STORED and "cam-1/f-1" in store.stored and not store.published
