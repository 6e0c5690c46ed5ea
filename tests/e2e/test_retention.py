"""Retention, evidence holds and crypto-shredding through the real retention service, mongod and Redis.

Reads are stored by ingest's own storage adapter (sealed under the agency's day key); holds go through the
retention service's gRPC API with tokens from the identity service; the verification job runs in-process.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis.asyncio as aioredis

from services.common.auth import auth_metadata
from services.common.counters import ReadCounters, reads_key, vehicles_key
from services.common.data_keys import DATA_KEYS, KeyShredded, KeyStore, day_key_id, load_master_key
from services.common.reads import IMAGES, READS, ensure_indexes
from services.common.retention_policy import CapTable, capture_day
from services.common.settings import MongoSettings
from services.common.storage import mongo_client, mongo_database
from services.ingest.adapters.store import FrameStore
from services.ingest.domain.frames import build_reads
from services.retention.adapters.store import RetentionStore
from services.retention.service_layer.verify import Verifier
from sightline.ingest.v1 import ingest_pb2
from sightline.retention.v1 import retention_pb2, retention_pb2_grpc

pytestmark = pytest.mark.e2e
AGENCY = "pd-alpha"  # the agency of the supervisor and admin accounts


@pytest.fixture
async def env(mongo_uri, redis_url, data_key_settings):
    settings = MongoSettings(mongo_uri=mongo_uri)
    client = mongo_client(settings)
    db = mongo_database(client, settings)
    await ensure_indexes(db)
    keys = KeyStore(db, load_master_key(data_key_settings), cache_s=0)
    redis = aioredis.from_url(redis_url)
    store = RetentionStore(db)
    await store.ensure_indexes()
    yield db, FrameStore(client, db, keys), keys, Verifier(store, keys, redis, CapTable(30, {}), 30), redis
    await db["agencies"].update_one({"_id": AGENCY}, {"$unset": {"state": "", "retention_days": ""}})
    await redis.aclose()
    await client.close()


@pytest.fixture
async def retention(retention_addr, channel_factory, accounts):
    return retention_pb2_grpc.RetentionServiceStub(channel_factory(retention_addr))


async def store_frame(fs: FrameStore, agency: str, at: datetime, expire_at: datetime, *plates: str) -> list:
    camera, frame_id = "ret-cam", uuid.uuid4().hex[:12]
    frame = ingest_pb2.Frame(camera_id=camera, frame_id=frame_id)
    frame.captured_at.FromDatetime(at)
    result = {"plates": [{"text": p, "normalized": p, "confidence": 0.9, "candidates": [[p, 0.9]]} for p in plates]}
    image_ref = f"img-ret-{frame_id}"
    reads = build_reads(frame, agency, result, image_ref, datetime.now(UTC), expire_at)
    await fs.store(f"{camera}/{frame_id}", reads, image_ref, b"\xff\xd8 jpeg " + frame_id.encode(), at, expire_at,
                   datetime.now(UTC), agency)
    return reads


async def wait_gone(coll, doc_id: str) -> bool:
    """True once the TTL monitor (every second in the test mongod) deleted the document; False after 20 s."""
    for _ in range(40):
        if await coll.count_documents({"_id": doc_id}) == 0:
            return True
        await asyncio.sleep(0.5)
    return False


def audit_entry(mongo_db, action: str, subject: str) -> dict | None:
    return mongo_db.client["sightline_audit"]["audit_entries"].find_one(
        {"event.action": action, "event.subject": subject})


async def test_stored_reads_and_images_are_sealed_and_counted(env) -> None:
    db, fs, keys, _, redis = env
    agency, at = f"pd-seal-{uuid.uuid4().hex[:6]}", datetime.now(UTC) - timedelta(minutes=5)
    reads = await store_frame(fs, agency, at, at + timedelta(days=1), "SEAL123")
    await ReadCounters(redis, 40).count(agency, capture_day(at), reads, 30)
    raw = await db[READS].find_one({"_id": reads[0].read_id})
    assert "plate" not in raw and "candidates" not in raw and raw["plate_normalized"] == "SEAL123"
    assert raw["key_id"] == day_key_id(agency, capture_day(at))
    image = await db[IMAGES].find_one({"_id": reads[0].image_ref})
    assert b"jpeg" not in bytes(image["data"]) and image["agency_id"] == agency
    opened = (await keys.open_reads([raw]))[0]
    assert opened["plate"] == "SEAL123" and opened["candidates"][0]["text"] == "SEAL123"
    assert (await keys.open_image(image)).startswith(b"\xff\xd8 jpeg")
    assert int(await redis.get(reads_key(agency, capture_day(at)))) == 1
    assert await redis.pfcount(vehicles_key(agency, capture_day(at))) == 1
    assert 39 * 86400 < await redis.ttl(reads_key(agency, capture_day(at))) <= 40 * 86400


async def test_ttl_expires_reads_and_the_ended_day_is_shredded(env) -> None:
    db, fs, keys, verifier, _ = env
    agency = f"pd-ttl-{uuid.uuid4().hex[:6]}"
    await db["agencies"].insert_one({"_id": agency, "name": agency, "retention_days": 1})
    # Captured two days ago under a shortened retention: expires in a second.
    at = datetime.now(UTC) - timedelta(days=2)
    reads = await store_frame(fs, agency, at, datetime.now(UTC) + timedelta(seconds=1), "TTL1", "TTL2")
    backup = await db[IMAGES].find_one({"_id": reads[0].image_ref})  # a raw copy, as in a backup
    backup_read = await db[READS].find_one({"_id": reads[0].read_id})
    assert await wait_gone(db[READS], reads[0].read_id) and await wait_gone(db[IMAGES], reads[0].image_ref)

    reports = [r for r in await verifier.run(datetime.now(UTC)) if r["agency_id"] == agency]
    assert len(reports) == 1
    report = reports[0]
    assert report["day"] == capture_day(at) and report["ok"] and report["key_destroyed"]
    assert report["unheld_reads_remaining"] == 0 and report["reads_held"] == 0
    assert await db["retention_reports"].find_one({"_id": f"{agency}:{capture_day(at)}"}) is not None
    key_doc = await db[DATA_KEYS].find_one({"_id": day_key_id(agency, capture_day(at))})
    assert "wrapped" not in key_doc and key_doc["destroyed_at"] is not None
    # The copy cannot be opened: the key is gone, for a fresh process too.
    fresh = KeyStore(db, keys._master, cache_s=0)
    with pytest.raises(KeyShredded):
        await fresh.open_image(backup)
    assert "plate" not in (await fresh.open_reads([dict(backup_read)]))[0]
    # Ingest refuses to seal anything more under a shredded day.
    with pytest.raises(KeyShredded):
        await store_frame(fs, agency, at, datetime.now(UTC) + timedelta(days=1), "LATE1")


async def test_state_cap_refuses_longer_retention_and_is_audited(retention, tokens, mongo_db, env) -> None:
    metadata = auth_metadata(await tokens("admin"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await retention.SetAgencyRetention(retention_pb2.SetAgencyRetentionRequest(state="VA", retention_days=30),
                                           metadata=metadata)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "21 days" in err.value.details()
    denied = mongo_db.client["sightline_audit"]["audit_entries"].find_one(
        {"event.action": "agency.retention", "event.outcome": "OUTCOME_DENIED"}, sort=[("_id", -1)])
    assert denied is not None and "VA allows at most 21" in denied["event"]["reason"]
    ok = await retention.SetAgencyRetention(retention_pb2.SetAgencyRetentionRequest(state="va", retention_days=21),
                                            metadata=metadata)
    assert (ok.state, ok.retention_days, ok.cap_days) == ("VA", 21, 21) and "2.2-5517" in ok.cap_source
    # An officer may not change it.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await retention.SetAgencyRetention(retention_pb2.SetAgencyRetentionRequest(state="NC", retention_days=90),
                                           metadata=auth_metadata(await tokens("officer")))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_hold_keeps_reads_past_expiry_and_survives_shredding(retention, tokens, mongo_db, env) -> None:
    db, fs, keys, verifier, _ = env
    at = datetime.now(UTC) - timedelta(days=3)
    metadata = auth_metadata(await tokens("supervisor"))  # first: a login may wait for a fresh TOTP step
    reads = await store_frame(fs, AGENCY, at, datetime.now(UTC) + timedelta(seconds=2), "HOLD42")
    read_id, image_ref = reads[0].read_id, reads[0].image_ref
    hold = await retention.PlaceHold(
        retention_pb2.PlaceHoldRequest(
            case_number="2025-0042", justification="homicide evidence", read_ids=retention_pb2.ReadIds(ids=[read_id])
        ),
        metadata=metadata,
    )
    assert hold.status == retention_pb2.HOLD_STATUS_ACTIVE and (hold.read_count, hold.image_count) == (1, 1)
    placed = audit_entry(mongo_db, "hold.place", hold.hold_id)
    assert placed["event"]["case_number"] == "2025-0042" and placed["event"]["outcome"] == "OUTCOME_ALLOWED"
    doc = await db[READS].find_one({"_id": read_id})
    assert "expire_at" not in doc and doc["held_by"] == [hold.hold_id] and doc["key_id"] == f"hold:{hold.hold_id}"
    await asyncio.sleep(4)  # past its expiry, and several TTL monitor passes
    assert await db[READS].count_documents({"_id": read_id}) == 1
    assert await db[IMAGES].count_documents({"_id": image_ref}) == 1

    # The day ends (retention 1 day): the day key goes, the held read stays readable under the hold's key.
    await db["agencies"].update_one({"_id": AGENCY}, {"$set": {"retention_days": 1}})
    report = next(
        r for r in await verifier.run(datetime.now(UTC)) if r["agency_id"] == AGENCY and r["day"] == capture_day(at)
    )
    assert report["ok"] and report["reads_held"] == 1 and report["hold_ids"] == [hold.hold_id]
    opened = (await keys.open_reads([await db[READS].find_one({"_id": read_id})]))[0]
    assert opened["plate"] == "HOLD42"
    assert (await keys.open_image(await db[IMAGES].find_one({"_id": image_ref}))).startswith(b"\xff\xd8")

    # Released: already past its normal expiry, so deleted at once, and the hold's key is destroyed.
    released = await retention.ReleaseHold(
        retention_pb2.ReleaseHoldRequest(hold_id=hold.hold_id, reason="case closed"), metadata=metadata
    )
    assert released.status == retention_pb2.HOLD_STATUS_RELEASED and released.reads_deleted == 1
    assert await db[READS].count_documents({"_id": read_id}) == 0
    assert await db[IMAGES].count_documents({"_id": image_ref}) == 0
    assert "wrapped" not in await db[DATA_KEYS].find_one({"_id": f"hold:{hold.hold_id}"})
    assert audit_entry(mongo_db, "hold.release", hold.hold_id)["event"]["outcome"] == "OUTCOME_ALLOWED"


async def test_release_returns_reads_to_normal_expiry(retention, tokens, env) -> None:
    db, fs, keys, _, _ = env
    at = datetime.now(UTC) - timedelta(hours=1)
    plate = f"WIN{uuid.uuid4().hex[:4].upper()}"
    reads = await store_frame(fs, AGENCY, at, at + timedelta(days=30), plate)
    metadata = auth_metadata(await tokens("investigator"))
    window = retention_pb2.HoldWindow(plate=plate)
    window.start_time.FromDatetime(at - timedelta(minutes=1))
    window.end_time.FromDatetime(at + timedelta(minutes=1))
    hold = await retention.PlaceHold(
        retention_pb2.PlaceHoldRequest(case_number="2025-7", justification="robbery suspect car", window=window),
        metadata=metadata,
    )
    assert hold.read_count == 1
    released = await retention.ReleaseHold(
        retention_pb2.ReleaseHoldRequest(hold_id=hold.hold_id, reason="not needed"), metadata=metadata
    )
    assert (released.reads_restored, released.reads_deleted) == (1, 0)
    doc = await db[READS].find_one({"_id": reads[0].read_id})
    assert "held_by" not in doc and doc["expire_at"] == (at + timedelta(days=30)).replace(
        microsecond=at.microsecond // 1000 * 1000
    )
    assert doc["key_id"] == day_key_id(AGENCY, capture_day(at))
    assert (await keys.open_reads([doc]))[0]["plate"] == plate


async def test_officers_cannot_place_holds_and_the_refusal_is_audited(retention, tokens, mongo_db) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await retention.PlaceHold(
            retention_pb2.PlaceHoldRequest(
                case_number="X-1", justification="just because I can", read_ids=retention_pb2.ReadIds(ids=["nope"])
            ),
            metadata=auth_metadata(await tokens("officer")),
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    entry = mongo_db.client["sightline_audit"]["audit_entries"].find_one(
        {"event.action": "hold.place", "event.outcome": "OUTCOME_DENIED"}, sort=[("_id", -1)]
    )
    assert entry is not None and entry["event"]["case_number"] == "X-1"
