"""The hotlist service against real MongoDB and Redis: imports, matching, alerts, workflow, crash safety, and
who may do what (tokens, roles, the owner agency) with every change and workflow step audited first."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis as redis_sync

from services.cli.hotlist import run_import
from services.common.auth import auth_metadata
from services.common.data_keys import KeyStore, load_master_key
from services.common.settings import MongoSettings, RedisSettings
from services.common.storage import mongo_client, mongo_database, redis_client
from services.devstack.servers import wait_for
from services.devstack.stack import LocalStack, Ports
from services.hotlist.adapters.active_lists import ActiveLists
from services.hotlist.settings import HotlistSettings
from services.ingest.adapters.store import FrameStore
from services.ingest.domain.frames import build_reads
from services.tracker.adapters.codec import single_read_pass
from services.tracker.adapters.stream import PassPublisher
from sightline.common.v1 import pass_pb2, read_pb2
from sightline.hotlist.v1 import hotlist_pb2, hotlist_pb2_grpc
from sightline.ingest.v1 import ingest_pb2
from sightline.search.v1 import search_pb2
from tests.conftest import start_hotlist

pytestmark = pytest.mark.e2e

STREAM = HotlistSettings().pass_stream
PREFIX = "sightline:hotlist"
AGENCY = "pd-alpha"  # the agency of the test accounts' supervisor and officer (tests/conftest.py)


@pytest.fixture
async def stubs(hotlist_addr: str, channel_factory):
    channel = channel_factory(hotlist_addr)
    return hotlist_pb2_grpc.HotlistServiceStub(channel), hotlist_pb2_grpc.AlertServiceStub(channel)


@pytest.fixture
async def md(tokens):
    """md(name): the call metadata of that test account (supervisor: manages lists; officer: works alerts)."""

    async def get(name: str = "supervisor") -> tuple[tuple[str, str], ...]:
        return auth_metadata(await tokens(name))

    return get


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


def make_read(plate: str, state: str = "CA", camera: str = "cam-hot", read_id: str | None = None,
              agency: str = AGENCY) -> read_pb2.Read:
    read = read_pb2.Read(read_id=read_id or str(uuid.uuid4()), camera_id=camera, agency_id=agency, plate=plate,
                         plate_normalized=plate, region=read_pb2.Region(country="US", state=state),
                         image_ref=f"img-{plate}")
    now = datetime.now(UTC)
    read.captured_at.FromDatetime(now)
    read.stored_at.FromDatetime(now)
    read.expires_at.FromDatetime(now + timedelta(days=30))
    return read


async def new_list(hot, md, fuzzy: bool = False, max_edits: int = 0) -> str:
    list_id = f"test-{uuid.uuid4().hex[:8]}"
    await hot.UpsertList(hotlist_pb2.UpsertListRequest(list=hotlist_pb2.HotList(
        list_id=list_id, name="test", source=hotlist_pb2.LIST_SOURCE_AGENCY, owner=AGENCY,
        fuzzy_confusions=fuzzy, max_edits=max_edits)), metadata=md)
    return list_id


def add_entry(hot, md, list_id: str, plate: str, **fields: str):
    return hot.AddEntry(hotlist_pb2.AddEntryRequest(entry=hotlist_pb2.HotlistEntry(
        list_id=list_id, plate=plate, **fields)), metadata=md)


async def import_csv(hot, md, list_id: str, rows: list[str]) -> hotlist_pb2.ImportListResponse:
    data = ("LIC,LIS,TYP,NIC\n" + "\n".join(rows) + "\n").encode()

    async def chunks():
        yield hotlist_pb2.ImportListChunk(list_id=list_id, format=hotlist_pb2.FILE_FORMAT_CSV)
        for i in range(0, len(data), 64 * 1024):
            yield hotlist_pb2.ImportListChunk(data=data[i:i + 64 * 1024])

    return await hot.ImportList(chunks(), metadata=md)


async def next_alert(stream, within_s: float = 5.0) -> hotlist_pb2.Alert:
    return await asyncio.wait_for(stream.read(), within_s)


def alerts_for(mongo_db, list_id: str) -> list[dict]:
    return list(mongo_db["alerts"].find({"list_id": list_id}))


def audited(mongo_db, **match: object) -> list[dict]:
    """The audit trail's events matching `match` (event fields), oldest first."""
    flt = {f"event.{k}": v for k, v in match.items()}
    return [e["event"] for e in mongo_db.client["sightline_audit"]["audit_entries"].find(flt, sort=[("_id", 1)])]


