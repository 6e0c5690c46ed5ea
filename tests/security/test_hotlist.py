"""Finding 2 of issue #14 replayed: a supervisor of agency B turns a hot list into a search of agency A's reads.

The attack: B creates a list, adds `XYZ789`, `DGR5162` and the wildcards `X*`, `Q*`; the back-search answers
told which plates A had seen, A's audit trail showed nothing, B's wildcards raised thousands of alerts in A's
officers' feed and inflated A's public hot-list hits. Here A is pd-alpha and B pd-beta (tests/conftest.py), on
the real identity, audit, hotlist and portal servers, with real reads of A stored and real passes published.
"""

from __future__ import annotations

import asyncio
import uuid

import grpc
import httpx
import pytest

from services.common.auth import auth_metadata
from services.common.settings import RedisSettings
from services.common.storage import redis_client
from services.common.tls import secure_channel
from services.hotlist.settings import HotlistSettings
from services.tracker.adapters.codec import single_read_pass
from services.tracker.adapters.stream import PassPublisher
from sightline.audit.v1 import audit_pb2, audit_pb2_grpc
from sightline.common.v1 import pass_pb2
from sightline.hotlist.v1 import hotlist_pb2, hotlist_pb2_grpc
from sightline.identity.v1 import identity_pb2, identity_pb2_grpc
from sightline.search.v1 import search_pb2
from tests.e2e.test_hotlist import make_read, store_read

pytestmark = [pytest.mark.e2e, pytest.mark.security]

A, B = "pd-alpha", "pd-beta"
ATTACK_PLATES = ("XYZ789", "DGR5162")
WHY = {"purpose": search_pb2.PURPOSE_VEHICLE_THEFT, "case_number": "B-2026-0042"}


@pytest.fixture
async def hot(hotlist_addr: str, channel_factory):
    channel = channel_factory(hotlist_addr)
    return hotlist_pb2_grpc.HotlistServiceStub(channel), hotlist_pb2_grpc.AlertServiceStub(channel)


@pytest.fixture
async def a_reads(mongo_uri: str, data_key_settings) -> dict[str, str]:
    """Reads of agency A with the attack's plates and wildcard targets: plate -> read id."""
    plates = (*ATTACK_PLATES, "XAB123", "QRS456")
    # Captured this hour: the retention tests shred older day keys of the same agency.
    return {p: (await store_read(mongo_uri, data_key_settings, p, agency=A, days_ago=0.05)).read_id for p in plates}


@pytest.fixture
async def publish(redis_url: str):
    """Publishes a read of A as the tracker would a vehicle pass."""
    client = redis_client(RedisSettings(redis_url=redis_url))
    publisher = PassPublisher(client, HotlistSettings().pass_stream, 1_000_000)

    async def send(plate: str):
        read = make_read(plate, agency=A, camera=f"cam-sec-{uuid.uuid4().hex[:6]}")
        await publisher.publish([(single_read_pass(read, pass_pb2.PASS_STAGE_FINAL), None)])
        return read

    yield send
    await client.aclose()


async def b_list(hotlists, md, plates: tuple[str, ...] = ATTACK_PLATES) -> tuple[str, list[str]]:
    """B's list with `plates` added; returns its id and entry ids."""
    list_id = f"beta-watch-{uuid.uuid4().hex[:8]}"
    await hotlists.UpsertList(hotlist_pb2.UpsertListRequest(list=hotlist_pb2.HotList(
        list_id=list_id, name="beta watch", source=hotlist_pb2.LIST_SOURCE_AGENCY)), metadata=md)
    ids = []
    for plate in plates:
        added = await hotlists.AddEntry(hotlist_pb2.AddEntryRequest(entry=hotlist_pb2.HotlistEntry(
            list_id=list_id, plate=plate, code="V")), metadata=md)
        ids.append(added.entry.entry_id)
    return list_id, ids


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def own_hits(portal_url: str, agency: str) -> int:
    async with httpx.AsyncClient(base_url=portal_url) as client:
        return (await client.get(f"/api/agencies/{agency}.json")).json()["hotlist_hits"]["total"]


async def review(audit_addr: str, token: str, action: str, channel_factory) -> list[audit_pb2.AuditEvent]:
    """What the agency's own auditor sees of `action` through AuditService.QueryEntries."""
    stub = audit_pb2_grpc.AuditServiceStub(channel_factory(audit_addr))
    reply = await stub.QueryEntries(audit_pb2.QueryEntriesRequest(action=action, page_size=500),
                                    metadata=auth_metadata(token))
    return [e.event for e in reply.entries]


async def set_hotlist_sharing(identity_addr: str, admin_token: str, hotlist_share_with: list[str]) -> None:
    """A's admin sets A's policy (A shares its reads for searches with B throughout, tests/conftest.py)."""
    async with secure_channel(identity_addr) as channel:
        await identity_pb2_grpc.IdentityServiceStub(channel).SetAgencyPolicy(identity_pb2.SetAgencyPolicyRequest(
            share_with=[B], hotlist_share_with=hotlist_share_with), metadata=auth_metadata(admin_token))


