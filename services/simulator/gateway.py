"""The camera-gateway simulator: registers its cameras, then streams their frames to the ingest service.

Registration uses an agency admin's token; each camera's gateway secret (issued once by the registry) is kept
in `credentials_file`, and the frame stream presents every camera's credential.

One bidirectional `IngestService/StreamFrames` call carries every camera's frames (the camera gateway's
`IngestLink`). At most `window` frames are unacknowledged at a time (the sources wait when it is full). When
the stream fails, or a frame is rejected with a retryable code, the frames not acknowledged are sent again
with exponential backoff (see `services.gateway.window.FrameWindow`); frames rejected for good are logged and
counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from services.common.auth import auth_metadata
from services.common.plates import normalize_plate
from services.gateway.link import IngestLink
from services.gateway.window import AckOutcome, backoff_delay
from services.ingest.client import camera_metadata
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc

from .settings import SimulatorSettings
from .sources import OutgoingFrame, SimCamera, camera_frames

log = logging.getLogger(__name__)

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


class Gateway:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        settings: SimulatorSettings,
        on_ack: Callable[[ingest_pb2.FrameAck, OutgoingFrame | None, AckOutcome], None] | None = None,
    ) -> None:
        self._settings = settings
        self._registry = ingest_pb2_grpc.CameraRegistryServiceStub(channel)
        self._rng = random.Random(settings.seed)
        self._link: IngestLink[OutgoingFrame] = IngestLink(
            channel, lambda: camera_metadata(self.secrets.items()), lambda outgoing: outgoing.frame, self._handle,
            window=settings.window, backoff_initial_s=settings.backoff_initial_s,
            backoff_max_s=settings.backoff_max_s, rng=self._rng, max_rate=settings.max_rate,
        )
        self._on_ack = on_ack
        self.stats = GatewayStats()
        self.secrets: dict[str, str] = {}

    async def register(self, cameras: list[SimCamera]) -> None:
        """Upsert every camera in the registry (retrying while the service is unavailable) and keep its secret."""
        s = self._settings
        stored = json.loads(s.credentials_file.read_text()) if s.credentials_file.exists() else {}
        admin = auth_metadata(s.admin_token)
        for camera in cameras:
            request = ingest_pb2.UpsertCameraRequest(camera=camera.to_proto(s.agency_id, s.send_location,
                                                                                        s.site_id))
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
            group.create_task(self._link.run())
        s, link = self.stats, self._link
        s.sent, s.resent, s.stream_failures = link.sent, link.resent, link.stream_failures
        return self.stats

    async def _feed(self, camera: SimCamera, run_id: str, stop: asyncio.Event) -> None:
        async for outgoing in camera_frames(camera, self._settings, run_id, stop):
            await self._link.admit(outgoing.key, outgoing)

    async def _close_sources(self, feeds: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*feeds, return_exceptions=True)
        await self._link.close()

    def _handle(self, ack: ingest_pb2.FrameAck, outgoing: OutgoingFrame | None, outcome: AckOutcome) -> None:
        s = self.stats
        s.sent, s.resent, s.stream_failures = self._link.sent, self._link.resent, self._link.stream_failures
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
