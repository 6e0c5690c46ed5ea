"""Users, roles, passwords, second factor, admin locks and training. Pure (argon2 and pyotp are computations)."""

from __future__ import annotations

import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.common.auth import Role
from sightline.identity.v1 import identity_pb2

ROLE_BY_PROTO = {
    identity_pb2.ROLE_OFFICER: Role.OFFICER,
    identity_pb2.ROLE_INVESTIGATOR: Role.INVESTIGATOR,
    identity_pb2.ROLE_SUPERVISOR: Role.SUPERVISOR,
    identity_pb2.ROLE_AUDITOR: Role.AUDITOR,
    identity_pb2.ROLE_AGENCY_ADMIN: Role.AGENCY_ADMIN,
    identity_pb2.ROLE_PARTNER_AGENCY_USER: Role.PARTNER_AGENCY_USER,
}
PROTO_BY_ROLE = {role: value for value, role in ROLE_BY_PROTO.items()}
_USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
_AGENCY_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")


class AccountError(ValueError):
    """A request that cannot be applied; the message says why (INVALID_ARGUMENT)."""


def roles_from_proto(values: list[int]) -> list[str]:
    if not values:
        raise AccountError("give at least one role")
    if any(v not in ROLE_BY_PROTO for v in values):
        raise AccountError("unknown role")
    return sorted({ROLE_BY_PROTO[v].value for v in values})


def normalize_username(username: str) -> str:
    name = username.strip().lower()
    if not _USERNAME_RE.fullmatch(name):
        raise AccountError("username: 2-64 of a-z, 0-9, '.', '_', '-'")
    return name


def check_agency_id(agency_id: str) -> str:
    if not _AGENCY_RE.fullmatch(agency_id):
        raise AccountError(f"not an agency id: {agency_id!r}")
    return agency_id


def check_new_password(password: str, username: str, min_length: int) -> None:
    if len(password) < min_length:
        raise AccountError(f"passwords need at least {min_length} characters")
    if username and username.lower() in password.lower():
        raise AccountError("the password must not contain the username")


@dataclass(frozen=True)
class Credentials:
    hasher: PasswordHasher

    @classmethod
    def argon2id(cls, time_cost: int, memory_kib: int, parallelism: int) -> Credentials:
        return cls(PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism))

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self.hasher.check_needs_rehash(stored_hash)


def totp_step(secret: str, code: str, now: datetime, last_step: int) -> int | None:
    """The time step `code` is valid for (now ±1 step, 30 s each), if later than the last one used."""
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if step > last_step and hmac.compare_digest(totp.generate_otp(step), code.strip()):
            return step
    return None


def generate_password() -> str:
    """A one-time password an admin hands over (20 characters of a-z, A-Z, 0-9, '-' and '_': 120 bits)."""
    return secrets.token_urlsafe(15)


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, username: str, agency_id: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=f"{username}@{agency_id}", issuer_name="Sightline")


def locked(user: dict[str, Any], now: datetime) -> bool:
    """Locked by an agency admin (LockUser) until `locked_until`."""
    until = user.get("locked_until")
    return until is not None and until > now


def training_document(training: identity_pb2.Training) -> dict[str, Any] | None:
    if not training.HasField("expires_at"):
        return None
    doc: dict[str, Any] = {"course": training.course, "expires_at": training.expires_at.ToDatetime(tzinfo=UTC)}
    if training.HasField("completed_at"):
        doc["completed_at"] = training.completed_at.ToDatetime(tzinfo=UTC)
    return doc


def training_until(user: dict[str, Any]) -> datetime | None:
    return (user.get("training") or {}).get("expires_at")


def new_user_document(username: str, agency_id: str, display_name: str, roles: list[str], password_hash: str,
                      training: dict[str, Any] | None, now: datetime) -> tuple[dict[str, Any], str]:
    """A user document and its new TOTP secret."""
    secret = new_totp_secret()
    doc = {"_id": uuid.uuid4().hex, "username": username, "agency_id": agency_id, "display_name": display_name,
           "roles": roles, "password_hash": password_hash, "totp_secret": secret, "training": training,
           "active": True, "locked_until": None, "last_totp_step": 0, "created_at": now,
           "password_changed_at": now}
    return doc, secret
