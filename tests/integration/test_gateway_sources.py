"""The camera gateway's HTTP sources against a real HTTP server (uvicorn): MJPEG through FFmpeg's multipart
demuxer, JPEG snapshots with basic auth from a password file, and what a camera that goes away looks like."""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from services.gateway.config import MjpegSource, SnapshotSource
from services.gateway.sources import SourceError, decode_video, poll_snapshot
from services.simulator.render import SceneOptions, render_scene

pytestmark = pytest.mark.integration

JPEGS = [render_scene(i, SceneOptions(width=640, height=360)).jpeg for i in range(3)]
PARTS = 30
PASSWORD = "camera password"


async def mjpeg(request: Request) -> StreamingResponse:
    async def parts():
        for i in range(PARTS):
            jpeg = JPEGS[i % len(JPEGS)]
            yield b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%b\r\n" % (len(jpeg), jpeg)
            await asyncio.sleep(0.02)

    return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame")


async def snapshot(request: Request) -> Response:
    expected = "Basic " + base64.b64encode(f"alpr:{PASSWORD}".encode()).decode()
    if request.headers.get("authorization") != expected:
        return Response(status_code=401)
    return Response(JPEGS[0], media_type="image/jpeg")


@pytest.fixture(scope="module")
def camera_http() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = Starlette(routes=[Route("/mjpeg", mjpeg), Route("/snapshot.jpg", snapshot)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_mjpeg_stream_is_decoded_frame_by_frame(camera_http: str) -> None:
    source = MjpegSource(type="mjpeg", url=f"{camera_http}/mjpeg", timeout_s=5)
    frames = list(decode_video(source, threading.Event()))
    assert len(frames) == PARTS
    assert frames[0].grey.shape == (360, 640) and frames[0].colour().shape == (360, 640, 3)
    times = [f.captured_at for f in frames]
    assert times == sorted(times)


def test_snapshot_with_basic_auth_from_a_password_file(camera_http: str, tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    good = SnapshotSource(type="snapshot", url=f"{camera_http}/snapshot.jpg", username="alpr",
                          password_file=password)
    assert poll_snapshot(good).colour().shape == (360, 640, 3)
    with pytest.raises(SourceError, match="401") as err:
        poll_snapshot(SnapshotSource(type="snapshot", url=f"{camera_http}/snapshot.jpg"))
    assert err.value.kind == "read"


def test_a_camera_that_is_not_there_fails_to_open(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceError) as err:
        list(decode_video(MjpegSource(type="mjpeg", url=f"http://127.0.0.1:{port}/mjpeg", timeout_s=2),
                          threading.Event()))
    assert err.value.kind == "open"
