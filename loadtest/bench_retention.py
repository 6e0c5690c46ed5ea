"""Retention benchmark: how long the verification job takes to shred and verify N stored reads.

    python loadtest/bench_retention.py [--reads 1000000] [--big] [--days 30] [--reads-per-frame 2]
                                       [--held 0.001] [--mongo-uri URI] [--redis-url URL]

Starts a private MongoDB and Redis on free ports (services/devstack) unless URIs are given, inserts N reads
(and one image per frame) of one agency directly, sealed like ingest's, spread over `--days` capture days
that have all passed the agency's retention, with a fraction held by one hold. The job then runs twice:
first with every record still there (the worst case: the TTL monitor deleted nothing, so the job deletes
every unheld read and image itself), then again on a fresh set after the TTL monitor's work is simulated
(only held records left: the usual case, counting and key destruction only). `--big` means 10,000,000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bson.binary import Binary
from pymongo import MongoClient
from tqdm import tqdm

from services.common import sealing
from services.common.data_keys import KeyStore, day_key_id
from services.common.reads import IMAGES, READS, ensure_indexes
from services.common.retention_policy import CapTable, capture_day
from services.common.settings import MongoSettings, RedisSettings
from services.common.storage import mongo_client, mongo_database, redis_client
from services.devstack.stack import LocalStack, Ports
from services.retention.adapters.store import RetentionStore
from services.retention.service_layer.verify import Verifier

AGENCY = "pd-bench"  # one agency per pass: pd-bench-full, pd-bench-ttl
BATCH = 10_000


def insert(db, agency: str, n: int, days: int, per_frame: int, held: float, now: datetime) -> None:
    """N reads (+ images) of `agency` over `days` days ending 3 days ago, all past a 1-day retention."""

    master = os.urandom(32)
    day_keys: dict[str, bytes] = {}
    held_every = int(1 / held) if held > 0 else 0
    hold_id = str(uuid.uuid4())
    reads, images = [], []
    first = now - timedelta(days=days + 3)
    step = timedelta(days=days) / n
    with tqdm(total=n, desc=f"inserting reads ({agency})", unit="read", unit_scale=True) as bar:
        for i in range(n):
            at = first + step * i
            day = capture_day(at)
            if day not in day_keys:
                day_keys[day] = sealing.new_key()
                db["data_keys"].insert_one({"_id": day_key_id(agency, day), "kind": "day", "agency_id": agency,
                                            "day": day, "created_at": now, "destroyed_at": None,
                                            "wrapped": Binary(sealing.wrap(master, day_key_id(agency, day),
                                                                           day_keys[day]))})
            image_ref = f"img-{agency}-{i // per_frame}"
            read = {"_id": f"r-{agency}-{i}", "camera_id": f"cam-{i % 50}", "agency_id": agency,
                    "frame_id": image_ref, "captured_at": at, "stored_at": at,
                    "expire_at": now + timedelta(days=30),  # the TTL monitor must not race the job
                    "plate": f"B{i % 999_983:06d}", "plate_normalized": f"B{i % 999_983:06d}", "confidence": 0.9,
                    "candidates": [], "region": {"country": "US", "state": "VA", "confidence": 0.5},
                    "image_ref": image_ref}
            read = sealing.seal_read(read, day_key_id(agency, day), day_keys[day])
            is_held = held_every and i % held_every == 0
            if is_held:
                read.pop("expire_at")
                read["held_by"] = [hold_id]
            reads.append(read)
            if i % per_frame == 0:
                image = {"_id": image_ref, "agency_id": agency, "content_type": "image/jpeg", "captured_at": at,
                         "key_id": day_key_id(agency, day), "expire_at": now + timedelta(days=30),
                         "data": Binary(sealing.seal_image(image_ref, os.urandom(64), day_keys[day]))}
                if is_held:
                    image.pop("expire_at")
                    image["held_by"] = [hold_id]
                images.append(image)
            if len(reads) >= BATCH:
                db[READS].insert_many(reads, ordered=False)
                if images:
                    db[IMAGES].insert_many(images, ordered=False)
                bar.update(len(reads))
                reads, images = [], []
        if reads:
            db[READS].insert_many(reads, ordered=False)
            if images:
                db[IMAGES].insert_many(images, ordered=False)
            bar.update(len(reads))


async def verify(mongo_uri: str, redis_url: str, now: datetime) -> tuple[float, list[dict]]:
    settings = MongoSettings(mongo_uri=mongo_uri)
    client = mongo_client(settings)
    redis = redis_client(RedisSettings(redis_url=redis_url))
    try:
        store = RetentionStore(mongo_database(client, settings))
        await ensure_indexes(store.db)
        await store.ensure_indexes()
        keys = KeyStore(store.db, os.urandom(32), 0)
        started = time.perf_counter()
        reports = await Verifier(store, keys, redis, CapTable(30, {}), 1).run(now)
        return time.perf_counter() - started, reports
    finally:
        await redis.aclose()
        await client.close()


def summary(label: str, n: int, seconds: float, reports: list[dict]) -> None:
    ok = all(r["ok"] for r in reports)
    deleted = sum(r["reads_deleted_by_job"] for r in reports)
    held = sum(r["reads_held"] for r in reports)
    print(f"{label}: {n:,} reads, {len(reports)} days verified in {seconds:.1f} s "
          f"({n / seconds:,.0f} reads/s); deleted by the job {deleted:,}, held {held:,}, all ok: {ok}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=1_000_000)
    parser.add_argument("--big", action="store_true", help="10,000,000 reads")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--reads-per-frame", type=int, default=2)
    parser.add_argument("--held", type=float, default=0.001, help="fraction of reads under a hold")
    parser.add_argument("--mongo-uri")
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    n = 10_000_000 if args.big else args.reads
    with tempfile.TemporaryDirectory(prefix="bench-retention-") as tmp:
        stack = LocalStack(Path(tmp), Ports.free())
        try:
            if not args.mongo_uri:
                stack.start_mongo()
            if not args.redis_url:
                stack.start_redis()
            mongo_uri = args.mongo_uri or stack.env["SIGHTLINE_MONGO_URI"]
            redis_url = args.redis_url or stack.env["SIGHTLINE_REDIS_URL"]
            with MongoClient(mongo_uri, tz_aware=True) as sync:
                db = sync["sightline"]
                for name in (READS, IMAGES, "data_keys", "retention_reports"):
                    db[name].delete_many({"agency_id": {"$regex": f"^{AGENCY}-"}})
                now = datetime.now(UTC)
                insert(db, f"{AGENCY}-full", n, args.days, args.reads_per_frame, args.held, now)
                seconds, reports = asyncio.run(verify(mongo_uri, redis_url, now))
                summary("worst case (nothing expired by TTL yet)", n, seconds, reports)
                insert(db, f"{AGENCY}-ttl", n, args.days, args.reads_per_frame, args.held, now)
                t0 = time.perf_counter()
                for name in (READS, IMAGES):  # what the TTL monitor would have deleted
                    db[name].delete_many({"agency_id": f"{AGENCY}-ttl", "held_by": {"$exists": False}})
                print(f"(simulated TTL deletion took {time.perf_counter() - t0:.1f} s)")
                seconds, reports = asyncio.run(verify(mongo_uri, redis_url, now))
                summary("usual case (TTL already deleted the unheld)", n, seconds, reports)
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
