import cv2
import numpy as np
import pytest

from services.inference.vision.imaging import fitted_size, letterbox
from services.inference.vision.pipeline import (
    CorruptFrameError,
    EmptyFrameError,
    FrameDecodeError,
    OversizedFrameError,
    decode_jpeg,
)

pytestmark = pytest.mark.unit


def _jpeg(width: int, height: int) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((height, width, 3), 90, np.uint8))
    assert ok
    return data.tobytes()


def test_decode_jpeg_returns_bgr_pixels() -> None:
    image = decode_jpeg(_jpeg(64, 48), max_pixels=10_000)
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        (b"", EmptyFrameError, "empty"),
        (b"\xff\xd8\xff\xe0 not really a jpeg", CorruptFrameError, "corrupt"),
        (_jpeg(64, 48)[:200], CorruptFrameError, "corrupt"),
        (_jpeg(200, 100), OversizedFrameError, "oversized"),
        # A header claiming 65000x65000 pixels (Pillow's DecompressionBombError).
        (_jpeg(1, 1).replace(b"\xff\xc0\x00\x11\x08\x00\x01\x00\x01", b"\xff\xc0\x00\x11\x08\xfd\xe8\xfd\xe8"),
         OversizedFrameError, "oversized"),
    ],
)
def test_decode_jpeg_rejects_bad_frames(data: bytes, error: type[FrameDecodeError], reason: str) -> None:
    with pytest.raises(error) as caught:
        decode_jpeg(data, max_pixels=10_000)
    assert isinstance(caught.value, FrameDecodeError) and caught.value.reason == reason


@pytest.mark.parametrize(
    ("size", "fitted"),
    [((1280, 720), (640, 384)), ((800, 600), (640, 480)), ((640, 640), (640, 640)), ((720, 1280), (384, 640))],
)
def test_fitted_size_scales_the_long_side_and_rounds_the_other_up_to_32(
    size: tuple[int, int], fitted: tuple[int, int]
) -> None:
    assert fitted_size(*size, long_side=640) == fitted


def test_rectangular_letterbox_maps_boxes_back_to_the_frame() -> None:
    frame = np.zeros((720, 1280, 3), np.uint8)
    canvas, geometry = letterbox(frame, (640, 384))
    assert canvas.shape == (384, 640, 3) and geometry.pad_y == 12 and geometry.pad_x == 0
    box = np.array([[100, 112, 200, 162]], np.float32)  # canvas pixels
    np.testing.assert_allclose(geometry.to_image(box), [[200, 200, 400, 300]])
