"""The camera-gateway simulator: registers its cameras, then streams their frames to the ingest service.

Registration uses an agency admin's token; each camera's gateway secret (issued once by the registry) is kept
in `credentials_file`, and the frame stream presents every camera's credential.

One bidirectional `IngestService/StreamFrames` call carries every camera's frames. At most `window`
frames are unacknowledged at a time (the sources wait when it is full). When the stream fails, or a
frame is rejected with a retryable code, the frames not acknowledged are sent again with exponential
backoff (see `window.FrameWindow`); frames rejected for good are logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from services.common.auth import auth_metadata
from services.common.plates import normalize_plate
from services.ingest.adapters.camera_auth import camera_metadata
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc

from .settings import SimulatorSettings
from .sources import OutgoingFrame, SimCamera, camera_frames
from .window import AckOutcome, FrameWindow, backoff_delay

log = logging.getLogger(__name__)

FrameKey = tuple[str, str]  # camera id, frame id


@dataclass
class GatewayStats:
    sent: int = 0  # stream writes, resends included
    resent: int = 0
    stored: int = 0
    duplicate: int = 0
    retried: int = 0  # retryable rejections
    rejected: Counter[str] = field(default_factory=Counter)  # final rejections by gRPC code name
    unexpected_acks: int = 0
    stream_failures: int = 0
    reads: int = 0
    truth_frames: int = 0  # acknowledged frames whose plate is known (synthetic scenes)
    truth_matched: int = 0  # ... and whose plate was among the reads

    @property
    def acknowledged(self) -> int:
        return self.stored + self.duplicate + sum(self.rejected.values())

    def summary(self) -> str:
        parts = [f"stored {self.stored}", f"duplicate {self.duplicate}"]
        rejected = sum(self.rejected.values())
        parts.append(f"rejected {rejected}" + (f" {dict(self.rejected)}" if rejected else ""))
        parts += [
            f"sent {self.sent}",
            f"resent {self.resent}",
            f"retried {self.retried}",
            f"stream failures {self.stream_failures}",
            f"reads {self.reads}",
        ]
        if self.truth_frames:
            share = self.truth_matched / self.truth_frames
            parts.append(f"plates read {self.truth_matched}/{self.truth_frames} ({share:.0%})")
        return ", ".join(parts)


def _code_name(value: int) -> str:
    return next((code.name for code in grpc.StatusCode if code.value[0] == value), str(value))


class _Pacer:
    """Spaces calls at least 1/rate seconds apart (no limit when rate is 0)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next = max(now, self._next) + self._interval


