"""Search under concurrent ingest: officers' SearchReads (a mix of exact, partial, fuzzy, attribute and distance
queries, each audited) through a scenario's stages, while plate-reading gateways keep ingesting reads.

Starts its own stack (mongod, Redis, audit, identity, search, ingest) unless --search/--ingest name running ones
(then give --token, an investigator's token, and --admin-token). Pre-loads `options.preload_reads` reads
(loadtest/generate_reads.py), logs an investigator in (password + TOTP), and writes the summary as JSON: search
latency per stage next to the ingest rate achieved meanwhile.

    .venv/bin/python loadtest/search_load.py loadtest/scenarios/search_under_ingest.yaml --out /tmp/search.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_search import confuse, ts
from generate_reads import build_indexes, insert
from ingest_load import GRPC_OPTIONS, reads_request, register_all
from local import AGENCY, login_new_user, start_stack
from runner import OpenLoop, Scenario, Stage, write_summary
from synthetic import COLOURS, Traffic, cameras

from services.common.auth import auth_metadata
from services.common.tls import secure_channel
from sightline.ingest.v1 import ingest_pb2_grpc
from sightline.search.v1 import search_pb2, search_pb2_grpc


def search_request(stub, token: str, plates: list[str], mix: dict[str, float], seed: int):
    rng = random.Random(seed)
    md = auth_metadata(token)
    why = {"purpose": search_pb2.PURPOSE_ROBBERY, "case_number": "LOAD-1"}
    kinds, weights = list(mix), list(mix.values())

    def build(kind: str) -> search_pb2.SearchReadsRequest:
        now = datetime.now(UTC)
        day = {"start_time": ts(now - timedelta(days=rng.randrange(1, 30))), "end_time": None}
        day["end_time"] = ts(day["start_time"].ToDatetime(tzinfo=UTC) + timedelta(days=1))
        plate = rng.choice(plates)
        if kind == "exact":
            return search_pb2.SearchReadsRequest(plate_exact=plate, **why)
        if kind == "partial":
            return search_pb2.SearchReadsRequest(plate_pattern=plate[:3] + "*", page_size=50, **why)
        if kind == "fuzzy":
            return search_pb2.SearchReadsRequest(plate_fuzzy=confuse(plate, rng), **why)
        if kind == "attributes":
            return search_pb2.SearchReadsRequest(
                vehicle=search_pb2.VehicleFilter(colour=rng.choice(COLOURS), type=2), **day, **why
            )
        return search_pb2.SearchReadsRequest(
            near=search_pb2.GeoCircle(center={"latitude": 40.7, "longitude": -74.0}, radius_m=500), **day, **why
        )

    async def request(seq: int) -> int:
        reply = await stub.SearchReads(build(rng.choices(kinds, weights)[0]), metadata=md, timeout=30)
        return len(reply.reads)

    return request


async def run(args: argparse.Namespace, scenario: Scenario, stack) -> dict[str, Any]:
    opts = scenario.options
    traffic = Traffic(seed=7, pool=max(int(opts.get("preload_reads", 200_000)) // 20, 1000))
    plates = [v[0] for v in traffic.vehicles]
    search_addr, ingest_addr, token, admin = args.search, args.ingest, args.token, args.admin_token
    pids = {}
    if stack is not None:
        uri = stack.env["SIGHTLINE_MONGO_URI"]
        n = int(opts.get("preload_reads", 200_000))
        seconds = insert(uri, "sightline", n, AGENCY, 500, 7)
        index_s = await build_indexes(uri, "sightline")
        print(f"pre-loaded {n:,} reads in {seconds:.0f}s, indexes in {index_s:.0f}s", flush=True)
        search_addr, ingest_addr = stack.address("search"), stack.address("ingest")
        token = await login_new_user(uri, stack.address("identity"), ["investigator"])
        admin = await login_new_user(uri, stack.address("identity"), ["agency_admin"])
        pids = {name: proc.popen.pid for name, proc in stack.procs.items()}
    async with (
        secure_channel(search_addr) as sch,
        secure_channel(ingest_addr, options=GRPC_OPTIONS) as ich,
    ):
        search = OpenLoop(
            "search",
            scenario,
            search_request(search_pb2_grpc.SearchServiceStub(sch), token, plates, opts.get("mix", {"exact": 1.0}), 11),
            processes=pids,
        )
        total_s = sum(s.duration_s for s in scenario.stages)
        ingest_rate = float(opts.get("ingest_requests_per_s", 0))
        loops = [search.run()]
        ingest = None
        if ingest_rate > 0:
            cams = cameras(int(opts.get("cameras", 200)), "search-load-cam")
            creds = await register_all(ich, cams, admin)
            background = Scenario(
                name="background-ingest",
                concurrency=16,
                progress_s=10,
                stages=[Stage(name="ingest", duration_s=total_s, rate=ingest_rate)],
            )
            ingest = OpenLoop(
                "ingest",
                background,
                reads_request(ingest_pb2_grpc.IngestServiceStub(ich), cams, creds, opts, "search-load"),
            )
            loops.append(ingest.run())
        await asyncio.gather(*loops)
    summary = search.summary() | {"mix": opts.get("mix")}
    if ingest is not None:
        summary["concurrent_ingest"] = ingest.summary()["stages"]
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--search", help="a running search service (default: start a local stack)")
    parser.add_argument("--ingest", help="the running ingest service, with --search")
    parser.add_argument("--token", default=os.environ.get("SIGHTLINE_TOKEN", ""), help="an investigator's token")
    parser.add_argument("--admin-token", default=os.environ.get("SIGHTLINE_ADMIN_TOKEN", ""))
    parser.add_argument("--rate-scale", type=float, default=1.0)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    scenario = Scenario.load(args.scenario).scaled(args.rate_scale, args.time_scale)
    stack = None if args.search else start_stack(["audit", "identity", "search", "ingest"])
    try:
        summary = asyncio.run(run(args, scenario, stack))
    finally:
        if stack is not None:
            stack.stop()
    write_summary(summary, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
