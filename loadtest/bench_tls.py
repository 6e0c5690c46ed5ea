"""The cost of TLS (issue #17): the same load on a local stack with TLS on every hop and on one in clear text,
in one run, one after the other on the same machine.

Per stack (mongod, Redis, audit, identity, ingest, search; Triton shared by both, ingest → Triton being the same
in both, in plain text: one Triton cannot serve both): metadata-only ingest (StreamReads from gateways that read
plates themselves), reads/s; frame ingest
(StreamFrames of 1280x720 JPEGs through Triton), frames/s; search (SearchReads by exact plate, audited), p50 and
p95 latency. TLS means: gRPC TLS everywhere (mutual TLS to ingest), MongoDB requireTLS, Redis TLS port only.

    .venv/bin/python loadtest/bench_tls.py --seconds 15 --frames 60 --queries 200
    .venv/bin/python loadtest/bench_tls.py --frames 0      # without Triton: metadata ingest and search only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from local import AGENCY, login_new_user, seed_agency

from services.devstack.stack import LocalStack, Ports
from services.devstack.tokens import dev_token
from services.ingest.client import register_camera
from services.simulator.render import SceneOptions, render_scene
from sightline.common.v1 import read_pb2
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from sightline.search.v1 import search_pb2, search_pb2_grpc

SERVICES = ("audit", "identity", "ingest", "search")
GRPC_OPTIONS = [("grpc.max_send_message_length", 32 << 20)]


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def median_of(runs: list[dict]) -> dict:
    """The median of each figure over the rounds (nested dicts of numbers)."""
    first = runs[0]
    return {k: median_of([r[k] for r in runs]) if isinstance(v, dict) else statistics.median(r[k] for r in runs)
            for k, v in first.items()}


def start(root: Path, tls: bool, triton_url: str | None) -> LocalStack:
    stack = LocalStack(root, Ports.free(), tls=tls)
    stack.env.update(SIGHTLINE_DATA_DIR=str(root / "data"), SIGHTLINE_AUDIT_ADDRESS=stack.address("audit"),
                     SIGHTLINE_DRAIN_SECONDS="0", SIGHTLINE_LOGIN_SOURCE_FREE_FAILURES="1000")
    stack.start_mongo()
    stack.start_redis()
    if triton_url is not None:
        stack.env["SIGHTLINE_TRITON_URL"] = triton_url
        stack.env["SIGHTLINE_TRITON_TLS"] = "false"  # the shared Triton (main) serves plain text
    else:
        stack.env["SIGHTLINE_TRITON_URL"] = f"127.0.0.1:{stack.ports.triton_grpc}"  # metadata only
    for name in SERVICES:
        stack.start_service(name)
    return stack


def frame_reads(camera: str, frame_id: str, plate: str) -> ingest_pb2.FrameReads:
    fr = ingest_pb2.FrameReads(camera_id=camera, frame_id=frame_id,
                               location=read_pb2.GeoPoint(latitude=40.7, longitude=-74.0))
    fr.captured_at.FromDatetime(datetime.now(UTC) - timedelta(seconds=2))
    fr.reads.add(plate=plate, confidence=0.93, region=read_pb2.Region(country="US", state="NY", confidence=0.8))
    return fr


async def metadata_ingest(stack: LocalStack, credentials: list, seconds: float, batch: int) -> dict:
    """Each camera streams batches of `batch` one-read frames, one batch in flight, for `seconds`."""
    stored = 0
    run = f"{int(time.time() * 1000)}"
    deadline = time.perf_counter() + seconds
    async with stack.channel("ingest", GRPC_OPTIONS) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)

        async def camera(c: int) -> None:
            nonlocal stored
            queue: asyncio.Queue[ingest_pb2.ReadBatch | None] = asyncio.Queue()
            n = 0

            async def batches():
                while (item := await queue.get()) is not None:
                    yield item

            call = stub.StreamReads(batches(), metadata=credentials[c])
            while time.perf_counter() < deadline:
                frames = [frame_reads(f"tlsb-{c}", f"{run}-{n + i}", f"TLS{(c * 7919 + n + i) % 10000:04d}")
                          for i in range(batch)]
                n += batch
                await queue.put(ingest_pb2.ReadBatch(frames=frames))
                ack = await call.read()
                stored += sum(a.status == ingest_pb2.FRAME_STATUS_STORED for a in ack.acks)
            await queue.put(None)
            await call.read()  # EOF: the server closed the stream

        t0 = time.perf_counter()
        await asyncio.gather(*(camera(c) for c in range(len(credentials))))
        elapsed = time.perf_counter() - t0
    return {"reads": stored, "seconds": round(elapsed, 1), "reads_per_s": round(stored / elapsed, 1)}


async def frame_ingest(stack: LocalStack, credentials: list, jpegs: list[bytes], frames: int, window: int) -> dict:
    latencies: list[float] = []
    refused: dict[str, int] = {}
    run = f"{int(time.time() * 1000)}"
    async with stack.channel("ingest", GRPC_OPTIONS) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)

        async def camera(c: int, count: int) -> None:
            sent: dict[str, float] = {}
            credit = asyncio.Semaphore(window)

            async def requests():
                for i in range(count):
                    await credit.acquire()
                    f = ingest_pb2.Frame(camera_id=f"tlsb-{c}", frame_id=f"{run}-f{i}", jpeg=jpegs[i % len(jpegs)])
                    f.captured_at.FromDatetime(datetime.now(UTC))
                    sent[f.frame_id] = time.perf_counter()
                    yield f

            async for ack in stub.StreamFrames(requests(), metadata=credentials[c]):
                latency = time.perf_counter() - sent.pop(ack.frame_id)
                if ack.status == ingest_pb2.FRAME_STATUS_STORED:  # a refused frame is no throughput
                    latencies.append(latency)
                else:
                    refused[ack.error_message[:80]] = refused.get(ack.error_message[:80], 0) + 1
                credit.release()

        cameras = len(credentials)
        t0 = time.perf_counter()
        await asyncio.gather(*(camera(c, frames // cameras) for c in range(cameras)))
        elapsed = time.perf_counter() - t0
    done = len(latencies)
    if refused:
        print(f"frames refused: {refused}", flush=True)
    return {"frames": done, "seconds": round(elapsed, 1), "frames_per_s": round(done / elapsed, 2),
            "latency_ms_p50": round(percentile(latencies, 50) * 1e3, 1) if latencies else 0.0}


async def search(stack: LocalStack, queries: int) -> dict:
    token = await login_new_user(stack.env["SIGHTLINE_MONGO_URI"], stack.address("identity"), ["investigator"])
    metadata = (("authorization", f"Bearer {token}"),)
    latencies: list[float] = []
    async with stack.channel("search") as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        for i in range(queries):
            request = search_pb2.SearchReadsRequest(plate_exact=f"TLS{i % 1000:04d}",
                                                    purpose=search_pb2.PURPOSE_HOMICIDE, case_number="BENCH-TLS")
            t0 = time.perf_counter()
            await stub.SearchReads(request, metadata=metadata, timeout=30)
            latencies.append(time.perf_counter() - t0)
    return {"queries": queries, "p50_ms": round(percentile(latencies, 50) * 1e3, 1),
            "p95_ms": round(percentile(latencies, 95) * 1e3, 1)}


async def measure(stack: LocalStack, args: argparse.Namespace, jpegs: list[bytes]) -> dict:
    # This process's own clients (login helper) use the stack's TLS settings, or none.
    os.environ.update(stack.client_env())
    seed_agency(stack.env["SIGHTLINE_MONGO_URI"], AGENCY)
    admin = dev_token(Path(stack.env["SIGHTLINE_DATA_DIR"]), AGENCY, ["agency_admin"])
    async with stack.channel("ingest") as channel:
        credentials = [await register_camera(channel, ingest_pb2.Camera(
            camera_id=f"tlsb-{c}", name=f"bench {c}", active=True, site_id="dev-site"), admin)
            for c in range(args.cameras)]
    out = {"metadata_ingest": await metadata_ingest(stack, credentials, args.seconds, args.batch)}
    if jpegs:
        out["frame_ingest"] = await frame_ingest(stack, credentials, jpegs, args.frames, args.window)
    out["search"] = await search(stack, args.queries)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15, help="metadata ingest duration per stack")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--batch", type=int, default=20, help="frames (one read each) per ReadBatch")
    parser.add_argument("--frames", type=int, default=60, help="JPEG frames through Triton per stack; 0: none")
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each, alternating (medians reported)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    jpegs = [render_scene(seed, SceneOptions(difficulty=0.3)).jpeg for seed in range(8)] if args.frames else []
    results: dict[str, dict] = {}
    triton: LocalStack | None = None
    with tempfile.TemporaryDirectory(prefix="sightline-bench-tls-") as tmp:
        try:
            triton_url = os.environ.get("SIGHTLINE_TRITON_URL")
            if args.frames and not triton_url:
                print("starting Triton (shared by both stacks) …", flush=True)
                # Plain text on this one hop in both stacks (one Triton cannot serve both): the figures compare
                # TLS on every other hop; tests/security/test_triton.py covers Triton's TLS.
                triton = LocalStack(Path(tmp) / "triton", Ports.free(), tls=False)
                triton.start_triton()
                triton_url = triton.env["SIGHTLINE_TRITON_URL"]
            # Rounds alternate plain and TLS, so that a machine whose load drifts (a shared CI runner) weighs on
            # both alike; each figure is the median over the rounds.
            rounds: dict[str, list[dict]] = {"tls": [], "plain": []}
            stacks = {label: start(Path(tmp) / label, tls, triton_url if args.frames else None)
                      for label, tls in (("plain", False), ("tls", True))}
            try:
                for r in range(args.rounds):
                    for label in ("plain", "tls") if r % 2 == 0 else ("tls", "plain"):
                        rounds[label].append(asyncio.run(measure(stacks[label], args, jpegs)))
                        print(f"round {r + 1} {label}", json.dumps(rounds[label][-1]), flush=True)
            finally:
                for stack in stacks.values():
                    stack.stop()
            results = {label: median_of(runs) for label, runs in rounds.items()}
        finally:
            if triton is not None:
                triton.stop()

    tls, plain = results["tls"], results["plain"]
    rows = [("metadata ingest, reads/s", tls["metadata_ingest"]["reads_per_s"],
             plain["metadata_ingest"]["reads_per_s"])]
    if "frame_ingest" in tls:
        rows.append(("frame ingest, frames/s", tls["frame_ingest"]["frames_per_s"],
                     plain["frame_ingest"]["frames_per_s"]))
    rows += [("search p50, ms", tls["search"]["p50_ms"], plain["search"]["p50_ms"]),
             ("search p95, ms", tls["search"]["p95_ms"], plain["search"]["p95_ms"])]
    print(f"\n{'':28}{'TLS':>10}{'plain':>10}{'TLS/plain':>11}")
    for name, with_tls, without in rows:
        print(f"{name:28}{with_tls:>10.1f}{without:>10.1f}{with_tls / without if without else float('nan'):>11.2f}")
    if args.out:
        args.out.write_text(json.dumps({**results, "args": vars(args) | {"out": str(args.out)}}, indent=2))


if __name__ == "__main__":
    main()