async def test_a_list_of_another_agency_neither_searches_nor_alerts_on_reads_not_shared_with_it(
        hot, tokens, a_reads, publish, mongo_db, portal_url, audit_addr, channel_factory) -> None:
    """Finding 2: B's list, back-search and wildcards reach nothing of A when A shares nothing with B for
    hot-list matching (A's read-search sharing with B plays no part)."""
    hotlists, alerts = hot
    b_sup = auth_metadata(await tokens("beta_supervisor"))
    list_id, entry_ids = await b_list(hotlists, b_sup)

    # The wildcards of the attack, and other broad ones, are refused with a reason.
    for plate, reason in (("X*", "at least 4 fixed"), ("Q*", "at least 4 fixed"), ("*789", "may not start"),
                          ("?YZ789", "may not start")):
        err = await refused(hotlists.AddEntry(hotlist_pb2.AddEntryRequest(entry=hotlist_pb2.HotlistEntry(
            list_id=list_id, plate=plate, code="V")), metadata=b_sup))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and reason in err.details()

    async def chunks():
        yield hotlist_pb2.ImportListChunk(list_id=list_id, format=hotlist_pb2.FILE_FORMAT_CSV,
                                          data=b"LIC,LIS,TYP\nXYZ789,CA,V\nX*,CA,V\nQ*,CA,V\n")

    imported = await hotlists.ImportList(chunks(), metadata=b_sup)
    assert imported.accepted == 1 and [(r.line_number, r.reason[:36]) for r in imported.rejected] == [
        (3, "a partial plate needs at least 4 fix"), (4, "a partial plate needs at least 4 fix")]
    list_id, entry_ids = await b_list(hotlists, b_sup)  # the attack's list again, after the import replaced it

    # No back-search answer without a purpose and a case number.
    for request, code in (
            (hotlist_pb2.BackSearchRequest(list_id=list_id), grpc.StatusCode.INVALID_ARGUMENT),
            (hotlist_pb2.BackSearchRequest(list_id=list_id, purpose=search_pb2.PURPOSE_VEHICLE_THEFT),
             grpc.StatusCode.INVALID_ARGUMENT),
            (hotlist_pb2.BackSearchRequest(list_id=list_id, purpose=search_pb2.PURPOSE_NON_LAW_ENFORCEMENT,
                                           case_number="B-1"), grpc.StatusCode.PERMISSION_DENIED)):
        assert (await refused(hotlists.BackSearch(request, metadata=b_sup))).code() == code
    # With them, B's back-search answers nothing about A's reads, one entry at a time or all together.
    for entry_id in entry_ids:
        reply = await hotlists.BackSearch(hotlist_pb2.BackSearchRequest(list_id=list_id, entry_ids=[entry_id], **WHY),
                                          metadata=b_sup)
        assert reply.historical_alerts == 0
    assert (await hotlists.BackSearch(hotlist_pb2.BackSearchRequest(list_id=list_id, **WHY),
                                      metadata=b_sup)).historical_alerts == 0
    searches = [e for e in await review(audit_addr, await tokens("beta_supervisor"), "hotlist.backsearch",
                                        channel_factory) if e.subject == list_id]
    assert {e.outcome for e in searches} == {audit_pb2.OUTCOME_ALLOWED, audit_pb2.OUTCOME_DENIED}
    assert all(list(e.data_agency_ids) == [B] for e in searches if e.outcome == audit_pb2.OUTCOME_ALLOWED)

    # Live: A's reads of those plates raise nothing for B, and A's officers get no alert of B's list; A's own
    # list on the same plate does alert (the matcher saw the passes) and is A's one own hit.
    a_sup = auth_metadata(await tokens("supervisor"))
    a_list = f"alpha-own-{uuid.uuid4().hex[:8]}"
    await hotlists.UpsertList(hotlist_pb2.UpsertListRequest(list=hotlist_pb2.HotList(
        list_id=a_list, name="alpha own", source=hotlist_pb2.LIST_SOURCE_AGENCY)), metadata=a_sup)
    await hotlists.AddEntry(hotlist_pb2.AddEntryRequest(entry=hotlist_pb2.HotlistEntry(
        list_id=a_list, plate="XYZ789", code="V")), metadata=a_sup)
    hits_before = await own_hits(portal_url, A)
    a_officer = auth_metadata(await tokens("officer"))
    a_feed = alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest(), metadata=a_officer)
    b_feed = alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest(list_ids=[list_id]), metadata=b_sup)
    await asyncio.sleep(1.0)  # subscribed, and the matcher holds both lists
    for plate in (*ATTACK_PLATES, "XAB123", "QRS456"):
        await publish(plate)
    alert = await asyncio.wait_for(a_feed.read(), 10)
    assert alert.entry.list_id == a_list and alert.agency_id == A
    await asyncio.sleep(1.5)
    assert mongo_db["alerts"].count_documents({"list_id": list_id}) == 0
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(b_feed.read(), 0.5)
    with pytest.raises(TimeoutError):
        while True:  # whatever else A's feed carries, none of it is B's list's
            assert (await asyncio.wait_for(a_feed.read(), 0.5)).entry.list_id != list_id
    a_feed.cancel()
    b_feed.cancel()
    assert await own_hits(portal_url, A) == hits_before + 1
    # A's audit shows no hit of B's list, since there was none.
    assert not [e for e in await review(audit_addr, await tokens("auditor"), "hotlist.hit", channel_factory)
                if e.details["list_id"] == list_id]


