"""A video of vehicles passing one camera, encoded as H.264: what a roadside RTSP camera would stream.

The road (background, light, camera) stays the same for the whole video; each pass brings a different
vehicle toward the camera, with empty road before and after it, so a motion trigger sees each pass begin
and end. Used by the gateway's tests and benchmark (served over RTSP, or read as a file).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .render import GroundTruth, SceneOptions, render, sample_params


@dataclass(frozen=True)
class VideoPass:
    truth: GroundTruth  # of the pass's closest frame
    start_s: float  # the vehicle appears
    end_s: float  # the vehicle has gone


def render_pass_video(path: Path, passes: int, *, seed: int = 0, fps: int = 15, pass_frames: int = 15,
                      gap_frames: int = 15, width: int = 1280, height: int = 720, gop: int | None = None,
                      bitrate: int = 4_000_000) -> list[VideoPass]:
    """Write `passes` vehicle passes (each `pass_frames` long, `gap_frames` of empty road before each and at
    the end) to `path` (H.264 in the container its suffix names); returns when each pass is on screen."""
    options = SceneOptions(width=width, height=height, night=False)
    road = sample_params(seed, options)
    road = dataclasses.replace(road, motion_blur=0, noise_sigma=min(road.noise_sigma, 1.0), blur_sigma=0.0)
    empty = render(dataclasses.replace(road, vehicle_x=-10.0 * width)).image
    out: list[VideoPass] = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bitrate
        stream.codec_context.gop_size = gop or 2 * fps
        stream.codec_context.time_base = Fraction(1, fps)
        stream.options = {"preset": "veryfast", "tune": "zerolatency", "bframes": "0"}
        index = 0

        def put(image: np.ndarray) -> None:
            nonlocal index
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = index
            index += 1
            container.mux(stream.encode(frame))

        for p in range(passes):
            for _ in range(gap_frames):
                put(empty)
            vehicle = sample_params(seed * 1000 + p + 1, options)
            base = dataclasses.replace(road, plate=vehicle.plate, vehicle_colour=vehicle.vehicle_colour,
                                       body_height=vehicle.body_height, vehicle_width=vehicle.vehicle_width,
                                       vehicle_x=vehicle.vehicle_x, vehicle_bottom=vehicle.vehicle_bottom,
                                       plate_scale=vehicle.plate_scale, yaw=vehicle.yaw, pitch=vehicle.pitch,
                                       roll=vehicle.roll)
            start = index / fps
            horizon_y, vanishing_x = base.height * base.horizon, base.width / 2
            truth = None
            for i in range(pass_frames):
                k = 0.45 + 0.55 * i / max(pass_frames - 1, 1)
                scene = render(dataclasses.replace(
                    base, noise_seed=base.noise_seed + i, vehicle_width=base.vehicle_width * k,
                    vehicle_x=vanishing_x + (base.vehicle_x - vanishing_x) * k,
                    vehicle_bottom=horizon_y + (base.vehicle_bottom - horizon_y) * k))
                put(scene.image)
                truth = scene.truth
            assert truth is not None
            out.append(VideoPass(truth, start, index / fps))
        for _ in range(gap_frames):
            put(empty)
        container.mux(stream.encode(None))
    return out