async def refused(call, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    return err.value.details() or ""


async def every_list_change_refused(hot, md, list_id: str, new_name: str, plate: str) -> None:
    """Renaming the list, adding and removing an entry and importing a file are each PERMISSION_DENIED."""
    denied = grpc.StatusCode.PERMISSION_DENIED
    await refused(hot.UpsertList(hotlist_pb2.UpsertListRequest(list=hotlist_pb2.HotList(
        list_id=list_id, name=new_name)), metadata=md), denied)
    await refused(add_entry(hot, md, list_id, plate, code="V"), denied)
    await refused(hot.RemoveEntry(hotlist_pb2.RemoveEntryRequest(list_id=list_id, entry_id="e"), metadata=md), denied)
    await refused(import_csv(hot, md, list_id, [f"{plate},CA,V,x"]), denied)



async def test_import_reports_rejections_and_replaces_the_list_atomically(stubs, md, redis_url, publisher,
                                                                          mongo_db) -> None:
    hot, _ = stubs
    sup = await md()
    list_id = await new_list(hot, sup)
    first = await import_csv(hot, sup, list_id, [f"OLD{i:05d},CA,V,N{i}" for i in range(20_000)] + ["BAD!,CA,V,x",
                                                                                              "OK1,ZZ,V,y"])
    assert first.accepted == 20_000 and first.rejected_count == 2
    assert [(r.line_number, r.reason) for r in first.rejected] == [
        (20_002, "plate has characters other than letters, digits, '?' and '*'"), (20_003, "unknown state 'ZZ'")]
    assert first.list.version == 1

    # While version 2 is imported, every snapshot a matcher can take holds one whole version.
    client = redis_client(RedisSettings(redis_url=redis_url))
    active = ActiveLists(client, PREFIX)
    seen: set[tuple[int, int]] = set()
    importing = asyncio.create_task(import_csv(hot, sup, list_id, [f"NEW{i:05d},CA,V,M{i}" for i in range(30_000)]))
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


async def test_cli_import_streams_a_hot_file_and_prints_rejections(stubs, md, hotlist_addr, tokens, tmp_path,
                                                                   monkeypatch, capsys) -> None:
    hot, _ = stubs
    list_id = await new_list(hot, await md())
    hot_file = tmp_path / "ncic.csv"
    rows = "".join(f"CLI{i:04d},TX,V,N{i}\n" for i in range(2_000))
    hot_file.write_text("LIC,LIS,TYP,NIC\n" + rows + "BAD!,TX,V,x\n")
    monkeypatch.setenv("SIGHTLINE_TOKEN", await tokens("supervisor"))
    args = argparse.Namespace(file=hot_file, list_id=list_id, format="csv", address=hotlist_addr, show_rejected=5,
                              purpose=None, case_number="")
    assert await asyncio.to_thread(run_import, args) == 0
    out = capsys.readouterr().out
    assert f"list {list_id} now at version 1: 2000 entries accepted, 1 lines rejected" in out
    assert "line 2002: plate has characters other than letters" in out
    monkeypatch.setenv("SIGHTLINE_TOKEN", await tokens("officer"))
    assert await asyncio.to_thread(run_import, args) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().out


async def test_manual_entry_is_matched_within_a_second_and_pushed(stubs, md, publisher) -> None:
    hot, alerts = stubs
    sup = await md()
    list_id = await new_list(hot, sup, fuzzy=True)
    stream = alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest(list_ids=[list_id]),
                                    metadata=await md("officer"))
    other = alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest(camera_ids=["no-such-camera"]), metadata=sup)
    # Another agency's officer is never sent this agency's alerts.
    beta = alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest(list_ids=[list_id]),
                                  metadata=await md("beta_officer"))
    await asyncio.sleep(0.3)  # subscriptions reach the server
    added_at = time.monotonic()
    await add_entry(hot, sup, list_id, "AMB3R1", state="CA", code="A", reason="Amber alert: child abducted")
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
    for silent in (other, beta):
        with pytest.raises(TimeoutError):
            await next_alert(silent, within_s=0.5)
        silent.cancel()
    stream.cancel()


