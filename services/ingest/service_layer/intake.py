"""Use cases of frame intake: a camera's frame recognised and stored, a gateway's own reads stored.

Each frame is checked (it comes from a camera the call authenticated as, it is valid, its camera is
registered and its capture day still within the agency's retention), recognised by Triton, stored durably
(sealed with its day's key), counted and published on the read stream. A frame sent again is acknowledged
DUPLICATE with the reads stored the first time. Refusals are raised as `Rejected`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter, Histogram

from services.common.counters import ReadCounters
from services.common.data_keys import KeyShredded
from services.common.grpc_server import status_of
from services.common.rejected import Code, Rejected
from services.common.retention_policy import CapTable, capture_day, effective_days
from services.ingest.adapters.store import FrameStore, ReadOnlyFrame, StoredFrame
from services.ingest.adapters.stream import ReadPublisher
from services.ingest.adapters.triton import TritonAlpr
from services.ingest.domain.frames import (
    FrameLimits,
    build_reads,
    frame_key,
    gateway_reads,
    validate_frame,
    validate_frame_reads,
)
from sightline.common.v1 import read_pb2
from sightline.ingest.v1 import ingest_pb2

log = logging.getLogger(__name__)
READS_STORED = Counter("sightline_ingest_reads_stored_total", "Reads durably stored")
FRAMES = Counter("sightline_ingest_frames_total", "Frames received, by outcome", ["status"])
# Triton's own queue time is nv_inference_queue_duration_us on its metrics port (8002).
INFERENCE_SECONDS = Histogram("sightline_ingest_inference_seconds", "Triton ALPR call, queue and transfer included",
                              buckets=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5))
_IMAGE_NAMESPACE = uuid.UUID("0f0c9a4e-3b7d-4c55-8f3e-7a1d2b6c9e01")


class FrameIntake:
    def __init__(self, store: FrameStore, alpr: TritonAlpr, publisher: ReadPublisher, counters: ReadCounters,
                 limits: FrameLimits, caps: CapTable, default_days: int):
        self._store = store
        self._alpr = alpr
        self._publisher = publisher
        self._counters = counters
        self._limits = limits
        self._caps = caps
        self._default_days = default_days

    async def _accept(self, frame: ingest_pb2.Frame | ingest_pb2.FrameReads,
                     now: datetime) -> tuple[str, int, datetime, datetime]:
        """(agency, retention days, captured_at, expire_at) of a validated frame from an authenticated camera."""
        camera = await self._store.camera(frame.camera_id)
        if camera is None:
            raise Rejected(Code.NOT_FOUND, f"camera {frame.camera_id!r} is not registered or active")
        captured_at = frame.captured_at.ToDatetime(tzinfo=UTC)
        agency_id = camera["agency_id"]
        days = effective_days(self._caps, await self._store.agency(agency_id), self._default_days)
        expire_at = captured_at + timedelta(days=days)
        if expire_at <= now:
            raise Rejected(Code.INVALID_ARGUMENT,
                                f"captured_at is older than the agency's {days}-day retention period")
        return agency_id, days, captured_at, expire_at

    async def process(self, frame: ingest_pb2.Frame, cameras: frozenset[str]) -> ingest_pb2.FrameAck:
        """Validate, recognise, store durably, publish. Raises Rejected."""
        now = datetime.now(UTC)
        check_camera(frame, cameras)
        validate_frame(frame, self._limits, now)
        agency_id, days, captured_at, expire_at = await self._accept(frame, now)
        key = frame_key(frame.camera_id, frame.frame_id)
        ack = ingest_pb2.FrameAck(camera_id=frame.camera_id, frame_id=frame.frame_id)
        if (existing := await self._store.existing(frame.camera_id, frame.frame_id)) is not None:
            ack.status = ingest_pb2.FRAME_STATUS_DUPLICATE
            ack.read_ids.extend(existing)
            return ack
        with INFERENCE_SECONDS.time():
            result, redacted = await self._alpr.recognise(frame.jpeg)
        image_ref = str(uuid.uuid5(_IMAGE_NAMESPACE, key))
        reads = build_reads(frame, agency_id, result, image_ref, now, expire_at)
        try:
            stored = await self._store.store(key, reads, image_ref, redacted, captured_at, expire_at, now, agency_id)
        except KeyShredded as exc:
            raise Rejected(Code.FAILED_PRECONDITION, SHREDDED) from exc
        if stored.duplicate:
            ack.status = ingest_pb2.FRAME_STATUS_DUPLICATE
            ack.read_ids.extend(stored.read_ids)
            return ack
        READS_STORED.inc(len(reads))
        await self._count(agency_id, capture_day(captured_at), reads, days)
        await self._publish([key], reads)
        ack.status = ingest_pb2.FRAME_STATUS_STORED
        ack.read_ids.extend(stored.read_ids)
        ack.reads.extend(reads)
        return ack

    async def _count(self, agency_id: str, day: str, reads: list[read_pb2.Read], days: int) -> None:
        try:
            await self._counters.count(agency_id, day, reads, days)
        except Exception as exc:  # noqa: BLE001 - statistics only; the frame is stored
            log.warning("read counters not updated", extra={"error": repr(exc)[:200]})

    async def _publish(self, keys: list[str], reads: list[read_pb2.Read]) -> None:
        if not keys:
            return
        try:
            if reads:
                await self._publisher.publish(reads)
            await self._store.mark_published_many(keys)
        except Exception as exc:  # noqa: BLE001 - the outbox sweeper publishes it later
            log.warning("read stream publish deferred to the outbox", extra={"error": repr(exc)[:200]})

    async def store_reads(self, batch: ingest_pb2.ReadBatch, cameras: frozenset[str]) -> ingest_pb2.ReadBatchAck:
        """A gateway's own reads, stored like a frame's pipeline reads: one transaction for the batch's new
        frames, then counted and published together."""
        now = datetime.now(UTC)
        acks = [ingest_pb2.FrameAck(camera_id=f.camera_id, frame_id=f.frame_id) for f in batch.frames]
        admitted: list[tuple[ingest_pb2.FrameAck, ReadOnlyFrame, int]] = []
        for ack, frame in zip(acks, batch.frames, strict=True):
            try:
                check_camera(frame, cameras)
                validate_frame_reads(frame, self._limits, now)
                agency_id, days, captured_at, expire_at = await self._accept(frame, now)
            except Rejected as exc:
                reject(ack, exc)
                continue
            reads = gateway_reads(frame, agency_id, now, expire_at)
            admitted.append((ack, ReadOnlyFrame(frame_key(frame.camera_id, frame.frame_id), reads, captured_at,
                                                expire_at, agency_id), days))
        stored = await self._store_batch([item for _, item, _ in admitted], now)
        fresh: list[tuple[ReadOnlyFrame, int]] = []
        for (ack, item, days), result in zip(admitted, stored, strict=True):
            if isinstance(result, Rejected):
                reject(ack, result)
                continue
            ack.read_ids.extend(result.read_ids)
            ack.status = ingest_pb2.FRAME_STATUS_DUPLICATE if result.duplicate else ingest_pb2.FRAME_STATUS_STORED
            if not result.duplicate:
                fresh.append((item, days))
        READS_STORED.inc(sum(len(item.reads) for item, _ in fresh))
        by_day: dict[tuple[str, str, int], list[read_pb2.Read]] = {}
        for item, days in fresh:
            by_day.setdefault((item.agency_id, capture_day(item.captured_at), days), []).extend(item.reads)
        for (agency_id, day, days), reads in by_day.items():
            await self._count(agency_id, day, reads, days)
        await self._publish([item.key for item, _ in fresh], [r for item, _ in fresh for r in item.reads])
        for ack in acks:
            FRAMES.labels(ingest_pb2.FrameStatus.Name(ack.status).removeprefix("FRAME_STATUS_").lower()).inc()
        return ingest_pb2.ReadBatchAck(acks=acks)

    async def _store_batch(self, items: list[ReadOnlyFrame], now: datetime) -> list[StoredFrame | Rejected]:
        try:
            return list(await self._store.store_batch(items, now)) if items else []
        except KeyShredded:
            if len(items) == 1:
                return [Rejected(Code.FAILED_PRECONDITION, SHREDDED)]
            return [(await self._store_batch([item], now))[0] for item in items]


SHREDDED = "the capture day's retention has ended and its data key is destroyed"


def check_camera(frame: ingest_pb2.Frame | ingest_pb2.FrameReads, cameras: frozenset[str]) -> None:
    """Before any work is spent on it: the frame is from a camera this call authenticated as."""
    if frame.camera_id not in cameras:
        raise Rejected(Code.PERMISSION_DENIED,
                            f"this call holds no credential for camera {frame.camera_id[:128]!r}")


def reject(ack: ingest_pb2.FrameAck, exc: Rejected) -> ingest_pb2.FrameAck:
    ack.status, ack.error_message = ingest_pb2.FRAME_STATUS_REJECTED, exc.message
    ack.error_code = status_of(exc.code).value[0]
    return ack


