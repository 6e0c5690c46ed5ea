"""Search latency, audit overhead and audit verification speed on a large read store.

Starts its own mongod, audit, identity and search services on free ports (a LocalStack under a temporary
folder), bulk-inserts N synthetic reads straight into MongoDB (with a planted convoy), logs an investigator
in with password + TOTP, then prints for each query kind the client-side p50/p95 of SearchReads/FindConvoy
(each including its audit write), the latency of one audit append (the overhead every search pays), and
the speed of `sightline audit verify` over a chain of --audit-entries entries.

    python loadtest/bench_search.py                 # 1,000,000 reads
    python loadtest/bench_search.py --reads 10000000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import string
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
from pymongo import MongoClient
from tqdm import tqdm

from services.audit.adapters.store import CHAIN, CHECKPOINTS, ENTRIES
from services.audit.client import AuditClient
from services.audit.domain.chain import GENESIS_HASH, checkpoint_digest, new_entry, sign_checkpoint, truncate_ms
from services.audit.settings import AUDIT_KEY, AuditSettings
from services.cli.audit import verify
from services.common.auth import KeySettings, auth_metadata, load_private_key
from services.common.plates import CONFUSION_CLASSES, skeleton
from services.common.reads import READS, ensure_indexes
from services.common.service_tokens import service_signer
from services.common.storage import mongo_client
from services.common.tls import secure_channel
from services.devstack.stack import LocalStack, Ports
from services.identity.domain.accounts import Credentials, new_user_document
from services.search.adapters.indexes import ensure_search_indexes
from sightline.audit.v1 import audit_pb2
from sightline.identity.v1 import identity_pb2, identity_pb2_grpc
from sightline.search.v1 import search_pb2, search_pb2_grpc

AGENCY = "pd-bench"
CAMERAS = 200
COLOURS = ["white", "black", "silver", "grey", "red", "blue", "green", "yellow"]
TYPES = ["car", "car", "car", "truck", "bus", "motorcycle"]
PERIOD = timedelta(days=30)
CONVOY_PLATE, COMPANION = "CNV0001", "CMP0001"


def random_plate(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_uppercase, k=3)) + "".join(rng.choices(string.digits, k=4))


def read_doc(i: int, plate: str, camera: int, at: datetime, rng: random.Random, expire: datetime) -> dict:
    lon, lat = -74.0 + (camera % 20) * 0.01, 40.6 + (camera // 20) * 0.01
    return {"_id": f"r{i:09d}", "camera_id": f"cam-{camera:03d}", "agency_id": AGENCY, "frame_id": f"f{i}",
            "captured_at": at, "stored_at": at, "expire_at": expire, "plate": plate, "plate_normalized": plate,
            "plate_skeleton": skeleton(plate),
            "confidence": 0.9, "candidates": [], "region": {"country": "US", "state": "NY", "confidence": 0.8},
            "plate_box": [1, 2, 3, 4], "image_ref": f"img-{i}",
            "vehicle": {"type": rng.choice(TYPES), "type_confidence": 0.8, "colour": rng.choice(COLOURS),
                        "colour_confidence": 0.7, "box": None, "view": "rear", "make": ""},
            "location": {"type": "Point", "coordinates": [lon, lat]}}


def seed_reads(uri: str, n: int, end: datetime, rng: random.Random) -> list[str]:
    """N reads over PERIOD ending at `end`: plates from a pool of N/10, plus a convoy of two vehicles."""
    pool = [random_plate(rng) for _ in range(max(n // 10, 100))]
    expire = end + timedelta(days=60)
    with MongoClient(uri, w=1) as client:
        coll = client["sightline"][READS]
        batch: list[dict] = []
        for i in tqdm(range(n), desc="inserting reads", unit="read", unit_scale=True, mininterval=2):
            at = end - PERIOD * rng.random()
            batch.append(read_doc(i, rng.choice(pool), rng.randrange(CAMERAS), at, rng, expire))
            if len(batch) == 10_000:
                coll.insert_many(batch, ordered=False)
                batch = []
        for k in range(6):  # the convoy: both vehicles at 6 cameras a minute apart
            at = end - timedelta(days=2, hours=k)
            batch.append(read_doc(n + 2 * k, CONVOY_PLATE, k * 7, at, rng, expire))
            batch.append(read_doc(n + 2 * k + 1, COMPANION, k * 7, at + timedelta(seconds=40), rng, expire))
        coll.insert_many(batch, ordered=False)
    return pool


async def build_indexes(uri: str) -> float:
    started = time.perf_counter()
    client = mongo_client(type("S", (), {"mongo_uri": uri, "mongo_timeout_ms": 60_000})())
    db = client["sightline"]
    await ensure_indexes(db)
    await ensure_search_indexes(db)
    await client.close()
    return time.perf_counter() - started


def seed_user(uri: str) -> tuple[str, str, str]:
    now = datetime.now(UTC)
    password = "benchmark password 1"
    doc, secret = new_user_document("bench.investigator", AGENCY, "bench", ["investigator"],
                                    Credentials.argon2id(1, 8 * 1024, 1).hash(password),
                                    {"course": "ALPR", "expires_at": now + timedelta(days=30)}, now)
    with MongoClient(uri) as client:
        client["sightline"]["agencies"].insert_one({"_id": AGENCY, "name": "Bench PD", "share_with": [],
                                                   "case_number_required": False})
        client["sightline"]["users"].insert_one(doc)
    return doc["username"], password, secret


def seed_audit_chain(uri: str, data_dir: Path, n: int) -> None:
    """A chain of n entries written directly (as the service would), with a checkpoint every 10,000 and at the end."""
    key = load_private_key(None, KeySettings(data_dir=data_dir), AUDIT_KEY)
    with MongoClient(uri, w=1, tz_aware=True) as client:
        db = client["bench_audit"]
        start = truncate_ms(datetime.now(UTC) - timedelta(days=1))
        prev, batch, cps = GENESIS_HASH, [], [sign_checkpoint(key, 0, GENESIS_HASH, start, GENESIS_HASH)]
        for seq in tqdm(range(1, n + 1), desc="writing audit chain", unit="entry", unit_scale=True, mininterval=2):
            at = start + timedelta(milliseconds=seq)
            event = {"action": "search", "outcome": "OUTCOME_ALLOWED", "user_id": f"u{seq % 50}",
                     "purpose": "PURPOSE_ROBBERY", "case_number": f"C-{seq % 1000}", "plates": [f"P{seq % 5000}"],
                     "result_count": seq % 20, "details": {"request": {"plate_exact": f"P{seq % 5000}"}}}
            entry = new_entry(seq, at, event, prev, at + timedelta(days=400))
            prev = entry["hash"]
            batch.append(entry)
            if seq % 10_000 == 0:
                cps.append(sign_checkpoint(key, seq, prev, at, checkpoint_digest(cps[-1])))
            if len(batch) == 10_000:
                db[ENTRIES].insert_many(batch)
                batch = []
        if batch:
            db[ENTRIES].insert_many(batch)
        if n % 10_000:  # the service signs its head before it stops: so does this
            cps.append(sign_checkpoint(key, n, prev, at, checkpoint_digest(cps[-1])))
        db[CHECKPOINTS].insert_many(cps)
        db[CHAIN].insert_one({"_id": "head", "seq": n, "hash": prev, "at": start + timedelta(milliseconds=n)})


async def timed(label: str, count: int, call: Callable[[int], Awaitable[object]]) -> dict:
    samples = []
    for i in range(count):
        t0 = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    row = {"kind": label, "n": count, "p50_ms": statistics.median(samples),
           "p95_ms": samples[min(len(samples) - 1, int(0.95 * len(samples)))]}
    print(f"{label:<22} n={count:<4} p50 {row['p50_ms']:8.1f} ms   p95 {row['p95_ms']:8.1f} ms", flush=True)
    return row


def ts(dt: datetime):
    from google.protobuf.timestamp_pb2 import Timestamp

    out = Timestamp()
    out.FromDatetime(dt)
    return out


def confuse(plate: str, rng: random.Random) -> str:
    """The plate as OCR might misread it: one character swapped for a look-alike."""
    spots = [i for i, ch in enumerate(plate) if any(ch in g for g in CONFUSION_CLASSES)]
    if not spots:
        return plate
    i = rng.choice(spots)
    group = next(g for g in CONFUSION_CLASSES if plate[i] in g)
    return plate[:i] + rng.choice([c for c in group if c != plate[i]] or [plate[i]]) + plate[i + 1:]


async def run_queries(stack: LocalStack, pool: list[str], end: datetime, creds: tuple[str, str, str],
                      repeats: int, rng: random.Random) -> list[dict]:
    async with secure_channel(stack.address("identity")) as ich, \
            secure_channel(stack.address("search")) as sch:
        username, password, secret = creds
        login = await identity_pb2_grpc.IdentityServiceStub(ich).Login(identity_pb2.LoginRequest(
            username=username, password=password, totp_code=pyotp.TOTP(secret).now()))
        md = auth_metadata(login.access_token)
        search = search_pb2_grpc.SearchServiceStub(sch)
        why = {"purpose": search_pb2.PURPOSE_ROBBERY, "case_number": "BENCH-1"}

        async def reads(**kw) -> object:
            return await search.SearchReads(search_pb2.SearchReadsRequest(**why, **kw), metadata=md)

        rows = [
            await timed("exact plate", repeats, lambda i: reads(plate_exact=rng.choice(pool))),
            await timed("partial plate AB?1*", repeats,
                        lambda i: reads(plate_pattern=(p := rng.choice(pool))[:2] + "?" + p[3] + "*")),
            await timed("fuzzy plate", repeats, lambda i: reads(plate_fuzzy=confuse(rng.choice(pool), rng))),
            await timed("attributes + 1 day", repeats, lambda i: reads(
                vehicle=search_pb2.VehicleFilter(colour=rng.choice(COLOURS), type=2),
                start_time=ts(end - timedelta(days=i % 29 + 1)), end_time=ts(end - timedelta(days=i % 29)))),
            await timed("distance 500 m + 1 day", repeats, lambda i: reads(
                near=search_pb2.GeoCircle(center={"latitude": 40.65, "longitude": -73.95}, radius_m=500),
                start_time=ts(end - timedelta(days=i % 29 + 1)), end_time=ts(end - timedelta(days=i % 29)))),
        ]
        convoy = search_pb2.FindConvoyRequest(plate=CONVOY_PLATE, start_time=ts(end - timedelta(days=7)),
                                              end_time=ts(end), window_seconds=120, min_cameras=3, **why)
        reply = await search.FindConvoy(convoy, metadata=md)
        assert reply.companions and reply.companions[0].plate_normalized == COMPANION, reply
        rows.append(await timed("convoy (7 days)", max(repeats // 4, 10),
                                lambda i: search.FindConvoy(convoy, metadata=md)))
        # As search records it: search's service key, the investigator as the actor.
        audit = AuditClient(stack.address("audit"), 5,
                            service_signer("search", KeySettings(data_dir=Path(stack.env["SIGHTLINE_DATA_DIR"]))))
        event = audit_pb2.AuditEvent(action="search", purpose="PURPOSE_ROBBERY", case_number="BENCH-1",
                                     plates=["ABC1234"], result_count=3)
        rows.append(await timed("audit append (per search)", repeats,
                                lambda i: audit.record(event, login.access_token)))
        await audit.close()
        return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=1_000_000, help="reads to generate (try 10000000)")
    parser.add_argument("--repeats", type=int, default=200, help="queries per kind")
    parser.add_argument("--audit-entries", type=int, default=200_000, help="entries in the chain verified")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        stack = LocalStack(Path(tmp), Ports.free())
        stack.env.update({"SIGHTLINE_DATA_DIR": str(Path(tmp) / "data"),
                          "SIGHTLINE_AUDIT_ADDRESS": stack.address("audit"), "SIGHTLINE_DRAIN_SECONDS": "0"})
        os.environ.update(stack.client_env())  # this process's clients trust the stack's CA
        try:
            stack.start_mongo()
            uri = stack.env["SIGHTLINE_MONGO_URI"]
            end = datetime.now(UTC)
            t0 = time.perf_counter()
            pool = seed_reads(uri, args.reads, end, rng)
            insert_s = time.perf_counter() - t0
            index_s = asyncio.run(build_indexes(uri))
            print(f"{args.reads:,} reads inserted in {insert_s:.0f}s ({args.reads / insert_s:,.0f}/s), "
                  f"indexes built in {index_s:.0f}s", flush=True)
            creds = seed_user(uri)
            stack.start_redis()  # token revocations (and identity's login throttle)
            for name in ("audit", "identity", "search"):
                stack.start_service(name)
            time.sleep(3)  # health checks see the audit service
            asyncio.run(run_queries(stack, pool, end, creds, args.repeats, rng))

            seed_audit_chain(uri, Path(tmp) / "data", args.audit_entries)
            settings = AuditSettings(mongo_uri=uri, audit_mongo_db="bench_audit", data_dir=Path(tmp) / "data")
            t0 = time.perf_counter()
            report = verify(settings)
            verify_s = time.perf_counter() - t0
            assert report.ok, report.problem
            print(f"audit verify: {report.checked:,} entries, {report.checkpoints} checkpoints in {verify_s:.1f}s "
                  f"= {report.checked / verify_s:,.0f} entries/s", flush=True)
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
