import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from services.inference.vision.detectors import Detections
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


@pytest.mark.skipif(not FONT.exists(), reason="DejaVu fonts (fonts-dejavu-core) not installed")
def test_a_small_plate_shaped_frame_is_read_whole_as_a_plate_crop(pipeline: AlprPipeline) -> None:
    crop = np.full((100, 300, 3), 90, np.uint8)
    crop[20:80, 20:280] = _plate()
    reads = pipeline.read_plates(crop)
    assert [(read.normalized, read.box) for read in reads] == [(PLATE, (0, 0, 300, 100))]


@pytest.mark.skipif(not FONT.exists(), reason="DejaVu fonts (fonts-dejavu-core) not installed")
def test_a_small_scene_is_not_taken_for_a_plate_crop(pipeline: AlprPipeline) -> None:
    scene = np.full((360, 480, 3), 128, np.uint8)  # 4:3, the plate covers a tenth of it
    scene[220:280, 110:370] = _plate()
    reads = pipeline.read_plates(scene)
    assert [read.normalized for read in reads] == [PLATE]
    x, y, w, h = reads[0].box
    assert abs(x - 110) < 20 and abs(y - 220) < 20 and w < 300


@pytest.mark.skipif(not FONT.exists(), reason="DejaVu fonts (fonts-dejavu-core) not installed")
def test_a_far_plate_missed_frame_wide_is_found_on_its_vehicle(pipeline: AlprPipeline) -> None:
    frame = np.full((1080, 1920, 3), 128, np.uint8)
    frame[800:960, 1000:1260] = 60  # the vehicle
    frame[900:918, 1100:1180] = cv2.resize(_plate(), (80, 18), interpolation=cv2.INTER_AREA)
    vehicle = Detections(np.array([[1000, 800, 1260, 960]], np.float32), np.array([0.9], np.float32), np.array([2]))
    assert pipeline.read_plates(frame) == []  # 80 px wide: a third of that at the frame-wide pass's scale
    reads = pipeline.read_plates(frame, vehicle)
    assert [read.normalized for read in reads] == [PLATE]
    x, y, w, h = reads[0].box
    assert abs(x - 1100) < 6 and abs(y - 900) < 6 and abs(w - 80) < 10


def test_reader_returns_empty_text_for_a_blank_crop(pipeline: AlprPipeline) -> None:
    text = pipeline.reader.read(np.full((40, 160, 3), 200, np.uint8))
    assert text.text == "" and text.candidates == ()


@pytest.mark.skipif(not FONT.exists(), reason="DejaVu fonts (fonts-dejavu-core) not installed")
def test_reader_takes_the_serial_not_the_state_name_and_names_the_state(pipeline: AlprPipeline) -> None:
    plate = Image.new("RGB", (300, 150), "white")
    draw = ImageDraw.Draw(plate)
    draw.rectangle((1, 1, 298, 148), outline="navy", width=4)
    draw.text((150, 28), "FLORIDA", fill="navy", anchor="mm", font=ImageFont.truetype(str(FONT), 24))
    draw.text((150, 85), "BQK 472", fill="black", anchor="mm", font=ImageFont.truetype(str(FONT), 52))
    text = pipeline.reader.read(np.asarray(plate)[:, :, ::-1])
    assert text.text == "BQK472"
    assert (text.region.country, text.region.state) == ("US", "FL")


def test_int8_copy_is_chosen_only_where_it_exists_and_is_wanted(tmp_path: Path) -> None:
    from services.inference.vision.runner import INT8_FILE, MODEL_FILE, model_file

    (tmp_path / MODEL_FILE).touch()
    assert model_file(tmp_path, int8=True) == tmp_path / MODEL_FILE
    (tmp_path / INT8_FILE).touch()
    assert model_file(tmp_path, int8=True) == tmp_path / INT8_FILE
    assert model_file(tmp_path, int8=False) == tmp_path / MODEL_FILE


@pytest.mark.skipif(not FONT.exists(), reason="DejaVu fonts (fonts-dejavu-core) not installed")
def test_int8_plate_detector_finds_the_plate_fp32_finds_in_a_16_9_frame() -> None:
    settings = VisionSettings()
    frame = np.full((720, 1280, 3), 128, np.uint8)
    frame[400:460, 600:860] = _plate()
    boxes = []
    for int8 in (False, True):
        detector = AlprPipeline(OnnxRunner(settings.model_repository, intra_op_threads=1, int8=int8), settings)
        found = detector.detect_plates(frame)
        assert len(found) == 1
        boxes.append(found.boxes[0])
    for box in boxes:  # within a few pixels of the plate, 8 bits or 32
        np.testing.assert_allclose(box, [600, 400, 860, 460], atol=12)


@pytest.mark.skipif(not FONT.exists(), reason="DejaVu fonts (fonts-dejavu-core) not installed")
def test_int8_text_detector_finds_the_row_fp32_finds_and_the_plate_reads_the_same() -> None:
    settings = VisionSettings()
    readers = [
        AlprPipeline(OnnxRunner(settings.model_repository, intra_op_threads=1, int8=int8), settings).reader
        for int8 in (False, True)
    ]
    # What must hold on any CPU: each finds one text row and the plate reads the same. The row's pixels
    # are not compared: INT8 kernels differ between instruction sets (a row 6 px off on one machine).
    rows = [[line for line in reader.lines(_plate()) if not line.whole] for reader in readers]
    assert len(rows[0]) == len(rows[1]) == 1
    assert [reader.read(_plate()).text for reader in readers] == [PLATE, PLATE]
