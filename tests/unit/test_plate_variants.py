"""Plate faces for training the recogniser: deterministic from their seed, serials in A-Z0-9, layouts kept."""

from __future__ import annotations

import re

import numpy as np
import pytest

from services.simulator import plate_variants

pytestmark = pytest.mark.unit


def test_same_seed_same_plate() -> None:
    a = plate_variants.plate_face(np.random.default_rng(5))
    b = plate_variants.plate_face(np.random.default_rng(5))
    assert a.serial == b.serial
    assert np.array_equal(a.image, b.image)


def test_faces_are_rgb_and_serials_plate_characters() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        face = plate_variants.plate_face(rng)
        assert face.image.dtype == np.uint8 and face.image.ndim == 3 and face.image.shape[2] == 3
        assert re.fullmatch(r"[A-Z0-9]{5,8}", face.serial), face.serial


def test_south_american_serials_follow_their_layouts() -> None:
    rng = np.random.default_rng(1)
    font = plate_variants.fonts()[0]
    layouts = {re.sub(r"[^LD]", "", layout) for _, _, layout, _ in plate_variants.SOUTH_AMERICA}
    for _ in range(30):
        serial = plate_variants.south_american(rng, font).serial
        assert "".join("L" if c.isalpha() else "D" for c in serial) in layouts


def test_for_hire_plates_read_t_six_digits_c() -> None:
    rng = np.random.default_rng(4)
    for font in plate_variants.fonts():
        face = plate_variants.for_hire(rng, font)
        assert re.fullmatch(r"T\d{6}C", face.serial), face.serial
        assert face.image.shape == (300, 600, 3) and face.image.std() > 10


def test_decorations_change_pixels_and_frames_grow_the_plate() -> None:
    rng = np.random.default_rng(2)
    face = plate_variants.us_or_eu(rng, plate_variants.fonts()[0]).image
    framed = plate_variants.dealer_frame(rng, face)
    assert framed.shape[0] > face.shape[0] and framed.shape[1] > face.shape[1]
    for decorate in (plate_variants.sticker, plate_variants.stacked, plate_variants.glare):
        changed = decorate(rng, face)
        assert changed.shape == face.shape and not np.array_equal(changed, face)
    dark = plate_variants.night(rng, face)
    assert dark.shape == face.shape


def test_negative_lines_are_wide_text_lines() -> None:
    line = plate_variants.negative_line(np.random.default_rng(3))
    assert line.shape[0] == 64 and line.shape[1] >= 4 * 64
    assert line.std() > 10  # text was drawn
