from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from services.identity.domain.accounts import (
    AccountError,
    Credentials,
    check_new_password,
    locked,
    normalize_username,
    roles_from_proto,
    totp_step,
)
from sightline.identity.v1 import identity_pb2

pytestmark = pytest.mark.unit


def test_passwords_are_argon2id_hashes() -> None:
    creds = Credentials.argon2id(1, 8 * 1024, 1)
    stored = creds.hash("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert creds.verify(stored, "correct horse battery")
    assert not creds.verify(stored, "wrong") and not creds.verify("garbage", "x")
    assert Credentials.argon2id(2, 16 * 1024, 1).needs_rehash(stored)


def test_password_policy() -> None:
    with pytest.raises(AccountError, match="12"):
        check_new_password("short", "amy", 12)
    with pytest.raises(AccountError, match="username"):
        check_new_password("xx-amy.smith-xx", "amy.smith", 12)
    check_new_password("a long enough password", "amy", 12)


def test_totp_codes_work_once_within_one_step_either_side() -> None:
    secret = pyotp.random_base32()
    now = datetime(2026, 5, 1, 12, 0, 10, tzinfo=UTC)
    totp = pyotp.TOTP(secret)
    step = totp_step(secret, totp.at(now), now, 0)
    assert step == totp.timecode(now)
    assert totp_step(secret, totp.at(now), now, step) is None  # replay
    assert totp_step(secret, totp.at(now - timedelta(seconds=30)), now, 0) == step - 1
    assert totp_step(secret, totp.at(now - timedelta(seconds=90)), now, 0) is None
    assert totp_step(secret, "000000" if totp.at(now) != "000000" else "111111", now, 0) is None


def test_only_an_admin_lock_locks() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    assert not locked({"locked_until": None}, now) and not locked({}, now)
    assert not locked({"locked_until": now - timedelta(seconds=1)}, now)
    assert locked({"locked_until": now + timedelta(days=1)}, now)


def test_roles_and_usernames() -> None:
    assert roles_from_proto([identity_pb2.ROLE_SUPERVISOR, identity_pb2.ROLE_OFFICER]) == ["officer", "supervisor"]
    for bad in ([], [identity_pb2.ROLE_UNSPECIFIED], [99]):
        with pytest.raises(AccountError):
            roles_from_proto(bad)
    assert normalize_username(" Amy.Smith ") == "amy.smith"
    with pytest.raises(AccountError):
        normalize_username("amy smith; drop")
