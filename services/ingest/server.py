"""gRPC adapter of the ingest service: IngestService and CameraRegistryService.

Gateways prove which cameras they speak for with per-camera secrets (adapters/camera_auth.py); the registry
is for agency admins (cameras:manage), audited, and issues those secrets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
from prometheus_client import Histogram

from services.audit.client import AccessGate, AuditClient
from services.common.auth import Permission, Principal, token_verifier
from services.common.counters import ReadCounters
from services.common.data_keys import KeyStore, load_master_key
from services.common.grpc_server import ServiceSpec, abort, retry_until_done
from services.common.reads import ensure_indexes
from services.common.rejected import Rejected
from services.common.service_tokens import service_signer
from services.common.storage import (
    mongo_client,
    mongo_database,
    mongo_dependency,
    redis_client,
    redis_dependency,
)
from services.ingest.adapters.camera_auth import authenticate_cameras, check_site
from services.ingest.adapters.store import FrameStore
from services.ingest.adapters.stream import ReadPublisher
from services.ingest.adapters.triton import TritonAlpr
from services.ingest.domain.frames import (
    FrameLimits,
)
from services.ingest.service_layer.cameras import CameraRegistry, camera_event
from services.ingest.service_layer.intake import FRAMES, FrameIntake, reject
from services.ingest.settings import IngestSettings
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)

FRAME_SECONDS = Histogram("sightline_ingest_frame_seconds", "Frame received to acknowledged",
                          buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10))


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, intake: FrameIntake, store: FrameStore, stream_concurrency: int, check_site: bool = True):
        """`check_site`: hold each camera to the site of the connection's client certificate (mutual TLS; off
        only with TLS off, the clear-text benchmark baseline)."""
        self._intake = intake
        self._store = store
        self._stream_concurrency = stream_concurrency
        self._check_site = check_site

    async def _ack(self, frame: ingest_pb2.Frame, cameras: frozenset[str]) -> ingest_pb2.FrameAck:
        started = asyncio.get_running_loop().time()
        try:
            ack = await self._intake.process(frame, cameras)
        except Rejected as exc:
            ack = reject(ingest_pb2.FrameAck(camera_id=frame.camera_id, frame_id=frame.frame_id), exc)
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
            if self._check_site:
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
        pending: asyncio.Queue[asyncio.Task | None] = asyncio.Queue(maxsize=self._stream_concurrency)

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
            return await self._intake.store_reads(batch, cameras)
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


def _status_by_value(value: int) -> grpc.StatusCode:
    return next(code for code in grpc.StatusCode if code.value[0] == value)


class CameraRegistryServicer(ingest_pb2_grpc.CameraRegistryServiceServicer):
    """Agency admins register their own agency's cameras (service_layer/cameras.py); every change and every
    refusal is audited."""

    def __init__(self, gate: AccessGate, registry: CameraRegistry):
        self._gate = gate
        self._registry = registry

    async def _admin(self, context, action: str, subject: str) -> Principal:
        return await self._gate.admit(context, Permission.MANAGE_CAMERAS, event=camera_event(action, subject))

    async def UpsertCamera(self, request, context):  # noqa: N802
        admin = await self._admin(context, "camera.upsert", request.camera.camera_id)
        camera, secret = await self._registry.upsert(admin, request.camera)
        return ingest_pb2.UpsertCameraResponse(camera=camera, secret=secret)

    async def RotateCameraSecret(self, request, context):  # noqa: N802
        admin = await self._admin(context, "camera.rotate_secret", request.camera_id)
        secret = await self._registry.rotate_secret(admin, request.camera_id)
        return ingest_pb2.RotateCameraSecretResponse(camera_id=request.camera_id, secret=secret)

    async def ListCameras(self, request, context):  # noqa: N802
        admin = await self._admin(context, "camera.list", request.agency_id)
        cameras = []
        for doc in await self._registry.cameras(admin, request.agency_id):
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
    gate = AccessGate(token_verifier(settings, redis), audit)
    registry = CameraRegistryServicer(gate, CameraRegistry(store, gate, settings.default_camera_site))
    limits = FrameLimits(settings.max_frame_bytes, settings.max_frame_pixels,
                         timedelta(seconds=settings.max_clock_skew_s))
    intake = FrameIntake(store, alpr, publisher, ReadCounters(redis, settings.counter_ttl_days), limits,
                         settings.cap_table(), settings.read_retention_days)
    ingest = IngestServicer(intake, store, settings.stream_concurrency, check_site=settings.tls_enabled)

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

    return ServiceSpec(
        service_names=[ingest_pb2.DESCRIPTOR.services_by_name[n].full_name
                       for n in ("IngestService", "CameraRegistryService")],
        register=register,
        dependencies=[mongo_dependency(mongo), redis_dependency(redis), alpr.dependency()],
        background=[lambda: retry_until_done("mongodb indexes", lambda: ensure_indexes(db)), sweep_outbox],
        close=[alpr.close, audit.close, redis.aclose, mongo.close],
    )