async def test_a_pass_alerts_once_from_its_preview_and_not_again_when_final(stubs, md, publisher,
                                                                           mongo_db) -> None:
    hot, _ = stubs
    sup = await md()
    list_id = await new_list(hot, sup)
    await add_entry(hot, sup, list_id, "PRV123", state="CA", code="V")
    await asyncio.sleep(0.5)
    read = make_read("PRV123")
    await publisher.publish([read], pass_pb2.PASS_STAGE_PREVIEW)
    await wait_for("alert", lambda: alerts_for(mongo_db, list_id))
    await publisher.publish([read], pass_pb2.PASS_STAGE_FINAL)
    await asyncio.sleep(1.0)
    (alert,) = alerts_for(mongo_db, list_id)
    assert alert["read"]["pass_id"] == f"pass-{read.read_id}" and alert["read"]["_id"] == read.read_id


async def test_workflow_steps_are_enforced_in_order_recorded_as_the_officer_and_audited(
        stubs, md, accounts, publisher, mongo_db) -> None:
    hot, alerts = stubs
    list_id = await new_list(hot, await md())
    await add_entry(hot, await md(), list_id, "WRK123", state="CA", code="V")
    await asyncio.sleep(0.5)
    await publisher.publish([make_read("WRK123")])
    await wait_for("alert", lambda: alerts_for(mongo_db, list_id))
    alert_id = alerts_for(mongo_db, list_id)[0]["_id"]
    officer, me = await md("officer"), accounts["officer"].user_id

    async def out_of_order(call, request) -> str:
        return await refused(call(request, metadata=officer), grpc.StatusCode.FAILED_PRECONDITION)

    reconfirm = hotlist_pb2.RecordReconfirmationRequest(alert_id=alert_id, record_active=True)
    stop = hotlist_pb2.RecordDispositionRequest(alert_id=alert_id, officer_id=me,
                                                disposition=hotlist_pb2.DISPOSITION_STOP_MADE)
    assert "verification" in await out_of_order(alerts.RecordReconfirmation, reconfirm)
    assert "verification" in await out_of_order(alerts.RecordDisposition, stop)
    verify = hotlist_pb2.RecordVerificationRequest(alert_id=alert_id, plate_matches=True, state_matches=True)
    # Another agency does not see the alert; nobody records a step in someone else's name.
    beta = await md("beta_officer")
    await refused(alerts.GetAlert(hotlist_pb2.GetAlertRequest(alert_id=alert_id), metadata=beta),
                  grpc.StatusCode.NOT_FOUND)
    await refused(alerts.RecordVerification(verify, metadata=beta), grpc.StatusCode.NOT_FOUND)
    impostor = hotlist_pb2.RecordVerificationRequest(alert_id=alert_id, officer_id=accounts["supervisor"].user_id,
                                                     plate_matches=True, state_matches=True)
    await refused(alerts.RecordVerification(impostor, metadata=officer), grpc.StatusCode.PERMISSION_DENIED)

    verified = await alerts.RecordVerification(verify, metadata=officer)
    assert verified.status == hotlist_pb2.ALERT_STATUS_VERIFIED and verified.verification.officer_id == me
    await out_of_order(alerts.RecordVerification, verify)
    assert "reconfirm" in await out_of_order(alerts.RecordDisposition, stop)
    await alerts.RecordReconfirmation(reconfirm, metadata=officer)
    assert "allowed" in await out_of_order(alerts.RecordDisposition, hotlist_pb2.RecordDispositionRequest(
        alert_id=alert_id, disposition=hotlist_pb2.DISPOSITION_NO_LONGER_ACTIVE))
    done = await alerts.RecordDisposition(stop, metadata=officer)
    assert done.status == hotlist_pb2.ALERT_STATUS_DISPOSED
    assert done.disposition.disposition == hotlist_pb2.DISPOSITION_STOP_MADE
    assert done.verification.at.ToDatetime() <= done.reconfirmation.at.ToDatetime() <= done.disposition.at.ToDatetime()
    assert {done.reconfirmation.officer_id, done.disposition.officer_id} == {me}
    await out_of_order(alerts.RecordDisposition, stop)
    assert (await alerts.GetAlert(hotlist_pb2.GetAlertRequest(alert_id=alert_id), metadata=officer)).status == \
        hotlist_pb2.ALERT_STATUS_DISPOSED

    steps = audited(mongo_db, subject=alert_id, outcome="OUTCOME_ALLOWED")
    assert [e["action"] for e in steps] == ["alert.verify", "alert.reconfirm", "alert.dispose"]
    assert all(e["user_id"] == me and e["plates"] == ["WRK123"] and e["data_agency_ids"] == [AGENCY]
               for e in steps)
    assert steps[2]["details"]["disposition"]["disposition"] == "stop_made"
    (denied,) = audited(mongo_db, subject=alert_id, outcome="OUTCOME_DENIED")
    assert denied["action"] == "alert.verify" and denied["user_id"] == me


