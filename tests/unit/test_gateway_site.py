"""The camera gateway's pure parts: site config, still picking, the rate cap, the spool, lanes, the drop folder."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from services.gateway.config import FolderSource, PickConfig, SiteConfig, load_config, redact_url
from services.gateway.domain.picking import RateCap, StillPicker, encode_still, frame_id
from services.gateway.domain.schedule import LaneChooser
from services.gateway.sources import FolderWatch
from services.gateway.spool import Spool
from services.simulator.render import SceneOptions, render_scene
from sightline.ingest.v1 import ingest_pb2

pytestmark = pytest.mark.unit


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "cam-1.secret"
    path.write_text("s3cret\n")
    return path


def site(secret: Path, tmp_path: Path, **camera: object) -> dict:
    cam = {"camera_id": "cam-1", "secret_file": str(secret),
           "source": {"type": "rtsp", "url": "rtsp://10.0.0.5/stream1"}, **camera}
    return {"site_id": "depot", "spool": {"path": str(tmp_path / "spool.db")}, "cameras": [cam]}


def test_config_loads_yaml_and_fails_fast(secret: Path, tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(f"""
site_id: depot
spool: {{path: {tmp_path}/spool.db, max_bytes: 100000000}}
cameras:
  - camera_id: cam-1
    secret_file: {secret}
    source: {{type: rtsp, url: "rtsp://10.0.0.5/s1", transport: udp}}
    pick: {{zone: [0.1, 0.4, 0.9, 1.0], frames_per_pass: 2}}
  - camera_id: ftp-1
    secret_file: {secret}
    source: {{type: folder, path: {tmp_path}}}
