"""The gateway simulator's pure parts: the window of unacknowledged frames, backoff, cameras, settings."""

from __future__ import annotations

import argparse
import random

import grpc
import pytest

from services.gateway.window import AckOutcome, FrameWindow, WindowFull, backoff_delay
from services.simulator.command import add_arguments, settings_from_args
from services.simulator.settings import SimulatorSettings
from services.simulator.sources import make_cameras
from sightline.ingest.v1 import ingest_pb2

pytestmark = pytest.mark.unit

STORED, DUPLICATE, REJECTED = (
    ingest_pb2.FRAME_STATUS_STORED,
    ingest_pb2.FRAME_STATUS_DUPLICATE,
    ingest_pb2.FRAME_STATUS_REJECTED,
)
OK = grpc.StatusCode.OK.value[0]
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]


def window_with(n: int, capacity: int = 8) -> FrameWindow[str, str]:
    window: FrameWindow[str, str] = FrameWindow(capacity, backoff_initial_s=1.0, backoff_max_s=8.0)
    for i in range(n):
        window.admit(f"f{i}", f"frame {i}")
    return window


def send_all(window: FrameWindow[str, str], now: float = 0.0) -> list[str]:
    sent = []
    while (ready := window.next_ready(now)) is not None:
        sent.append(ready[0])
    return sent


def test_frames_are_sent_once_in_order_and_leave_when_stored() -> None:
    window = window_with(3)
    assert send_all(window) == ["f0", "f1", "f2"]
    assert window.in_flight == 3
    assert window.next_ready(0.0) is None
    assert window.acknowledge("f0", STORED, OK, 0.0) == (AckOutcome.STORED, "frame 0")
    assert window.acknowledge("f1", DUPLICATE, OK, 0.0) == (AckOutcome.DUPLICATE, "frame 1")
    assert len(window) == 1 and "f2" in window


def test_capacity_bounds_unacknowledged_frames() -> None:
    window = window_with(2, capacity=2)
    assert window.full
    with pytest.raises(WindowFull):
        window.admit("f9", "x")
    send_all(window)
    assert window.full  # in flight still counts
    window.acknowledge("f0", STORED, OK, 0.0)
    assert not window.full
    window.admit("f2", "frame 2")
    with pytest.raises(ValueError):
        window.admit("f2", "again")


def test_out_of_order_acks() -> None:
    window = window_with(4)
    send_all(window)
    for key in ("f2", "f0", "f3", "f1"):
        assert window.acknowledge(key, STORED, OK, 0.0)[0] is AckOutcome.STORED
    assert len(window) == 0


def test_duplicate_and_unknown_acks_are_unexpected() -> None:
    window = window_with(2)
    send_all(window)
    window.acknowledge("f0", STORED, OK, 0.0)
    assert window.acknowledge("f0", STORED, OK, 0.0) == (AckOutcome.UNEXPECTED, None)
    assert window.acknowledge("nope", STORED, OK, 0.0) == (AckOutcome.UNEXPECTED, None)
    assert len(window) == 1


def test_ack_for_a_frame_not_sent_is_unexpected() -> None:
    window = window_with(1)
    assert window.acknowledge("f0", STORED, OK, 0.0)[0] is AckOutcome.UNEXPECTED
    assert len(window) == 1


def test_stream_loss_resends_only_unacknowledged_frames_oldest_first() -> None:
    window = window_with(5)
    send_all(window)
    window.acknowledge("f1", STORED, OK, 0.0)
    window.acknowledge("f3", STORED, OK, 0.0)
    window.admit("f5", "frame 5")  # admitted after the others: resends go first
    assert window.stream_lost() == ["f0", "f2", "f4"]
    assert window.in_flight == 0
    resent = [window.next_ready(0.0) for _ in range(4)]
    assert [(key, attempt) for key, _, attempt in resent] == [("f0", 2), ("f2", 2), ("f4", 2), ("f5", 1)]  # type: ignore[misc]


@pytest.mark.parametrize("code", [UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED])
def test_retryable_rejection_is_resent_after_backoff(code: int) -> None:
    window = window_with(1)
    send_all(window)
    assert window.acknowledge("f0", REJECTED, code, now=10.0) == (AckOutcome.RETRY, "frame 0")
    assert window.next_ready_at() == 11.0  # first retry: initial backoff (no jitter without an rng)
    assert window.next_ready(10.5) is None
    assert window.next_ready(11.0) == ("f0", "frame 0", 2)
    window.acknowledge("f0", REJECTED, code, now=20.0)
    assert window.next_ready_at() == 22.0  # doubled
    window.next_ready(22.0)
    assert window.acknowledge("f0", STORED, OK, 23.0)[0] is AckOutcome.STORED


def test_a_frame_in_backoff_does_not_hold_up_the_others() -> None:
    window = window_with(2)
    send_all(window)
    window.acknowledge("f0", REJECTED, UNAVAILABLE, now=0.0)
    window.admit("f2", "frame 2")
    assert window.next_ready(0.1)[0] == "f2"  # type: ignore[index]


@pytest.mark.parametrize("code", [INVALID_ARGUMENT, NOT_FOUND])
def test_non_retryable_rejection_is_dropped(code: int) -> None:
    window = window_with(1)
    send_all(window)
    assert window.acknowledge("f0", REJECTED, code, 0.0) == (AckOutcome.REJECTED, "frame 0")
    assert len(window) == 0
    assert window.stream_lost() == []


def test_unknown_status_is_retried_not_dropped() -> None:
    window = window_with(1)
    send_all(window)
    assert window.acknowledge("f0", ingest_pb2.FRAME_STATUS_UNSPECIFIED, OK, 0.0)[0] is AckOutcome.RETRY
    assert "f0" in window


def test_backoff_grows_to_its_ceiling_with_jitter_below_it() -> None:
    assert [backoff_delay(a, 0.5, 4.0) for a in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    rng = random.Random(1)
    assert all(0 <= backoff_delay(3, 0.5, 4.0, rng) <= 2.0 for _ in range(100))


def test_cameras_are_deterministic_and_near_the_configured_point() -> None:
    settings = SimulatorSettings(cameras=5, seed=4)
    cameras = make_cameras(settings)
    assert cameras == make_cameras(settings)
    assert [c.camera_id for c in cameras] == [f"sim-cam-{i:03d}" for i in range(1, 6)]
    for camera in cameras:
        assert abs(camera.latitude - settings.latitude) < 0.02
        assert abs(camera.longitude - settings.longitude) < 0.03
        assert 0 <= camera.bearing_degrees < 360
    proto = cameras[0].to_proto("demo-pd", with_location=False)
    assert proto.agency_id == "demo-pd" and proto.active and not proto.HasField("location")


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGHTLINE_SIM_CAMERAS", "7")
    monkeypatch.setenv("SIGHTLINE_SIM_TARGET", "ingest:50051")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings = settings_from_args(parser.parse_args(["--cameras", "3", "--print-reads", "--frames", "9"]))
    assert settings.cameras == 3
    assert settings.target == "ingest:50051"
    assert settings.print_reads and settings.frames == 9
    assert settings_from_args(parser.parse_args([])).cameras == 7
