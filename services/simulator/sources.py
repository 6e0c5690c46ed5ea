"""Simulated cameras and the frames they capture: synthetic vehicle passes or JPEGs from a folder."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sightline.common.v1 import read_pb2
from sightline.ingest.v1 import ingest_pb2

from .render import GroundTruth, SceneOptions, render_sequence
from .settings import SimulatorSettings

_EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True)
class SimCamera:
    index: int
    camera_id: str
    latitude: float
    longitude: float
    bearing_degrees: float

    def to_proto(self, agency_id: str, with_location: bool, site_id: str = "dev-site") -> ingest_pb2.Camera:
        camera = ingest_pb2.Camera(
            camera_id=self.camera_id,
            agency_id=agency_id,
            site_id=site_id,
            name=f"Simulated camera {self.index + 1}",
            bearing_degrees=self.bearing_degrees,
            active=True,
        )
        if with_location:
            camera.location.CopyFrom(read_pb2.GeoPoint(latitude=self.latitude, longitude=self.longitude))
        return camera


@dataclass(frozen=True)
class OutgoingFrame:
    frame: ingest_pb2.Frame
    truth: GroundTruth | None  # known for synthetic scenes

    @property
    def key(self) -> tuple[str, str]:
        return self.frame.camera_id, self.frame.frame_id


def make_cameras(settings: SimulatorSettings) -> list[SimCamera]:
    """The simulated cameras, placed within about 2 km of the configured point (same seed, same places)."""
    rng = np.random.default_rng([settings.seed, 0xCA3])
    cameras = []
    for index in range(settings.cameras):
        distance, direction = 2000 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        north, east = distance * math.cos(direction), distance * math.sin(direction)
        latitude = settings.latitude + math.degrees(north / _EARTH_RADIUS_M)
        longitude = settings.longitude + math.degrees(
            east / (_EARTH_RADIUS_M * math.cos(math.radians(settings.latitude)))
        )
        cameras.append(
            SimCamera(
                index=index,
                camera_id=f"{settings.camera_prefix}-{index + 1:03d}",
                latitude=round(latitude, 6),
                longitude=round(longitude, 6),
                bearing_degrees=round(float(rng.uniform(0, 360)), 1),
            )
        )
    return cameras


def synthetic_images(camera: SimCamera, settings: SimulatorSettings) -> Iterator[tuple[bytes, GroundTruth | None]]:
    """Endless vehicle passes in front of one camera, each `pass_frames` frames long."""
    options = SceneOptions(difficulty=settings.difficulty)
    for pass_index in itertools.count():
        seed = int(np.random.SeedSequence([settings.seed, camera.index, pass_index]).generate_state(1)[0])
        for scene in render_sequence(seed, settings.pass_frames, options, "approach" if seed % 2 else "recede"):
            yield scene.jpeg, scene.truth


def jpeg_files(folder: Path) -> list[Path]:
    """The folder's JPEGs in name order; FileNotFoundError when there are none."""
    files = sorted(p for p in folder.glob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        raise FileNotFoundError(f"no .jpg or .jpeg files in {folder}")
    return files


def folder_images(camera: SimCamera, folder: Path) -> Iterator[tuple[bytes, GroundTruth | None]]:
    """The folder's JPEGs in name order, endlessly, camera k starting at the k-th file."""
    files = jpeg_files(folder)
    start = camera.index % len(files)
    for path in itertools.islice(itertools.cycle(files), start, None):
        yield path.read_bytes(), None


async def camera_frames(
    camera: SimCamera, settings: SimulatorSettings, run_id: str, stop: asyncio.Event
) -> AsyncIterator[OutgoingFrame]:
    """Frames of one camera at `settings.fps`, until the frame count, the duration or `stop`.

    Frame ids are `<run_id>-<sequence>`: unique per camera and the same on every resend."""
    images = folder_images(camera, settings.folder) if settings.folder else synthetic_images(camera, settings)
    started = time.monotonic()
    deadline = started + settings.duration_s if settings.duration_s else math.inf
    count = itertools.count() if settings.frames is None else range(settings.frames)
    for sequence in count:
        if settings.fps > 0:
            delay = started + sequence / settings.fps - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
        if stop.is_set() or time.monotonic() >= deadline:
            return
        jpeg, truth = await asyncio.to_thread(next, images)
        frame = ingest_pb2.Frame(camera_id=camera.camera_id, frame_id=f"{run_id}-{sequence:06d}", jpeg=jpeg)
        frame.captured_at.GetCurrentTime()
        if settings.send_location:
            frame.location.CopyFrom(read_pb2.GeoPoint(latitude=camera.latitude, longitude=camera.longitude))
            frame.heading_degrees = camera.bearing_degrees
        yield OutgoingFrame(frame, truth)
