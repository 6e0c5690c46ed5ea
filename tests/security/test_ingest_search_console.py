"""Findings 6, 8, 9, 12 and 13 of the outside attack, replayed against the real ingest, search and console."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image
from pymongo import AsyncMongoClient

from services.common.auth import auth_metadata
from services.common.reads import READS, read_to_document
from services.console.domain.forms import SESSION_COOKIE
from services.ingest.adapters.store import FrameStore
from services.ingest.client import register_camera
from sightline.common.v1 import read_pb2
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from sightline.search.v1 import search_pb2, search_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.security]

WHY = {"purpose": search_pb2.PURPOSE_VEHICLE_THEFT, "case_number": "SEC-2026-12"}


async def test_unknown_cameras_are_never_cached_and_the_cache_is_bounded(mongo_uri: str, mongo_db) -> None:
    """Finding 6: 30,000 SubmitReads with random camera ids grew ingest from 120 to 326 MB: every presented id
    was cached. Ingest's record cache (services/ingest/adapters/store.py) on the real mongod."""
    client = AsyncMongoClient(mongo_uri, tz_aware=True)
    store = FrameStore(client, client["sightline"], keys=None, cache_s=60, cache_size=50)
    try:
        for _ in range(300):
            assert await store.camera(f"ghost-{uuid.uuid4().hex}") is None
        assert store.cached_records == 0
        prefix = f"sec-cache-{uuid.uuid4().hex[:6]}"
        mongo_db["cameras"].insert_many([{"_id": f"{prefix}-{i}", "agency_id": "pd-alpha", "active": True,
                                          "secret_hash": "x"} for i in range(120)])
        for i in range(120):
            assert (await store.camera(f"{prefix}-{i}"))["agency_id"] == "pd-alpha"
        assert store.cached_records == 50
    finally:
        await client.close()


async def test_decompression_bomb_is_invalid_not_retried(ingest_addr: str, tokens, channel_factory) -> None:
    """Finding 9: a 378-byte JPEG whose header claims 65000x65000 got UNAVAILABLE "retry"."""
    channel = channel_factory(ingest_addr)
    camera = ingest_pb2.Camera(site_id="dev-site", camera_id=f"sec-{uuid.uuid4().hex[:8]}", name="bomb", active=True)
    credential = await register_camera(channel, camera, await tokens("admin"))
    buffer = io.BytesIO()
    Image.fromarray(np.full((1, 1, 3), 128, np.uint8)).save(buffer, "JPEG")
    bomb = buffer.getvalue().replace(b"\xff\xc0\x00\x11\x08\x00\x01\x00\x01", b"\xff\xc0\x00\x11\x08\xfd\xe8\xfd\xe8")
    frame = ingest_pb2.Frame(camera_id=camera.camera_id, frame_id="bomb-1", jpeg=bomb)
    frame.captured_at.FromDatetime(datetime.now(UTC) - timedelta(seconds=1))
    ingest = ingest_pb2_grpc.IngestServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await ingest.SubmitFrame(frame, metadata=credential, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "pixels" in refused.value.details()


@pytest.fixture(scope="module")
def latin_read(mongo_db) -> read_pb2.Read:
    read = read_pb2.Read(read_id=f"sec-{uuid.uuid4().hex[:8]}", camera_id="sec-cam", agency_id="pd-alpha",
                         frame_id="sec-f", plate="ABC123", plate_normalized="ABC123", confidence=0.95,
                         image_ref=f"sec-img-{uuid.uuid4().hex[:8]}")
    now = datetime.now(UTC)
    read.captured_at.FromDatetime(now - timedelta(minutes=5))
    read.stored_at.FromDatetime(now - timedelta(minutes=5))
    read.expires_at.FromDatetime(now + timedelta(days=30))
    mongo_db[READS].insert_one(read_to_document(read))
    mongo_db["images"].insert_one({"_id": read.image_ref, "content_type": "image/jpeg", "data": b"\xff\xd8sec"})
    return read


async def test_cyrillic_plate_is_folded_and_junk_is_refused(search_addr, audit_addr, tokens, channel_factory,
                                                            latin_read) -> None:
    """Finding 12: Cyrillic 'АВС123' was searched as '123' (letters silently dropped)."""
    search = search_pb2_grpc.SearchServiceStub(channel_factory(search_addr))
    officer = auth_metadata(await tokens("officer"))
    reply = await search.SearchReads(search_pb2.SearchReadsRequest(plate_exact="АВС123", **WHY), metadata=officer,
                                     timeout=30)
    assert latin_read.read_id in [r.read_id for r in reply.reads]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await search.SearchReads(search_pb2.SearchReadsRequest(plate_exact="ЖЖЖ123", **WHY), metadata=officer,
                                 timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_same_site_image_link_cannot_view_in_an_officers_name(console_url, tokens, mongo_db,
                                                                      latin_read) -> None:
    """Finding 8: `<img src=/images/<ref>?purpose=1&case_number=FRAMED>` on a same-site page was audited as the
    officer's view under a case of the attacker's choosing."""
    async with httpx.AsyncClient(base_url=console_url, cookies={SESSION_COOKIE: await tokens("officer")}) as officer:
        for path in (f"/images/{latin_read.image_ref}", f"/reads/{latin_read.read_id}"):
            reply = await officer.get(f"{path}?purpose={search_pb2.PURPOSE_VEHICLE_THEFT}&case_number=FRAMED")
            assert reply.status_code == 403, path
    framed = mongo_db.client["sightline_audit"]["audit_entries"].count_documents({"event.case_number": "FRAMED"})
    assert framed == 0


async def test_console_ignores_a_forged_host_and_guards_every_response(console_url, tokens) -> None:
    """Finding 13: redirects followed the request's Host header; image responses had no CSP."""
    async with httpx.AsyncClient(base_url=console_url) as client:
        forged = await client.get("/search", headers={"Host": "attacker.example"})
        assert forged.status_code == 400 and "attacker" not in forged.headers.get("location", "")
        for path in ("/", "/search", "/login", "/static/console.css", "/images/x"):
            reply = await client.get(path)
            assert "frame-ancestors 'none'" in reply.headers["content-security-policy"], path