async def store_read(mongo_uri: str, data_key_settings, plate: str, agency: str = AGENCY,
                     days_ago: float = 2) -> read_pb2.Read:
    """A read of `agency` stored `days_ago` (as ingest stores it), for back-searches to find."""
    settings = MongoSettings(mongo_uri=mongo_uri)
    client = mongo_client(settings)
    db = mongo_database(client, settings)
    store = FrameStore(client, db, KeyStore(db, load_master_key(data_key_settings)))
    at = datetime.now(UTC) - timedelta(days=days_ago)
    frame = ingest_pb2.Frame(camera_id=f"cam-back-{agency}", frame_id=f"b-{uuid.uuid4().hex[:8]}")
    frame.captured_at.FromDatetime(at)
    result = {"plates": [{"text": plate, "normalized": plate, "confidence": 0.9, "box": [1, 2, 3, 4],
                          "region": {"country": "US", "state": "TX"}}]}
    image_ref = f"img-{frame.frame_id}"
    reads = build_reads(frame, agency, result, image_ref, datetime.now(UTC), at + timedelta(days=30))
    await store.store(f"{frame.camera_id}/{frame.frame_id}", reads, image_ref, b"\xff\xd8", at,
                      at + timedelta(days=30), datetime.now(UTC), agency)
    await client.close()
    return reads[0]


def back_search(list_id: str, purpose: int = search_pb2.PURPOSE_OTHER_FELONY, case_number: str = "F-2026-1",
                *entry_ids: str) -> hotlist_pb2.BackSearchRequest:
    return hotlist_pb2.BackSearchRequest(list_id=list_id, entry_ids=list(entry_ids), purpose=purpose,
                                         case_number=case_number)