class Gateway:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        settings: SimulatorSettings,
        on_ack: Callable[[ingest_pb2.FrameAck, OutgoingFrame | None, AckOutcome], None] | None = None,
    ) -> None:
        self._settings = settings
        self._ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        self._registry = ingest_pb2_grpc.CameraRegistryServiceStub(channel)
        self._rng = random.Random(settings.seed)
        self._window: FrameWindow[FrameKey, OutgoingFrame] = FrameWindow(
            settings.window, settings.backoff_initial_s, settings.backoff_max_s, self._rng
        )
        self._changed = asyncio.Condition()
        self._sources_done = False
        self._pacer = _Pacer(settings.max_rate)
        self._on_ack = on_ack
        self.stats = GatewayStats()
        self.secrets: dict[str, str] = {}

    async def register(self, cameras: list[SimCamera]) -> None:
        """Upsert every camera in the registry (retrying while the service is unavailable) and keep its secret."""
        s = self._settings
        stored = json.loads(s.credentials_file.read_text()) if s.credentials_file.exists() else {}
        admin = auth_metadata(s.admin_token)
        for camera in cameras:
            request = ingest_pb2.UpsertCameraRequest(camera=camera.to_proto(s.agency_id, s.send_location))
            for attempt in range(1, 1_000_000):
                try:
                    reply = await self._registry.UpsertCamera(request, metadata=admin, timeout=s.rpc_timeout_s,
                                                              wait_for_ready=True)
                    if not reply.secret and camera.camera_id not in stored:
                        reply = await self._registry.RotateCameraSecret(ingest_pb2.RotateCameraSecretRequest(
                            camera_id=camera.camera_id), metadata=admin, timeout=s.rpc_timeout_s)
                    self.secrets[camera.camera_id] = reply.secret or stored[camera.camera_id]
                    break
                except grpc.aio.AioRpcError as exc:
                    if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        raise
                    delay = backoff_delay(attempt, s.backoff_initial_s, s.backoff_max_s, self._rng)
                    log.warning(
                        "camera registry unavailable, retrying",
                        extra={"camera_id": camera.camera_id, "code": exc.code().name, "delay_s": delay},
                    )
                    await asyncio.sleep(delay)
        s.credentials_file.parent.mkdir(parents=True, exist_ok=True)
        s.credentials_file.touch(mode=0o600)
        s.credentials_file.write_text(json.dumps({**stored, **self.secrets}, indent=1))
        log.info("cameras registered", extra={"cameras": len(cameras), "agency_id": s.agency_id})

    async def run(self, cameras: list[SimCamera], run_id: str, stop: asyncio.Event) -> GatewayStats:
        """Send every camera's frames until the sources end (or `stop` is set) and the window is empty.
        A source that fails (an unreadable folder) ends the run with its exception."""
        async with asyncio.TaskGroup() as group:
            feeds = [group.create_task(self._feed(camera, run_id, stop)) for camera in cameras]
            group.create_task(self._close_sources(feeds))
            group.create_task(self._deliver())
        return self.stats

    async def _feed(self, camera: SimCamera, run_id: str, stop: asyncio.Event) -> None:
        async for outgoing in camera_frames(camera, self._settings, run_id, stop):
            async with self._changed:
                await self._changed.wait_for(lambda: not self._window.full)
                self._window.admit(outgoing.key, outgoing)
                self._changed.notify_all()

    async def _close_sources(self, feeds: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*feeds, return_exceptions=True)
        async with self._changed:
            self._sources_done = True
            self._changed.notify_all()

    async def _deliver(self) -> None:
        failures = 0
        while not self._finished:
            acked_before = self.stats.acknowledged
            try:
                await self._stream_once()
            except grpc.aio.AioRpcError as exc:
                self.stats.stream_failures += 1
                log.warning("frame stream failed", extra={"code": exc.code().name, "details": exc.details()})
            async with self._changed:
                lost = self._window.stream_lost()
                self._changed.notify_all()
            if self._finished:
                break
            failures = 0 if self.stats.acknowledged > acked_before else failures + 1
            delay = backoff_delay(
                max(failures, 1), self._settings.backoff_initial_s, self._settings.backoff_max_s, self._rng
            )
            log.info("reconnecting", extra={"unacknowledged": len(lost), "delay_s": round(delay, 3)})
            await asyncio.sleep(delay)

    @property
    def _finished(self) -> bool:
        return self._sources_done and len(self._window) == 0

    async def _stream_once(self) -> None:
        call = self._ingest.StreamFrames(metadata=camera_metadata(self.secrets.items()), wait_for_ready=True)
        writer = asyncio.create_task(self._write(call))
        try:
            while (ack := await call.read()) is not grpc.aio.EOF:
                await self._handle(ack)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError, grpc.aio.UsageError):
                await writer
            call.cancel()

    async def _write(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            async with self._changed:
                while True:
                    if self._finished:
                        await call.done_writing()
                        return
                    now = time.monotonic()
                    ready = self._window.next_ready(now)
                    if ready is not None:
                        break
                    wake = self._window.next_ready_at()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), None if wake is None else max(wake - now, 0.001))
            _, outgoing, attempt = ready
            await self._pacer.wait()
            await call.write(outgoing.frame)
            self.stats.sent += 1
            self.stats.resent += attempt > 1

    async def _handle(self, ack: ingest_pb2.FrameAck) -> None:
        async with self._changed:
            outcome, outgoing = self._window.acknowledge(
                (ack.camera_id, ack.frame_id), ack.status, ack.error_code, time.monotonic()
            )
            self._changed.notify_all()
        s = self.stats
        if outcome is AckOutcome.STORED:
            s.stored += 1
        elif outcome is AckOutcome.DUPLICATE:
            s.duplicate += 1
        elif outcome is AckOutcome.RETRY:
            s.retried += 1
            log.info(
                "frame rejected, will retry",
                extra={"camera_id": ack.camera_id, "frame_id": ack.frame_id, "code": _code_name(ack.error_code)},
            )
        elif outcome is AckOutcome.REJECTED:
            s.rejected[_code_name(ack.error_code)] += 1
            log.warning(
                "frame rejected",
                extra={
                    "camera_id": ack.camera_id,
                    "frame_id": ack.frame_id,
                    "code": _code_name(ack.error_code),
                    "error": ack.error_message,
                },
            )
        else:
            s.unexpected_acks += 1
            log.warning(
                "acknowledgement for a frame not in flight",
                extra={"camera_id": ack.camera_id, "frame_id": ack.frame_id},
            )
        if outcome in (AckOutcome.STORED, AckOutcome.DUPLICATE):
            s.reads += sum(1 for read in ack.reads if read.plate_normalized)
            truth = outgoing.truth if outgoing is not None else None
            if truth is not None and truth.plate_box is not None and outcome is AckOutcome.STORED:
                s.truth_frames += 1
                s.truth_matched += any(normalize_plate(read.plate_normalized) == truth.plate_text for read in ack.reads)
        if self._on_ack is not None:
            self._on_ack(ack, outgoing, outcome)
