"""gRPC adapter of the ingest service: IngestService and CameraRegistryService.

Gateways prove which cameras they speak for with per-camera secrets (adapters/camera_auth.py); the registry
is for agency admins (cameras:manage), audited, and issues those secrets.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import grpc
from prometheus_client import Counter, Histogram
from pymongo.errors import DuplicateKeyError

from services.audit.client import AccessGate, AuditClient
from services.common.auth import Permission, Principal, token_verifier
from services.common.counters import ReadCounters
from services.common.data_keys import KeyShredded, KeyStore, load_master_key
from services.common.grpc_server import ServiceSpec, abort, retry_until_done, status_of
from services.common.reads import ensure_indexes
from services.common.rejected import Code, Rejected
from services.common.retention_policy import capture_day, effective_days
from services.common.service_tokens import service_signer
from services.common.storage import (
    mongo_client,
    mongo_database,
    mongo_dependency,
    redis_client,
    redis_dependency,
)
from services.ingest.adapters.camera_auth import authenticate_cameras, check_site, new_secret, secret_hash
from services.ingest.adapters.store import FrameStore, ReadOnlyFrame, StoredFrame
from services.ingest.adapters.stream import ReadPublisher
from services.ingest.adapters.triton import TritonAlpr
from services.ingest.domain.frames import (
    FrameLimits,
    build_reads,
    frame_key,
    gateway_reads,
    validate_camera_id,
    validate_frame,
    validate_frame_reads,
    validate_site_id,
)
from services.ingest.settings import IngestSettings
from sightline.audit.v1 import audit_pb2
from sightline.common.v1 import read_pb2
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)

FRAMES = Counter("sightline_ingest_frames_total", "Frames received, by outcome", ["status"])
READS_STORED = Counter("sightline_ingest_reads_stored_total", "Reads durably stored")
FRAME_SECONDS = Histogram("sightline_ingest_frame_seconds", "Frame received to acknowledged",
                          buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10))
# Triton's own queue time is nv_inference_queue_duration_us on its metrics port (8002).
INFERENCE_SECONDS = Histogram("sightline_ingest_inference_seconds", "Triton ALPR call, queue and transfer included",
                              buckets=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5))
_IMAGE_NAMESPACE = uuid.UUID("0f0c9a4e-3b7d-4c55-8f3e-7a1d2b6c9e01")


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, settings: IngestSettings, store: FrameStore, alpr: TritonAlpr, publisher: ReadPublisher,
                 counters: ReadCounters):
        self._settings = settings
        self._store = store
        self._alpr = alpr
        self._publisher = publisher
        self._counters = counters
        self._limits = FrameLimits(settings.max_frame_bytes, settings.max_frame_pixels,
                                   timedelta(seconds=settings.max_clock_skew_s))
        self._caps = settings.cap_table()

    async def _admit(self, frame: ingest_pb2.Frame | ingest_pb2.FrameReads,
                     now: datetime) -> tuple[str, int, datetime, datetime]:
        """(agency, retention days, captured_at, expire_at) of a validated frame from an authenticated camera."""
        camera = await self._store.camera(frame.camera_id)
        if camera is None:
            raise Rejected(Code.NOT_FOUND, f"camera {frame.camera_id!r} is not registered or active")
        captured_at = frame.captured_at.ToDatetime(tzinfo=UTC)
        agency_id = camera["agency_id"]
        days = effective_days(self._caps, await self._store.agency(agency_id), self._settings.read_retention_days)
        expire_at = captured_at + timedelta(days=days)
        if expire_at <= now:
            raise Rejected(Code.INVALID_ARGUMENT,
                                f"captured_at is older than the agency's {days}-day retention period")
        return agency_id, days, captured_at, expire_at

    async def process(self, frame: ingest_pb2.Frame, cameras: frozenset[str]) -> ingest_pb2.FrameAck:
        """Validate, recognise, store durably, publish. Raises Rejected."""
        now = datetime.now(UTC)
        _check_camera(frame, cameras)
        validate_frame(frame, self._limits, now)
        agency_id, days, captured_at, expire_at = await self._admit(frame, now)
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
                _check_camera(frame, cameras)
                validate_frame_reads(frame, self._limits, now)
                agency_id, days, captured_at, expire_at = await self._admit(frame, now)
            except Rejected as exc:
                _reject(ack, exc)
                continue
            reads = gateway_reads(frame, agency_id, now, expire_at)
            admitted.append((ack, ReadOnlyFrame(frame_key(frame.camera_id, frame.frame_id), reads, captured_at,
                                                expire_at, agency_id), days))
        stored = await self._store_batch([item for _, item, _ in admitted], now)
        fresh: list[tuple[ReadOnlyFrame, int]] = []
        for (ack, item, days), result in zip(admitted, stored, strict=True):
            if isinstance(result, Rejected):
                _reject(ack, result)
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

    async def _ack(self, frame: ingest_pb2.Frame, cameras: frozenset[str]) -> ingest_pb2.FrameAck:
        started = asyncio.get_running_loop().time()
        try:
            ack = await self.process(frame, cameras)
        except Rejected as exc:
            ack = _reject(ingest_pb2.FrameAck(camera_id=frame.camera_id, frame_id=frame.frame_id), exc)
        except Exception:
            log.exception("frame failed", extra={"camera_id": frame.camera_id})
            ack = ingest_pb2.FrameAck(camera_id=frame.camera_id, frame_id=frame.frame_id,
                                      status=ingest_pb2.FRAME_STATUS_REJECTED,
                                      error_code=grpc.StatusCode.UNAVAILABLE.value[0],
                                      error_message="frame not stored because of an internal error; retry it")
        FRAMES.labels(ingest_pb2.FrameStatus.Name(ack.status).removeprefix("FRAME_STATUS_").lower()).inc()
        FRAME_SECONDS.observe(asyncio.get_running_loop().time() - started)
        return ack

    async def _cameras(self, context) -> frozenset[str]:
        """The cameras the call speaks for: each presented with its secret, and each owned by the site whose
        client certificate the connection presented (mutual TLS; with TLS off, the secrets alone)."""
        try:
            cameras = await authenticate_cameras(context, self._store.camera)
            if self._settings.tls_enabled:
                await check_site(context, cameras, self._store.camera)
            return cameras
        except Rejected as exc:
            await abort(context, exc)

    async def SubmitFrame(self, request, context):  # noqa: N802 - gRPC method name
        ack = await self._ack(request, await self._cameras(context))
        if ack.status == ingest_pb2.FRAME_STATUS_REJECTED:
            await context.abort(grpc.StatusCode(_status_by_value(ack.error_code)), ack.error_message)
        return ack

    async def StreamFrames(self, request_iterator, context) -> AsyncIterator[ingest_pb2.FrameAck]:  # noqa: N802
        # Up to stream_concurrency frames are in flight; a full queue stops reading from the gateway
        # (HTTP/2 flow control pushes back), and acknowledgements leave in the order frames arrived.
        cameras = await self._cameras(context)
        pending: asyncio.Queue[asyncio.Task | None] = asyncio.Queue(maxsize=self._settings.stream_concurrency)

        async def read_frames() -> None:
            try:
                async for frame in request_iterator:
                    await pending.put(asyncio.create_task(self._ack(frame, cameras)))
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


    async def _batch_ack(self, batch: ingest_pb2.ReadBatch, cameras: frozenset[str], context):
        try:
            return await self.store_reads(batch, cameras)
        except Exception:
            log.exception("read batch failed", extra={"frames": len(batch.frames)})
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                "reads not stored because of an internal error; send the batch again")

    async def SubmitReads(self, request, context):  # noqa: N802
        return await self._batch_ack(request, await self._cameras(context), context)

    async def StreamReads(self, request_iterator, context) -> AsyncIterator[ingest_pb2.ReadBatchAck]:  # noqa: N802
        cameras = await self._cameras(context)
        async for batch in request_iterator:
            yield await self._batch_ack(batch, cameras, context)


SHREDDED = "the capture day's retention has ended and its data key is destroyed"


def _check_camera(frame: ingest_pb2.Frame | ingest_pb2.FrameReads, cameras: frozenset[str]) -> None:
    """Before any work is spent on it: the frame is from a camera this call authenticated as."""
    if frame.camera_id not in cameras:
        raise Rejected(Code.PERMISSION_DENIED,
                            f"this call holds no credential for camera {frame.camera_id[:128]!r}")


def _reject(ack: ingest_pb2.FrameAck, exc: Rejected) -> ingest_pb2.FrameAck:
    ack.status, ack.error_message = ingest_pb2.FRAME_STATUS_REJECTED, exc.message
    ack.error_code = status_of(exc.code).value[0]
    return ack


def _status_by_value(value: int) -> grpc.StatusCode:
    return next(code for code in grpc.StatusCode if code.value[0] == value)


def _camera_event(action: str, subject: str) -> audit_pb2.AuditEvent:
    return audit_pb2.AuditEvent(action=action, subject=subject[:128])


class CameraRegistryServicer(ingest_pb2_grpc.CameraRegistryServiceServicer):
    """Agency admins register their own agency's cameras; every change and every refusal is audited."""

    def __init__(self, store: FrameStore, verifier, audit: AuditClient):
        self._store = store
        self._gate = AccessGate(verifier, audit)

    async def _admin(self, context, action: str, subject: str) -> Principal:
        return await self._gate.admit(context, Permission.MANAGE_CAMERAS, event=_camera_event(action, subject))

    async def _deny(self, context, principal: Principal, action: str, subject: str, refusal: Rejected) -> NoReturn:
        await self._gate.deny(principal, _camera_event(action, subject), refusal)

    async def _record(self, context, principal: Principal, action: str, subject: str) -> None:
        """Audit a change before it is made; UNAVAILABLE (nothing changed) when it cannot be written."""
        await self._gate.record(principal, _camera_event(action, subject))

    async def UpsertCamera(self, request, context):  # noqa: N802
        camera = request.camera
        admin = await self._admin(context, "camera.upsert", camera.camera_id)
        if camera.agency_id and camera.agency_id != admin.agency_id:
            await self._deny(context, admin, "camera.upsert", camera.camera_id, Rejected(Code.PERMISSION_DENIED,
                             "cameras can be registered for your own agency only"))
        camera.agency_id = admin.agency_id
        try:
            validate_camera_id(camera.camera_id)
            validate_site_id(camera.site_id)
        except Rejected as exc:
            await abort(context, exc)
        if await self._store.camera_agency(camera.camera_id) not in (None, admin.agency_id):
            await self._deny(context, admin, "camera.upsert", camera.camera_id, Rejected(Code.PERMISSION_DENIED,
                             "this camera id belongs to another agency"))
        await self._record(context, admin, "camera.upsert", camera.camera_id)
        secret = new_secret()
        try:
            created = await self._store.upsert_camera(camera, secret_hash(secret))
        except DuplicateKeyError:  # registered by another agency meanwhile
            await self._deny(context, admin, "camera.upsert", camera.camera_id, Rejected(Code.PERMISSION_DENIED,
                             "this camera id belongs to another agency"))
        return ingest_pb2.UpsertCameraResponse(camera=camera, secret=secret if created else "")

    async def RotateCameraSecret(self, request, context):  # noqa: N802
        admin = await self._admin(context, "camera.rotate_secret", request.camera_id)
        if await self._store.camera_agency(request.camera_id) != admin.agency_id:  # none, or another agency's
            await self._deny(context, admin, "camera.rotate_secret", request.camera_id, Rejected(Code.NOT_FOUND,
                             "no such camera in your agency"))
        await self._record(context, admin, "camera.rotate_secret", request.camera_id)
        secret = new_secret()
        if not await self._store.set_camera_secret(request.camera_id, admin.agency_id, secret_hash(secret)):
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such camera in your agency")
        return ingest_pb2.RotateCameraSecretResponse(camera_id=request.camera_id, secret=secret)

    async def ListCameras(self, request, context):  # noqa: N802
        admin = await self._admin(context, "camera.list", request.agency_id)
        if request.agency_id and request.agency_id != admin.agency_id:
            await self._deny(context, admin, "camera.list", request.agency_id, Rejected(Code.PERMISSION_DENIED,
                             "only your own agency's cameras can be listed"))
        docs = await self._store.list_cameras(admin.agency_id)
        cameras = []
        for doc in docs:
            cam = ingest_pb2.Camera(camera_id=doc["_id"], agency_id=doc["agency_id"], name=doc.get("name", ""),
                                    active=doc.get("active", False), site_id=doc.get("site_id", ""))
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
    keys = KeyStore(db, load_master_key(settings), settings.data_key_cache_s)
    store = FrameStore(mongo, db, keys, settings.record_cache_s, settings.record_cache_size)
    alpr = TritonAlpr(settings.triton_url, settings.triton_model, settings.triton_timeout_s,
                      settings.ca_path() if settings.triton_tls and settings.tls_enabled else None)
    publisher = ReadPublisher(redis, settings.read_stream, settings.read_stream_maxlen)
    audit = AuditClient(settings.audit_address, settings.audit_timeout_s,
                        service_signer(settings.service_name, settings), settings)
    registry = CameraRegistryServicer(store, token_verifier(settings, redis), audit)
    ingest = IngestServicer(settings, store, alpr, publisher, ReadCounters(redis, settings.counter_ttl_days))

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
        ingest_pb2_grpc.add_CameraRegistryServiceServicer_to_server(registry, server)

    async def close_redis() -> None:
        await redis.aclose()

    return ServiceSpec(
        service_names=[ingest_pb2.DESCRIPTOR.services_by_name[n].full_name
                       for n in ("IngestService", "CameraRegistryService")],
        register=register,
        dependencies=[mongo_dependency(mongo), redis_dependency(redis), alpr.dependency()],
        background=[lambda: retry_until_done("mongodb indexes", lambda: ensure_indexes(db)), sweep_outbox],
        close=[alpr.close, audit.close, close_redis, mongo.close],
    )