async def test_with_explicit_hotlist_sharing_each_hit_is_audited_for_both_agencies(
        hot, tokens, identity_addr, a_reads, publish, mongo_db, portal_url, audit_addr, channel_factory) -> None:
    """Finding 2: once A shares its reads with B for hot-list matching, B's list matches A's reads; every such
    hit is in both agencies' audit trails, the alert is B's alone, and neither portal counts it as its own."""
    hotlists, alerts = hot
    b_sup = auth_metadata(await tokens("beta_supervisor"))
    list_id, entry_ids = await b_list(hotlists, b_sup, ("DGR5162",))
    before = {agency: await own_hits(portal_url, agency) for agency in (A, B)}
    await set_hotlist_sharing(identity_addr, await tokens("admin"), [B])
    try:
        # Back-search: B finds A's stored read, under its purpose and case number, audited on both sides.
        reply = await hotlists.BackSearch(hotlist_pb2.BackSearchRequest(list_id=list_id, **WHY), metadata=b_sup)
        a_seen = {r["_id"] for r in mongo_db["reads"].find({"agency_id": A, "plate_normalized": "DGR5162"})}
        assert reply.historical_alerts == len(a_seen) and a_reads["DGR5162"] in a_seen
        historical = list(mongo_db["alerts"].find({"list_id": list_id}))
        assert {a["agency_id"] for a in historical} == {B} and {a["read"]["_id"] for a in historical} == a_seen

        # Live: a pass of A's raises B's alert, not A's.
        a_feed = alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest(),
                                        metadata=auth_metadata(await tokens("officer")))
        b_feed = alerts.SubscribeAlerts(hotlist_pb2.SubscribeAlertsRequest(list_ids=[list_id]), metadata=b_sup)
        await asyncio.sleep(1.5)  # subscribed, and the matcher has re-read the sharing
        read = await publish("DGR5162")
        alert = await asyncio.wait_for(b_feed.read(), 10)
        assert (alert.agency_id, alert.read.agency_id, alert.read.read_id, alert.historical) == (
            B, A, read.read_id, False)
        with pytest.raises(TimeoutError):
            while True:
                assert (await asyncio.wait_for(a_feed.read(), 0.5)).entry.list_id != list_id
        a_feed.cancel()
        b_feed.cancel()
        await refused(alerts.GetAlert(hotlist_pb2.GetAlertRequest(alert_id=alert.alert_id),
                                      metadata=auth_metadata(await tokens("officer"))))
    finally:
        await set_hotlist_sharing(identity_addr, await tokens("admin"), [])

    # Each hit (the historical one and the live one): one event for B's side and one for A's, each naming the
    # other agency, seen by A's auditor through the audit service's own review.
    alert_ids = {a["_id"] for a in historical} | {alert.alert_id}
    seen_by_a = [e for e in await review(audit_addr, await tokens("auditor"), "hotlist.hit", channel_factory)
                 if e.subject in alert_ids]
    assert sorted((e.subject, e.details["side"]) for e in seen_by_a) == sorted(
        (i, side) for i in alert_ids for side in ("list", "read"))
    assert all(set(e.data_agency_ids) == {A, B} for e in seen_by_a)
    assert all(e.plates == ["DGR5162"] and e.details["list_agency_id"] == B and e.details["read_agency_id"] == A
               for e in seen_by_a)
    live = [e for e in seen_by_a if e.subject == alert.alert_id]
    assert {e.recorded_by for e in live} == {"service:hotlist"}
    assert {e.agency_id for e in live} == {A, B}
    backsearch = [e for e in await review(audit_addr, await tokens("auditor"), "hotlist.backsearch",
                                          channel_factory) if e.subject == list_id]
    assert [sorted(e.data_agency_ids) for e in backsearch] == [[A, B]]
    assert (backsearch[0].purpose, backsearch[0].case_number) == ("PURPOSE_VEHICLE_THEFT", WHY["case_number"])
    # Neither agency's public figure counts a partner's hit as its own.
    assert {agency: await own_hits(portal_url, agency) for agency in (A, B)} == before
