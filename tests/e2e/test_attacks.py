"""Hostile input against the running services: NoSQL operator injection, catastrophic partial-plate patterns,
malformed and oversized protobuf messages, forged / expired / wrong-audience / algorithm-swapped tokens, and
TOTP code replay.

Access tokens are short-lived bearer tokens (15 minutes by default), verified offline by every service with the
identity service's Ed25519 public key: there is no server-side session, so "replaying a token after logout" is
not a concept here. What protects a token is its lifetime, its signature (EdDSA only: `alg: none` and an HMAC
signed with the public key are refused), its audience and issuer. A login's second factor cannot be replayed:
a TOTP code is accepted once (the identity service records the last time step used).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import jwt
import pyotp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.auth import AUDIENCE, ISSUER, TOKEN_KEY, KeySettings, auth_metadata, load_private_key
from services.common.reads import READS
from sightline.audit.v1 import audit_pb2, audit_pb2_grpc
from sightline.identity.v1 import identity_pb2, identity_pb2_grpc
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from sightline.search.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.e2e

CAMERA = "atk-cam"
N_READS = 100_000
WHY = {"purpose": search_pb2.PURPOSE_HOMICIDE, "case_number": "ATK-1"}
SEARCH_READS = "/sightline.search.v1.SearchService/SearchReads"


@pytest.fixture(scope="module")
def many_reads(mongo_db):
    """100,000 reads of pd-alpha with the plates a backtracking regex likes least (runs of one letter)."""
    now = datetime.now(UTC)
    plates = ["A" * 12, "A" * 11 + "B", "AB" * 6, "A" * 6, "AAAAAAAAAAAC"]
    docs = [{"_id": f"atk-{i}", "camera_id": CAMERA, "agency_id": "pd-alpha", "frame_id": f"atk-{i}",
             "captured_at": now - timedelta(seconds=i), "stored_at": now, "expire_at": now + timedelta(days=1),
             "plate": plates[i % len(plates)], "plate_normalized": plates[i % len(plates)], "confidence": 0.9,
             "candidates": [], "region": {"country": "US", "state": "NY", "confidence": 0.5}, "image_ref": ""}
            for i in range(N_READS)]
    mongo_db[READS].delete_many({"camera_id": CAMERA})
    mongo_db[READS].insert_many(docs, ordered=False)
    yield plates
    mongo_db[READS].delete_many({"camera_id": CAMERA})


@pytest.fixture
async def search(search_addr, channel_factory):
    return search_pb2_grpc.SearchServiceStub(channel_factory(search_addr))


# --- injection -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["plate_exact", "plate_fuzzy", "plate_pattern"])
@pytest.mark.parametrize("payload", ['{"$ne": null}', '{"$gt": ""}', "$where", "'; return true; //", ".*",
                                     "A|B", "(A+)+", "\\", "[^]"])
async def test_operator_and_regex_injection_through_plates_is_refused(search, tokens, many_reads, field,
                                                                      payload) -> None:
    md = auth_metadata(await tokens("officer"))
    try:
        reply = await search.SearchReads(search_pb2.SearchReadsRequest(**{field: payload}, **WHY), metadata=md)
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        return
    # Anything accepted was cleaned to letters and digits first (e.g. "$where" -> "WHERE"): no read matches.
    assert reply.reads == [] or all(r.plate_normalized.startswith(("NE", "GT", "WHERE", "A", "B"))
                                    for r in reply.reads)
    assert len(reply.reads) < 50  # never "everything"


async def test_operator_injection_through_other_fields_matches_nothing(search, tokens, many_reads) -> None:
    md = auth_metadata(await tokens("officer"))
    reply = await search.SearchReads(
        search_pb2.SearchReadsRequest(camera_ids=['{"$ne": ""}', "$gt", CAMERA + '" || "1'], **WHY), metadata=md
    )
    assert reply.reads == []  # camera ids are matched as plain strings
    for colour in ('{"$ne": null}', "red|blue", ".*"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await search.SearchReads(
                search_pb2.SearchReadsRequest(vehicle=search_pb2.VehicleFilter(colour=colour), **WHY), metadata=md
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await search.SearchReads(
            search_pb2.SearchReadsRequest(camera_ids=[CAMERA], page_token='{"t": {"$gt": 0}}', **WHY), metadata=md
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# Plates are runs of "A": every pattern below backtracks on each one, and those ending in "Z" match none, so the
# whole 100k are scanned.
@pytest.mark.parametrize(
    "pattern",
    [
        "*A*A*A*A*A*A*A*A*A*A*A*B",
        "*A*A*A*A*A*A*A*A*A*A*A*Z",
        "A?A?A?A?A?A?*C",
        "*?*?*?*?*?*?*?*?*?*?*?Z",
        "A*A*A*A*A*A*Z",
    ],
)
async def test_worst_case_partial_plate_is_bounded_over_100k_reads(search, tokens, many_reads, pattern) -> None:
    md = auth_metadata(await tokens("officer"))
    started = time.perf_counter()
    try:
        reply = await search.SearchReads(
            search_pb2.SearchReadsRequest(plate_pattern=pattern, camera_ids=[CAMERA], page_size=10, **WHY),
            metadata=md,
            timeout=30,
        )
        assert all(r.camera_id == CAMERA for r in reply.reads)
    except grpc.aio.AioRpcError as err:  # refused as too long, or cut off by the server's query time limit
        assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.DEADLINE_EXCEEDED)
    elapsed = time.perf_counter() - started
    print(f"\npattern {pattern!r} over {N_READS:,} reads: {elapsed * 1000:.0f} ms")
    assert elapsed < 6.0  # the server's own query limit is 5 s; a backtracking blow-up would take minutes


# --- malformed and oversized messages ------------------------------------------------------------------------


async def _still_serving(channel: grpc.aio.Channel) -> None:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    "raw", [b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x08" * 7, b"\x12\x05ab", bytes(range(256))]
)
async def test_bytes_that_are_not_a_message_are_refused_and_the_server_goes_on(
    search_addr, channel_factory, raw
) -> None:
    channel = channel_factory(search_addr)
    call = channel.unary_unary(SEARCH_READS, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(raw, timeout=10)
    # grpc-python answers a request it cannot decode with UNKNOWN ("Error parsing message"), before any
    # handler runs; what matters is that nothing crashes and the server goes on serving.
    assert err.value.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL)
    assert "pars" in err.value.details() or err.value.code() != grpc.StatusCode.UNKNOWN
    await _still_serving(channel)


async def test_message_over_the_size_limit_is_refused_and_the_server_goes_on(search_addr, channel_factory) -> None:
    channel = channel_factory(search_addr)
    huge = search_pb2.SearchReadsRequest(
        case_number="X" * (17 * 1024 * 1024), **{"purpose": search_pb2.PURPOSE_HOMICIDE}
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await search_pb2_grpc.SearchServiceStub(channel).SearchReads(huge, timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await _still_serving(channel)


# --- tokens --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_key(stack):
    """The stack's real token signing key, to vary one property of an otherwise valid token at a time."""
    return load_private_key(None, KeySettings(data_dir=Path(stack.env["SIGHTLINE_DATA_DIR"])), TOKEN_KEY)


