"""`sightline identity bootstrap-admin`: the first agency admin, audited, then able to log in with TOTP."""

import argparse
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pyotp
import pytest

from services.cli.identity import bootstrap
from services.identity.domain.accounts import AccountError
from services.identity.settings import IdentitySettings
from sightline.identity.v1 import identity_pb2, identity_pb2_grpc

pytestmark = pytest.mark.e2e
PASSWORD = "a long enough first admin password"


def args(agency: str, username: str) -> argparse.Namespace:
    return argparse.Namespace(agency=agency, agency_name="Bootstrap PD", username=username,
                              display_name="First Admin", training_course="ALPR policy 2026",
                              training_expires=date(date.today().year + 1, 1, 31))


@pytest.fixture
def settings(stack, mongo_uri: str, audit_addr: str) -> IdentitySettings:
    return IdentitySettings(mongo_uri=mongo_uri, audit_address=audit_addr,
                            data_dir=Path(stack.env["SIGHTLINE_DATA_DIR"]), argon2_time_cost=1,
                            argon2_memory_kib=8 * 1024, argon2_parallelism=1)


async def test_first_admin_is_audited_logs_in_and_is_made_once(settings, identity_addr, channel_factory,
                                                               mongo_db) -> None:
    agency, username = f"pd-boot-{uuid.uuid4().hex[:6]}", f"admin.{uuid.uuid4().hex[:6]}"
    secret, uri = await bootstrap(settings, args(agency, username), PASSWORD)
    assert uri.startswith("otpauth://totp/") and secret in uri

    audit_db = mongo_db.client["sightline_audit"]
    entry = audit_db["audit_entries"].find_one({"event.action": "user.bootstrap_admin", "event.agency_id": agency})
    assert entry is not None

    ident = identity_pb2_grpc.IdentityServiceStub(channel_factory(identity_addr))
    reply = await ident.Login(identity_pb2.LoginRequest(username=username, password=PASSWORD,
                                                        totp_code=pyotp.TOTP(secret).at(datetime.now(UTC))))
    assert reply.access_token

    with pytest.raises(AccountError, match="already has an agency admin"):
        await bootstrap(settings, args(agency, f"second.{uuid.uuid4().hex[:6]}"), PASSWORD)
    with pytest.raises(AccountError, match="username taken"):
        await bootstrap(settings, args(f"pd-other-{uuid.uuid4().hex[:6]}", username), PASSWORD)


async def test_weak_password_is_refused(settings) -> None:
    with pytest.raises(AccountError):
        await bootstrap(settings, args("pd-weak", "weak.admin"), "short")
