import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from services.inference.vision.pipeline import AlprPipeline, FrameResult
from services.inference.vision.runner import OnnxRunner
from services.inference.vision.settings import VisionSettings

pytestmark = pytest.mark.unit

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
PLATE = "7ABC123"


@pytest.fixture(scope="module")
def pipeline() -> AlprPipeline:
    settings = VisionSettings()
    return AlprPipeline(OnnxRunner(settings.model_repository, intra_op_threads=1), settings)


def _plate() -> np.ndarray:
    plate = Image.new("RGB", (260, 60), "white")
    draw = ImageDraw.Draw(plate)
    draw.rectangle((1, 1, 258, 58), outline="black", width=3)
    draw.text((130, 31), PLATE, fill="black", anchor="mm", font=ImageFont.truetype(str(FONT), 40))
    return np.asarray(plate)[:, :, ::-1]


@pytest.mark.skipif(not FONT.exists(), reason="DejaVu fonts (fonts-dejavu-core) not installed")
def test_reader_reads_a_rendered_plate(pipeline: AlprPipeline) -> None:
    text = pipeline.reader.read(_plate())
    assert text.text == PLATE
    assert text.candidates[0][0] == PLATE and text.confidence > 0.8


@pytest.mark.skipif(not FONT.exists(), reason="DejaVu fonts (fonts-dejavu-core) not installed")
def test_pipeline_finds_and_reads_a_plate_in_a_frame(pipeline: AlprPipeline) -> None:
    frame = np.full((480, 640, 3), 128, np.uint8)
    frame[300:360, 190:450] = _plate()
    result = pipeline.run(frame)
    assert isinstance(result, FrameResult)
    assert [plate.normalized for plate in result.plates if plate.text] == [PLATE]
    x, y, w, h = result.plates[0].box
    assert abs(x - 190) < 20 and abs(y - 300) < 20 and abs(w - 260) < 40
    assert result.redacted.shape == frame.shape
    json.dumps(result.to_dict())


def test_reader_returns_empty_text_for_a_blank_crop(pipeline: AlprPipeline) -> None:
    text = pipeline.reader.read(np.full((40, 160, 3), 200, np.uint8))
    assert text.text == "" and text.candidates == ()
