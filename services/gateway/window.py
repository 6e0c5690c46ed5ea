"""Bookkeeping of a gateway's unacknowledged frames: pure, no I/O, the clock passed in.

A gateway never drops a frame that was not acknowledged. Every frame it admits stays in the window
until the ingest service answers STORED or DUPLICATE, or rejects it for good (a non-retryable code).
After a stream failure every frame sent but not acknowledged is sent again; a frame rejected with a
retryable code is sent again after an exponential backoff. Frame ids are stable, so the ingest
service stores a frame sent twice only once.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc

from sightline.ingest.v1 import ingest_pb2

RETRYABLE_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}
)
_RETRYABLE_VALUES = frozenset(code.value[0] for code in RETRYABLE_CODES)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class AckOutcome(enum.Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    RETRY = "retry"  # rejected with a retryable code: sent again after a backoff
    REJECTED = "rejected"  # rejected for good: dropped from the window, counted
    UNEXPECTED = "unexpected"  # an ack for a frame not in flight (already acknowledged, or unknown)


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with "full jitter": uniform in [0, min(max, initial * 2**(attempt-1))]."""
    ceiling = min(max_s, initial_s * 2 ** max(attempt - 1, 0))
    return ceiling if rng is None else rng.uniform(0, ceiling)


class WindowFull(RuntimeError):
    pass


@dataclass
class _Entry(Generic[T]):
    frame: T
    attempts: int = 0  # times sent
    in_flight: bool = False
    not_before: float = 0.0  # earliest time a resend may go


class FrameWindow(Generic[K, T]):
    """At most `capacity` unacknowledged frames, oldest sent first."""

    def __init__(
        self,
        capacity: int,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._rng = rng
        self._entries: dict[K, _Entry[T]] = {}  # insertion order = admission order

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    @property
    def full(self) -> bool:
        return len(self._entries) >= self.capacity

    @property
    def in_flight(self) -> int:
        return sum(entry.in_flight for entry in self._entries.values())

    def admit(self, key: K, frame: T) -> None:
        """A new frame from the source; it will be sent by `next_ready`."""
        if key in self._entries:
            raise ValueError(f"frame {key!r} is already in the window")
        if self.full:
            raise WindowFull(f"{self.capacity} frames are unacknowledged")
        self._entries[key] = _Entry(frame)

    def next_ready(self, now: float) -> tuple[K, T, int] | None:
        """The oldest frame waiting to be sent whose backoff has passed, marked in flight; with the
        attempt number (1 for a first send)."""
        for key, entry in self._entries.items():
            if not entry.in_flight and entry.not_before <= now:
                entry.in_flight = True
                entry.attempts += 1
                return key, entry.frame, entry.attempts
        return None

    def next_ready_at(self) -> float | None:
        """When the earliest waiting frame may be sent; None when every frame is in flight."""
        waiting = [entry.not_before for entry in self._entries.values() if not entry.in_flight]
        return min(waiting, default=None)

    def acknowledge(
        self, key: K, status: ingest_pb2.FrameStatus.ValueType, error_code: int, now: float
    ) -> tuple[AckOutcome, T | None]:
        """Apply one FrameAck. Returns the outcome and the frame it was about (None if UNEXPECTED)."""
        entry = self._entries.get(key)
        if entry is None or not entry.in_flight:
            return AckOutcome.UNEXPECTED, None
        if status == ingest_pb2.FRAME_STATUS_STORED:
            del self._entries[key]
            return AckOutcome.STORED, entry.frame
        if status == ingest_pb2.FRAME_STATUS_DUPLICATE:
            del self._entries[key]
            return AckOutcome.DUPLICATE, entry.frame
        if status == ingest_pb2.FRAME_STATUS_REJECTED and error_code not in _RETRYABLE_VALUES:
            del self._entries[key]
            return AckOutcome.REJECTED, entry.frame
        # Retryable rejection, or a status this gateway does not know: keep the frame and try again.
        entry.in_flight = False
        entry.not_before = now + backoff_delay(entry.attempts, *self._backoff, rng=self._rng)
        return AckOutcome.RETRY, entry.frame

    def stream_lost(self) -> list[K]:
        """The stream broke: every frame in flight waits to be sent again (now, oldest first)."""
        lost = [key for key, entry in self._entries.items() if entry.in_flight]
        for key in lost:
            self._entries[key].in_flight = False
        return lost
