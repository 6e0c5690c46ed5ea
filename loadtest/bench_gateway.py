"""Camera gateway benchmark (printed figures, not a timed test).

1. Decoding, the gateway's main cost: H.264 videos of vehicle passes (services/simulator/video.py) decoded by
   PyAV on one thread, each frame converted to BGR and offered to the still picker, as the gateway does.
   Reported as CPU-seconds per second of video and cameras per core, for 1080p30 decoding every frame,
   1080p30 decoding keyframes only (GOP 2 s), and a 640x360 substream; plus FFmpeg's decode alone, and the
   same file through OpenCV's FFmpeg backend (cv2.VideoCapture, which converts every frame to BGR).
2. The spool: stills of `--still-kb` written (each fsynced, SQLite WAL, synchronous=FULL) and replayed
   oldest first (read, then deleted as an acknowledgement would).
3. With `--latency` (starts mongod, Redis, Triton, audit, identity and ingest locally, a few minutes): the
   gateway in-process replaying a 720p pass video in real time into ingest, from the frame that started
   each vehicle pass to ingest's acknowledgement of its stills (sightline_gateway_trigger_to_ack_seconds).

    python loadtest/bench_gateway.py [--seconds 10] [--spool-frames 300] [--latency]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

import cv2

from services.common.tls import secure_channel
from services.gateway.config import FileSource, PickConfig
from services.gateway.domain.picking import StillPicker
from services.gateway.sources import decode_video
from services.gateway.spool import Spool
from services.simulator.video import render_pass_video
from sightline.ingest.v1 import ingest_pb2


def make_video(folder: Path, name: str, width: int, height: int, seconds: float, fps: int = 30) -> Path:
    """Passes of 1 s with 1 s of empty road between: `seconds` of video at `fps` (GOP 2 s)."""
    path = folder / f"{name}.mp4"
    passes = max(1, int(seconds // 2))
    render_pass_video(path, passes, seed=3, fps=fps, pass_frames=fps, gap_frames=fps, width=width, height=height,
                      gop=2 * fps, bitrate=6_000_000 if width >= 1920 else 1_000_000)
    return path


def decode_cost(path: Path, *, keyframes_only: bool, pick: bool) -> tuple[float, int, float]:
    """(CPU seconds, frames decoded, seconds of video) decoding `path` on one thread."""
    source = FileSource(type="file", path=path, realtime=False, keyframes_only=keyframes_only)
    picker = StillPicker(PickConfig(zone=(0.0, 0.35, 1.0, 1.0)))
    frames, first, last = 0, None, None
    started = time.process_time()
    if pick:
        for decoded in decode_video(source, threading.Event(), threads=1):
            picker.offer(decoded.grey, decoded.captured_at, decoded.colour)
            first, last = first or decoded.captured_at, decoded.captured_at
            frames += 1
    else:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            if keyframes_only:
                stream.codec_context.skip_frame = "NONKEY"
            for frame in container.decode(stream):
                frames += 1
                last = frame.time
    cpu = time.process_time() - started
    if pick:
        assert first is not None and last is not None
        duration = (last - first).total_seconds()
    else:
        duration = float(last or 0.0)
    return cpu, frames, duration


def opencv_cost(path: Path) -> tuple[float, int, float]:
    """The same file through OpenCV's FFmpeg backend (cv2.VideoCapture: every frame, always converted to BGR)."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    frames, started = 0, time.process_time()
    while capture.read()[0]:
        frames += 1
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    capture.release()
    return time.process_time() - started, frames, frames / fps


def bench_decode(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"rendering {seconds:.0f} s of 1080p30 and 360p30 H.264 …", flush=True)
        full = make_video(folder, "1080p", 1920, 1080, seconds)
        sub = make_video(folder, "360p", 640, 360, seconds)
        print(f"{'stream':<40} {'frames':>7} {'CPU s / video s':>16} {'cameras / core':>15}")
        for label, path, keyframes, pick in (
            ("1080p30, every frame (decode only)", full, False, False),
            ("1080p30, every frame + picking", full, False, True),
            ("1080p30, keyframes only + picking", full, True, True),
            ("360p30 substream, every frame + picking", sub, False, True),
        ):
            cpu, frames, duration = decode_cost(path, keyframes_only=keyframes, pick=pick)
            duration = max(duration, seconds - 2)  # keyframes only: the last decoded frame is up to a GOP early
            load = cpu / duration
            print(f"{label:<40} {frames:>7} {load:>16.3f} {1 / load:>15.1f}", flush=True)
        cpu, frames, duration = opencv_cost(full)
        label = "1080p30 via OpenCV VideoCapture (BGR)"
        print(f"{label:<40} {frames:>7} {cpu / duration:>16.3f} {duration / cpu:>15.1f}", flush=True)