""")
    config = load_config(path)
    assert config.cameras[0].source.transport == "udp" and config.cameras[1].source.type == "folder"
    assert config.ingest.tls is None and not config.ingest.plaintext  # TLS, system roots
    bad = [
        ({"pick": {"zone": [0.5, 0, 0.4, 1]}}, "zone"),
        ({"source": {"type": "rtsp", "url": "rtsp://u:pw@10.0.0.5/s"}}, "password"),
        ({"source": {"type": "rtsp", "url": "http://10.0.0.5/s"}}, "rtsp://"),
        ({"source": {"type": "carrier-pigeon", "url": "x"}}, "type"),
        ({"secret_file": str(tmp_path / "missing")}, "cannot read secret file"),
        ({"latitude": 40.0}, "longitude"),
        ({"fps": 30}, "Extra inputs"),
    ]
    for change, message in bad:
        with pytest.raises(ValidationError, match=message):
            SiteConfig.model_validate(site(secret, tmp_path, **change))
    twice = site(secret, tmp_path)
    twice["cameras"] *= 2
    with pytest.raises(ValidationError, match="listed twice"):
        SiteConfig.model_validate(twice)
    with pytest.raises(ValidationError, match="cert_file and key_file"):
        SiteConfig.model_validate({**site(secret, tmp_path), "ingest": {"tls": {"cert_file": str(secret)}}})
    assert redact_url("rtsp://admin@10.0.0.5:554/live?token=abc") == "rtsp://10.0.0.5:554/live"


def road(width: int = 640, height: int = 360) -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(60, 120, (height, width, 3), dtype=np.uint8), (9, 9), 0)


def offer(picker: StillPicker, image: np.ndarray, at: datetime) -> list:
    """A frame as the sources give it: grey now, colour on demand."""
    return picker.offer(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), at, lambda: image)


def test_picker_sends_the_best_stills_of_each_pass_with_the_stream_time() -> None:
    pick = PickConfig(zone=(0.0, 0.3, 1.0, 1.0), frames_per_pass=2, confirm_frames=2, end_frames=3)
    picker = StillPicker(pick)
    empty = road()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    scene = render_scene(3, SceneOptions(width=640, height=360)).image
    passing = [cv2.resize(scene, (640 - 40 * k, 360 - 22 * k)) for k in range(5, -1, -1)]
    stills = []
    for i, image in enumerate([empty] * 5 + passing + [empty] * 6):
        canvas = empty.copy()
        canvas[: image.shape[0], : image.shape[1]] = image
        stills += offer(picker, canvas, t0 + timedelta(seconds=i / 10))
    assert len(stills) == 2 and not picker.in_pass
    assert stills[0].captured_at < stills[1].captured_at  # in capture order
    assert all(t0 + timedelta(seconds=0.5) <= s.captured_at <= t0 + timedelta(seconds=1.1) for s in stills)
    assert stills[0].triggered_at == t0 + timedelta(seconds=0.6)  # the second moving frame confirms
    assert stills[0].image.shape == (360, 640, 3)
    # A still road picks nothing.
    assert not any(offer(picker, empty, t0 + timedelta(seconds=2 + i)) for i in range(10))


def test_a_pass_longer_than_max_is_cut() -> None:
    picker = StillPicker(PickConfig(max_pass_s=1.0, confirm_frames=1, frames_per_pass=1))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    flashing = [road(), np.full((360, 640, 3), 255, np.uint8)]  # moves in every frame
    out = []
    for i in range(30):
        out += offer(picker, flashing[i % 2], t0 + timedelta(seconds=i / 10))
    assert len(out) == 2  # cut after 1 s, then (the background learnt afresh) again


def test_rate_cap_and_encoding() -> None:
    cap = RateCap(rate=2.0, burst=3)
    assert [cap.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert cap.allow(0.5) and not cap.allow(0.6)
    jpeg = encode_still(road(1920, 1080), max_side=960, quality=80)
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (540, 960, 3)
    assert frame_id(datetime(2026, 5, 1, 12, 0, 1, 250000, tzinfo=UTC)) == "20260501T120001.250000Z"


def frame(camera: str, fid: str, size: int = 1000) -> ingest_pb2.Frame:
    f = ingest_pb2.Frame(camera_id=camera, frame_id=fid, jpeg=b"\xff" * size)
    f.captured_at.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
    return f


def test_spool_keeps_frames_across_reopen_once_each(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, max_bytes=1 << 20)
    assert spool.put(frame("a", "1")).stored and spool.put(frame("a", "2")).stored
    assert not spool.put(frame("a", "1")).stored  # the same still twice: kept once
    spool.put(frame("b", "1"))
    spool.close()
    spool = Spool(path, max_bytes=1 << 20)  # what a restart finds
    assert spool.count() == 3 and spool.count("a") == 2
    oldest = spool.next_frames("a", set(), 5)
    assert [s.frame.frame_id for s in oldest] == ["1", "2"]
    assert [s.frame.frame_id for s in spool.next_frames("a", {oldest[0].seq}, 5)] == ["2"]
    assert spool.remove(oldest[0].seq) and not spool.remove(oldest[0].seq)
    assert spool.bytes_by_camera["a"] == len(frame("a", "2").SerializeToString())


def test_spool_over_cap_drops_the_oldest_unsent_not_those_in_flight(tmp_path: Path) -> None:
    size = len(frame("a", "0").SerializeToString())
    spool = Spool(tmp_path / "spool.db", max_bytes=3 * size)
    seqs: list[int] = []
    for i in range(3):
        spool.put(frame("a", str(i)))
        seqs.append(spool.next_frames("a", set(seqs), 1)[0].seq)
    result = spool.put(frame("a", "3"), in_flight={seqs[0]})  # "0" is in flight: "1" goes
    assert result.stored and result.dropped == [("a", size)]
    assert [s.frame.frame_id for s in spool.next_frames("a", set(), 9)] == ["0", "2", "3"]
    assert spool.total_bytes <= 3 * size
    full = spool.put(frame("a", "4", size=10_000))  # larger than the whole spool: refused, nothing dropped
    assert full.refused and not full.stored and spool.count() == 3


def test_newest_lane(tmp_path: Path) -> None:
    now = [1000.0]
    spool = Spool(tmp_path / "spool.db", max_bytes=1 << 20, clock=lambda: now[0])
    for i in range(5):
        now[0] += 10
        spool.put(frame("a", str(i)))
    newest = spool.next_frames("a", set(), 2, newest_since=now[0] - 15)
    assert [s.frame.frame_id for s in newest] == ["4", "3"]


def test_lanes_alternate_while_a_backlog_drains() -> None:
    lanes = LaneChooser(0.5)
    choices = []
    for _ in range(6):
        live = lanes.next_is_live()
        lanes.took(live)
        choices.append(live)
    assert choices == [False, True] * 3
    never = LaneChooser(0.0)
    assert not any(never.next_is_live() for _ in range(5))


def test_folder_watch_waits_for_complete_files(tmp_path: Path) -> None:
    watch = FolderWatch(FolderSource(type="folder", path=tmp_path, settle_s=1.0))
    done = tmp_path / "a.jpg"
    done.write_bytes(b"\xff\xd8" + b"x" * 100 + b"\xff\xd9")
    half = tmp_path / "b.jpg"
    half.write_bytes(b"\xff\xd8" + b"x" * 100)  # still being written: no end marker
    (tmp_path / "notes.txt").write_text("ignored")
    assert watch.scan(0.0) == []  # just seen: not settled
    ready = watch.scan(1.5)
    assert [f.path for f in ready] == [done] and ready[0].frame_id.startswith("a-")
    assert watch.waiting == 1
    os.utime(done, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched again: must settle again
    assert watch.scan(2.0) == []


def test_check_command_validates_and_refuses(secret: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from services.cli.__main__ import main

    good = tmp_path / "good.yaml"
    good.write_text(f"site_id: s1\nspool: {{path: {tmp_path}/spool.db}}\ncameras:\n"
                    f"  - {{camera_id: c1, secret_file: {secret}, source: {{type: folder, path: {tmp_path}}}}}\n")
    assert main(["gateway", "--config", str(good), "--check"]) == 0
    assert "1 camera(s): valid" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("site_id: s1", "site_id: s1\nadmin_password: hunter2"))
    assert main(["gateway", "--config", str(bad), "--check"]) == 2
    assert "admin_password" in capsys.readouterr().err


def test_stream_clock_keeps_the_streams_spacing_and_never_runs_ahead() -> None:
    from services.gateway.sources import StreamClock

    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    live = StreamClock(live=True)
    assert live.capture_time(None, t0) == t0  # no timestamp yet: its arrival
    # A burst on connect: 2 s of buffered frames arrive within 0.2 s; then frames come in real time.
    burst = [live.capture_time(i / 10, t0 + timedelta(seconds=i / 100)) for i in range(21)]
    assert burst[-1] == t0 + timedelta(seconds=0.2)  # never after its arrival
    later = live.capture_time(3.0, t0 + timedelta(seconds=1.2))
    assert later - burst[-1] == timedelta(seconds=1.0)  # the stream's spacing
    assert burst == sorted(burst)
    live.capture_time(30.0, t0 + timedelta(seconds=31))
    assert live.capture_time(0.0, t0 + timedelta(seconds=60)) == t0 + timedelta(seconds=60)  # restarted: anew
    replay = StreamClock(live=False)  # a file decoded faster than real time keeps its own times
    assert replay.capture_time(0.0, t0) == t0 and replay.capture_time(5.0, t0 + timedelta(seconds=1)) == \
        t0 + timedelta(seconds=5)
