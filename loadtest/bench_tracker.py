"""Tracker benchmark: reads of many simultaneous vehicle passes in, grouped passes out.

Starts mongod, Redis and the tracker in a temporary folder (or uses --redis URL of a running stack), publishes
--passes passes of --frames reads each, spread over --cameras cameras and interleaved as live cameras would
send them, and prints the reads/s the tracker kept up with, how many final passes came out (one per pass is
right) and the delay from a pass's last read to its final pass, p50 / p99 (the pass gap is part of it).

    .venv/bin/python loadtest/bench_tracker.py --passes 2000 --frames 8 --cameras 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis.asyncio as aioredis

from services.common.settings import RedisSettings
from services.devstack.stack import LocalStack, Ports
from services.ingest.adapters.stream import ReadPublisher
from services.tracker.settings import TrackerSettings
from sightline.common.v1 import pass_pb2, read_pb2

GAP_S = 1.0


def reads_of(run: str, passes: int, frames: int, cameras: int) -> list[read_pb2.Read]:
    """Every pass's reads, ordered as they would arrive: a camera's passes follow one another, the cameras
    run at the same time."""
    start = datetime.now(UTC)
    out = []
    for p in range(passes):
        camera, slot = p % cameras, p // cameras
        plate = f"B{p:06d}"
        for f in range(frames):
            read = read_pb2.Read(read_id=f"{run}-{p}-{f}", camera_id=f"{run}-cam{camera}", agency_id="bench",
                                 plate=plate, plate_normalized=plate, confidence=0.7 + 0.03 * f,
                                 image_ref=f"img-{p}-{f}",
                                 plate_box=read_pb2.BoundingBox(x=500, y=300, width=80 + 6 * f, height=20 + 2 * f))
            at = start + timedelta(seconds=slot * (GAP_S * 3) + 0.1 * f)
            read.captured_at.FromDatetime(at)
            read.stored_at.FromDatetime(at)
            read.expires_at.FromDatetime(at + timedelta(days=30))
            out.append(read)
    return sorted(out, key=lambda r: r.captured_at.ToNanoseconds())


async def run(redis_url: str, passes: int, frames: int, cameras: int, batch: int) -> dict:
    client = aioredis.from_url(redis_url)
    publisher = ReadPublisher(client, RedisSettings().read_stream, 10_000_000)
    stream = TrackerSettings().pass_stream
    run_id = uuid.uuid4().hex[:6]
    reads = reads_of(run_id, passes, frames, cameras)
    last_sent: dict[str, float] = {}
    start_id = (await client.xadd(stream, {"bench": run_id})).decode()
    t0 = time.perf_counter()
    for i in range(0, len(reads), batch):
        chunk = reads[i : i + batch]
        await publisher.publish(chunk)
        now = time.perf_counter()
        for read in chunk:
            last_sent[read.read_id.rsplit("-", 1)[0]] = now
    published = time.perf_counter() - t0
    delays: list[float] = []
    finals: dict[str, int] = {}
    cursor = start_id
    deadline = time.perf_counter() + 120 + GAP_S
    while len(delays) < passes and time.perf_counter() < deadline:
        reply = await client.xread({stream: cursor}, count=1000, block=500)
        for _, entries in reply or ():
            for entry_id, fields in entries:
                cursor = entry_id
                if fields.get(b"stage") != b"final" or not fields[b"camera_id"].decode().startswith(run_id):
                    continue
                p = pass_pb2.VehiclePass.FromString(fields[b"pass"])
                finals[p.pass_id] = finals.get(p.pass_id, 0) + 1
                if finals[p.pass_id] == 1:
                    first = p.read_ids[0].rsplit("-", 1)[0]
                    delays.append(time.perf_counter() - last_sent[first])
    elapsed = time.perf_counter() - t0
    await client.aclose()
    ordered = sorted(delays)
    return {"passes": passes, "frames_per_pass": frames, "cameras": cameras, "reads": len(reads),
            "publish_reads_per_s": round(len(reads) / published, 1),
            "tracked_reads_per_s": round(len(reads) / max(elapsed - GAP_S, 1e-3), 1),
            "final_passes": len(finals), "passes_published_twice": sum(n > 1 for n in finals.values()),
            "last_read_to_final_ms_p50": round(statistics.median(ordered) * 1e3, 1) if ordered else None,
            "last_read_to_final_ms_p99": round(ordered[int(0.99 * (len(ordered) - 1))] * 1e3, 1) if ordered else None,
            "pass_gap_s": GAP_S}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", help="URL of the Redis a running tracker uses (default: start a local stack)")
    parser.add_argument("--passes", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--cameras", type=int, default=50)
    parser.add_argument("--batch", type=int, default=100, help="reads per publish")
    args = parser.parse_args()
    stack = None
    url = args.redis
    if url is None:
        stack = LocalStack(Path(tempfile.mkdtemp(prefix="sightline-bench-")), Ports.free())
        print("starting local stack (mongod, redis, tracker) …", flush=True)
        stack.start_mongo()
        stack.start_redis()
        stack.start_service("tracker", SIGHTLINE_PASS_GAP_S=str(GAP_S), SIGHTLINE_TRACKER__START_ID="$")
        url = stack.env["SIGHTLINE_REDIS_URL"]
        time.sleep(1.0)  # the consumer group exists before the first read
    try:
        figures = asyncio.run(run(url, args.passes, args.frames, args.cameras, args.batch))
    finally:
        if stack:
            stack.stop()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