async def test_back_search_is_a_search_bound_to_a_purpose_and_case_and_audited(
        stubs, md, accounts, mongo_uri, data_key_settings, mongo_db) -> None:
    hot, alerts = stubs
    sup = await md()
    read = await store_read(mongo_uri, data_key_settings, "BKS8ER")
    list_id = await new_list(hot, sup, fuzzy=True)
    stream = alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest(list_ids=[list_id]), metadata=sup)
    await asyncio.sleep(0.3)
    added = await add_entry(hot, sup, list_id, "BKSBER", code="F")
    entry_id = added.entry.entry_id
    assert alerts_for(mongo_db, list_id) == []  # adding an entry searches nothing

    invalid, denied = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED
    assert "purpose" in await refused(hot.BackSearch(back_search(list_id, search_pb2.PURPOSE_UNSPECIFIED),
                                                     metadata=sup), invalid)
    assert "immigration" in await refused(hot.BackSearch(back_search(
        list_id, search_pb2.PURPOSE_IMMIGRATION_ENFORCEMENT), metadata=sup), denied)
    assert "case" in await refused(hot.BackSearch(back_search(list_id, case_number=""), metadata=sup), invalid)
    assert "case_number" in await refused(hot.BackSearch(back_search(list_id, case_number="x"), metadata=sup),
                                          invalid)
    await refused(hot.BackSearch(back_search(list_id), metadata=await md("officer")), denied)
    await refused(hot.BackSearch(back_search(list_id, search_pb2.PURPOSE_OTHER_FELONY, "F-1", "no-such-entry"),
                                 metadata=sup), grpc.StatusCode.NOT_FOUND)
    assert alerts_for(mongo_db, list_id) == []

    found = await hot.BackSearch(back_search(list_id, search_pb2.PURPOSE_OTHER_FELONY, "F-2026-1", entry_id),
                                 metadata=sup)
    assert (found.historical_alerts, found.truncated) == (1, False)
    alert = await next_alert(stream)
    assert alert.historical and alert.read.read_id == read.read_id and alert.agency_id == AGENCY
    assert alert.match_detail.startswith("fuzzy: 8→B")
    stream.cancel()
    # Again: the same read is not alerted twice.
    assert (await hot.BackSearch(back_search(list_id), metadata=sup)).historical_alerts == 0

    searches = audited(mongo_db, action="hotlist.backsearch", subject=list_id)
    allowed = [e for e in searches if e["outcome"] == "OUTCOME_ALLOWED"]
    assert [(e["purpose"], e["case_number"], e.get("result_count", 0)) for e in allowed] == [
        ("PURPOSE_OTHER_FELONY", "F-2026-1", 1), ("PURPOSE_OTHER_FELONY", "F-2026-1", 1)]
    assert allowed[0]["plates"] == ["BKSBER"] and allowed[0]["data_agency_ids"] == [AGENCY]
    assert allowed[0]["user_id"] == accounts["supervisor"].user_id
    denials = [e for e in searches if e["outcome"] == "OUTCOME_DENIED"]
    assert len(denials) == 5 and {e["user_id"] for e in denials} == {accounts["supervisor"].user_id,
                                                                     accounts["officer"].user_id}


async def test_matcher_killed_mid_stream_loses_and_repeats_nothing(stack, hotlist_addr, stubs, md, publisher,
                                                                  mongo_db) -> None:
    hot, _ = stubs
    sup = await md()
    list_id = await new_list(hot, sup, fuzzy=True)
    await import_csv(hot, sup, list_id, [f"CR{i:04d}X,CA,V,C{i}" for i in range(500)])
    hits = {f"CR{i:04d}X" for i in range(0, 500, 2)}
    stack.procs["hotlist"].stop()
    start_hotlist(stack, SIGHTLINE_MATCHER__BATCH="5")
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


# --- who may do what ----------------------------------------------------------------------------------------


async def test_every_call_needs_a_token(stubs) -> None:
    hot, alerts = stubs
    list_id = "no-token-list"
    unauthenticated = grpc.StatusCode.UNAUTHENTICATED
    for call in (hot.UpsertList(hotlist_pb2.UpsertListRequest(list=hotlist_pb2.HotList(list_id=list_id))),
                 hot.ListLists(hotlist_pb2.ListListsRequest()),
                 hot.AddEntry(hotlist_pb2.AddEntryRequest(entry=hotlist_pb2.HotlistEntry(list_id=list_id,
                                                                                         plate="NOTOK1"))),
                 hot.RemoveEntry(hotlist_pb2.RemoveEntryRequest(list_id=list_id, entry_id="e")),
                 import_csv(hot, None, list_id, ["NOTOK1,CA,V,x"]),
                 alerts.GetAlert(hotlist_pb2.GetAlertRequest(alert_id="a")),
                 alerts.RecordVerification(hotlist_pb2.RecordVerificationRequest(alert_id="a")),
                 alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest()).read()):
        await refused(call, unauthenticated)
    forged = auth_metadata("not-a-token")
    await refused(hot.ListLists(hotlist_pb2.ListListsRequest(), metadata=forged), unauthenticated)


