"""The link to ingest: one `IngestService/StreamFrames` call at a time carrying a window of frames.

Frames are admitted into a `FrameWindow` (at most `capacity` unacknowledged; `admit` waits while it is full)
and written oldest first. When the stream fails, every frame not acknowledged is written again on the next
stream, after an exponential backoff; a frame rejected with a retryable code is written again after its own
backoff. Each acknowledgement is handed to `on_ack` with the frame it was about. Used by the camera gateway
(frames from its spool) and by the gateway simulator (rendered frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import grpc

from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc

from .window import AckOutcome, FrameWindow, backoff_delay

log = logging.getLogger(__name__)

FrameKey = tuple[str, str]  # camera id, frame id
T = TypeVar("T")

AckHandler = Callable[[ingest_pb2.FrameAck, "T | None", AckOutcome], Awaitable[None] | None]


class Pacer:
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


class IngestLink(Generic[T]):
    def __init__(
        self,
        channel: grpc.aio.Channel,
        metadata: Callable[[], Sequence[tuple[str, str]]],
        frame_of: Callable[[T], ingest_pb2.Frame],
        on_ack: AckHandler[T],
        *,
        window: int,
        backoff_initial_s: float,
        backoff_max_s: float,
        rng: random.Random | None = None,
        max_rate: float = 0.0,
        on_state: Callable[[bool], None] | None = None,
    ) -> None:
        self._ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        self._metadata = metadata
        self._frame_of = frame_of
        self._on_ack = on_ack
        self._on_state = on_state
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._rng = rng or random.Random()
        self._window: FrameWindow[FrameKey, T] = FrameWindow(window, backoff_initial_s, backoff_max_s, self._rng)
        self._changed = asyncio.Condition()
        self._closed = False
        self._pacer = Pacer(max_rate)
        self.sent = 0  # stream writes, resends included
        self.resent = 0
        self.acknowledged = 0  # final outcomes: stored, duplicate or rejected
        self.stream_failures = 0
        self.up = False

    def __contains__(self, key: object) -> bool:
        return key in self._window

    def __len__(self) -> int:
        return len(self._window)

    @property
    def full(self) -> bool:
        return self._window.full

    async def admit(self, key: FrameKey, frame: T) -> None:
        """Queue a frame for sending; waits while `window` frames are unacknowledged."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._window.full)
            self._window.admit(key, frame)
            self._changed.notify_all()

    async def wait_room(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._window.full)

    async def close(self) -> None:
        """No more frames will be admitted: `run` returns once the window is empty."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    async def run(self) -> None:
        """Deliver until closed and every frame is acknowledged (or forever, if never closed)."""
        failures = 0
        while not self._finished:
            acked_before = self.acknowledged
            try:
                await self._stream_once()
            except grpc.aio.AioRpcError as exc:
                self.stream_failures += 1
                log.warning("frame stream failed", extra={"code": exc.code().name, "details": exc.details()})
            self._set_up(False)
            async with self._changed:
                lost = self._window.stream_lost()
                self._changed.notify_all()
            if self._finished:
                break
            failures = 0 if self.acknowledged > acked_before else failures + 1
            delay = backoff_delay(max(failures, 1), *self._backoff, self._rng)
            log.info("reconnecting", extra={"unacknowledged": len(lost), "delay_s": round(delay, 3)})
            await asyncio.sleep(delay)

    @property
    def _finished(self) -> bool:
        return self._closed and len(self._window) == 0

    def _set_up(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            if self._on_state is not None:
                self._on_state(up)

    async def _stream_once(self) -> None:
        call = self._ingest.StreamFrames(metadata=tuple(self._metadata()), wait_for_ready=True)
        writer = asyncio.create_task(self._write(call))
        try:
            while (ack := await call.read()) is not grpc.aio.EOF:
                self._set_up(True)
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
            _, frame, attempt = ready
            await self._pacer.wait()
            await call.write(self._frame_of(frame))
            self.sent += 1
            self.resent += attempt > 1

    async def _handle(self, ack: ingest_pb2.FrameAck) -> None:
        async with self._changed:
            outcome, frame = self._window.acknowledge(
                (ack.camera_id, ack.frame_id), ack.status, ack.error_code, time.monotonic()
            )
            self._changed.notify_all()
        if outcome in (AckOutcome.STORED, AckOutcome.DUPLICATE, AckOutcome.REJECTED):
            self.acknowledged += 1
        result = self._on_ack(ack, frame, outcome)
        if result is not None:
            await result
