"""IdentityService's administration calls added for the console and the CLI (issue 16 item 3): ListUsers,
GetUser, a generated one-time password on CreateUser, ResetPassword and ResetTotp. Own agency only, audited
before the change, and failing closed (UNAVAILABLE, nothing changed) when the audit trail is down."""

from __future__ import annotations

import uuid

import grpc
import pyotp
import pytest

from services.common.auth import auth_metadata
from services.common.data_keys import load_master_key
from services.common.sealing import open_totp
from services.devstack.stack import LocalStack, Ports
from sightline.identity.v1 import identity_pb2, identity_pb2_grpc
from sightline.search.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.e2e


def _training() -> identity_pb2.Training:
    training = identity_pb2.Training(course="ALPR policy")
    training.expires_at.FromJsonString("2030-01-01T00:00:00Z")
    return training


async def _refused(call, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    return err.value.details() or ""


async def test_admin_lists_creates_and_resets_users_of_its_own_agency(identity_addr, search_addr, tokens, accounts,
                                                                      channel_factory, mongo_db,
                                                                      data_key_settings) -> None:
    identity = identity_pb2_grpc.IdentityServiceStub(channel_factory(identity_addr))
    admin = auth_metadata(await tokens("admin"))
    listed = await identity.ListUsers(identity_pb2.ListUsersRequest(), metadata=admin)
    assert {u.agency_id for u in listed.users} == {"pd-alpha"}
    assert accounts["officer"].username in {u.username for u in listed.users}
    assert accounts["beta_officer"].username not in {u.username for u in listed.users}
    await _refused(identity.GetUser(identity_pb2.GetUserRequest(user_id=accounts["beta_officer"].user_id),
                                    metadata=admin), grpc.StatusCode.NOT_FOUND)
    await _refused(identity.ListUsers(identity_pb2.ListUsersRequest(),
                                      metadata=auth_metadata(await tokens("supervisor"))),
                   grpc.StatusCode.PERMISSION_DENIED)

    username = f"gen.{uuid.uuid4().hex[:6]}"
    created = await identity.CreateUser(identity_pb2.CreateUserRequest(
        username=username, display_name="Generated", roles=[identity_pb2.ROLE_OFFICER], training=_training()),
        metadata=admin)
    assert len(created.generated_password) >= 20
    user_id = created.user.user_id
    assert (await identity.GetUser(identity_pb2.GetUserRequest(user_id=user_id), metadata=admin)).username == username
    login = await identity.Login(identity_pb2.LoginRequest(username=username, password=created.generated_password,
                                                           totp_code=pyotp.TOTP(created.totp_secret).now()))

    # A reset revokes the user's tokens, and only the new password and second factor let them in again.
    reset = await identity.ResetPassword(identity_pb2.ResetPasswordRequest(user_id=user_id), metadata=admin)
    totp = await identity.ResetTotp(identity_pb2.ResetTotpRequest(user_id=user_id), metadata=admin)
    assert reset.generated_password != created.generated_password and totp.totp_secret != created.totp_secret
    assert totp.totp_uri.startswith("otpauth://totp/") and username in totp.totp_uri
    search = search_pb2_grpc.SearchServiceStub(channel_factory(search_addr))
    await _refused(search.SearchReads(search_pb2.SearchReadsRequest(
        plate_exact="ABC123", purpose=search_pb2.PURPOSE_VEHICLE_THEFT, case_number="RESET-1"),
        metadata=auth_metadata(login.access_token)), grpc.StatusCode.UNAUTHENTICATED)
    await _refused(identity.Login(identity_pb2.LoginRequest(
        username=username, password=created.generated_password, totp_code=pyotp.TOTP(totp.totp_secret).now())),
        grpc.StatusCode.UNAUTHENTICATED)
    doc = mongo_db["users"].find_one({"_id": user_id})
    # stored sealed with the master key (issue #17), never in clear
    assert "totp_secret" not in doc and totp.totp_secret not in str(doc) and reset.generated_password not in str(doc)
    assert open_totp(load_master_key(data_key_settings), user_id, doc["totp_sealed"]) == totp.totp_secret

    audit = mongo_db.client["sightline_audit"]["audit_entries"]
    for action in ("user.create", "user.reset_password", "user.reset_totp"):
        entry = audit.find_one({"event.action": action, "event.subject": user_id})
        assert entry and entry["event"]["outcome"] == "OUTCOME_ALLOWED", action
        assert created.generated_password not in str(entry) and totp.totp_secret not in str(entry)
    assert audit.find_one({"event.action": "user.view", "event.subject": accounts["beta_officer"].user_id,
                           "event.outcome": "OUTCOME_DENIED"})


@pytest.fixture
def private_identity(stack: LocalStack, mongo_uri: str, redis_url: str, tmp_path):
    """Identity with its own audit service (and audit database), which a test may stop."""
    own = LocalStack(tmp_path / "stack", Ports.free())
    own.env.update({"SIGHTLINE_MONGO_URI": mongo_uri, "SIGHTLINE_REDIS_URL": redis_url,
                    "SIGHTLINE_DATA_DIR": stack.env["SIGHTLINE_DATA_DIR"],
                    "SIGHTLINE_AUDIT_ADDRESS": own.address("audit"), "SIGHTLINE_DRAIN_SECONDS": "0",
                    "SIGHTLINE_AUDIT_MONGO_DB": f"audit_down_{uuid.uuid4().hex[:8]}",
                    "SIGHTLINE_LOGIN_SOURCE_FREE_FAILURES": "1000"})
    own.start_service("audit", SIGHTLINE_MONGO_URI=mongo_uri)
    own.start_service("identity")
    yield own
    own.stop()


def totp_of(doc: dict, data_key_settings) -> str:
    """A user's TOTP secret as stored: sealed (or, for a user stored before sealing, in clear until first read)."""
    if "totp_sealed" in doc:
        return open_totp(load_master_key(data_key_settings), doc["_id"], doc["totp_sealed"])
    return doc["totp_secret"]


async def test_resets_fail_closed_when_the_audit_trail_is_down(private_identity: LocalStack, tokens, accounts,
                                                               channel_factory, mongo_db, data_key_settings) -> None:
    identity = identity_pb2_grpc.IdentityServiceStub(channel_factory(private_identity.address("identity")))
    admin = auth_metadata(await tokens("admin"))
    officer = accounts["investigator"].user_id
    before = mongo_db["users"].find_one({"_id": officer})
    private_identity.procs["audit"].stop()
    for call in (identity.ResetPassword(identity_pb2.ResetPasswordRequest(user_id=officer), metadata=admin),
                 identity.ResetTotp(identity_pb2.ResetTotpRequest(user_id=officer), metadata=admin),
                 identity.CreateUser(identity_pb2.CreateUserRequest(
                     username=f"nope.{uuid.uuid4().hex[:6]}", display_name="x", roles=[identity_pb2.ROLE_OFFICER],
                     training=_training()), metadata=admin)):
        assert "audit" in await _refused(call, grpc.StatusCode.UNAVAILABLE)
    after = mongo_db["users"].find_one({"_id": officer})
    assert after["password_hash"] == before["password_hash"]
    assert totp_of(after, data_key_settings) == totp_of(before, data_key_settings)  # (sealed since, maybe)
