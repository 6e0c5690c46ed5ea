"""The tracker service against real MongoDB and Redis: reads in, one preview and one final pass per vehicle
out (stored in `passes`), and a tracker killed in mid-pass loses and repeats nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_sync

from services.common.settings import RedisSettings
from services.common.storage import redis_client
from services.devstack.servers import wait_for
from services.devstack.stack import LocalStack
from services.ingest.adapters.stream import ReadPublisher
from services.tracker.settings import TrackerSettings
from sightline.common.v1 import pass_pb2, read_pb2

pytestmark = pytest.mark.e2e

READS = RedisSettings().read_stream
PASSES = TrackerSettings().pass_stream
TRACKER_ENV = {"SIGHTLINE_TRACKER__START_ID": "0", "SIGHTLINE_PASS_GAP_S": "1.0", "SIGHTLINE_DRAIN_SECONDS": "0",
               "SIGHTLINE_TRACKER__CLAIM_IDLE_MS": "1500", "SIGHTLINE_TRACKER__CLAIM_INTERVAL_S": "0.5"}


@pytest.fixture(scope="module")
def tracker(stack: LocalStack, mongo_uri: str, redis_url: str) -> LocalStack:
    if "tracker" not in stack.procs:
        stack.start_service("tracker", **TRACKER_ENV)
    return stack


@pytest.fixture
async def publisher(redis_url: str) -> AsyncIterator[ReadPublisher]:
    client = redis_client(RedisSettings(redis_url=redis_url))
    yield ReadPublisher(client, READS, 1_000_000)
    await client.aclose()


def make_read(camera: str, read_id: str, plate: str, conf: float, at: datetime, height: int, x: int = 400,
              expire_days: int = 30) -> read_pb2.Read:
    read = read_pb2.Read(read_id=read_id, camera_id=camera, agency_id="pd-track", frame_id=read_id, plate=plate,
                         plate_normalized=plate, confidence=conf, image_ref=f"img-{read_id}",
                         region=read_pb2.Region(country="US", state="CA"),
                         plate_box=read_pb2.BoundingBox(x=x, y=300, width=height * 4, height=height))
    read.captured_at.FromDatetime(at)
    read.stored_at.FromDatetime(at)
    read.expires_at.FromDatetime(at + timedelta(days=expire_days))
    return read


def passes_of(stack: LocalStack, camera: str) -> list[pass_pb2.VehiclePass]:
    r = redis_sync.Redis.from_url(stack.env["SIGHTLINE_REDIS_URL"])
    out = [pass_pb2.VehiclePass.FromString(f[b"pass"]) for _, f in r.xrange(PASSES)
           if f[b"camera_id"].decode() == camera]
    r.close()
    return out



def finals(stack: LocalStack, camera: str) -> list[pass_pb2.VehiclePass]:
    return [p for p in passes_of(stack, camera) if p.stage == pass_pb2.PASS_STAGE_FINAL]


async def test_one_preview_and_one_final_pass_per_vehicle(tracker: LocalStack, publisher, mongo_db) -> None:
    camera = f"cam-{uuid.uuid4().hex[:6]}"
    mongo_db["cameras"].replace_one({"_id": camera}, {"agency_id": "pd-track", "active": True,
                                                      "bearing_degrees": 90.0}, upsert=True)
    now = datetime.now(UTC)
    noisy = ["ABC1234", "A8C1234", "ABC1234", "ABC1Z34", "ABC1234", "ABC123"]
    reads = [make_read(camera, f"{camera}-a{i}", plate, 0.5 + 0.08 * i, now + timedelta(seconds=0.2 * i), 12 + 3 * i,
                       expire_days=30 + i)
             for i, plate in enumerate(noisy)]
    # A second vehicle in view at the same time, receding, on the other side of the frame.
    reads += [make_read(camera, f"{camera}-b{i}", "XYZ9876", 0.9, now + timedelta(seconds=0.2 * i + 0.1), 30 - 3 * i,
                        x=900)
              for i in range(4)]
    reads.sort(key=lambda r: r.captured_at.ToNanoseconds())
    reads_of_a = [r for r in reads if r.read_id.startswith(f"{camera}-a")]
    for read in reads:
        await publisher.publish([read])
    await wait_for("two final passes", lambda: len(finals(tracker, camera)) == 2)
    by_plate = {p.plate_normalized: p for p in finals(tracker, camera)}
    assert set(by_plate) == {"ABC1234", "XYZ9876"}
    a, b = by_plate["ABC1234"], by_plate["XYZ9876"]
    assert a.frame_count == 6 and list(a.read_ids) == [r.read_id for r in reads_of_a]
    assert a.direction == pass_pb2.TRAVEL_DIRECTION_APPROACHING and a.heading_degrees == 270.0
    assert b.direction == pass_pb2.TRAVEL_DIRECTION_RECEDING and b.heading_degrees == 90.0
    assert a.best_read.read_id == f"{camera}-a4"  # the most confident read of the voted plate
    latest_expiry = max((r.expires_at for r in reads_of_a), key=lambda t: t.ToNanoseconds())
    assert a.expires_at == latest_expiry  # the latest of its reads' (each read here expires a day later)
    previews = [p for p in passes_of(tracker, camera) if p.stage == pass_pb2.PASS_STAGE_PREVIEW]
    assert sorted(p.pass_id for p in previews) == sorted([a.pass_id, b.pass_id])
    assert {p.pass_id: p.best_read.read_id for p in previews}[a.pass_id] == f"{camera}-a4"  # first >= 0.8

    doc = mongo_db["passes"].find_one({"_id": a.pass_id})
    assert doc["plate_normalized"] == "ABC1234" and doc["frame_count"] == 6 and doc["direction"] == "approaching"
    assert doc["image_ref"] == f"img-{camera}-a4" and doc["heading_degrees"] == 270.0
    assert abs(doc["expire_at"] - latest_expiry.ToDatetime(tzinfo=UTC)) < timedelta(milliseconds=1)
    r = redis_sync.Redis.from_url(tracker.env["SIGHTLINE_REDIS_URL"])
    await wait_for("every read acknowledged", lambda: r.xpending(READS, "pass-tracker")["pending"] == 0)


async def test_tracker_killed_mid_pass_rebuilds_the_same_pass(tracker: LocalStack, publisher, mongo_db) -> None:
    camera = f"crash-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    reads = [make_read(camera, f"{camera}-{i}", "CRS4321", 0.6, now + timedelta(seconds=0.1 * i), 20 + i)
             for i in range(8)]
    await publisher.publish(reads[:4])
    r = redis_sync.Redis.from_url(tracker.env["SIGHTLINE_REDIS_URL"])
    await wait_for("the first reads taken", lambda: r.xpending(READS, "pass-tracker")["pending"] >= 4)
    tracker.procs["tracker"].kill()  # SIGKILL with the pass open: its reads stay pending
    tracker.start_service("tracker", **TRACKER_ENV)
    await publisher.publish(reads[4:])
    await wait_for("the final pass", lambda: len(finals(tracker, camera)) >= 1, 30)
    await wait_for("every read acknowledged", lambda: r.xpending(READS, "pass-tracker")["pending"] == 0, 30)
    await asyncio.sleep(1.5)
    (final,) = finals(tracker, camera)
    assert final.frame_count == 8 and sorted(final.read_ids) == sorted(x.read_id for x in reads)
    assert mongo_db["passes"].count_documents({"camera_id": camera}) == 1