async def test_officer_may_not_manage_lists_and_the_refusal_is_audited(stubs, md, accounts, mongo_db) -> None:
    hot, _ = stubs
    list_id = await new_list(hot, await md())
    officer = await md("officer")
    await every_list_change_refused(hot, officer, list_id, "renamed", "OFF1CR")
    assert mongo_db["hotlists"].find_one({"_id": list_id})["name"] == "test"
    assert mongo_db["hotlist_entries"].count_documents({"list_id": list_id}) == 0
    refusals = audited(mongo_db, user_id=accounts["officer"].user_id, outcome="OUTCOME_DENIED",
                       action={"$regex": "^hotlist\\."})
    assert {"hotlist.upsert", "hotlist.entry.add", "hotlist.entry.remove", "hotlist.import"} <= \
        {e["action"] for e in refusals}
    # Officers see which lists are in force, though.
    lists = await hot.ListLists(hotlist_pb2.ListListsRequest(), metadata=officer)
    assert list_id in {lst.list_id for lst in lists.lists}


async def test_lists_of_another_agency_cannot_be_changed_and_only_shared_sources_are_seen(
        stubs, md, accounts, mongo_db) -> None:
    hot, _ = stubs
    sup, denied = await md(), grpc.StatusCode.PERMISSION_DENIED
    tag = uuid.uuid4().hex[:6]
    beta_own, beta_ncic = f"beta-own-{tag}", f"beta-ncic-{tag}"
    for list_id, source in ((beta_own, "agency"), (beta_ncic, "ncic")):
        mongo_db["hotlists"].insert_one({"_id": list_id, "name": list_id, "source": source, "owner": "pd-beta",
                                         "version": 0, "entry_count": 0})
    for list_id in (beta_own, beta_ncic):
        await every_list_change_refused(hot, sup, list_id, "taken over", "TAKE1")
        assert mongo_db["hotlists"].find_one({"_id": list_id})["name"] == list_id
    # Nor can a new list be created in another agency's name.
    await refused(hot.UpsertList(hotlist_pb2.UpsertListRequest(list=hotlist_pb2.HotList(
        list_id=f"forged-{tag}", owner="pd-beta")), metadata=sup), denied)
    assert mongo_db["hotlists"].find_one({"_id": f"forged-{tag}"}) is None
    assert {e["subject"] for e in audited(mongo_db, user_id=accounts["supervisor"].user_id,
                                          outcome="OUTCOME_DENIED", action={"$regex": "^hotlist\\."})} >= \
        {beta_own, beta_ncic, f"forged-{tag}"}

    own = await new_list(hot, sup)
    seen = {lst.list_id for lst in (await hot.ListLists(hotlist_pb2.ListListsRequest(), metadata=sup)).lists}
    assert own in seen and beta_ncic in seen and beta_own not in seen
    beta = await md("beta_officer")
    seen_by_beta = {lst.list_id for lst in (await hot.ListLists(hotlist_pb2.ListListsRequest(), metadata=beta)).lists}
    assert beta_own in seen_by_beta and own not in seen_by_beta


async def test_partner_agency_users_get_no_alerts_and_nobody_gets_another_agencys(stubs, md) -> None:
    _, alerts = stubs
    partner, denied = await md("gamma_partner"), grpc.StatusCode.PERMISSION_DENIED
    await refused(alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest(), metadata=partner).read(), denied)
    await refused(alerts.GetAlert(hotlist_pb2.GetAlertRequest(alert_id="a"), metadata=partner), denied)
    await refused(alerts.RecordVerification(hotlist_pb2.RecordVerificationRequest(alert_id="a"), metadata=partner),
                  denied)
    # An officer asking for another agency's alerts is refused, not silently given them.
    await refused(alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest(agency_ids=["pd-beta"]),
                                         metadata=await md("officer")).read(), denied)


async def test_list_changes_are_audited_with_list_version_and_counts(stubs, md, accounts, mongo_db) -> None:
    hot, _ = stubs
    sup = await md()
    list_id = await new_list(hot, sup)
    await import_csv(hot, sup, list_id, ["AUD001,CA,V,N1", "AUD002,CA,V,N2", "BAD!,CA,V,x"])
    added = await add_entry(hot, sup, list_id, "AUD777", state="CA", code="A", reason="Amber alert")
    await hot.RemoveEntry(hotlist_pb2.RemoveEntryRequest(list_id=list_id, entry_id=added.entry.entry_id),
                          metadata=sup)
    events = audited(mongo_db, subject=list_id)
    assert [e["action"] for e in events] == ["hotlist.upsert", "hotlist.import", "hotlist.entry.add",
                                             "hotlist.entry.remove"]
    assert all(e["outcome"] == "OUTCOME_ALLOWED" and e["user_id"] == accounts["supervisor"].user_id
               and e["data_agency_ids"] == [AGENCY] for e in events)
    upsert, imported, add, remove = (e["details"] for e in events)
    assert upsert["created"] is True and upsert["list_id"] == list_id
    assert (imported["from_version"], imported["version"], imported["accepted"], imported["rejected"]) == (0, 1, 2, 1)
    assert "plates" not in events[1] or not events[1]["plates"]  # an import names no plate in the trail
    assert events[2]["plates"] == ["AUD777"] and add["entry_id"] == added.entry.entry_id and add["version"] == 1
    assert remove["entry_id"] == added.entry.entry_id and remove["version"] == 1


