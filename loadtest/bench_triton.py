"""Latency and throughput of the ``alpr`` model through Triton: 1280x720 synthetic frames, N in flight.

    python loadtest/bench_triton.py --url 127.0.0.1:8001 --concurrency 4 --frames 100

Start Triton first (``python -m services.inference.launcher``). Prints p50/p99 latency and frames/s.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as grpcclient

from services.inference.launcher import triton_client
from services.simulator.render import render_scene


async def bench(url: str, concurrency: int, frames: int, warmup: int, ca: Path | None = None) -> None:
    jpegs = [render_scene(seed).jpeg for seed in range(16)]
    client = triton_client(url, ca)
    latencies: list[float] = []

    async def one(index: int, record: bool) -> None:
        tensor = grpcclient.InferInput("JPEG", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([jpegs[index % len(jpegs)]], dtype=object))
        start = time.perf_counter()
        await client.infer("alpr", [tensor])
        if record:
            latencies.append(time.perf_counter() - start)

    async def worker(indices: range, record: bool) -> None:
        for index in indices:
            await one(index, record)

    try:
        await asyncio.gather(*(worker(range(w, warmup, concurrency), False) for w in range(concurrency)))
        start = time.perf_counter()
        await asyncio.gather(*(worker(range(w, frames, concurrency), True) for w in range(concurrency)))
        elapsed = time.perf_counter() - start
    finally:
        await client.close()
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
    print(
        f"alpr 1280x720 concurrency={concurrency} frames={frames}: "
        f"p50 {p50:.0f} ms  p99 {p99:.0f} ms  {frames / elapsed:.2f} frames/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC host:port")
    parser.add_argument("--ca", type=Path, help="CA of a Triton serving gRPC over TLS (the local stack's: "
                        ".local/data/tls/ca.crt); default: plain text")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(bench(args.url, args.concurrency, args.frames, args.warmup, args.ca))


if __name__ == "__main__":
    main()
