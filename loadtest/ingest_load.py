"""Ingest load: many cameras through the full vision path (SubmitFrame with rendered JPEGs), or plate-reading
gateways sending metadata only (SubmitReads batches), driven through a scenario's stages (open model).

Starts its own stack under a temporary folder (mongod, Redis, audit, identity, ingest; Triton in frames mode)
unless --ingest names a running one (then give --admin-token, an agency admin's token). Registers the cameras
(each gets its gateway secret), then runs the scenario, printing progress, and writes the summary as JSON.

    .venv/bin/python loadtest/ingest_load.py loadtest/scenarios/metadata_ingest.yaml --out /tmp/ingest.json
    .venv/bin/python loadtest/ingest_load.py loadtest/scenarios/camera_frames.yaml
    .venv/bin/python loadtest/ingest_load.py loadtest/scenarios/metadata_ingest.yaml --profile /tmp/ingest.prof

--profile samples the ingest process with py-spy for the longest stage and prints where its time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from local import AGENCY, login_new_user, start_stack
from runner import OpenLoop, Scenario, write_summary
from synthetic import Camera, Traffic, cameras
from tqdm import tqdm

from services.common.tls import secure_channel
from services.devstack.stack import LocalStack
from services.ingest.client import register_camera
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc

GRPC_OPTIONS = [("grpc.max_send_message_length", 32 << 20), ("grpc.max_receive_message_length", 32 << 20)]


async def register_all(channel: grpc.aio.Channel, cams: list[Camera], admin_token: str) -> dict[str, tuple]:
    """Register every camera (concurrently, 16 at a time): camera id -> its credential metadata entry."""
    limit = asyncio.Semaphore(16)
    bar = tqdm(total=len(cams), desc="registering cameras", unit="camera", file=sys.stderr)

    async def one(cam: Camera) -> tuple[str, tuple]:
        async with limit:
            proto = ingest_pb2.Camera(site_id="dev-site", camera_id=cam.camera_id, name=cam.camera_id, active=True)
            proto.location.latitude, proto.location.longitude = cam.latitude, cam.longitude
            md = await register_camera(channel, proto, admin_token)
            bar.update()
            return cam.camera_id, md[0]

    out = dict(await asyncio.gather(*(one(c) for c in cams)))
    bar.close()
    return out


def reads_request(stub, cams: list[Camera], creds: dict[str, tuple], opts: dict[str, Any], run_id: str):
    """Metadata-only gateways: each request is one gateway's ReadBatch over its cameras."""
    per_gateway = int(opts.get("cameras_per_gateway", 20))
    batch_frames = int(opts.get("frames_per_batch", 50))
    reads_per_frame = int(opts.get("reads_per_frame", 1))
    gateways = [cams[i:i + per_gateway] for i in range(0, len(cams), per_gateway)]
    metadata = [tuple(creds[c.camera_id] for c in g) for g in gateways]
    traffic = Traffic(seed=1, pool=int(opts.get("vehicle_pool", 200_000)))

    async def request(seq: int) -> int:
        g = seq % len(gateways)
        now = datetime.now(UTC) - timedelta(seconds=1)
        batch = ingest_pb2.ReadBatch(frames=[
            traffic.frame_reads(gateways[g][k % len(gateways[g])], f"{run_id}-{seq}-{k}", now, reads_per_frame)
            for k in range(batch_frames)])
        reply = await stub.SubmitReads(batch, metadata=metadata[g], timeout=60)
        stored = [a for a in reply.acks if a.status == ingest_pb2.FRAME_STATUS_STORED]
        if len(stored) != len(reply.acks):
            bad = collections.Counter(a.error_message[:60] for a in reply.acks if a.status != 1)
            raise RuntimeError(f"frames not stored: {dict(bad)}")
        return sum(len(a.read_ids) for a in stored)

    return request


def frames_request(stub, cams: list[Camera], creds: dict[str, tuple], jpegs: list[bytes], run_id: str):
    """Cameras sending JPEG frames through the vision pipeline: one SubmitFrame per arrival."""

    async def request(seq: int) -> int:
        cam = cams[seq % len(cams)]
        frame = ingest_pb2.Frame(camera_id=cam.camera_id, frame_id=f"{run_id}-{seq}", jpeg=jpegs[seq % len(jpegs)],
                                 heading_degrees=cam.heading)
        frame.captured_at.FromDatetime(datetime.now(UTC))
        frame.location.latitude, frame.location.longitude = cam.latitude, cam.longitude
        await stub.SubmitFrame(frame, metadata=(creds[cam.camera_id],), timeout=120)
        return 1

    return request