@pytest.fixture
def audit_down_stack(stack: LocalStack, mongo_uri: str, redis_url: str, tmp_path):
    """Its own audit (on its own audit database: an audit service is its trail's only writer) and hotlist (API
    only: no matcher competing for the session's passes) on the shared mongod, Redis and keys, so that stopping
    this audit leaves the session's running."""
    own = LocalStack(tmp_path / "stack", Ports.free())
    own.env.update({"SIGHTLINE_MONGO_URI": mongo_uri, "SIGHTLINE_REDIS_URL": redis_url,
                    "SIGHTLINE_DATA_DIR": stack.env["SIGHTLINE_DATA_DIR"], "SIGHTLINE_DRAIN_SECONDS": "0",
                    "SIGHTLINE_AUDIT_ADDRESS": own.address("audit"), "SIGHTLINE_AUDIT_MONGO_DB": "audit_down_hotlist"})
    # Its own audit database, which the audit service's user has no rights on: the administrator's connection.
    own.start_service("audit", SIGHTLINE_MONGO_URI=mongo_uri)
    own.start_service("hotlist", SIGHTLINE_MATCHER_ENABLED="false")
    yield own
    own.stop()


async def test_changes_and_workflow_steps_fail_closed_when_the_audit_service_is_down(
        audit_down_stack: LocalStack, md, channel_factory, mongo_db) -> None:
    channel = channel_factory(audit_down_stack.address("hotlist"))
    hot, alerts = hotlist_pb2_grpc.HotlistServiceStub(channel), hotlist_pb2_grpc.AlertServiceStub(channel)
    sup, officer = await md(), await md("officer")
    list_id = await new_list(hot, sup)  # audit up: done
    searched = await new_list(hot, sup)
    await add_entry(hot, sup, searched, "DWN456", code="V")
    alert_id = f"down-{uuid.uuid4().hex[:8]}"
    read = make_read("DWN123")
    mongo_db["alerts"].insert_one({"_id": alert_id, "read": {"_id": read.read_id, "plate_normalized": "DWN123"},
                                   "agency_id": AGENCY, "camera_id": read.camera_id, "list_id": list_id,
                                   "list_version": 0, "entry": {"entry_id": "e-down"}, "status": "new",
                                   "raised_at": datetime.now(UTC)})
    audit_down_stack.procs["audit"].stop()

    unavailable = grpc.StatusCode.UNAVAILABLE
    assert "audit" in await refused(hot.UpsertList(hotlist_pb2.UpsertListRequest(list=hotlist_pb2.HotList(
        list_id=list_id, name="renamed")), metadata=sup), unavailable)
    await refused(add_entry(hot, sup, list_id, "DWN123", code="V"), unavailable)
    await refused(import_csv(hot, sup, list_id, ["DWN123,CA,V,x"]), unavailable)
    assert "audit" in await refused(hot.BackSearch(back_search(searched), metadata=sup), unavailable)
    await refused(alerts.RecordVerification(hotlist_pb2.RecordVerificationRequest(
        alert_id=alert_id, plate_matches=True, state_matches=True), metadata=officer), unavailable)
    listed = mongo_db["hotlists"].find_one({"_id": list_id})
    assert (listed["name"], listed["version"], listed["entry_count"]) == ("test", 0, 0)
    assert mongo_db["hotlist_entries"].count_documents({"list_id": list_id}) == 0
    assert mongo_db["alerts"].find_one({"_id": alert_id})["status"] == "new"
