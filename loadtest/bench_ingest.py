"""End-to-end ingest benchmark: 1280x720 JPEG frames through ingest → Triton → MongoDB → Redis.

Starts its own local stack in a temporary folder (or uses --ingest ADDR of a running one), registers
cameras, streams pre-rendered synthetic frames from C concurrent camera streams, and prints frames/s and
per-frame latency (sent → acknowledged after durable storage), p50 / p99; with its own stack, also the CPU
milliseconds per frame that each server (each Triton model apart) used and how many cores were busy.

    .venv/bin/python loadtest/bench_ingest.py --frames 200 --cameras 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import cpu_usage
from tqdm import tqdm

from services.common.tls import secure_channel
from services.devstack.stack import LocalStack, Ports
from services.devstack.tokens import dev_token
from services.ingest.client import register_camera
from services.simulator.render import SceneOptions, render_scene
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


async def run(addr: str, admin_token: str, jpegs: list[bytes], frames: int, cameras: int, window: int) -> dict:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    run_id = f"{int(time.time())}"
    async with secure_channel(addr, options=[("grpc.max_send_message_length", 32 << 20)]) as ch:
        credentials = [await register_camera(ch, ingest_pb2.Camera(site_id="dev-site",
            camera_id=f"bench-{c}", name=f"bench camera {c}", active=True), admin_token) for c in range(cameras)]
        stub = ingest_pb2_grpc.IngestServiceStub(ch)
        bar = tqdm(total=frames, unit="frame", desc="ingest")

        async def camera_stream(c: int, count: int) -> None:
            sent: dict[str, float] = {}
            credit = asyncio.Semaphore(window)

            async def requests():
                for i in range(count):
                    await credit.acquire()
                    f = ingest_pb2.Frame(camera_id=f"bench-{c}", frame_id=f"{run_id}-{i}", jpeg=jpegs[i % len(jpegs)])
                    f.captured_at.FromDatetime(datetime.now(UTC))
                    sent[f.frame_id] = time.perf_counter()
                    yield f

            async for ack in stub.StreamFrames(requests(), metadata=credentials[c]):
                latencies.append(time.perf_counter() - sent.pop(ack.frame_id))
                name = ingest_pb2.FrameStatus.Name(ack.status)
                statuses[name] = statuses.get(name, 0) + 1
                credit.release()
                bar.update()

        share = [frames // cameras + (1 if c < frames % cameras else 0) for c in range(cameras)]
        t0 = time.perf_counter()
        await asyncio.gather(*(camera_stream(c, n) for c, n in enumerate(share)))
        elapsed = time.perf_counter() - t0
        bar.close()
    return {"frames": frames, "cameras": cameras, "window_per_camera": window, "seconds": round(elapsed, 2),
            "frames_per_s": round(frames / elapsed, 2), "latency_ms_p50": round(percentile(latencies, 50) * 1e3, 1),
            "latency_ms_p99": round(percentile(latencies, 99) * 1e3, 1), "statuses": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ingest", help="address of a running ingest service (default: start a local stack)")
    parser.add_argument("--admin-token", default=os.environ.get("SIGHTLINE_ADMIN_TOKEN", ""),
                        help="an agency admin's token, with --ingest (default $SIGHTLINE_ADMIN_TOKEN)")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--window", type=int, default=2, help="unacknowledged frames allowed per camera stream")
    parser.add_argument("--distinct", type=int, default=24, help="distinct rendered scenes to cycle through")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = parser.parse_args()

    jpegs = [render_scene(seed, SceneOptions(difficulty=0.3)).jpeg
             for seed in tqdm(range(args.distinct), desc="rendering", unit="scene")]
    stack = None
    addr, token = args.ingest, args.admin_token
    if addr is None:
        stack = LocalStack(Path(tempfile.mkdtemp(prefix="sightline-bench-")), Ports.free())
        stack.env.update(SIGHTLINE_DATA_DIR=str(stack.root / "data"), SIGHTLINE_AUDIT_ADDRESS=stack.address("audit"))
        os.environ.update(stack.client_env())  # this process's clients trust the stack's CA
        print("starting local stack (mongod, redis, triton, audit, ingest) …", flush=True)
        stack.start_mongo()
        stack.start_redis()
        stack.start_triton()
        stack.start_service("audit")
        stack.start_service("ingest")
        addr, token = stack.address("ingest"), dev_token(stack.root / "data", "bench-pd", ["agency_admin"])
    try:
        asyncio.run(run(addr, token, jpegs[:2], min(8, args.frames), 1, 1))  # warm-up
        before = cpu_usage.children_cpu()
        figures = asyncio.run(run(addr, token, jpegs, args.frames, args.cameras, args.window))
        if stack:  # where the cores went: the local stack's servers are this process's children
            used = cpu_usage.children_cpu()
            figures["cpu_ms_per_frame"] = cpu_usage.report(before, used, figures["seconds"], args.frames)
    finally:
        if stack:
            stack.stop()
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
