import numpy as np
import pytest
from pydantic import ValidationError

from services.inference.vision import detectors
from services.inference.vision.imaging import Letterbox
from services.inference.vision.settings import VisionSettings

pytestmark = pytest.mark.unit


def test_yolo_decode_maps_letterboxed_boxes_back_and_suppresses_overlaps() -> None:
    output = np.zeros((1, 5, 8400), np.float32)
    # (cx, cy, w, h, score) in 640-pixel letterbox space
    output[0, :, 0] = [320, 200, 100, 40, 0.9]
    output[0, :, 1] = [322, 201, 100, 40, 0.6]  # duplicate of the first
    output[0, :, 2] = [100, 500, 60, 20, 0.5]
    output[0, :, 3] = [500, 500, 60, 20, 0.1]  # below threshold
    geometry = Letterbox(scale=0.5, pad_x=0, pad_y=80)  # a 1280x960 frame
    found = detectors.decode_yolo(output, geometry, score_threshold=0.25, iou_threshold=0.45)
    assert len(found) == 2
    np.testing.assert_allclose(found.scores, [0.9, 0.5])
    np.testing.assert_allclose(found.boxes[0], [540, 200, 740, 280])
    np.testing.assert_allclose(found.boxes[1], [140, 820, 260, 860])


def test_centernet_decode_scales_to_image_and_merges_classes_of_one_object() -> None:
    output = np.zeros((1, 100, 6), np.float32)
    output[0, 0] = [100, 100, 300, 200, 0.5, 7]  # truck
    output[0, 1] = [100, 100, 300, 200, 0.4, 2]  # the same box as car
    output[0, 2] = [10, 10, 50, 90, 0.6, 0]  # person, not a vehicle class
    found = detectors.decode_centernet(output, (1024, 2048, 3), (1, 512, 512, 3), {2, 3, 5, 7}, 0.2, 0.5)
    assert found.labels.tolist() == [7]
    np.testing.assert_allclose(found.boxes[0], [400, 200, 1200, 400])
    wide = detectors.decode_centernet(output, (720, 1280, 3), (1, 288, 512, 3), {2, 3, 5, 7}, 0.2, 0.5)
    np.testing.assert_allclose(wide.boxes[0], [250, 250, 750, 500])


def test_object_input_keeps_the_frame_shape_at_the_long_side_asked_for() -> None:
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[:, :640] = (255, 0, 0)  # blue in BGR: the model takes RGB
    tensor = detectors.object_input(frame, 384)
    assert tensor.shape == (1, 224, 384, 3) and tensor.dtype == np.float32
    assert tensor[0, 0, 0].tolist() == [0, 0, 255]
    assert detectors.object_input(frame, 512).shape == (1, 288, 512, 3)
    assert detectors.object_input(np.zeros((600, 800, 3), np.uint8), 512).shape == (1, 384, 512, 3)


def test_blazeface_anchors_follow_mediapipe_layout() -> None:
    anchors = detectors.blazeface_anchors(256)
    assert anchors.shape == (896, 2)
    np.testing.assert_allclose(anchors[0], anchors[1])  # two anchors per cell on the 16x16 layer
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16])  # x varies fastest
    np.testing.assert_allclose(anchors[512:518], np.tile([0.5 / 8, 0.5 / 8], (6, 1)))
    np.testing.assert_allclose(anchors[-1], [7.5 / 8, 7.5 / 8])
    wide = detectors.blazeface_anchors(288, 512)  # a 16:9 frame: 18x32 cells at stride 16, 9x16 at 32
    assert wide.shape == (18 * 32 * 2 + 9 * 16 * 6, 2)
    np.testing.assert_allclose(wide[2], [1.5 / 32, 0.5 / 18])
    np.testing.assert_allclose(wide[-1], [15.5 / 16, 8.5 / 9])


def test_blazeface_decode_offsets_from_anchor_and_scales() -> None:
    scores = np.full(896, -10.0, np.float32)
    boxes = np.zeros((896, 16), np.float32)
    index = 16 * 2 * 5 + 2 * 3  # 16x16 layer, row 5, column 3
    scores[index] = 4.0
    boxes[index, :4] = [8, -4, 32, 48]  # dx, dy, w, h in input pixels
    found = detectors.decode_blazeface(scores, boxes, Letterbox(1.0, 0, 0), 0.5, 0.3)
    cx, cy = 3.5 * 16 + 8, 5.5 * 16 - 4
    np.testing.assert_allclose(found.boxes[0], [cx - 16, cy - 24, cx + 16, cy + 24], atol=1e-3)
    assert found.scores[0] == pytest.approx(1 / (1 + np.exp(-4.0)))

    scores, boxes = np.full(2016, -10.0, np.float32), np.zeros((2016, 16), np.float32)
    index = 32 * 2 * 5 + 2 * 3  # 288x512: stride-16 grid of 18x32, row 5, column 3
    scores[index], boxes[index, :4] = 4.0, [8, -4, 32, 48]
    wide = detectors.decode_blazeface(scores, boxes, Letterbox(0.4, 0, 0), 0.5, 0.3, (288, 512))
    np.testing.assert_allclose(wide.boxes[0], np.array([cx - 16, cy - 24, cx + 16, cy + 24]) * 2.5, atol=1e-3)


def test_object_detector_side_must_be_a_multiple_of_32() -> None:
    assert VisionSettings(object_detector_side=512).object_detector_side == 512
    with pytest.raises(ValidationError, match="multiple of 32"):
        VisionSettings(object_detector_side=400)


def test_face_search_side_is_off_or_finer_than_the_256_pixel_pass() -> None:
    assert VisionSettings(face_search_side=0).face_search_side == 0
    for side in (128, 256):
        with pytest.raises(ValidationError, match="above 256"):
            VisionSettings(face_search_side=side)
    with pytest.raises(ValidationError, match="less than or equal to 576"):
        VisionSettings(face_search_side=640)