def profile(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    """py-spy sampling the ingest process (idle time left out) into collapsed stacks at `out`."""
    return subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
                             "--duration", str(int(seconds)), "--rate", "200", "--format", "raw",
                             "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def hot_spots(collapsed: Path, top: int = 15) -> dict[str, Any]:
    """Share of samples by module (inclusive) and by function (where the sample was taken)."""
    by_module: collections.Counter[str] = collections.Counter()
    by_leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        by_leaf[frames[-1]] += n
        for module in {_module(f) for f in frames}:
            by_module[module] += n

    def shares(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / max(total, 1), 1)) for k, v in counter.most_common(top)]

    return {"samples": total, "inclusive_by_module_pct": shares(by_module), "self_by_function_pct": shares(by_leaf)}


def _module(frame: str) -> str:
    """'store (services/ingest/adapters/store.py:91)' -> 'services/ingest/adapters/store.py'."""
    path = frame.rpartition("(")[2].rstrip(")").rpartition(":")[0]
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1].split("/", 1)[0]
    return path or frame


async def main_async(args: argparse.Namespace, scenario: Scenario, stack: LocalStack | None) -> dict[str, Any]:
    opts = scenario.options
    mode = opts.get("mode", "reads")
    addr, admin = args.ingest, args.admin_token
    if stack is not None:
        addr = stack.address("ingest")
        admin = await login_new_user(stack.env["SIGHTLINE_MONGO_URI"], stack.address("identity"), ["agency_admin"])
    cams = cameras(int(opts.get("cameras", 100)), opts.get("camera_prefix", "load-cam"))
    run_id = f"{int(time.time())}"
    async with secure_channel(addr, options=GRPC_OPTIONS) as channel:
        creds = await register_all(channel, cams, admin)
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        if mode == "frames":
            from services.simulator.render import SceneOptions, render_scene

            jpegs = [render_scene(seed, SceneOptions(difficulty=0.3)).jpeg
                     for seed in tqdm(range(int(opts.get("distinct_scenes", 24))), desc="rendering", unit="scene")]
            request = frames_request(stub, cams, creds, jpegs, run_id)
        else:
            request = reads_request(stub, cams, creds, opts, run_id)
        pids = {name: proc.popen.pid for name, proc in stack.procs.items()} if stack is not None else {}
        loop = OpenLoop(f"ingest-{mode}", scenario, request, processes=pids)
        spies: list[subprocess.Popen] = []
        if args.profile and stack is not None:
            longest = max(scenario.stages, key=lambda s: s.duration_s)
            offset = sum(s.duration_s for s in scenario.stages[:scenario.stages.index(longest)])
            pid = stack.procs["ingest"].popen.pid
            asyncio.get_running_loop().call_later(
                offset, lambda: spies.append(profile(pid, longest.duration_s, args.profile)))
        await loop.run()
        summary = loop.summary() | {"mode": mode, "cameras": len(cams), "options": opts}
        for spy in spies:
            spy.wait(timeout=120)
            if args.profile.exists():
                summary["ingest_profile"] = hot_spots(args.profile)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--ingest", help="a running ingest service (default: start a local stack)")
    parser.add_argument("--admin-token", default=os.environ.get("SIGHTLINE_ADMIN_TOKEN", ""),
                        help="an agency admin's access token, with --ingest (default $SIGHTLINE_ADMIN_TOKEN)")
    parser.add_argument("--rate-scale", type=float, default=1.0, help="multiply every stage's rate")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply every stage's duration")
    parser.add_argument("--profile", type=Path, help="py-spy the (local) ingest during the longest stage")
    parser.add_argument("--out", type=Path, help="write the summary JSON here too")
    args = parser.parse_args()
    scenario = Scenario.load(args.scenario).scaled(args.rate_scale, args.time_scale)
    mode = scenario.options.get("mode", "reads")
    stack = None
    if args.ingest is None:
        stack = start_stack(["audit", "identity", "ingest"], triton=mode == "frames",
                            SIGHTLINE_STREAM_CONCURRENCY="8")
    try:
        summary = asyncio.run(main_async(args, scenario, stack))
    finally:
        if stack is not None:
            stack.stop()
    summary["agency"] = AGENCY
    write_summary(summary, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
