"""Fill MongoDB with N realistic reads: plates in each state's format from a recurring vehicle pool, cameras
with places and headings, capture times over the last 30 days, vehicle type / colour / make.

Bulk `insert_many` (unordered, w=1: a load fixture, not evidence) with no index but `_id`, then the indexes
ingest and search build; prints the insert rate and the index build time.

    .venv/bin/python loadtest/generate_reads.py --mongo mongodb://127.0.0.1:27017/?replicaSet=rs0
    .venv/bin/python loadtest/generate_reads.py --reads 10000000 --agency pd-alpha
    .venv/bin/python loadtest/generate_reads.py --reads 100000          # starts its own mongod, then stops it
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pymongo import MongoClient
from synthetic import Traffic, cameras
from tqdm import tqdm

from services.common.reads import READS, ensure_indexes
from services.common.storage import mongo_client
from services.devstack.stack import LocalStack, Ports
from services.search.adapters.indexes import ensure_search_indexes

PERIOD = timedelta(days=30)
BATCH = 10_000


def insert(uri: str, db_name: str, n: int, agency: str, n_cameras: int, seed: int) -> float:
    """Insert the reads; returns the seconds taken."""
    traffic = Traffic(seed, pool=max(n // 20, 1000))
    cams = cameras(n_cameras, f"{agency}-cam", seed)
    end = datetime.now(UTC)
    expire = end + timedelta(days=60)
    started = time.perf_counter()
    with MongoClient(uri, w=1) as client:
        coll = client[db_name][READS]
        bar = tqdm(total=n, desc="inserting reads", unit="read", unit_scale=True, mininterval=1)
        for first in range(0, n, BATCH):
            batch = [traffic.read_document(i, agency, traffic.rng.choice(cams), end - PERIOD * traffic.rng.random(),
                                           expire) for i in range(first, min(first + BATCH, n))]
            coll.insert_many(batch, ordered=False)
            bar.update(len(batch))
        bar.close()
    return time.perf_counter() - started


async def build_indexes(uri: str, db_name: str) -> float:
    started = time.perf_counter()
    client = mongo_client(type("S", (), {"mongo_uri": uri, "mongo_timeout_ms": 600_000})())
    try:
        await ensure_indexes(client[db_name])
        await ensure_search_indexes(client[db_name])
    finally:
        await client.close()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo", help="MongoDB URI (default: start a mongod in a temporary folder)")
    parser.add_argument("--db", default="sightline")
    parser.add_argument("--reads", type=int, default=1_000_000)
    parser.add_argument("--agency", default="pd-load")
    parser.add_argument("--cameras", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    stack = None
    uri = args.mongo
    if uri is None:
        stack = LocalStack(Path(tempfile.mkdtemp(prefix="sightline-reads-")), Ports.free())
        stack.start_mongo()
        uri = stack.env["SIGHTLINE_MONGO_URI"]
    try:
        insert_s = insert(uri, args.db, args.reads, args.agency, args.cameras, args.seed)
        index_s = asyncio.run(build_indexes(uri, args.db))
    finally:
        if stack is not None:
            stack.stop()
    print(f"{args.reads:,} reads inserted in {insert_s:.1f}s ({args.reads / insert_s:,.0f} reads/s); "
          f"indexes built in {index_s:.1f}s; total {args.reads / (insert_s + index_s):,.0f} reads/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
