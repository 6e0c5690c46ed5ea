"""``sightline identity bootstrap-admin``: create an agency and its first agency admin.

Every other account is created by an agency admin through IdentityService.CreateUser; this command makes the
first one. Run it where the identity service runs (it needs the identity settings: MongoDB, identity's service
key, the audit address): `kubectl exec deploy/sightline-identity -- sightline identity bootstrap-admin ...`.
It refuses when the agency already has an admin, records the creation in the audit trail (as the identity
service, with its service key) before writing (fail closed: no audit, no admin), and prints the TOTP secret
and provisioning URI once.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from datetime import UTC, date, datetime, time
from typing import Any

from services.audit.client import AuditClient, AuditUnavailable
from services.common.data_keys import load_master_key
from services.common.service_tokens import service_signer
from services.common.storage import mongo_client, mongo_database
from services.identity.adapters.store import IdentityStore
from services.identity.domain.accounts import (
    AccountError,
    Credentials,
    check_new_password,
    new_user_document,
    normalize_username,
    totp_uri,
)
from services.identity.settings import IdentitySettings
from sightline.audit.v1 import audit_pb2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("identity", help="identity administration")
    commands = parser.add_subparsers(dest="identity_command", required=True)
    boot = commands.add_parser("bootstrap-admin", help="create an agency and its first agency admin")
    boot.add_argument("--agency", required=True, help="agency id (e.g. its ORI)")
    boot.add_argument("--agency-name", required=True)
    boot.add_argument("--username", required=True)
    boot.add_argument("--display-name", required=True)
    boot.add_argument("--training-course", required=True, help="the ALPR policy course the admin completed")
    boot.add_argument("--training-expires", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
    boot.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    boot.set_defaults(handler=run_bootstrap)
    return parser


async def bootstrap(settings: IdentitySettings, args: argparse.Namespace, password: str) -> tuple[str, str]:
    """Create the agency (if new) and its first admin; returns (TOTP secret, provisioning URI)."""
    username = normalize_username(args.username)
    check_new_password(password, username, settings.min_password_length)
    now = datetime.now(UTC)
    mongo = mongo_client(settings)
    # Recorded as the identity service (its service key), whose database this command writes.
    audit = AuditClient(settings.audit_address, settings.audit_timeout_s,
                        service_signer(settings.service_name, settings), settings)
    try:
        store = IdentityStore(mongo_database(mongo, settings), load_master_key(settings))
        await store.ensure_indexes()
        if await store.user_by_name(username) is not None:
            raise AccountError("username taken")
        if await store.agency_has_admin(args.agency):
            raise AccountError(f"agency {args.agency} already has an agency admin: use CreateUser")
        credentials = Credentials.argon2id(settings.argon2_time_cost, settings.argon2_memory_kib,
                                           settings.argon2_parallelism)
        training = {"course": args.training_course, "completed_at": now,
                    "expires_at": datetime.combine(args.training_expires, time(23, 59, 59), UTC)}
        doc, secret = new_user_document(username, args.agency, args.display_name, ["agency_admin"],
                                        credentials.hash(password), training, now)
        event = audit_pb2.AuditEvent(action="user.bootstrap_admin", outcome=audit_pb2.OUTCOME_ALLOWED,
                                     subject=doc["_id"], agency_id=args.agency)
        event.details.update({"username": username, "agency_name": args.agency_name, "roles": ["agency_admin"]})
        await audit.record(event)
        await store.upsert_agency(args.agency, args.agency_name)
        await store.insert_user(doc)
        return secret, totp_uri(secret, username, args.agency)
    finally:
        await audit.close()
        await mongo.close()


def run_bootstrap(args: argparse.Namespace) -> int:
    if not args.password_stdin and not sys.stdin.isatty():
        print("refused: no terminal to ask the password on; pass it on standard input with --password-stdin",
              file=sys.stderr)
        return 2
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
    if not password:
        print("refused: an empty password", file=sys.stderr)
        return 2
    try:
        secret, uri = asyncio.run(bootstrap(IdentitySettings(), args, password))
    except AccountError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    except AuditUnavailable as exc:
        print(f"refused: the audit trail is unavailable ({exc}); nothing was created", file=sys.stderr)
        return 1
    print(f"agency admin {args.username} created for {args.agency}")
    print(f"TOTP secret (enter in an authenticator app; shown once): {secret}")
    print(f"provisioning URI: {uri}")
    return 0
