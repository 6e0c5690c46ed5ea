"""gRPC adapter of the ingest service: IngestService and CameraRegistryService."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
from prometheus_client import Counter, Histogram

from services.common.grpc_server import ServiceSpec, retry_until_done
from services.common.reads import ensure_indexes
from services.common.storage import (
    mongo_client,
    mongo_database,
    mongo_dependency,
    redis_client,
    redis_dependency,
)
from services.ingest.adapters.store import FrameStore
from services.ingest.adapters.stream import ReadPublisher
from services.ingest.adapters.triton import TritonAlpr
from services.ingest.domain.frames import FrameLimits, FrameRejected, build_reads, frame_key, validate_frame
from services.ingest.settings import IngestSettings
from sightline.common.v1 import read_pb2
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)

FRAMES = Counter("sightline_ingest_frames_total", "Frames received, by outcome", ["status"])
READS_STORED = Counter("sightline_ingest_reads_stored_total", "Reads durably stored")
FRAME_SECONDS = Histogram("sightline_ingest_frame_seconds", "Frame received to acknowledged",
                          buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10))
_IMAGE_NAMESPACE = uuid.UUID("0f0c9a4e-3b7d-4c55-8f3e-7a1d2b6c9e01")


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, settings: IngestSettings, store: FrameStore, alpr: TritonAlpr, publisher: ReadPublisher):
        self._settings = settings
        self._store = store
        self._alpr = alpr
        self._publisher = publisher
        self._limits = FrameLimits(settings.max_frame_bytes, settings.max_frame_pixels,
                                   timedelta(seconds=settings.max_clock_skew_s))
        self._retention = timedelta(days=settings.read_retention_days)

    async def process(self, frame: ingest_pb2.Frame) -> ingest_pb2.FrameAck:
        """Validate, recognise, store durably, publish. Raises FrameRejected."""
        now = datetime.now(UTC)
        validate_frame(frame, self._limits, now)
        camera = await self._store.camera(frame.camera_id)
        if camera is None:
            raise FrameRejected(grpc.StatusCode.NOT_FOUND, f"camera {frame.camera_id!r} is not registered or active")
        key = frame_key(frame.camera_id, frame.frame_id)
        ack = ingest_pb2.FrameAck(camera_id=frame.camera_id, frame_id=frame.frame_id)
        if (existing := await self._store.existing(frame.camera_id, frame.frame_id)) is not None:
            ack.status = ingest_pb2.FRAME_STATUS_DUPLICATE
            ack.read_ids.extend(existing)
            return ack
        captured_at = frame.captured_at.ToDatetime(tzinfo=UTC)
        expire_at = captured_at + self._retention
        if expire_at <= now:
            raise FrameRejected(grpc.StatusCode.INVALID_ARGUMENT,
                                f"captured_at is older than the {self._retention.days}-day retention period")
        result, redacted = await self._alpr.recognise(frame.jpeg)
        image_ref = str(uuid.uuid5(_IMAGE_NAMESPACE, key))
        reads = build_reads(frame, camera["agency_id"], result, image_ref, now, expire_at)
        stored = await self._store.store(key, reads, image_ref, redacted, captured_at, expire_at, now)
        if stored.duplicate:
            ack.status = ingest_pb2.FRAME_STATUS_DUPLICATE
            ack.read_ids.extend(stored.read_ids)
            return ack
        READS_STORED.inc(len(reads))
        await self._publish(key, reads)
        ack.status = ingest_pb2.FRAME_STATUS_STORED
        ack.read_ids.extend(stored.read_ids)
        ack.reads.extend(reads)
        return ack

    async def _publish(self, key: str, reads: list[read_pb2.Read]) -> None:
        try:
            if reads:
                await self._publisher.publish(reads)
            await self._store.mark_published(key)
        except Exception as exc:  # noqa: BLE001 - the outbox sweeper publishes it later
            log.warning("read stream publish deferred to the outbox", extra={"error": repr(exc)[:200]})

    async def _ack(self, frame: ingest_pb2.Frame) -> ingest_pb2.FrameAck:
        started = asyncio.get_running_loop().time()
        try:
            ack = await self.process(frame)
        except FrameRejected as exc:
            ack = ingest_pb2.FrameAck(camera_id=frame.camera_id, frame_id=frame.frame_id,
                                      status=ingest_pb2.FRAME_STATUS_REJECTED,
                                      error_code=exc.code.value[0], error_message=exc.message)
        except Exception:
            log.exception("frame failed", extra={"camera_id": frame.camera_id})
            ack = ingest_pb2.FrameAck(camera_id=frame.camera_id, frame_id=frame.frame_id,
                                      status=ingest_pb2.FRAME_STATUS_REJECTED,
                                      error_code=grpc.StatusCode.UNAVAILABLE.value[0],
                                      error_message="frame not stored because of an internal error; retry it")
        FRAMES.labels(ingest_pb2.FrameStatus.Name(ack.status).removeprefix("FRAME_STATUS_").lower()).inc()
        FRAME_SECONDS.observe(asyncio.get_running_loop().time() - started)
        return ack

    async def SubmitFrame(self, request, context):  # noqa: N802 - gRPC method name
        ack = await self._ack(request)
        if ack.status == ingest_pb2.FRAME_STATUS_REJECTED:
            await context.abort(grpc.StatusCode(_status_by_value(ack.error_code)), ack.error_message)
        return ack

    async def StreamFrames(self, request_iterator, context) -> AsyncIterator[ingest_pb2.FrameAck]:  # noqa: N802
        # Up to stream_concurrency frames are in flight; a full queue stops reading from the gateway
        # (HTTP/2 flow control pushes back), and acknowledgements leave in the order frames arrived.
        pending: asyncio.Queue[asyncio.Task | None] = asyncio.Queue(maxsize=self._settings.stream_concurrency)

        async def read_frames() -> None:
            try:
                async for frame in request_iterator:
                    await pending.put(asyncio.create_task(self._ack(frame)))
            finally:
                await pending.put(None)

        reader = asyncio.create_task(read_frames())
        try:
            while (task := await pending.get()) is not None:
                yield await task
            await reader
        finally:
            reader.cancel()
            while not pending.empty():
                if (task := pending.get_nowait()) is not None:
                    task.cancel()


def _status_by_value(value: int) -> grpc.StatusCode:
    return next(code for code in grpc.StatusCode if code.value[0] == value)


class CameraRegistryServicer(ingest_pb2_grpc.CameraRegistryServiceServicer):
    def __init__(self, store: FrameStore):
        self._store = store

    async def UpsertCamera(self, request, context):  # noqa: N802
        camera = request.camera
        if not camera.camera_id or not camera.agency_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "camera_id and agency_id are required")
        await self._store.upsert_camera(camera)
        return camera

    async def ListCameras(self, request, context):  # noqa: N802
        docs = await self._store.list_cameras(request.agency_id)
        cameras = []
        for doc in docs:
            cam = ingest_pb2.Camera(camera_id=doc["_id"], agency_id=doc["agency_id"], name=doc.get("name", ""),
                                    active=doc.get("active", False))
            if loc := doc.get("location"):
                cam.location.longitude, cam.location.latitude = loc["coordinates"]
            if "bearing_degrees" in doc:
                cam.bearing_degrees = doc["bearing_degrees"]
            cameras.append(cam)
        return ingest_pb2.ListCamerasResponse(cameras=cameras)



async def make_spec(settings: IngestSettings) -> ServiceSpec:
    mongo = mongo_client(settings)
    db = mongo_database(mongo, settings)
    redis = redis_client(settings)
    store = FrameStore(mongo, db)
    alpr = TritonAlpr(settings.triton_url, settings.triton_model, settings.triton_timeout_s)
    publisher = ReadPublisher(redis, settings.read_stream, settings.read_stream_maxlen)
    ingest = IngestServicer(settings, store, alpr, publisher)

    async def sweep_outbox() -> None:
        while True:
            await asyncio.sleep(settings.outbox_sweep_interval_s)
            try:
                cutoff = datetime.now(UTC) - timedelta(seconds=settings.outbox_min_age_s)
                for key, reads in await store.unpublished(cutoff):
                    await publisher.publish(reads)
                    await store.mark_published(key)
            except Exception as exc:  # noqa: BLE001 - try again next round
                log.warning("outbox sweep failed", extra={"error": repr(exc)[:200]})

    def register(server: grpc.aio.Server) -> None:
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(ingest, server)
        ingest_pb2_grpc.add_CameraRegistryServiceServicer_to_server(CameraRegistryServicer(store), server)

    async def close_redis() -> None:
        await redis.aclose()

    return ServiceSpec(
        service_names=[ingest_pb2.DESCRIPTOR.services_by_name[n].full_name
                       for n in ("IngestService", "CameraRegistryService")],
        register=register,
        dependencies=[mongo_dependency(mongo), redis_dependency(redis), alpr.dependency()],
        background=[lambda: retry_until_done("mongodb indexes", lambda: ensure_indexes(db)), sweep_outbox],
        close=[alpr.close, close_redis, mongo.close],
    )
