"""Ingest's storage adapters and the search service against the real mongod and Redis."""

import asyncio
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis as redis_sync
from pymongo.errors import OperationFailure

from services.common.auth import auth_metadata
from services.common.data_keys import KeyStore, load_master_key
from services.common.reads import READS, ensure_indexes
from services.common.settings import MongoSettings
from services.common.storage import mongo_client, mongo_database, redis_client
from services.devstack.servers import TRANSACTION_LIFETIME_S
from services.ingest.adapters.store import FRAMES, FrameStore, ReadOnlyFrame
from services.ingest.adapters.stream import ReadPublisher
from services.ingest.domain.frames import build_reads
from sightline.common.v1 import read_pb2
from sightline.ingest.v1 import ingest_pb2
from sightline.search.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.e2e


def make_frame(camera: str, frame_id: str, at: datetime) -> ingest_pb2.Frame:
    f = ingest_pb2.Frame(camera_id=camera, frame_id=frame_id)
    f.captured_at.FromDatetime(at)
    return f


def plate_result(*plates: str) -> dict:
    return {"plates": [{"text": p, "normalized": p, "confidence": 0.9, "box": [1, 2, 3, 4]} for p in plates]}


@pytest.fixture
async def store(mongo_uri: str, data_key_settings):
    settings = MongoSettings(mongo_uri=mongo_uri)
    client = mongo_client(settings)
    db = mongo_database(client, settings)
    await ensure_indexes(db)
    yield FrameStore(client, db, KeyStore(db, load_master_key(data_key_settings))), db
    await client.close()


async def store_frame(fs: FrameStore, camera: str, frame_id: str, at: datetime, *plates: str) -> list:
    now = datetime.now(UTC)
    reads = build_reads(make_frame(camera, frame_id, at), "pd-alpha", plate_result(*plates), f"img-{camera}-{frame_id}",
                        now, at + timedelta(days=30))
    result = await fs.store(f"{camera}/{frame_id}", reads, f"img-{camera}-{frame_id}", b"\xff\xd8jpeg", at,
                            at + timedelta(days=30), now, "pd-alpha")
    return reads, result


async def test_frame_is_stored_once_with_reads_and_image(store) -> None:
    fs, db = store
    at = datetime.now(UTC) - timedelta(minutes=1)
    reads, first = await store_frame(fs, "cam-store", "f1", at, "ABC123", "XYZ9")
    assert not first.duplicate and len(first.read_ids) == 2
    _, again = await store_frame(fs, "cam-store", "f1", at, "ABC123", "XYZ9")
    assert again.duplicate and again.read_ids == first.read_ids
    assert await db[READS].count_documents({"frame_id": "f1", "camera_id": "cam-store"}) == 2
    assert await db["images"].count_documents({"_id": "img-cam-store-f1"}) == 1
    assert await fs.existing("cam-store", "f1") == first.read_ids


async def test_ttl_indexes_expire_reads_images_and_frames(store) -> None:
    _, db = store
    for name in (READS, "images", "frames"):
        info = await db[name].index_information()
        assert info["ttl_expire_at"]["expireAfterSeconds"] == 0, name


async def test_outbox_lists_unpublished_frames_until_marked(store) -> None:
    fs, _ = store
    at = datetime.now(UTC) - timedelta(minutes=1)
    await store_frame(fs, "cam-outbox", "f1", at, "OUT1")
    pending = {key for key, _ in await fs.unpublished(datetime.now(UTC) + timedelta(seconds=1))}
    assert "cam-outbox/f1" in pending
    await fs.mark_published("cam-outbox/f1")
    pending = {key for key, _ in await fs.unpublished(datetime.now(UTC) + timedelta(seconds=1))}
    assert "cam-outbox/f1" not in pending


async def test_reads_are_published_on_the_stream(redis_url: str) -> None:
    client = redis_client(type("S", (), {"redis_url": redis_url})())
    read = read_pb2.Read(read_id="r-stream-1", camera_id="cam-1", agency_id="pd-test", plate_normalized="ABC1")
    await ReadPublisher(client, "test:reads", 10_000).publish([read])
    await client.aclose()
    entries = redis_sync.Redis.from_url(redis_url).xrange("test:reads")
    assert read_pb2.Read.FromString(entries[-1][1][b"read"]) == read


WHY = {"purpose": search_pb2.PURPOSE_VEHICLE_THEFT, "case_number": "VT-2026-17"}


@pytest.fixture
async def officer(tokens, audit_addr: str):
    """Search needs a signed-in officer (pd-alpha, the agency of the frames stored here) and the audit service."""
    return auth_metadata(await tokens("officer"))


