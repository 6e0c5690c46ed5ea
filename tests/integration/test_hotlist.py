"""The hotlist service against real MongoDB and Redis: imports, matching, alerts, workflow, crash safety."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis as redis_sync

from services.common.settings import MongoSettings, RedisSettings
from services.common.storage import mongo_client, mongo_database, redis_client
from services.devstack.stack import LocalStack
from services.hotlist.adapters.active_lists import ActiveLists
from services.hotlist.settings import HotlistSettings
from services.ingest.adapters.store import FrameStore
from services.ingest.domain.frames import build_reads
from services.retention.keys import KeyStore, load_master_key
from services.tracker.adapters.codec import single_read_pass
from services.tracker.adapters.stream import PassPublisher
from sightline.common.v1 import pass_pb2, read_pb2
from sightline.hotlist.v1 import hotlist_pb2, hotlist_pb2_grpc
from sightline.ingest.v1 import ingest_pb2

pytestmark = pytest.mark.integration

STREAM = HotlistSettings().pass_stream
PREFIX = "sightline:hotlist"
HOTLIST_ENV = {"SIGHTLINE_MATCHER_START_ID": "0", "SIGHTLINE_MATCHER_CLAIM_IDLE_MS": "1000",
               "SIGHTLINE_MATCHER_CLAIM_INTERVAL_S": "0.5", "SIGHTLINE_DRAIN_SECONDS": "0"}


def start_hotlist(stack: LocalStack, **env: str) -> None:
    stack.start_service("hotlist", **HOTLIST_ENV, **env)


@pytest.fixture(scope="session")
def hotlist_addr(stack: LocalStack, mongo_uri: str, redis_url: str) -> str:
    if "hotlist" not in stack.procs:
        start_hotlist(stack)
    return stack.address("hotlist")


@pytest.fixture
async def stubs(hotlist_addr: str, channel_factory):
    channel = channel_factory(hotlist_addr)
    return hotlist_pb2_grpc.HotlistServiceStub(channel), hotlist_pb2_grpc.AlertServiceStub(channel)


class OnePassPerRead:
    """Publishes each read as the tracker would a vehicle pass seen in that one frame."""

    def __init__(self, publisher: PassPublisher):
        self._publisher = publisher

    async def publish(self, reads: list[read_pb2.Read], stage: int = pass_pb2.PASS_STAGE_FINAL) -> None:
        await self._publisher.publish([(single_read_pass(read, stage), None) for read in reads])


@pytest.fixture
async def publisher(redis_url: str) -> AsyncIterator[OnePassPerRead]:
    client = redis_client(RedisSettings(redis_url=redis_url))
    yield OnePassPerRead(PassPublisher(client, STREAM, 1_000_000))
    await client.aclose()


def make_read(plate: str, state: str = "CA", camera: str = "cam-hot", read_id: str | None = None) -> read_pb2.Read:
    read = read_pb2.Read(read_id=read_id or str(uuid.uuid4()), camera_id=camera, agency_id="pd-hot", plate=plate,
                         plate_normalized=plate, region=read_pb2.Region(country="US", state=state),
                         image_ref=f"img-{plate}")
    now = datetime.now(UTC)
    read.captured_at.FromDatetime(now)
    read.stored_at.FromDatetime(now)
    read.expires_at.FromDatetime(now + timedelta(days=30))
    return read


async def new_list(hot, fuzzy: bool = False, max_edits: int = 0) -> str:
    list_id = f"test-{uuid.uuid4().hex[:8]}"
    await hot.UpsertList(hotlist_pb2.UpsertListRequest(list=hotlist_pb2.HotList(
        list_id=list_id, name="test", source=hotlist_pb2.LIST_SOURCE_AGENCY, owner="pd-hot",
        fuzzy_confusions=fuzzy, max_edits=max_edits)))
    return list_id


async def import_csv(hot, list_id: str, rows: list[str]) -> hotlist_pb2.ImportListResponse:
    data = ("LIC,LIS,TYP,NIC\n" + "\n".join(rows) + "\n").encode()

    async def chunks():
        yield hotlist_pb2.ImportListChunk(list_id=list_id, format=hotlist_pb2.FILE_FORMAT_CSV)
        for i in range(0, len(data), 64 * 1024):
            yield hotlist_pb2.ImportListChunk(data=data[i:i + 64 * 1024])

    return await hot.ImportList(chunks())


async def next_alert(stream, within_s: float = 5.0) -> hotlist_pb2.Alert:
    return await asyncio.wait_for(stream.read(), within_s)


def alerts_for(mongo_db, list_id: str) -> list[dict]:
    return list(mongo_db["alerts"].find({"list_id": list_id}))


async def wait_for(what: str, ok, within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if ok():
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(what)


async def test_import_reports_rejections_and_replaces_the_list_atomically(stubs, redis_url, publisher,
                                                                          mongo_db) -> None:
    hot, _ = stubs
    list_id = await new_list(hot)
    first = await import_csv(hot, list_id, [f"OLD{i:05d},CA,V,N{i}" for i in range(20_000)] + ["BAD!,CA,V,x",
                                                                                              "OK1,ZZ,V,y"])
    assert first.accepted == 20_000 and first.rejected_count == 2
    assert [(r.line_number, r.reason) for r in first.rejected] == [
        (20_002, "plate has characters other than letters, digits, '?' and '*'"), (20_003, "unknown state 'ZZ'")]
    assert first.list.version == 1

    # While version 2 is imported, every snapshot a matcher can take holds one whole version.
    client = redis_client(RedisSettings(redis_url=redis_url))
    active = ActiveLists(client, PREFIX)
    seen: set[tuple[int, int]] = set()
    importing = asyncio.create_task(import_csv(hot, list_id, [f"NEW{i:05d},CA,V,M{i}" for i in range(30_000)]))
    while not importing.done():
        version = (await active.snapshot()).versions[list_id]
        seen.add((version, await client.hlen(f"{PREFIX}:{list_id}:{version}:entries")))
        await asyncio.sleep(0.005)
    second = await importing
    await client.aclose()
    assert second.list.version == 2 and second.accepted == 30_000
    assert seen <= {(1, 20_000), (2, 30_000)}
    assert mongo_db["hotlist_entries"].count_documents({"list_id": list_id}) == 30_000

    await asyncio.sleep(0.5)  # the matcher's index picks up version 2
    await publisher.publish([make_read("OLD00007"), make_read("NEW00007")])
    await wait_for("alert for the new version", lambda: alerts_for(mongo_db, list_id))
    await asyncio.sleep(0.5)
    found = alerts_for(mongo_db, list_id)
    assert [(a["entry"]["plate"], a["list_version"]) for a in found] == [("NEW00007", 2)]


async def test_manual_entry_is_matched_within_a_second_and_pushed(stubs, publisher) -> None:
    hot, alerts = stubs
    list_id = await new_list(hot, fuzzy=True)
    stream = alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest(list_ids=[list_id]))
    other = alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest(camera_ids=["no-such-camera"]))
    await asyncio.sleep(0.3)  # subscriptions reach the server
    added_at = time.monotonic()
    await hot.AddEntry(hotlist_pb2.AddEntryRequest(entry=hotlist_pb2.HotlistEntry(
        list_id=list_id, plate="AMB3R1", state="CA", code="A", reason="Amber alert: child abducted")))
    # Reads keep arriving; the first one after the entry took effect alerts.
    sent: dict[str, float] = {}

    async def feed() -> None:
        while True:
            read = make_read("AMB3R1")
            sent[read.read_id] = time.monotonic()
            await publisher.publish([read])
            await asyncio.sleep(0.05)

    feeder = asyncio.create_task(feed())
    try:
        alert = await next_alert(stream)
    finally:
        feeder.cancel()
    assert sent[alert.read.read_id] - added_at < 1.0
    assert alert.match_kind == hotlist_pb2.MATCH_KIND_EXACT and alert.match_detail == "exact"
    assert alert.entry.code == "A" and alert.image_ref == "img-AMB3R1" and alert.list_version == 0
    assert not alert.historical

    await publisher.publish([make_read("AM83R1")])  # OCR read 8 for B
    fuzzy = await next_alert(stream)
    while fuzzy.read.plate_normalized != "AM83R1":
        fuzzy = await next_alert(stream)
    assert fuzzy.match_kind == hotlist_pb2.MATCH_KIND_FUZZY and fuzzy.match_detail == "fuzzy: 8→B"
    with pytest.raises(TimeoutError):
        await next_alert(other, within_s=0.5)
    stream.cancel()
    other.cancel()


async def test_a_pass_alerts_once_from_its_preview_and_not_again_when_final(stubs, publisher, mongo_db) -> None:
    hot, _ = stubs
    list_id = await new_list(hot)
    await hot.AddEntry(hotlist_pb2.AddEntryRequest(entry=hotlist_pb2.HotlistEntry(
        list_id=list_id, plate="PRV123", state="CA", code="V")))
    await asyncio.sleep(0.5)
    read = make_read("PRV123")
    await publisher.publish([read], pass_pb2.PASS_STAGE_PREVIEW)
    await wait_for("alert", lambda: alerts_for(mongo_db, list_id))
    await publisher.publish([read], pass_pb2.PASS_STAGE_FINAL)
    await asyncio.sleep(1.0)
    (alert,) = alerts_for(mongo_db, list_id)
    assert alert["read"]["pass_id"] == f"pass-{read.read_id}" and alert["read"]["_id"] == read.read_id


async def test_workflow_steps_are_enforced_in_order(stubs, publisher, mongo_db) -> None:
    hot, alerts = stubs
    list_id = await new_list(hot)
    await hot.AddEntry(hotlist_pb2.AddEntryRequest(entry=hotlist_pb2.HotlistEntry(
        list_id=list_id, plate="WRK123", state="CA", code="V")))
    await asyncio.sleep(0.5)
    await publisher.publish([make_read("WRK123")])
    await wait_for("alert", lambda: alerts_for(mongo_db, list_id))
    alert_id = alerts_for(mongo_db, list_id)[0]["_id"]

    async def refused(call, request) -> str:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        return err.value.details()

    reconfirm = hotlist_pb2.RecordReconfirmationRequest(alert_id=alert_id, officer_id="o-1", record_active=True)
    stop = hotlist_pb2.RecordDispositionRequest(alert_id=alert_id, officer_id="o-1",
                                                disposition=hotlist_pb2.DISPOSITION_STOP_MADE)
    assert "verification" in await refused(alerts.RecordReconfirmation, reconfirm)
    assert "verification" in await refused(alerts.RecordDisposition, stop)
    verified = await alerts.RecordVerification(hotlist_pb2.RecordVerificationRequest(
        alert_id=alert_id, officer_id="o-1", plate_matches=True, state_matches=True))
    assert verified.status == hotlist_pb2.ALERT_STATUS_VERIFIED and verified.verification.officer_id == "o-1"
    await refused(alerts.RecordVerification, hotlist_pb2.RecordVerificationRequest(alert_id=alert_id,
                                                                                   officer_id="o-2"))
    assert "reconfirm" in await refused(alerts.RecordDisposition, stop)
    await alerts.RecordReconfirmation(reconfirm)
    assert "allowed" in await refused(alerts.RecordDisposition, hotlist_pb2.RecordDispositionRequest(
        alert_id=alert_id, officer_id="o-1", disposition=hotlist_pb2.DISPOSITION_NO_LONGER_ACTIVE))
    done = await alerts.RecordDisposition(stop)
    assert done.status == hotlist_pb2.ALERT_STATUS_DISPOSED
    assert done.disposition.disposition == hotlist_pb2.DISPOSITION_STOP_MADE
    assert done.verification.at.ToDatetime() <= done.reconfirmation.at.ToDatetime() <= done.disposition.at.ToDatetime()
    await refused(alerts.RecordDisposition, stop)


async def test_new_entry_back_searches_stored_reads(stubs, mongo_uri, data_key_settings) -> None:
    hot, alerts = stubs
    settings = MongoSettings(mongo_uri=mongo_uri)
    client = mongo_client(settings)
    db = mongo_database(client, settings)
    store = FrameStore(client, db, KeyStore(db, load_master_key(data_key_settings)))
    at = datetime.now(UTC) - timedelta(days=2)
    frame = ingest_pb2.Frame(camera_id="cam-back", frame_id=f"b-{uuid.uuid4().hex[:6]}")
    frame.captured_at.FromDatetime(at)
    result = {"plates": [{"text": "BKS8ER", "normalized": "BKS8ER", "confidence": 0.9, "box": [1, 2, 3, 4],
                          "region": {"country": "US", "state": "TX"}}]}
    reads = build_reads(frame, "pd-back", result, "img-back", datetime.now(UTC), at + timedelta(days=30))
    await store.store(f"cam-back/{frame.frame_id}", reads, "img-back", b"\xff\xd8", at, at + timedelta(days=30),
                      datetime.now(UTC), "pd-back")
    await client.close()

    list_id = await new_list(hot, fuzzy=True)
    stream = alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest(list_ids=[list_id]))
    await asyncio.sleep(0.3)
    added = await hot.AddEntry(hotlist_pb2.AddEntryRequest(entry=hotlist_pb2.HotlistEntry(
        list_id=list_id, plate="BKSBER", code="F")))
    assert added.historical_alerts == 1
    alert = await next_alert(stream)
    assert alert.historical and alert.read.read_id == reads[0].read_id
    assert alert.match_detail.startswith("fuzzy: 8→B")
    stream.cancel()


async def test_matcher_killed_mid_stream_loses_and_repeats_nothing(stack, hotlist_addr, stubs, publisher,
                                                                  mongo_db) -> None:
    hot, _ = stubs
    list_id = await new_list(hot, fuzzy=True)
    await import_csv(hot, list_id, [f"CR{i:04d}X,CA,V,C{i}" for i in range(500)])
    hits = {f"CR{i:04d}X" for i in range(0, 500, 2)}
    stack.procs["hotlist"].stop()
    start_hotlist(stack, SIGHTLINE_MATCHER_BATCH="5")
    await asyncio.sleep(1.0)
    reads = [make_read(f"CR{i:04d}X" if i % 4 == 0 else f"MISS{i:05d}", read_id=f"crash-{list_id}-{i}")
             for i in range(1000)]
    for i in range(0, len(reads), 100):
        await publisher.publish(reads[i:i + 100])
    await wait_for("some alerts", lambda: len(alerts_for(mongo_db, list_id)) >= 30)
    stack.procs["hotlist"].kill()  # SIGKILL mid-stream
    raised_before = len(alerts_for(mongo_db, list_id))
    start_hotlist(stack)
    planted = {r.read_id for r in reads if r.plate_normalized in hits}
    await wait_for("every planted hit alerted", lambda: len(alerts_for(mongo_db, list_id)) >= len(planted), 30)
    r = redis_sync.Redis.from_url(stack.env["SIGHTLINE_REDIS_URL"])
    await wait_for("nothing pending", lambda: r.xpending(STREAM, "hotlist-matcher")["pending"] == 0, 30)
    await asyncio.sleep(1.0)
    found = alerts_for(mongo_db, list_id)
    assert raised_before < len(planted)
    assert sorted(a["read"]["_id"] for a in found) == sorted(planted)  # each planted hit once, nothing else
