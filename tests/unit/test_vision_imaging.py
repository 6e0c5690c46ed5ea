import cv2
import numpy as np
import pytest

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
    ],
)
def test_decode_jpeg_rejects_bad_frames(data: bytes, error: type[FrameDecodeError], reason: str) -> None:
    with pytest.raises(error) as caught:
        decode_jpeg(data, max_pixels=10_000)
    assert isinstance(caught.value, FrameDecodeError) and caught.value.reason == reason
