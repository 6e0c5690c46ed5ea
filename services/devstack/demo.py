"""Demo accounts for the local stack: the demo agency and one account per role (admin, officer, investigator,
supervisor, auditor), so that a newcomer can search, work an alert and review the audit trail within minutes.

`python -m services.devstack.demo` runs with the identity service's settings (devstack `up` starts it with
the identity service's environment). The first admin is made the way `sightline identity bootstrap-admin`
makes one; every other account through IdentityService.CreateUser as that admin, audited as any other. Each
account's password and TOTP secret are printed once, on the run that created them.

Local stack only: it refuses whenever production settings are in force (dev keys off, or a token signing key
file named), before it touches anything.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pyotp

from services.cli.identity import bootstrap
from services.common.qr import qr_text
from services.common.tls import secure_channel
from services.identity.domain.accounts import AccountError
from services.identity.settings import IdentitySettings
from sightline.identity.v1 import identity_pb2, identity_pb2_grpc

AGENCY = "demo-pd"
AGENCY_NAME = "Demo Police Department"
COURSE = "ALPR policy (demo)"
# username -> roles; the admin comes first: it creates the others.
ACCOUNTS = {"demo.admin": [identity_pb2.ROLE_AGENCY_ADMIN], "demo.officer": [identity_pb2.ROLE_OFFICER],
            "demo.investigator": [identity_pb2.ROLE_INVESTIGATOR], "demo.supervisor": [identity_pb2.ROLE_SUPERVISOR],
            "demo.auditor": [identity_pb2.ROLE_AUDITOR]}


class DemoRefused(Exception):
    """Demo accounts were not created: production settings are in force."""


@dataclass(frozen=True)
class DemoAccount:
    username: str
    role: str
    password: str
    totp_secret: str
    totp_uri: str


def check_local(settings: IdentitySettings) -> None:
    """Refuse unless this is a local stack: dev keys on and no signing key file named (the chart sets both)."""
    if not settings.dev_keys or settings.token_signing_key_file is not None:
        raise DemoRefused("demo accounts are for the local stack only: production settings are in force "
                          "(SIGHTLINE_DEV_KEYS is off or a token signing key file is set)")


def _password() -> str:
    return "-".join(secrets.token_urlsafe(6) for _ in range(3))


async def create_demo_accounts(settings: IdentitySettings, identity_address: str) -> list[DemoAccount]:
    """Create the demo agency and its accounts; [] when they exist already (their secrets were shown then)."""
    check_local(settings)
    expires = date.today() + timedelta(days=365)
    admin, admin_password = next(iter(ACCOUNTS)), _password()
    args = argparse.Namespace(agency=AGENCY, agency_name=AGENCY_NAME, username=admin, display_name="Demo Admin",
                              training_course=COURSE, training_expires=expires)
    try:
        secret, uri = await bootstrap(settings, args, admin_password)
    except AccountError:
        return []
    created = [DemoAccount(admin, "agency_admin", admin_password, secret, uri)]
    async with secure_channel(identity_address, settings) as channel:
        identity = identity_pb2_grpc.IdentityServiceStub(channel)
        login = await identity.Login(identity_pb2.LoginRequest(username=admin, password=admin_password,
                                                               totp_code=pyotp.TOTP(secret).now()), timeout=30)
        metadata = (("authorization", f"Bearer {login.access_token}"),)
        training = identity_pb2.Training(course=COURSE)
        training.completed_at.FromDatetime(datetime.now(UTC))
        training.expires_at.FromDatetime(datetime.combine(expires, datetime.max.time(), UTC))
        for username, roles in list(ACCOUNTS.items())[1:]:
            password = _password()
            reply = await identity.CreateUser(identity_pb2.CreateUserRequest(
                username=username, display_name=username.replace(".", " ").title(), initial_password=password,
                roles=roles, training=training), metadata=metadata, timeout=30)
            role = identity_pb2.Role.Name(roles[0]).removeprefix("ROLE_").lower()
            created.append(DemoAccount(username, role, password, reply.totp_secret, reply.totp_uri))
    return created


def report(accounts: list[DemoAccount], console_url: str, with_qr: bool) -> str:
    lines = [f"Demo accounts of {AGENCY} (shown once: note them now). Log in at {console_url}/login with the "
             "username, the password and the code an authenticator app shows for the TOTP secret."]
    for account in accounts:
        lines.append(f"  {account.role:<13} {account.username:<18} password {account.password}  "
                     f"TOTP secret {account.totp_secret}")
        if with_qr:
            lines.append(qr_text(account.totp_uri))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.devstack.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identity", required=True, help="identity service address (host:port)")
    parser.add_argument("--console-url", default="https://127.0.0.1:8081")
    parser.add_argument("--no-qr", action="store_true", help="print the TOTP secrets without QR codes")
    args = parser.parse_args(argv)
    try:
        accounts = asyncio.run(create_demo_accounts(IdentitySettings(), args.identity))
    except DemoRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    if not accounts:
        print(f"demo accounts of {AGENCY} exist already (their passwords and TOTP secrets were shown when they were "
              "created; delete .local/ to start afresh)")
        return 0
    print(report(accounts, args.console_url, not args.no_qr))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