async def test_search_service_queries_and_pages(store, search_addr: str, channel_factory, officer) -> None:
    fs, _ = store
    base = datetime.now(UTC) - timedelta(hours=1)
    for i in range(5):
        await store_frame(fs, "cam-search", f"s{i}", base + timedelta(minutes=i), f"SRCH{i}0", "OTHER1")
    stub = search_pb2_grpc.SearchServiceStub(channel_factory(search_addr))

    exact = await stub.SearchReads(search_pb2.SearchReadsRequest(plate_exact="srch-30", **WHY), metadata=officer)
    assert [r.plate_normalized for r in exact.reads] == ["SRCH30"]
    assert exact.reads[0].camera_id == "cam-search"

    seen, token = [], ""
    while True:
        page = await stub.SearchReads(search_pb2.SearchReadsRequest(plate_pattern="SRCH?0", page_size=2,
                                                                    page_token=token, **WHY), metadata=officer)
        seen += [r.plate_normalized for r in page.reads]
        if not (token := page.next_page_token):
            break
    assert seen == ["SRCH40", "SRCH30", "SRCH20", "SRCH10", "SRCH00"]  # newest first, no repeats

    by_camera = await stub.SearchReads(search_pb2.SearchReadsRequest(camera_ids=["cam-search"], page_size=100, **WHY),
                                       metadata=officer)
    assert len(by_camera.reads) == 10

    read = await stub.GetRead(search_pb2.GetReadRequest(read_id=exact.reads[0].read_id, **WHY), metadata=officer)
    assert read == exact.reads[0]
    image = await stub.GetImage(search_pb2.GetImageRequest(image_ref=read.image_ref, **WHY), metadata=officer)
    assert image.content_type == "image/jpeg" and image.data.startswith(b"\xff\xd8")


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (search_pb2.SearchReadsRequest(**WHY), grpc.StatusCode.INVALID_ARGUMENT),
        (search_pb2.SearchReadsRequest(plate_pattern=".*", **WHY), grpc.StatusCode.INVALID_ARGUMENT),
        (search_pb2.SearchReadsRequest(plate_exact="A", page_token="nope", **WHY), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_search_service_refuses_malformed_queries(search_addr: str, channel_factory, officer, request_,
                                                       code) -> None:
    stub = search_pb2_grpc.SearchServiceStub(channel_factory(search_addr))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SearchReads(request_, metadata=officer)
    assert err.value.code() == code


async def test_unknown_read_is_not_found(search_addr: str, channel_factory, officer) -> None:
    stub = search_pb2_grpc.SearchServiceStub(channel_factory(search_addr))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetRead(search_pb2.GetReadRequest(read_id="no-such-read", **WHY), metadata=officer)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


ORPHAN_WRITER = """
import sys
import pymongo

client = pymongo.MongoClient(sys.argv[1])
with client.start_session() as session:
    session.start_transaction()
    client[sys.argv[2]][sys.argv[3]].insert_one({"_id": sys.argv[4]}, session=session)
    print("inside", flush=True)
    sys.stdin.read()  # killed here, before it commits
"""


async def test_a_writer_killed_inside_its_transaction_holds_the_frame_only_until_mongod_aborts_it(store,
                                                                                                 mongo_uri) -> None:
    """An ingest killed while storing a batch leaves its transaction open in mongod: the gateway's resend of
    that batch conflicts until mongod aborts the orphan, after the local stack's transactionLifetimeLimitSeconds
    (60 s by mongod's default, which outlasted the fault tests' patience)."""
    fs, db = store
    at = datetime.now(UTC) - timedelta(minutes=1)
    key = f"cam-orphan/{uuid.uuid4().hex[:8]}"
    reads = build_reads(make_frame(*key.split("/"), at), "pd-alpha", plate_result("ORP4AN"), "", at,
                        at + timedelta(days=30))
    writer = await asyncio.create_subprocess_exec(sys.executable, "-c", ORPHAN_WRITER, mongo_uri, db.name, FRAMES,
                                                  key, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert (await writer.stdout.readline()).strip() == b"inside"
    writer.kill()
    await writer.wait()
    frame = ReadOnlyFrame(key, reads, at, at + timedelta(days=30), "pd-alpha")
    with pytest.raises(OperationFailure) as conflict:
        await fs.store_batch([frame], datetime.now(UTC))
    assert conflict.value.has_error_label("TransientTransactionError")

    deadline = time.monotonic() + 3 * TRANSACTION_LIFETIME_S
    while True:
        try:
            stored = await fs.store_batch([frame], datetime.now(UTC))
            break
        except OperationFailure as exc:
            if not exc.has_error_label("TransientTransactionError") or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    assert not stored[0].duplicate and stored[0].read_ids == [r.read_id for r in reads]
    assert await db[READS].count_documents({"_id": {"$in": stored[0].read_ids}}) == 1
