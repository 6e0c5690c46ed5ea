"""Use cases of an agency admin: create users, read them, reset a password or the second factor, set roles,
record training, lock and unlock; and the agency's own sharing and case-number policy.

An admin acts on their own agency only. A user of another agency is refused, audited as denied, with the
answer a missing user gets (no telling which). Every change is written to the audit trail before it is
applied (the Auditor raises when it cannot). Changes that alter what a token says (roles, lock, new
credentials) revoke the user's tokens in every service. Refusals are raised as `Rejected`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.audit.client import Auditor
from services.common.agencies import HOTLIST_SHARE_WITH
from services.common.auth import Principal
from services.common.rejected import Code, Rejected
from services.identity.domain.accounts import (
    AccountError,
    Credentials,
    check_agency_id,
    check_new_password,
    generate_password,
    new_totp_secret,
    new_user_document,
    normalize_username,
)
from services.identity.service_layer.ports import Revoker, Throttle, UserStore
from sightline.audit.v1 import audit_pb2

# The one answer to an admin action on a user that does not exist or belongs to another agency.
NO_SUCH_USER = "no such user in your agency"
# locked_until of an account locked by an admin: until an admin unlocks it.
LOCKED_FOR_GOOD = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class NewCredentials:
    """A user after a change of credentials, with what the admin hands over (shown once, never stored clear)."""

    user: dict[str, Any]
    password: str = ""
    totp_secret: str = ""


def _invalid(exc: AccountError) -> Rejected:
    return Rejected(Code.INVALID_ARGUMENT, str(exc))


def _change_event(action: str, subject: str, details: dict[str, Any]) -> audit_pb2.AuditEvent:
    event = audit_pb2.AuditEvent(action=action, outcome=audit_pb2.OUTCOME_ALLOWED, subject=subject)
    event.details.update(details)
    return event


class Administration:
    def __init__(self, store: UserStore, throttle: Throttle, revoker: Revoker, credentials: Credentials,
                 auditor: Auditor, min_password_length: int):
        self._store = store
        self._throttle = throttle
        self._revoker = revoker
        self._credentials = credentials
        self._auditor = auditor
        self._min_password_length = min_password_length

    async def create_user(self, admin: Principal, username: str, display_name: str, roles: list[str],
                          training: dict[str, Any] | None, initial_password: str) -> NewCredentials:
        """A user of the admin's agency; without an initial password, a generated one-time password."""
        generated = "" if initial_password else generate_password()
        password = initial_password or generated
        try:
            username = normalize_username(username)
            check_new_password(password, username, self._min_password_length)
        except AccountError as exc:
            raise _invalid(exc) from exc
        if await self._store.user_by_name(username) is not None:
            raise Rejected(Code.ALREADY_EXISTS, "username taken")
        password_hash = await asyncio.to_thread(self._credentials.hash, password)
        doc, secret = new_user_document(username, admin.agency_id, display_name, roles, password_hash, training,
                                        datetime.now(UTC))
        await self._auditor.record(admin, _change_event("user.create", doc["_id"],
                                                        {"username": username, "roles": roles}))
        await self._store.insert_user(doc)
        return NewCredentials(doc, generated, secret)

    async def users(self, admin: Principal) -> list[dict[str, Any]]:
        return await self._store.users(admin.agency_id)

    async def user(self, admin: Principal, user_id: str) -> dict[str, Any]:
        return await self._own_user(admin, user_id, "user.view")

    async def reset_password(self, admin: Principal, user_id: str) -> NewCredentials:
        password = generate_password()
        password_hash = await asyncio.to_thread(self._credentials.hash, password)
        doc = await self._change_user(admin, user_id, "user.reset_password",
                                      {"password_hash": password_hash, "password_changed_at": datetime.now(UTC)})
        await self._revoker.revoke(doc["_id"])
        return NewCredentials(doc, password=password)

    async def reset_totp(self, admin: Principal, user_id: str) -> NewCredentials:
        secret = new_totp_secret()
        doc = await self._change_user(admin, user_id, "user.reset_totp", {"totp_secret": secret})
        await self._revoker.revoke(doc["_id"])
        return NewCredentials(doc, totp_secret=secret)

    async def set_roles(self, admin: Principal, user_id: str, roles: list[str]) -> dict[str, Any]:
        doc = await self._change_user(admin, user_id, "user.roles", {"roles": roles}, {"roles": roles})
        await self._revoker.revoke(doc["_id"])  # tokens carry the roles: the new ones apply from the next login
        return doc

    async def record_training(self, admin: Principal, user_id: str, training: dict[str, Any] | None) -> dict[str, Any]:
        if training is None:
            raise Rejected(Code.INVALID_ARGUMENT, "training.expires_at is required")
        return await self._change_user(admin, user_id, "user.training", {"training": training},
                                       {"course": training["course"], "expires_at": training["expires_at"].isoformat()})

    async def lock(self, admin: Principal, user_id: str) -> dict[str, Any]:
        doc = await self._change_user(admin, user_id, "user.lock", {"locked_until": LOCKED_FOR_GOOD})
        await self._revoker.revoke(doc["_id"])
        return doc

    async def unlock(self, admin: Principal, user_id: str) -> dict[str, Any]:
        doc = await self._change_user(admin, user_id, "user.unlock", {"locked_until": None})
        await self._throttle.clear_account(doc["username"])
        return doc

    async def set_agency_policy(self, admin: Principal, share_with: list[str], case_number_required: bool,
                                hotlist_share_with: list[str]) -> dict[str, Any]:
        """Whom the agency shares reads and hot-list hits with (never itself), and whether searches need a case
        number."""
        try:
            partners = sorted({check_agency_id(a) for a in share_with} - {admin.agency_id})
            hotlist_partners = sorted({check_agency_id(a) for a in hotlist_share_with} - {admin.agency_id})
        except AccountError as exc:
            raise _invalid(exc) from exc
        await self._auditor.record(admin, _change_event(
            "agency.policy", admin.agency_id,
            {"share_with": partners, "case_number_required": case_number_required,
             HOTLIST_SHARE_WITH: hotlist_partners}))
        doc = await self._store.set_agency_policy(admin.agency_id, partners, case_number_required, hotlist_partners)
        if doc is None:
            raise Rejected(Code.NOT_FOUND, "your agency is not registered")
        return doc

    async def agency(self, principal: Principal) -> dict[str, Any]:
        doc = await self._store.agency(principal.agency_id)
        if doc is None:
            raise Rejected(Code.NOT_FOUND, "your agency is not registered")
        return doc

    async def _own_user(self, admin: Principal, user_id: str, action: str) -> dict[str, Any]:
        """The admin's agency's user `user_id`; any other is denied (audited) as missing."""
        user = await self._store.user(user_id) if user_id else None
        if user is None or user["agency_id"] != admin.agency_id:
            await self._auditor.deny(admin, audit_pb2.AuditEvent(action=action, subject=user_id[:128]),
                                     Rejected(Code.NOT_FOUND, NO_SUCH_USER))
        return user

    async def _change_user(self, admin: Principal, user_id: str, action: str, changes: dict[str, Any],
                           details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Apply `changes` to a user of the admin's agency, audited first."""
        await self._own_user(admin, user_id, action)
        await self._auditor.record(admin, _change_event(action, user_id, details or {}))
        doc = await self._store.update_user(user_id, admin.agency_id, changes)
        if doc is None:  # moved to another agency meanwhile
            raise Rejected(Code.NOT_FOUND, NO_SUCH_USER)
        return doc