def bench_spool(frames: int, still_kb: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "spool.db", max_bytes=1 << 40)
        payload = bytes(still_kb * 1024)
        started = time.perf_counter()
        for i in range(frames):
            frame = ingest_pb2.Frame(camera_id=f"cam-{i % 8}", frame_id=f"f{i:08d}", jpeg=payload)
            frame.captured_at.GetCurrentTime()
            spool.put(frame)
        write = time.perf_counter() - started
        started = time.perf_counter()
        sent = 0
        for camera in range(8):
            while rows := spool.next_frames(f"cam-{camera}", set(), 16):
                for row in rows:
                    spool.remove(row.seq)
                    sent += 1
        replay = time.perf_counter() - started
        spool.close()
    mb = frames * still_kb / 1024
    print(f"spool write  {frames / write:8.0f} stills/s  {mb / write:7.1f} MB/s  ({frames} stills of {still_kb} KB, "
          "each fsynced)")
    print(f"spool replay {sent / replay:8.0f} stills/s  {mb / replay:7.1f} MB/s  (read oldest first, deleted on ack)")


async def bench_latency() -> None:

    from loadtest.local import login_new_user, start_stack
    from services.gateway import metrics
    from services.gateway.config import SiteConfig
    from services.gateway.gateway import Gateway
    from services.ingest.client import register_camera

    stack = await asyncio.to_thread(start_stack, ["audit", "identity", "ingest"], triton=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            print("rendering a 720p15 video of 6 passes …", flush=True)
            video = folder / "passes.mp4"
            passes = render_pass_video(video, 6, seed=5, fps=15)
            admin = await login_new_user(stack.env["SIGHTLINE_MONGO_URI"], stack.address("identity"),
                                         ["agency_admin"])
            async with secure_channel(stack.address("ingest")) as channel:
                credential = await register_camera(channel, ingest_pb2.Camera(
                        site_id="dev-site", camera_id="bench-gw-1", active=True),
                                                   admin)
            (folder / "secret").write_text(credential[0][1].partition(":")[2])
            config = SiteConfig.model_validate({
                "site_id": "bench", "ingest": {"target": stack.address("ingest")}, "http_port": 0,
                "spool": {"path": str(folder / "spool.db")},
                "cameras": [{"camera_id": "bench-gw-1", "secret_file": str(folder / "secret"),
                             "source": {"type": "file", "path": str(video)},
                             "pick": {"zone": [0.0, 0.35, 1.0, 1.0], "frames_per_pass": 2, "end_frames": 4}}]})
            stop = asyncio.Event()
            run = asyncio.create_task(Gateway(config).run(stop))
            histogram = metrics.TRIGGER_TO_ACK
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and _count(histogram) < 2 * len(passes):  # noqa: ASYNC110 - polls a metric
                await asyncio.sleep(1)
            stop.set()
            await run
            count, total = _count(histogram), _sum(histogram)
            print(f"vehicle enters the zone -> still acknowledged: {count} stills of {len(passes)} passes, mean "
                  f"{total / max(count, 1):.2f} s (a pass lasts 1 s; its stills go when it ends)")
            for bound, cumulative in _buckets(histogram):
                print(f"   <= {bound:>6} s: {cumulative:.0f}")
    finally:
        stack.stop()


def _samples(histogram) -> dict[str, list]:  # type: ignore[no-untyped-def]
    """The histogram's samples by kind (count, sum, bucket)."""
    out: dict[str, list] = {}
    for metric in histogram.collect():
        for sample in metric.samples:
            out.setdefault(sample.name.rsplit("_", 1)[-1], []).append(sample)
    return out


def _count(histogram) -> float:  # type: ignore[no-untyped-def]
    return sum(s.value for s in _samples(histogram).get("count", []))


def _sum(histogram) -> float:  # type: ignore[no-untyped-def]
    return sum(s.value for s in _samples(histogram).get("sum", []))


def _buckets(histogram) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
    return [(s.labels["le"], s.value) for s in _samples(histogram).get("bucket", [])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of video per decode measurement")
    parser.add_argument("--spool-frames", type=int, default=300)
    parser.add_argument("--still-kb", type=int, default=250, help="size of a spooled still (1080p JPEG q90)")
    parser.add_argument("--latency", action="store_true", help="also measure trigger -> ack on a local stack")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core's work: OpenCV's own pool would spread (and spin) over the others
    bench_decode(args.seconds)
    bench_spool(args.spool_frames, args.still_kb)
    if args.latency:
        asyncio.run(bench_latency())


if __name__ == "__main__":
    main()
