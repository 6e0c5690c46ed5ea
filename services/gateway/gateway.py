"""One site's gateway: every camera's source, picker, spool and link to ingest, and /healthz and /metrics.

Each camera is independent: its source runs on its own thread (decode and pick), its stills go to the
shared spool, and its own `StreamFrames` call (its own credential) sends them. A camera whose source fails
is logged, counted and reopened with backoff; the others go on. Stills leave the spool only when ingest
acknowledges them; a restart (after a crash, a kill -9 or a power cut) sends what the spool still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import cv2
import grpc
import numpy as np
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.ingest.client import camera_metadata
from sightline.ingest.v1 import ingest_pb2

from . import metrics
from .config import (
    CameraConfig,
    FileSource,
    FolderSource,
    IngestConfig,
    SiteConfig,
    SnapshotSource,
    read_secret,
    redact_url,
)
from .domain.picking import RateCap, Still, StillPicker, encode_still, frame_id
from .domain.schedule import LaneChooser
from .link import IngestLink
from .sources import Decoded, FolderWatch, SourceError, decode_video, poll_snapshot
from .spool import AsyncSpool, Spool, SpooledFrame
from .window import AckOutcome, backoff_delay

log = logging.getLogger(__name__)

_OUTCOMES = {AckOutcome.STORED: "stored", AckOutcome.DUPLICATE: "duplicate", AckOutcome.REJECTED: "rejected"}


def ingest_channel(config: IngestConfig) -> grpc.aio.Channel:
    """TLS (mutual, with the site's client certificate, when `tls` names one); plain text only when the
    config says `plaintext: true`."""
    options: list[tuple[str, object]] = [("grpc.max_send_message_length", config.max_message_bytes),
                                         ("grpc.max_receive_message_length", config.max_message_bytes)]
    tls = config.tls
    if config.plaintext:
        log.warning("plain text to ingest: frames and camera secrets cross the link in clear")
        return grpc.aio.insecure_channel(config.target, options=options)
    if tls is None:
        return grpc.aio.secure_channel(config.target, grpc.ssl_channel_credentials(), options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca_file.read_bytes() if tls.ca_file else None,
        private_key=tls.key_file.read_bytes() if tls.key_file else None,
        certificate_chain=tls.cert_file.read_bytes() if tls.cert_file else None,
    )
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.aio.secure_channel(config.target, credentials, options=options)


class CameraWorker:
    """One camera: source thread -> picker -> spool; spool -> link -> ingest."""

    def __init__(self, camera: CameraConfig, site: SiteConfig, spool: AsyncSpool, channel: grpc.aio.Channel,
                 in_flight: Callable[[], set[int]], loop: asyncio.AbstractEventLoop) -> None:
        self.camera = camera
        self.id = camera.camera_id
        self._site = site
        self._spool = spool
        self._in_flight_all = in_flight
        self._loop = loop
        self._stop = threading.Event()
        self._spooled = asyncio.Event()
        self.in_window: set[int] = set()
        self._triggered: dict[str, float] = {}  # frame id -> wall time its pass started (for the latency metric)
        self._lanes = LaneChooser(site.spool.live_share)
        self._rng = random.Random()
        self._rate_cap = RateCap(camera.pick.max_frames_per_s, camera.pick.burst)
        secret = read_secret(camera.secret_file)
        ingest = site.ingest
        self.link: IngestLink[SpooledFrame] = IngestLink(
            channel, lambda: camera_metadata([(self.id, secret)]), lambda spooled: spooled.frame, self._on_ack,
            window=ingest.window, backoff_initial_s=ingest.backoff_initial_s, backoff_max_s=ingest.backoff_max_s,
            on_state=lambda up: metrics.LINK_UP.labels(self.id).set(int(up)),
        )
        self.source_up = False
        for name in ("decoded", "picked", "spooled"):
            getattr(metrics, name.upper()).labels(self.id)
        metrics.LINK_UP.labels(self.id).set(0)
        self._set_source_up(False)

    # --- capture side -------------------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self.link.run())
            group.create_task(self._feed())
            if isinstance(self.camera.source, FolderSource):
                group.create_task(self._watch_folder(self.camera.source))
            else:
                group.create_task(asyncio.to_thread(self._capture_thread))

    def stop(self) -> None:
        self._stop.set()

    def _set_source_up(self, up: bool) -> None:
        self.source_up = up
        metrics.SOURCE_UP.labels(self.id).set(int(up))

    def _capture_thread(self) -> None:
        """Open, decode and pick until stopped; a failure is logged and counted, and the source reopened (a
        file that cannot be read stops this camera only)."""
        source = self.camera.source
        picker = StillPicker(self.camera.pick)
        failures = 0
        while not self._stop.is_set():
            try:
                for decoded in self._frames():
                    if not self.source_up:
                        self._set_source_up(True)
                        failures = 0
                    metrics.DECODED.labels(self.id).inc()
                    for still in picker.offer(decoded.grey, decoded.captured_at, decoded.colour):
                        self._take(still)
                if not isinstance(source, FileSource):
                    raise SourceError("read", "the stream ended")
                if not source.loop:
                    log.info("video file ended", extra={"camera_id": self.id})
                    return
            except SourceError as exc:
                failures += 1
                metrics.SOURCE_ERRORS.labels(self.id, exc.kind).inc()
                self._set_source_up(False)
                if isinstance(source, FileSource):
                    log.error("video file unreadable, camera stopped",
                              extra={"camera_id": self.id, "kind": exc.kind, "error": str(exc)[:300]})
                    return
                delay = backoff_delay(failures, source.reconnect_initial_s, source.reconnect_max_s, self._rng)
                log.warning("camera source failed, reconnecting",
                            extra={"camera_id": self.id, "kind": exc.kind, "error": str(exc)[:300],
                                   "source": redact_url(source.url), "delay_s": round(delay, 2)})
                if self._stop.wait(delay):
                    return
                metrics.RECONNECTS.labels(self.id).inc()
            finally:
                if not self._stop.is_set():  # the pass cut short by the failure still yields its stills
                    for still in picker.flush():
                        self._take(still)

    def _frames(self) -> Iterator[Decoded]:
        source = self.camera.source
        if isinstance(source, SnapshotSource):
            return self._snapshots(source)
        assert not isinstance(source, FolderSource)
        return decode_video(source, self._stop)

    def _snapshots(self, source: SnapshotSource) -> Iterator[Decoded]:
        while not self._stop.is_set():
            started = time.monotonic()
            decoded: Decoded = poll_snapshot(source)
            yield decoded
            self._stop.wait(max(0.0, source.interval_s - (time.monotonic() - started)))

    def _take(self, still: Still) -> None:
        """A picked still: through the rate cap, encoded, spooled (waits for the spool: back-pressure)."""
        metrics.PICKED.labels(self.id).inc()
        if not self._rate_cap.allow(time.monotonic()):
            metrics.DROPPED.labels(self.id, "rate_cap").inc()
            return
        pick = self.camera.pick
        frame = self._frame(frame_id(still.captured_at), still.captured_at,
                            encode_still(still.image, pick.max_side, pick.jpeg_quality))
        self._triggered[frame.frame_id] = still.triggered_at.timestamp()
        asyncio.run_coroutine_threadsafe(self._put(frame), self._loop).result()

    def _frame(self, frame_id_: str, captured_at: datetime, jpeg: bytes) -> ingest_pb2.Frame:
        cam = self.camera
        frame = ingest_pb2.Frame(camera_id=self.id, frame_id=frame_id_, jpeg=jpeg)
        frame.captured_at.FromDatetime(captured_at)
        if cam.latitude is not None and cam.longitude is not None:
            frame.location.latitude, frame.location.longitude = cam.latitude, cam.longitude
        if cam.heading_degrees is not None:
            frame.heading_degrees = cam.heading_degrees
        return frame

    async def _put(self, frame: ingest_pb2.Frame) -> bool:
        result = await self._spool.call(self._spool.spool.put, frame, self._in_flight_all())
        for camera_id, _ in result.dropped:
            metrics.DROPPED.labels(camera_id, "spool_full").inc()
        if result.dropped or result.refused:
            log.warning("spool full: oldest unsent stills dropped",
                        extra={"camera_id": self.id, "dropped": len(result.dropped) + result.refused,
                               "max_bytes": self._site.spool.max_bytes})
        if result.refused:
            metrics.DROPPED.labels(self.id, "spool_full").inc()
        if result.stored:
            metrics.SPOOLED.labels(self.id).inc()
            self._spooled.set()
        self._update_spool_gauges()
        return result.stored or not result.refused

    def _update_spool_gauges(self) -> None:
        for camera_id, size in self._spool.spool.bytes_by_camera.items():
            metrics.SPOOL_BYTES.labels(camera_id).set(size)

    async def _watch_folder(self, source: FolderSource) -> None:
        """Each complete JPEG of the drop folder: re-encoded, spooled, then deleted; a bad one is moved aside."""
        watch = FolderWatch(source)
        rejected = source.path / "rejected"
        warned_missing, waiting = False, 0
        while not self._stop.is_set():
            if not source.path.is_dir():
                if not warned_missing:
                    log.error("watched folder is missing", extra={"camera_id": self.id, "path": str(source.path)})
                    metrics.SOURCE_ERRORS.labels(self.id, "open").inc()
                    warned_missing = True
                self._set_source_up(False)
            else:
                warned_missing = False
                self._set_source_up(True)
                ready = await asyncio.to_thread(watch.scan, time.monotonic())
                if watch.waiting != waiting:
                    waiting = watch.waiting
                    metrics.FOLDER_WAITING.labels(self.id).set(waiting)
                    if waiting:
                        log.info("dropped files not complete yet, waiting for them",
                                 extra={"camera_id": self.id, "files": waiting})
                for dropped in ready:
                    data = await asyncio.to_thread(dropped.path.read_bytes)
                    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                    metrics.DECODED.labels(self.id).inc()
                    if image is None:
                        log.error("dropped file is not a readable JPEG, moved aside",
                                  extra={"camera_id": self.id, "file": dropped.path.name})
                        metrics.SOURCE_ERRORS.labels(self.id, "bad_file").inc()
                        rejected.mkdir(exist_ok=True)
                        dropped.path.replace(rejected / dropped.path.name)
                    else:
                        metrics.PICKED.labels(self.id).inc()
                        pick = self.camera.pick
                        jpeg = await asyncio.to_thread(encode_still, image, pick.max_side, pick.jpeg_quality)
                        await self._put(self._frame(dropped.frame_id, dropped.captured_at, jpeg))
                        dropped.path.unlink(missing_ok=True)
                    watch.done(dropped.path)
            await asyncio.sleep(source.poll_s)

    # --- sending side -------------------------------------------------------------------------------------

    async def _feed(self) -> None:
        """Admit spooled stills into the link: oldest first, with `live_share` of the sends given to the
        newest still spooled within `live_window_s` (so a backlog does not hold live stills back)."""
        spool, site = self._spool, self._site.spool
        while True:
            await self.link.wait_room()
            self._spooled.clear()
            live_since = time.time() - site.live_window_s
            lanes = (True, False) if self._lanes.next_is_live() else (False, True)
            picked: SpooledFrame | None = None
            for live in lanes:
                rows = await spool.call(spool.spool.next_frames, self.id, set(self.in_window), 1,
                                        newest_since=live_since if live else None)
                if rows:
                    picked = rows[0]
                    self._lanes.took(live)
                    break
            if picked is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._spooled.wait(), 1.0)
                continue
            self.in_window.add(picked.seq)
            await self.link.admit(picked.key, picked)

    async def _on_ack(self, ack: ingest_pb2.FrameAck, spooled: SpooledFrame | None, outcome: AckOutcome) -> None:
        if spooled is None or outcome not in _OUTCOMES:
            if outcome is AckOutcome.RETRY:
                log.info("frame refused for now, will retry", extra={"camera_id": self.id,
                                                                     "frame_id": ack.frame_id})
            return
        await self._spool.call(self._spool.spool.remove, spooled.seq)
        self.in_window.discard(spooled.seq)
        self._update_spool_gauges()
        metrics.SENT.labels(self.id, _OUTCOMES[outcome]).inc()
        log.debug("frame acknowledged", extra={"camera_id": self.id, "frame_id": ack.frame_id,
                                               "outcome": _OUTCOMES[outcome], "reads": len(ack.read_ids)})
        if (triggered := self._triggered.pop(spooled.frame.frame_id, None)) is not None:
            metrics.TRIGGER_TO_ACK.labels(self.id).observe(time.time() - triggered)
        if outcome is AckOutcome.REJECTED:
            log.warning("frame rejected by ingest, removed from the spool",
                        extra={"camera_id": self.id, "frame_id": ack.frame_id, "code": ack.error_code,
                               "error": ack.error_message[:300]})


class Gateway:
    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.spool = AsyncSpool(Spool(config.spool.path, config.spool.max_bytes))
        self.workers: list[CameraWorker] = []

    def _in_flight(self) -> set[int]:
        """Spooled stills written to a live stream: not dropped when the spool is full (while a link is down,
        nothing is in flight, and the oldest stills go first whatever their place in the window)."""
        return set().union(*(w.in_window for w in self.workers if w.link.up))

    async def healthy(self) -> tuple[bool, dict[str, object]]:
        try:
            await asyncio.wait_for(self.spool.call(self.spool.spool.count), 5.0)
            spool_ok = True
        except Exception:  # noqa: BLE001 - any spool failure makes the gateway unhealthy
            spool_ok = False
        cameras = {w.id: {"source_up": w.source_up, "link_up": w.link.up,
                          "spool_bytes": self.spool.spool.bytes_by_camera.get(w.id, 0)} for w in self.workers}
        return spool_ok, {"status": "ok" if spool_ok else "spool unavailable", "cameras": cameras}

    def _app(self) -> Starlette:
        async def healthz(request: Request) -> JSONResponse:
            ok, body = await self.healthy()
            return JSONResponse(body, status_code=200 if ok else 503)

        async def prometheus(request: Request) -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

        return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", prometheus)])

    async def run(self, stop: asyncio.Event) -> None:
        cv2.setNumThreads(1)  # each camera has its own thread; OpenCV's pool would only contend with them
        loop = asyncio.get_running_loop()
        server = uvicorn.Server(uvicorn.Config(self._app(), host=self.config.http_host, port=self.config.http_port,
                                               log_config=None, access_log=False, lifespan="off"))
        async with ingest_channel(self.config.ingest) as channel:
            self.workers = [CameraWorker(camera, self.config, self.spool, channel, self._in_flight, loop)
                            for camera in self.config.cameras]
            self.workers[0]._update_spool_gauges()
            log.info("gateway started", extra={"site_id": self.config.site_id, "cameras": len(self.workers),
                                               "spooled": await self.spool.call(self.spool.spool.count)})
            tasks = [asyncio.create_task(self._guard(w)) for w in self.workers]
            http = asyncio.create_task(server.serve()) if self.config.http_port else None
            await stop.wait()
            log.info("gateway stopping; unsent stills stay in the spool", extra={"site_id": self.config.site_id})
            for worker in self.workers:
                worker.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            server.should_exit = True
            if http is not None:
                await http
        self.spool.close()

    async def _guard(self, worker: CameraWorker) -> None:
        """A camera's tasks; one that dies unexpectedly is logged and the camera restarted (others go on)."""
        while True:
            try:
                await worker.run()
                return
            except* Exception as group:  # noqa: BLE001 - a bug in one camera must not stop the site
                log.exception("camera worker failed, restarting", extra={"camera_id": worker.id},
                              exc_info=group)
                await asyncio.sleep(5.0)
