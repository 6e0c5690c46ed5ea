import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from PIL import Image

from services.common.reads import document_to_read, read_to_document
from services.common.rejected import Code, Rejected
from services.ingest.domain.frames import FrameLimits, build_reads, read_id, validate_frame
from sightline.common.v1 import read_pb2
from sightline.ingest.v1 import ingest_pb2

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LIMITS = FrameLimits(max_bytes=200_000, max_pixels=1280 * 720, max_clock_skew=timedelta(minutes=5))


def jpeg(w: int = 64, h: int = 48, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, fmt)
    return buf.getvalue()


def frame(**kw) -> ingest_pb2.Frame:
    f = ingest_pb2.Frame(camera_id="cam-1", frame_id="f-1", jpeg=jpeg())
    f.captured_at.FromDatetime(NOW - timedelta(seconds=1))
    for k, v in kw.items():
        setattr(f, k, v)
    return f


def test_a_header_claiming_billions_of_pixels_is_invalid_not_retried() -> None:
    """A small JPEG whose frame header claims 65000x65000 (Pillow's DecompressionBombError) is refused for good."""
    bomb = jpeg(1, 1).replace(b"\xff\xc0\x00\x11\x08\x00\x01\x00\x01", b"\xff\xc0\x00\x11\x08\xfd\xe8\xfd\xe8")
    with pytest.raises(Rejected) as caught:
        validate_frame(frame(jpeg=bomb), LIMITS, NOW)
    assert caught.value.code == Code.INVALID_ARGUMENT and not caught.value.code.retryable
    assert "too many pixels" in caught.value.message


def test_valid_frame_returns_its_size() -> None:
    assert validate_frame(frame(), LIMITS, NOW) == (64, 48)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"jpeg": b""}, "no image"),
        ({"jpeg": b"\xff\xd8\xff\xe0 not really a jpeg"}, "not a readable JPEG"),
        ({"jpeg": b"x" * 300_000}, "over the limit of 200000"),
        ({"jpeg": jpeg(fmt="PNG")}, "not JPEG"),
        ({"jpeg": jpeg(1400, 800)}, "pixels"),
        ({"camera_id": ""}, "camera_id"),
        ({"camera_id": "../../etc"}, "camera_id"),
        ({"frame_id": "a" * 200}, "frame_id"),
    ],
)
def test_bad_frames_are_invalid_argument(change: dict, message: str) -> None:
    with pytest.raises(Rejected, match=message) as err:
        validate_frame(frame(**change), LIMITS, NOW)
    assert err.value.code == Code.INVALID_ARGUMENT
    assert not err.value.code.retryable


def test_capture_time_in_the_future_is_refused() -> None:
    f = frame()
    f.captured_at.FromDatetime(NOW + timedelta(hours=1))
    with pytest.raises(Rejected, match="future"):
        validate_frame(f, LIMITS, NOW)


# The shape of services.inference.vision.pipeline.FrameResult.to_dict().
RESULT = {
    "plates": [
        {"text": "AB 123", "normalized": "AB123", "confidence": 0.93,
         "candidates": [["AB123", 0.93], ["A8123", 0.4]],
         "box": [10, 20, 60, 15], "region": {"country": "US", "state": "CA", "confidence": 0.8},
         "vehicle": {"type": "car", "colour": "red", "colour_confidence": 0.7, "box": [0, 0, 100, 80],
                     "view": "rear", "confidence": 0.6}},
        {"text": "", "normalized": "", "confidence": 0.0, "candidates": [], "box": [200, 0, 100, 80], "region": {},
         "vehicle": {"type": "truck", "colour": "white", "colour_confidence": 0.5, "box": [200, 0, 100, 80],
                     "view": "front", "confidence": 0.4}},
    ],
    "vehicles": [
        {"type": "car", "colour": "red", "colour_confidence": 0.7, "box": [0, 0, 100, 80], "view": "rear"},
        {"type": "truck", "colour": "white", "colour_confidence": 0.5, "box": [200, 0, 100, 80], "view": "front"},
    ],
}


def test_build_reads_one_per_plate_and_one_per_plateless_vehicle() -> None:
    f = frame()
    reads = build_reads(f, "pd-1", RESULT, "img-1", NOW, NOW + timedelta(days=30))
    assert [r.plate_normalized for r in reads] == ["AB123", ""]
    plate, plateless = reads
    assert plate.read_id == read_id("cam-1", "f-1", 0) != plateless.read_id
    assert plate.region.state == "CA" and plate.candidates[1].text == "A8123"
    assert plate.vehicle.type == read_pb2.VEHICLE_TYPE_CAR and plate.vehicle.colour == "red"
    assert plateless.vehicle.type == read_pb2.VEHICLE_TYPE_TRUCK
    assert plateless.vehicle.view == read_pb2.VEHICLE_VIEW_FRONT
    assert plateless.plate == "" and not plateless.HasField("plate_box")
    assert plate.vehicle.type_confidence == pytest.approx(0.6)


def test_read_ids_are_stable_for_a_resent_frame() -> None:
    a = build_reads(frame(), "pd-1", RESULT, "img", NOW, NOW)
    b = build_reads(frame(), "pd-1", RESULT, "img", NOW, NOW)
    assert [r.read_id for r in a] == [r.read_id for r in b]


def test_document_round_trip_keeps_every_field() -> None:
    f = frame()
    f.location.latitude, f.location.longitude = 37.77, -122.42
    f.heading_degrees = 270.0
    read = build_reads(f, "pd-1", RESULT, "img-1", NOW, NOW + timedelta(days=30))[0]
    doc = read_to_document(read)
    assert doc["location"] == {"type": "Point", "coordinates": [-122.42, 37.77]}
    assert document_to_read(doc) == read
