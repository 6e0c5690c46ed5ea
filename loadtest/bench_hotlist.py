"""Hotlist benchmark: index speed and memory with 1,000,000 entries, read-to-alert latency, crash count.

    python loadtest/bench_hotlist.py [--entries 1000000] [--rate 200] [--seconds 10] [--crash-reads 2000]

Part 1 runs in process. Parts 2 and 3 start a private MongoDB, Redis, audit, hotlist and tracker on free
ports (services/devstack) and drive them through Redis (the read stream) and gRPC (SubscribeAlerts), as a
supervisor of the bench agency with a token signed by the stack's dev key (list changes are audited).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import string
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis as redis_sync
from pymongo import MongoClient

from services.common.auth import auth_metadata
from services.common.settings import RedisSettings
from services.common.storage import redis_client
from services.common.tls import secure_channel
from services.devstack.stack import LocalStack, Ports
from services.devstack.tokens import dev_token
from services.hotlist.domain.matcher import ListIndex
from services.hotlist.domain.model import Entry, ListConfig
from services.hotlist.settings import HotlistSettings
from services.ingest.adapters.stream import ReadPublisher
from sightline.common.v1 import read_pb2
from sightline.hotlist.v1 import hotlist_pb2, hotlist_pb2_grpc

ALNUM = string.ascii_uppercase + string.digits
CONFUSE = {"B": "8", "0": "O", "S": "5", "1": "I", "Z": "2", "G": "6", "D": "0", "8": "B", "5": "S", "O": "0"}
STATE = "CA"
AGENCY = "pd-bench"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_index(n: int, reads: int) -> None:
    rnd = random.Random(7)
    plates = list({"".join(rnd.choices(ALNUM, k=7)) for _ in range(int(n * 1.01))})[:n]
    entries = [Entry(f"e{i}", "big", p, STATE, "V") for i, p in enumerate(plates)]
    now = datetime.now(UTC)
    for label, config in (("exact only", ListConfig(False, 0)), ("confusions + 1 edit", ListConfig(True, 1))):
        gc.collect()
        before = rss_mib()
        t0 = time.perf_counter()
        index = ListIndex("big", 1, config, entries)
        build = time.perf_counter() - t0
        mem = rss_mib() - before
        sample = rnd.sample(plates, reads)
        misses = ["".join(rnd.choices(ALNUM, k=7)) for _ in range(reads)]
        confused = []
        for p in sample:
            i = next((j for j, ch in enumerate(p) if ch in CONFUSE), 0)
            confused.append(p[:i] + CONFUSE.get(p[i], "X") + p[i + 1:])
        dropped = [p[:3] + p[4:] for p in sample]
        print(f"[index] {n:,} entries, {label}: build {build:.1f}s, +{mem:.0f} MiB RSS (index only)")
        for what, batch in (("exact hit", sample), ("miss", misses), ("fuzzy (confusion)", confused),
                            ("fuzzy (missing char)", dropped)):
            t0 = time.perf_counter()
            hits = sum(bool(index.match(p, STATE, now)) for p in batch)
            us = (time.perf_counter() - t0) / len(batch) * 1e6
            print(f"[index]   {what:22s} {us:6.1f} µs/read   ({hits}/{len(batch)} matched)")
        del index
    print(f"[index] entries themselves: process RSS now {rss_mib():.0f} MiB")


def make_read(plate: str, read_id: str) -> read_pb2.Read:
    # Confident reads: the tracker publishes each vehicle pass's preview at once, which the matcher alerts on.
    # One camera per plate: the tracker rightly groups near-identical plates seen back to back on one camera
    # (LAT0001, LAT0002, ...) into one vehicle pass.
    read = read_pb2.Read(read_id=read_id, camera_id=f"cam-{plate}", agency_id=AGENCY, plate_normalized=plate,
                         confidence=0.95, region=read_pb2.Region(country="US", state=STATE), image_ref="img")
    now = datetime.now(UTC)
    read.captured_at.FromDatetime(now)
    read.stored_at.FromDatetime(now)
    read.expires_at.FromDatetime(now + timedelta(days=1))
    return read


def supervisor(stack: LocalStack) -> tuple[tuple[str, str], ...]:
    """Call metadata of a supervisor of the bench agency (manages its lists, receives its alerts)."""
    return auth_metadata(dev_token(stack.root / "data", AGENCY, ["supervisor"]))


async def setup_list(hot, md, list_id: str, plates: list[str]) -> None:
    """Exact matching: with similar synthetic plates, fuzzy tolerance would make one read hit many entries."""
    await hot.UpsertList(hotlist_pb2.UpsertListRequest(list=hotlist_pb2.HotList(
        list_id=list_id, source=hotlist_pb2.LIST_SOURCE_AGENCY, fuzzy_confusions=False, max_edits=0)), metadata=md)
    data = ("LIC,LIS,TYP\n" + "".join(f"{p},{STATE},V\n" for p in plates)).encode()

    async def chunks():
        yield hotlist_pb2.ImportListChunk(list_id=list_id, data=data)

    await hot.ImportList(chunks(), metadata=md)


async def bench_latency(stack: LocalStack, rate: float, seconds: float) -> None:
    channel = secure_channel(stack.address("hotlist"))
    hot, alerts = hotlist_pb2_grpc.HotlistServiceStub(channel), hotlist_pb2_grpc.AlertServiceStub(channel)
    md = supervisor(stack)
    await setup_list(hot, md, "lat", [f"LAT{i:04d}" for i in range(1000)])
    await asyncio.sleep(1.0)
    stream = alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest(list_ids=["lat"]), metadata=md)
    await asyncio.sleep(0.3)
    client = redis_client(RedisSettings(redis_url=stack.env["SIGHTLINE_REDIS_URL"]))
    pub = ReadPublisher(client, RedisSettings().read_stream, 1_000_000)
    sent: dict[str, float] = {}
    latencies: list[float] = []

    async def receive() -> None:
        async for alert in stream:
            latencies.append(time.perf_counter() - sent[alert.read.read_id])

    receiver = asyncio.create_task(receive())
    total = int(rate * seconds)
    start = time.perf_counter()
    for i in range(total):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        read = make_read(f"LAT{i % 1000:04d}", str(uuid.uuid4()))
        sent[read.read_id] = time.perf_counter()
        await pub.publish([read])  # every read is a hit: worst case for the alert path
    await asyncio.sleep(2.0)
    receiver.cancel()
    await client.aclose()
    await channel.close()
    q = statistics.quantiles(latencies, n=100)
    print(f"[latency] {rate:.0f} reads/s for {seconds:.0f}s, every read a hit: {len(latencies)}/{total} alerts "
          f"delivered; read published → alert received p50 {q[49] * 1e3:.1f} ms, p99 {q[98] * 1e3:.1f} ms")


async def plant_crash_reads(stack: LocalStack, reads: int) -> int:
    channel = secure_channel(stack.address("hotlist"))
    hot = hotlist_pb2_grpc.HotlistServiceStub(channel)
    await setup_list(hot, supervisor(stack), "crash", [f"CR{i:05d}" for i in range(reads)])
    await channel.close()
    stack.procs["hotlist"].stop()
    stack.start_service("hotlist", SIGHTLINE_MATCHER__BATCH="5", SIGHTLINE_MATCHER__CLAIM_IDLE_MS="1000",
                        SIGHTLINE_MATCHER__CLAIM_INTERVAL_S="0.5")
    await asyncio.sleep(1.0)
    client = redis_client(RedisSettings(redis_url=stack.env["SIGHTLINE_REDIS_URL"]))
    pub = ReadPublisher(client, RedisSettings().read_stream, 1_000_000)
    batch = [make_read(f"CR{i:05d}" if i % 3 == 0 else f"NO{i:05d}", f"crash-{i}") for i in range(reads)]
    planted = sum(1 for i in range(reads) if i % 3 == 0)
    for i in range(0, reads, 200):
        await pub.publish(batch[i:i + 200])
    await client.aclose()
    return planted


def bench_crash(stack: LocalStack, reads: int) -> None:
    planted = asyncio.run(plant_crash_reads(stack, reads))
    mongo = MongoClient(stack.env["SIGHTLINE_MONGO_URI"])["sightline"]["alerts"]
    while mongo.count_documents({"list_id": "crash"}) < planted // 5:
        time.sleep(0.05)
    stack.procs["hotlist"].kill()
    before = mongo.count_documents({"list_id": "crash"})
    stack.start_service("hotlist", SIGHTLINE_MATCHER__CLAIM_IDLE_MS="1000", SIGHTLINE_MATCHER__CLAIM_INTERVAL_S="0.5")
    r = redis_sync.Redis.from_url(stack.env["SIGHTLINE_REDIS_URL"])
    matcher = HotlistSettings()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (mongo.count_documents({"list_id": "crash"}) < planted
                                           or r.xpending(matcher.pass_stream, matcher.matcher.group)["pending"]):
        time.sleep(0.2)
    time.sleep(1.0)
    ids = [d["read"]["_id"] for d in mongo.find({"list_id": "crash"}, {"read._id": 1})]  # one entry per read
    print(f"[crash] {reads} reads, {planted} planted hits; SIGKILL after {before} alerts; after restart: "
          f"{len(ids)} alerts, {len(set(ids))} distinct reads, duplicates {len(ids) - len(set(ids))}, "
          f"missed {planted - len(set(ids))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--crash-reads", type=int, default=3000)
    args = parser.parse_args()
    bench_index(args.entries, args.lookups)
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(Path(tmp), Ports.free())
        try:
            stack.env.update(SIGHTLINE_DATA_DIR=str(stack.root / "data"),
                             SIGHTLINE_AUDIT_ADDRESS=stack.address("audit"))
            os.environ.update(stack.client_env())  # this process's clients trust the stack's CA
            stack.start_mongo()
            stack.start_redis()
            stack.start_service("audit")
            stack.start_service("hotlist", SIGHTLINE_MATCHER__START_ID="0")
            stack.start_service("tracker")  # reads → vehicle passes → matcher, as in production
            asyncio.run(bench_latency(stack, args.rate, args.seconds))
            bench_crash(stack, args.crash_reads)
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
