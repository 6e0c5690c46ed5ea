"""Identity, purpose-bound search and the audit trail, through the real services on the real mongod."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from services.common.auth import Principal, auth_metadata
from services.common.reads import READS, read_to_document
from sightline.audit.v1 import audit_pb2, audit_pb2_grpc
from sightline.common.v1 import read_pb2
from sightline.identity.v1 import identity_pb2, identity_pb2_grpc
from sightline.search.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.e2e

HOMICIDE = search_pb2.PURPOSE_HOMICIDE
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
# (read id, agency, camera, minutes after BASE, plate, vehicle type, colour, [lon, lat])
READS_SEEDED = [
    ("acc-a1", "pd-alpha", "acc-cam-1", 0, "ACC0123", "car", "red", [-73.985, 40.758]),
    ("acc-a2", "pd-alpha", "acc-cam-2", 10, "ACC0123", "car", "red", [-73.900, 40.700]),
    ("acc-a3", "pd-alpha", "acc-cam-1", 1, "CMP777", "truck", "white", [-73.985, 40.758]),
    ("acc-a4", "pd-alpha", "acc-cam-2", 11, "CMP777", "truck", "white", [-73.900, 40.700]),
    ("acc-a5", "pd-alpha", "acc-cam-2", 40, "LONE55", "bus", "blue", [-73.900, 40.700]),
    ("acc-a6", "pd-alpha", "acc-cam-1", 2, "", "motorcycle", "black", [-73.985, 40.758]),
    ("acc-b1", "pd-beta", "acc-cam-9", 5, "ACC0123", "car", "red", [-71.060, 42.360]),
]


def stub(ch) -> search_pb2_grpc.SearchServiceStub:
    return search_pb2_grpc.SearchServiceStub(ch)


def at(minutes: float) -> datetime:
    return BASE + timedelta(minutes=minutes)


@pytest.fixture(scope="session")
def seeded_reads(mongo_db) -> None:
    for read_id, agency, camera, minutes, plate, vtype, colour, lonlat in READS_SEEDED:
        read = read_pb2.Read(read_id=read_id, camera_id=camera, agency_id=agency, frame_id=read_id, plate=plate,
                             plate_normalized=plate, confidence=0.9, image_ref=f"img-{read_id}")
        read.captured_at.FromDatetime(at(minutes))
        read.stored_at.FromDatetime(at(minutes))
        read.expires_at.FromDatetime(datetime.now(UTC) + timedelta(days=30))
        read.vehicle.type = getattr(read_pb2, f"VEHICLE_TYPE_{vtype.upper()}")
        read.vehicle.colour = colour
        read.location.longitude, read.location.latitude = lonlat
        mongo_db[READS].replace_one({"_id": read_id}, read_to_document(read), upsert=True)
        image = {"_id": f"img-{read_id}", "content_type": "image/jpeg", "data": b"\xff\xd8" + read_id.encode()}
        mongo_db["images"].replace_one({"_id": image["_id"]}, image, upsert=True)


@pytest.fixture
async def search(search_addr: str, audit_addr: str, channel_factory, seeded_reads):
    return stub(channel_factory(search_addr))


def last_audit(mongo_client_db, **match) -> dict:
    db = mongo_client_db.client["sightline_audit"]
    flt = {f"event.{k}": v for k, v in match.items()}
    return db["audit_entries"].find_one(flt, sort=[("_id", -1)])


# --- identity ----------------------------------------------------------------------------------------------


async def test_login_with_password_and_totp_issues_a_verifiable_token(identity_addr, accounts, channel_factory,
                                                                      mongo_db) -> None:
    ident = identity_pb2_grpc.IdentityServiceStub(channel_factory(identity_addr))
    acc = accounts["login"]
    reply = await ident.Login(identity_pb2.LoginRequest(username=acc.username, password=acc.password,
                                                        totp_code=acc.code()))
    assert reply.access_token.count(".") == 2 and reply.user.user_id == acc.user_id
    assert reply.expires_at.ToDatetime(tzinfo=UTC) <= datetime.now(UTC) + timedelta(minutes=16)
    # The same code cannot be used twice.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ident.Login(identity_pb2.LoginRequest(username=acc.username, password=acc.password,
                                                    totp_code=acc.code()))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    entry = last_audit(mongo_db, action="login", user_id=acc.user_id, outcome="OUTCOME_ALLOWED")
    assert entry is not None and entry["event"]["recorded_by"] == "service:identity"


@pytest.mark.parametrize(("name", "password_ok", "code", "status", "text", "reason"), [
    ("officer", False, True, grpc.StatusCode.UNAUTHENTICATED, "invalid username", "wrong password"),
    # The same answer as a wrong password: the right one is not revealed before the second factor is checked.
    ("officer", True, False, grpc.StatusCode.UNAUTHENTICATED, "invalid username", "no second factor"),
    ("stale", True, True, grpc.StatusCode.PERMISSION_DENIED, "training expired", "training expired"),
])
async def test_login_refusals_are_audited(identity_addr, accounts, channel_factory, mongo_db, name, password_ok, code,
                                          status, text, reason) -> None:
    ident = identity_pb2_grpc.IdentityServiceStub(channel_factory(identity_addr))
    acc = accounts[name]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ident.Login(identity_pb2.LoginRequest(username=acc.username,
                                                    password=acc.password if password_ok else "wrong password!",
                                                    totp_code=acc.code(1) if code else ""))
    assert err.value.code() == status and text in err.value.details()
    entry = last_audit(mongo_db, action="login", user_id=acc.user_id)
    assert entry["event"]["outcome"] == "OUTCOME_DENIED" and entry["event"]["reason"] == reason


async def test_admin_changes_are_audited_and_need_the_admin_role(identity_addr, tokens, accounts, channel_factory,
                                                                 mongo_db) -> None:
    ident = identity_pb2_grpc.IdentityServiceStub(channel_factory(identity_addr))
    admin = auth_metadata(await tokens("admin"))
    created = await ident.CreateUser(identity_pb2.CreateUserRequest(
        username=f"new.{accounts['admin'].username}", initial_password="a long enough password",
        roles=[identity_pb2.ROLE_OFFICER]), metadata=admin)
    assert created.totp_uri.startswith("otpauth://totp/") and created.user.agency_id == "pd-alpha"
    await ident.SetRoles(identity_pb2.SetRolesRequest(user_id=created.user.user_id,
                                                      roles=[identity_pb2.ROLE_INVESTIGATOR]), metadata=admin)
    entry = last_audit(mongo_db, action="user.roles", subject=created.user.user_id)
    assert entry["event"]["user_id"] == accounts["admin"].user_id
    assert entry["event"]["details"]["roles"] == ["investigator"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ident.SetRoles(identity_pb2.SetRolesRequest(user_id=created.user.user_id,
                                                          roles=[identity_pb2.ROLE_AGENCY_ADMIN]),
                             metadata=auth_metadata(await tokens("officer")))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


# --- search refusals ---------------------------------------------------------------------------------------


def exact(plate: str = "ACC0123", purpose: int = HOMICIDE, case: str = "", **kw) -> search_pb2.SearchReadsRequest:
    return search_pb2.SearchReadsRequest(plate_exact=plate, purpose=purpose, case_number=case, **kw)


async def refused(call, request, metadata) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(request, metadata=metadata)
    return err.value


async def test_search_without_token_is_refused(search) -> None:
    err = await refused(search.SearchReads, exact(), None)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "access token is required" in err.details()


async def test_expired_token_is_refused(search, token_issuer, accounts) -> None:
    acc = accounts["officer"]
    principal = Principal(acc.user_id, acc.username, acc.agency_id, frozenset({"officer"}), True,
                          datetime.now(UTC) + timedelta(days=30))
    token, _ = token_issuer.issue(principal, datetime.now(UTC) - timedelta(hours=1), ["pwd", "otp"])
    err = await refused(search.SearchReads, exact(), auth_metadata(token))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "expired" in err.details()


async def test_token_without_second_factor_is_refused(search, token_issuer, accounts) -> None:
    acc = accounts["officer"]
    principal = Principal(acc.user_id, acc.username, acc.agency_id, frozenset({"officer"}), False,
                          datetime.now(UTC) + timedelta(days=30))
    token, _ = token_issuer.issue(principal, datetime.now(UTC), ["pwd"])
    err = await refused(search.SearchReads, exact(), auth_metadata(token))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "two-factor" in err.details()


async def test_forged_token_is_refused(search) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from services.common.auth import TokenIssuer

    forger = TokenIssuer(Ed25519PrivateKey.generate(), timedelta(minutes=5))
    principal = Principal("u", "mallory", "pd-alpha", frozenset({"supervisor"}), True,
                          datetime.now(UTC) + timedelta(days=30))
    err = await refused(search.SearchReads, exact(), auth_metadata(forger.issue(principal, datetime.now(UTC),
                                                                                ["pwd", "otp"])[0]))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_expired_training_is_refused_and_audited(search, token_issuer, accounts, mongo_db) -> None:
    acc = accounts["stale"]
    principal = Principal(acc.user_id, acc.username, acc.agency_id, frozenset({"officer"}), True,
                          datetime.now(UTC) - timedelta(days=1))
    token, _ = token_issuer.issue(principal, datetime.now(UTC), ["pwd", "otp"])
    err = await refused(search.SearchReads, exact(), auth_metadata(token))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "training" in err.details()
    assert last_audit(mongo_db, action="search", user_id=acc.user_id)["event"]["outcome"] == "OUTCOME_DENIED"


async def test_wrong_role_is_refused(search, tokens) -> None:
    err = await refused(search.SearchReads, exact(), auth_metadata(await tokens("auditor")))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "reads:search" in err.details()
    convoy = search_pb2.FindConvoyRequest(plate="ACC0123", purpose=HOMICIDE)
    err = await refused(search.FindConvoy, convoy, auth_metadata(await tokens("officer")))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "reads:convoy" in err.details()


@pytest.mark.parametrize(("purpose", "text"), [
    (search_pb2.PURPOSE_IMMIGRATION_ENFORCEMENT, "immigration enforcement"),
    (search_pb2.PURPOSE_TRAFFIC_ENFORCEMENT, "traffic enforcement"),
    (search_pb2.PURPOSE_NON_LAW_ENFORCEMENT, "outside law enforcement"),
])
async def test_prohibited_purposes_are_refused_and_audited(search, tokens, accounts, mongo_db, purpose,
                                                           text) -> None:
    err = await refused(search.SearchReads, exact(purpose=purpose, case="CASE-1"),
                        auth_metadata(await tokens("officer")))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and text in err.details()
    entry = last_audit(mongo_db, action="search", purpose=search_pb2.Purpose.Name(purpose))
    assert entry["event"]["outcome"] == "OUTCOME_DENIED" and entry["event"]["reason"] == "prohibited purpose"
    assert entry["event"]["user_id"] == accounts["officer"].user_id
    assert entry["event"]["details"]["request"]["plate_exact"] == "ACC0123"


async def test_missing_purpose_is_refused(search, tokens) -> None:
    md = auth_metadata(await tokens("officer"))
    err = await refused(search.SearchReads, exact(purpose=search_pb2.PURPOSE_UNSPECIFIED), md)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "purpose" in err.details()


async def test_partner_without_a_case_is_refused(search, tokens) -> None:
    md = auth_metadata(await tokens("partner"))
    err = await refused(search.SearchReads, exact(include_partner_agencies=True), md)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "criminal investigation" in err.details()
    err = await refused(search.SearchReads, exact(purpose=search_pb2.PURPOSE_MISSING_PERSON, case="CASE-7",
                                                  include_partner_agencies=True), md)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED  # not a criminal investigation
    err = await refused(search.SearchReads, exact(case="CASE-7", include_partner_agencies=True),
                        auth_metadata(await tokens("beta_officer")))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "partner-agency role" in err.details()
    err = await refused(search.SearchReads, exact(case="CASE-7", include_partner_agencies=True),
                        auth_metadata(await tokens("gamma_partner")))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "shares" in err.details()


# --- searches that are allowed -----------------------------------------------------------------------------


async def test_exact_search_sees_own_agency_only_and_is_audited_first(search, tokens, accounts, mongo_db) -> None:
    reply = await search.SearchReads(exact(case="HOM-2026-1"), metadata=auth_metadata(await tokens("officer")))
    assert [r.read_id for r in reply.reads] == ["acc-a2", "acc-a1"]  # newest first, pd-beta's read not shown
    entry = last_audit(mongo_db, action="search", user_id=accounts["officer"].user_id, case_number="HOM-2026-1")
    ev = entry["event"]
    assert ev["outcome"] == "OUTCOME_ALLOWED" and ev["result_count"] == 2 and ev["purpose"] == "PURPOSE_HOMICIDE"
    assert ev["plates"] == ["ACC0123"] and ev["data_agency_ids"] == ["pd-alpha"]
    beta = await search.SearchReads(exact(), metadata=auth_metadata(await tokens("beta_officer")))
    assert [r.read_id for r in beta.reads] == ["acc-b1"]


async def test_partner_with_a_criminal_case_sees_shared_reads_audited_on_both_sides(search, tokens, accounts,
                                                                                  channel_factory, audit_addr,
                                                                                  mongo_db) -> None:
    reply = await search.SearchReads(
        exact(case="ROB-99", purpose=search_pb2.PURPOSE_ROBBERY, include_partner_agencies=True),
        metadata=auth_metadata(await tokens("partner")),
    )
    assert [r.read_id for r in reply.reads] == ["acc-a2", "acc-b1", "acc-a1"]
    entry = last_audit(mongo_db, action="search", user_id=accounts["partner"].user_id, case_number="ROB-99")
    assert entry["event"]["data_agency_ids"] == ["pd-beta", "pd-alpha"]
    # pd-alpha's supervisor sees the partner's search in their own review.
    audit = audit_pb2_grpc.AuditServiceStub(channel_factory(audit_addr))
    seen = await audit.QueryEntries(
        audit_pb2.QueryEntriesRequest(case_number="ROB-99"), metadata=auth_metadata(await tokens("supervisor"))
    )
    assert [e.event.user_id for e in seen.entries] == [accounts["partner"].user_id]


async def test_fuzzy_partial_attribute_and_distance_queries(search, tokens) -> None:
    md = auth_metadata(await tokens("officer"))

    async def ids(**kw) -> list[str]:
        reply = await search.SearchReads(
            search_pb2.SearchReadsRequest(purpose=HOMICIDE, case_number="C-1", **kw), metadata=md
        )
        return sorted(r.read_id for r in reply.reads)

    assert await ids(plate_fuzzy="ACCO1Z3") == ["acc-a1", "acc-a2"]  # O/0, Z/2 confusions
    assert await ids(plate_pattern="CMP*") == ["acc-a3", "acc-a4"]
    window = {"start_time": _ts(at(-1)), "end_time": _ts(at(5))}
    assert await ids(vehicle=search_pb2.VehicleFilter(type=read_pb2.VEHICLE_TYPE_TRUCK, colour="White"), **window) == [
        "acc-a3"
    ]
    assert await ids(vehicle=search_pb2.VehicleFilter(no_plate=True)) == ["acc-a6"]
    near = search_pb2.GeoCircle(center=read_pb2.GeoPoint(latitude=40.758, longitude=-73.985), radius_m=500)
    assert await ids(near=near) == ["acc-a1", "acc-a3", "acc-a6"]


def _ts(dt: datetime):
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


async def test_convoy_finds_the_vehicle_seen_at_two_cameras(search, tokens) -> None:
    req = search_pb2.FindConvoyRequest(
        plate="ACC0123",
        start_time=_ts(at(-30)),
        end_time=_ts(at(60)),
        window_seconds=120,
        min_cameras=2,
        purpose=HOMICIDE,
        case_number="HOM-1",
    )
    reply = await search.FindConvoy(req, metadata=auth_metadata(await tokens("investigator")))
    assert reply.sightings == 2
    assert [(c.plate_normalized, c.camera_count) for c in reply.companions] == [("CMP777", 2)]


async def test_image_views_are_audited(search, tokens, accounts, mongo_db) -> None:
    md = auth_metadata(await tokens("officer"))
    image = await search.GetImage(
        search_pb2.GetImageRequest(image_ref="img-acc-a1", purpose=HOMICIDE, case_number="H-1"), metadata=md
    )
    assert image.data.startswith(b"\xff\xd8")
    entry = last_audit(mongo_db, action="image.view", user_id=accounts["officer"].user_id)
    assert entry["event"]["subject"] == "img-acc-a1"
    err = await refused(search.GetImage, search_pb2.GetImageRequest(image_ref="img-acc-b1", purpose=HOMICIDE), md)
    assert err.code() == grpc.StatusCode.NOT_FOUND  # another agency's image


# --- review, flags and verification ------------------------------------------------------------------------


async def test_review_needs_the_role_and_flags_searches_without_case_numbers(
    search, tokens, accounts, audit_addr, channel_factory
) -> None:
    await search.SearchReads(exact(), metadata=auth_metadata(await tokens("officer")))  # no case number
    audit = audit_pb2_grpc.AuditServiceStub(channel_factory(audit_addr))
    err = await refused(audit.ListFlags, audit_pb2.ListFlagsRequest(), auth_metadata(await tokens("officer")))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    flags = await audit.ListFlags(audit_pb2.ListFlagsRequest(), metadata=auth_metadata(await tokens("auditor")))
    assert any(
        f.kind == audit_pb2.FLAG_KIND_NO_CASE_NUMBER and f.user_id == accounts["officer"].user_id for f in flags.flags
    )
    by_plate = await audit.QueryEntries(
        audit_pb2.QueryEntriesRequest(plate="ACC0123", page_size=2), metadata=auth_metadata(await tokens("auditor"))
    )
    assert len(by_plate.entries) == 2 and by_plate.next_before_sequence > 0
    assert all("ACC0123" in e.event.plates for e in by_plate.entries)


def run_verify(stack, db_name: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **stack.env, "SIGHTLINE_AUDIT_MONGO_DB": db_name}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "audit", "verify"], env=env, capture_output=True, text=True, timeout=120
    )


async def test_audit_verify_passes_then_names_the_edited_entry(stack, search, tokens, mongo_db) -> None:
    await search.SearchReads(exact(case="V-1"), metadata=auth_metadata(await tokens("officer")))
    ok = run_verify(stack, "sightline_audit")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "audit chain intact" in ok.stdout
    # Tamper with a copy of the trail.
    client = mongo_db.client
    for name in ("audit_entries", "audit_checkpoints", "audit_chain"):
        docs = list(client["sightline_audit"][name].find())
        client["audit_tamper"][name].drop()
        client["audit_tamper"][name].insert_many(docs)
    victim = client["audit_tamper"]["audit_entries"].find_one({"event.action": "search"}, sort=[("_id", 1)])
    client["audit_tamper"]["audit_entries"].update_one({"_id": victim["_id"]}, {"$set": {"event.result_count": 0}})
    broken = run_verify(stack, "audit_tamper")
    assert broken.returncode == 1
    assert f"BROKEN at entry {victim['_id']} (edited)" in broken.stdout
