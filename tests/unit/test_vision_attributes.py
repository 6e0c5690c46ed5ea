import cv2
import numpy as np
import pytest

from services.inference.vision.attributes import vehicle_colour

pytestmark = pytest.mark.unit

SOLID_BGR = {
    "white": (245, 245, 245),
    "silver": (185, 185, 180),
    "grey": (110, 110, 110),
    "black": (20, 20, 20),
    "red": (30, 30, 200),
    "orange": (20, 130, 240),
    "yellow": (30, 220, 230),
    "green": (40, 150, 40),
    "blue": (170, 60, 20),
    "purple": (130, 30, 110),
    "brown": (30, 60, 100),
    "beige": (170, 200, 215),
}


@pytest.mark.parametrize(("name", "bgr"), SOLID_BGR.items())
def test_solid_body_colour_is_named(name: str, bgr: tuple[int, int, int]) -> None:
    vehicle = np.full((120, 200, 3), bgr, np.uint8)
    assert vehicle_colour(vehicle, []) == (name, 1.0)


def test_plate_area_is_excluded_from_the_body_sample() -> None:
    vehicle = np.full((120, 200, 3), SOLID_BGR["blue"], np.uint8)
    cv2.rectangle(vehicle, (70, 60), (130, 90), (255, 255, 255), -1)
    colour, share = vehicle_colour(vehicle, [(70, 60, 131, 91)])
    assert (colour, share) == ("blue", 1.0)
