"""Keys that rotate without downtime and secrets sealed at rest (issue #17, item 6): verifiers hold a set of
identity public keys chosen by `kid`; TOTP secrets are stored sealed with the master key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pyotp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.common.auth import KeySettings, Principal, TokenIssuer, key_id, token_verifier
from services.common.data_keys import load_master_key
from services.common.rejected import Code, Rejected
from services.common.sealing import open_totp
from sightline.identity.v1 import identity_pb2, identity_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.security]

NOW = datetime.now(UTC)
PERSON = Principal(user_id="u-rot", username="rot", agency_id="pd-alpha", roles=frozenset({"officer"}),
                   second_factor=True, training_until=NOW + timedelta(days=30))


def write_public(folder: Path, name: str, key: Ed25519PrivateKey) -> Path:
    path = folder / f"{name}.pem"
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def token(key: Ed25519PrivateKey) -> str:
    return TokenIssuer(key, timedelta(minutes=15)).issue(PERSON, datetime.now(UTC), ["pwd", "otp"])[0]


def test_tokens_of_the_previous_key_verify_during_rotation_and_not_after(tmp_path: Path) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keys = tmp_path / "keys"
    keys.mkdir()
    write_public(keys, "2026-11-01", old)
    verifier = token_verifier(KeySettings(data_dir=tmp_path, dev_keys=False, token_public_keys_dir=keys), None)
    verifier._reload_s = 0  # look at the folder on every token (the service: every 10 s)
    before = token(old)
    assert jwt.get_unverified_header(before)["kid"] == key_id(old.public_key())
    assert verifier.verify(before).user_id == "u-rot"
    # 1. The new public key joins the set (no restart); 2. identity signs with the newest.
    write_public(keys, "2026-12-04", new)
    after = token(new)
    assert verifier.verify(after).user_id == "u-rot"
    assert verifier.verify(before).user_id == "u-rot"  # the previous key still verifies during rotation
    # 3. After the tokens' lifetime the old key is removed: its tokens no longer verify.
    (keys / "2026-11-01.pem").unlink()
    with pytest.raises(Rejected) as err:
        verifier.verify(before)
    assert err.value.code is Code.UNAUTHENTICATED and "retired" in err.value.message
    assert verifier.verify(after).user_id == "u-rot"
    assert verifier.key_ids == {key_id(new.public_key())}


def test_a_token_naming_a_known_kid_but_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    real, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keys = tmp_path / "keys"
    keys.mkdir()
    write_public(keys, "k", real)
    verifier = token_verifier(KeySettings(data_dir=tmp_path, dev_keys=False, token_public_keys_dir=keys), None)
    claims = jwt.decode(token(forger), options={"verify_signature": False})
    forged = jwt.encode(claims, forger, algorithm="EdDSA", headers={"kid": key_id(real.public_key())})
    with pytest.raises(Rejected):
        verifier.verify(forged)


async def test_a_totp_secret_read_from_mongodb_is_not_the_secret(identity_addr, tokens, mongo_db, accounts,
                                                                 data_key_settings, channel_factory) -> None:
    stub = identity_pb2_grpc.IdentityServiceStub(channel_factory(identity_addr))
    training = identity_pb2.Training(course="ALPR policy")
    training.completed_at.FromDatetime(NOW - timedelta(days=1))
    training.expires_at.FromDatetime(NOW + timedelta(days=300))
    username = f"sealed.{uuid.uuid4().hex[:6]}"
    reply = await stub.CreateUser(identity_pb2.CreateUserRequest(
        username=username, display_name="Sealed", initial_password="a long enough password 1",
        roles=[identity_pb2.ROLE_OFFICER], training=training),
        metadata=(("authorization", f"Bearer {await tokens('admin')}"),))
    secret = reply.totp_secret
    doc = mongo_db["users"].find_one({"username": username})
    assert "totp_secret" not in doc and secret not in str(doc)
    assert secret.encode() not in bytes(doc["totp_sealed"])
    # Sealed with the master key, bound to the user, and what identity checks a code against.
    assert open_totp(load_master_key(data_key_settings), doc["_id"], doc["totp_sealed"]) == secret
    login = await stub.Login(identity_pb2.LoginRequest(username=username, password="a long enough password 1",
                                                       totp_code=pyotp.TOTP(secret).now()))
    assert login.access_token
    # A user stored in clear before sealing (the fixtures' accounts) is sealed the first time identity reads it.
    officer = mongo_db["users"].find_one({"_id": accounts["officer"].user_id})
    assert "totp_secret" not in officer or await tokens("officer")
    assert "totp_secret" not in mongo_db["users"].find_one({"_id": accounts["officer"].user_id})
