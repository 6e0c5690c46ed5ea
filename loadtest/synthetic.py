"""Realistic synthetic reads for the load generators: plates in each state's format, cameras with places,
vehicle attributes, capture times. Deterministic for a seed."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.common.plates import skeleton
from sightline.common.v1 import read_pb2
from sightline.ingest.v1 import ingest_pb2

# A few US states' standard passenger-plate layouts: L letter, D digit, anything else literal.
STATE_FORMATS = {"CA": "DLLLDDD", "NY": "LLLDDDD", "TX": "LLLDDDD", "FL": "LLLDLL", "IL": "LLDDDDD",
                 "PA": "LLLDDDD", "OH": "LLLDDDD", "GA": "LLLDDDD", "NJ": "LDDLLL", "MA": "DLLLDD"}
STATES = list(STATE_FORMATS)
STATE_WEIGHTS = [39, 20, 30, 22, 13, 13, 12, 11, 9, 7]
COLOURS = ["white", "black", "silver", "grey", "red", "blue", "green", "yellow", "brown"]
COLOUR_WEIGHTS = [25, 22, 16, 15, 9, 8, 2, 1, 2]
TYPES = ["car", "truck", "bus", "motorcycle"]
TYPE_WEIGHTS = [80, 15, 2, 3]
MAKES = ["toyota", "ford", "honda", "chevrolet", "nissan", "tesla", "bmw", ""]
VEHICLE_TYPES = {"car": read_pb2.VEHICLE_TYPE_CAR, "truck": read_pb2.VEHICLE_TYPE_TRUCK,
                 "bus": read_pb2.VEHICLE_TYPE_BUS, "motorcycle": read_pb2.VEHICLE_TYPE_MOTORCYCLE}


def plate(rng: random.Random, state: str) -> str:
    return "".join(rng.choice(string.ascii_uppercase) if ch == "L" else rng.choice(string.digits) if ch == "D" else ch
                   for ch in STATE_FORMATS[state])


@dataclass(frozen=True)
class Camera:
    camera_id: str
    latitude: float
    longitude: float
    heading: float


def cameras(n: int, prefix: str, seed: int = 0, lat: float = 40.70, lon: float = -74.00) -> list[Camera]:
    """n cameras scattered over about 20 km around (lat, lon)."""
    rng = random.Random(seed)
    return [Camera(f"{prefix}-{i:05d}", lat + rng.uniform(-0.1, 0.1), lon + rng.uniform(-0.12, 0.12),
                   rng.choice([0.0, 90.0, 180.0, 270.0])) for i in range(n)]


class Traffic:
    """Vehicles from a pool (so plates recur, as in real traffic), seen by cameras."""

    def __init__(self, seed: int, pool: int):
        self.rng = random.Random(seed)
        states = self.rng.choices(STATES, STATE_WEIGHTS, k=pool)
        self.vehicles = [(plate(self.rng, s), s, self.rng.choices(COLOURS, COLOUR_WEIGHTS)[0],
                          self.rng.choices(TYPES, TYPE_WEIGHTS)[0], self.rng.choice(MAKES)) for s in states]

    def vehicle(self) -> tuple[str, str, str, str, str]:
        return self.rng.choice(self.vehicles)

    def frame_reads(self, camera: Camera, frame_id: str, captured_at: datetime, reads: int) -> ingest_pb2.FrameReads:
        """What a plate-reading gateway sends for one frame."""
        fr = ingest_pb2.FrameReads(camera_id=camera.camera_id, frame_id=frame_id, heading_degrees=camera.heading)
        fr.captured_at.FromDatetime(captured_at)
        fr.location.latitude, fr.location.longitude = camera.latitude, camera.longitude
        for _ in range(reads):
            text, state, colour, vtype, make = self.vehicle()
            conf = round(self.rng.uniform(0.6, 0.99), 3)
            fr.reads.add(plate=text, confidence=conf, region=read_pb2.Region(country="US", state=state, confidence=0.8),
                         plate_box=read_pb2.BoundingBox(x=600, y=420, width=120, height=40),
                         vehicle=read_pb2.Vehicle(type=VEHICLE_TYPES[vtype], type_confidence=0.9, colour=colour,
                                                  colour_confidence=0.7, make=make, view=read_pb2.VEHICLE_VIEW_REAR))
        return fr

    def read_document(self, i: int, agency: str, camera: Camera, captured_at: datetime, expire_at: datetime) -> dict:
        """A read as stored in MongoDB (unsealed, as search reads documents without a key id)."""
        text, state, colour, vtype, make = self.vehicle()
        return {"_id": f"gen-{i:010d}", "camera_id": camera.camera_id, "agency_id": agency, "frame_id": f"gen-{i}",
                "captured_at": captured_at, "stored_at": captured_at + timedelta(seconds=1), "expire_at": expire_at,
                "plate": text, "plate_normalized": text, "plate_skeleton": skeleton(text),
                "confidence": round(self.rng.uniform(0.6, 0.99), 3),
                "candidates": [], "region": {"country": "US", "state": state, "confidence": 0.8},
                "plate_box": [600, 420, 120, 40], "image_ref": "",
                "vehicle": {"type": vtype, "type_confidence": 0.9, "colour": colour, "colour_confidence": 0.7,
                            "box": None, "view": "rear", "make": make},
                "location": {"type": "Point", "coordinates": [camera.longitude, camera.latitude]},
                "heading_degrees": camera.heading}
