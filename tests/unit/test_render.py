"""The synthetic scene renderer: deterministic from its seed, with ground truth that matches the pixels."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from services.common.plates import normalize_plate
from services.inference.vision.attributes import COLOURS
from services.simulator.render import (
    VEHICLE_COLOURS,
    SceneOptions,
    render_plate,
    render_scene,
    render_sequence,
    sample_params,
)

pytestmark = pytest.mark.unit


def test_same_seed_same_scene() -> None:
    a, b = render_scene(3), render_scene(3)
    assert a.truth == b.truth
    assert np.array_equal(a.image, b.image)
    assert a.jpeg == b.jpeg


def test_different_seeds_differ() -> None:
    a, b = render_scene(1), render_scene(2)
    assert a.truth.plate_text != b.truth.plate_text
    assert not np.array_equal(a.image, b.image)


@pytest.mark.parametrize("seed", range(8))
def test_ground_truth_is_sane(seed: int) -> None:
    scene = render_scene(seed)
    truth = scene.truth
    assert scene.image.shape == (720, 1280, 3) and scene.image.dtype == np.uint8
    decoded = cv2.imdecode(np.frombuffer(scene.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == scene.image.shape
    assert truth.plate_text == normalize_plate(truth.plate_display)
    assert re.fullmatch(r"[A-Z0-9]{5,8}", truth.plate_text)
    assert truth.vehicle_colour in VEHICLE_COLOURS
    assert (truth.country == "US") == bool(truth.state)
    assert truth.plate_box is not None and truth.vehicle_box is not None
    p, v = truth.plate_box, truth.vehicle_box
    # The plate lies on the vehicle, in its lower half, and is large enough to read at difficulty 0.
    assert v.x <= p.x and p.x + p.width <= v.x + v.width
    assert v.y + v.height / 2 <= p.y + p.height / 2 <= v.y + v.height
    assert p.width >= 100
    # The plate box holds the plate: text on a plain background, not flat paint.
    crop = scene.image[p.y : p.y + p.height, p.x : p.x + p.width]
    assert crop.std() > 20


def test_vehicle_colours_use_the_classifier_vocabulary() -> None:
    assert set(VEHICLE_COLOURS) <= set(COLOURS)


def test_options_are_honoured() -> None:
    for seed in range(5):
        eu = render_scene(seed, SceneOptions(region="eu", night=True)).truth
        assert eu.country != "US" and eu.state == "" and eu.night
        us = render_scene(seed, SceneOptions(region="us", night=False)).truth
        assert us.country == "US" and not us.night
    assert render_scene(0, SceneOptions(width=640, height=360)).image.shape == (360, 640, 3)


def test_difficulty_makes_plates_smaller_and_lower_quality() -> None:
    easy = [sample_params(s, SceneOptions(difficulty=0)) for s in range(40)]
    hard = [sample_params(s, SceneOptions(difficulty=1)) for s in range(40)]
    assert np.mean([p.vehicle_width for p in hard]) < np.mean([p.vehicle_width for p in easy])
    assert np.mean([p.jpeg_quality for p in hard]) < np.mean([p.jpeg_quality for p in easy])
    assert max(abs(p.yaw) for p in hard) > max(abs(p.yaw) for p in easy)


def test_plate_face_sizes() -> None:
    params = sample_params(0, SceneOptions(region="us"))
    assert render_plate(params.plate).shape == (300, 600, 3)
    params = sample_params(0, SceneOptions(region="eu"))
    assert render_plate(params.plate).shape == (127, 600, 3)


@pytest.mark.parametrize("direction", ["approach", "recede"])
def test_sequence_boxes_grow_or_shrink(direction: str) -> None:
    frames = list(render_sequence(5, frames=5, direction=direction))  # type: ignore[arg-type]
    assert len(frames) == 5
    assert len({f.truth.plate_text for f in frames}) == 1
    widths = [f.truth.vehicle_box.width for f in frames if f.truth.vehicle_box]
    bottoms = [f.truth.vehicle_box.y + f.truth.vehicle_box.height for f in frames if f.truth.vehicle_box]
    if direction == "approach":
        assert widths == sorted(widths) and widths[0] < widths[-1]
        assert bottoms == sorted(bottoms)
    else:
        assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
    # The closest frame of a pass is the scene render_scene draws (before sensor noise).
    closest = frames[-1] if direction == "approach" else frames[0]
    assert closest.truth.vehicle_box == render_scene(5).truth.vehicle_box


def test_sequence_is_deterministic() -> None:
    a = [s.jpeg for s in render_sequence(9, frames=3)]
    b = [s.jpeg for s in render_sequence(9, frames=3)]
    assert a == b
    with pytest.raises(ValueError):
        next(render_sequence(9, frames=0))