def _claims(acc, **override) -> dict:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": acc.user_id,
        "name": acc.username,
        "agency": acc.agency_id,
        "roles": ["supervisor", "auditor", "agency_admin"],
        "amr": ["pwd", "otp"],
        "iat": now,
        "exp": now + 600,
        "training_until": now + 86400,
    }
    return {**claims, **override}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(claims: dict, secret: bytes) -> str:
    """What an algorithm-confusion attack sends: HS256 keyed with the (public) verification key."""
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def _unsigned(claims: dict) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def bad_tokens(key: Ed25519PrivateKey, acc) -> dict[str, str]:
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header, _, signature = jwt.encode(_claims(acc), key, algorithm="EdDSA").split(".")
    other_payload = jwt.encode(_claims(acc, agency="pd-beta"), key, algorithm="EdDSA").split(".")[1]
    now = int(time.time())
    return {
        "forged (another key)": jwt.encode(_claims(acc), Ed25519PrivateKey.generate(), algorithm="EdDSA"),
        "expired": jwt.encode(_claims(acc, iat=now - 7200, exp=now - 3600), key, algorithm="EdDSA"),
        "wrong audience": jwt.encode(_claims(acc, aud="another-system"), key, algorithm="EdDSA"),
        "wrong issuer": jwt.encode(_claims(acc, iss="someone-else"), key, algorithm="EdDSA"),
        "alg none": _unsigned(_claims(acc)),
        "HMAC keyed with the public key": _hs256(_claims(acc), public_pem),
        "payload swapped (agency)": f"{header}.{other_payload}.{signature}",
        "no expiry": jwt.encode({k: v for k, v in _claims(acc).items() if k != "exp"}, key, algorithm="EdDSA"),
        "garbage": "not.a.token",
    }


def protected_calls(channels) -> dict[str, tuple]:
    """One call per service that needs a token: (callable, request)."""
    search, identity, audit, ingest = channels
    return {
        "search": (
            search_pb2_grpc.SearchServiceStub(search).SearchReads,
            search_pb2.SearchReadsRequest(plate_exact="ABC1", **WHY),
        ),
        "identity": (identity_pb2_grpc.IdentityServiceStub(identity).GetAgency, identity_pb2.GetAgencyRequest()),
        "audit": (audit_pb2_grpc.AuditServiceStub(audit).ListFlags, audit_pb2.ListFlagsRequest()),
        "camera registry": (
            ingest_pb2_grpc.CameraRegistryServiceStub(ingest).ListCameras,
            ingest_pb2.ListCamerasRequest(),
        ),
    }


async def test_bad_tokens_are_refused_by_every_service(
    search_addr, identity_addr, audit_addr, ingest_addr, channel_factory, accounts, signing_key, tokens
) -> None:
    calls = protected_calls([channel_factory(a) for a in (search_addr, identity_addr, audit_addr, ingest_addr)])
    acc = accounts["admin"]
    # The same claims, properly signed, are accepted (so each refusal below is down to the one change).
    good = jwt.encode(_claims(acc), signing_key, algorithm="EdDSA")
    await calls["camera registry"][0](calls["camera registry"][1], metadata=auth_metadata(good))
    for name, token in bad_tokens(signing_key, acc).items():
        for service, (call, request) in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(request, metadata=auth_metadata(token), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, (name, service, err.value.details())


async def test_a_totp_code_logs_in_once(identity_addr, channel_factory, mongo_db, accounts) -> None:
    from services.identity.domain.accounts import Credentials, new_user_document

    now = datetime.now(UTC)
    username, password = f"replay.{uuid.uuid4().hex[:6]}", "replay test password"
    doc, secret = new_user_document(
        username,
        "pd-alpha",
        "replay",
        ["officer"],
        Credentials.argon2id(1, 8 * 1024, 1).hash(password),
        {"course": "ALPR", "expires_at": now + timedelta(days=30)},
        now,
    )
    mongo_db["users"].insert_one(doc)
    ident = identity_pb2_grpc.IdentityServiceStub(channel_factory(identity_addr))
    code = pyotp.TOTP(secret).now()
    first = await ident.Login(identity_pb2.LoginRequest(username=username, password=password, totp_code=code))
    assert first.access_token
    for attempt in range(2):  # the same code again, right away and once more
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ident.Login(identity_pb2.LoginRequest(username=username, password=password, totp_code=code))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, attempt
    denied = mongo_db.client["sightline_audit"]["audit_entries"].find_one(
        {"event.action": "login", "event.user_id": doc["_id"], "event.outcome": "OUTCOME_DENIED"}
    )
    assert denied is not None and "reused" in denied["event"]["reason"]
