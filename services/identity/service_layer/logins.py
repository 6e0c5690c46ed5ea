"""Use cases of a person's own account: log in with password and TOTP, change the password, log out.

Every login attempt is counted by the throttle before its password is checked, and both factors are checked
whatever the first gave before anything but the one answer is said. Each attempt, allowed or refused, is
written to the audit trail before the answer goes out (the Auditor raises when it cannot). Password change and
logout revoke the person's tokens in every service. Refusals are raised as `Rejected`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Counter

from services.audit.client import Auditor
from services.common.auth import Principal, Role, TokenIssuer
from services.common.rejected import Code, Rejected
from services.identity.domain.accounts import (
    AccountError,
    Credentials,
    check_new_password,
    locked,
    normalize_username,
    totp_step,
    training_until,
)
from services.identity.service_layer.ports import Revoker, Throttle, UserStore
from sightline.audit.v1 import audit_pb2

LOGINS = Counter("sightline_identity_logins_total", "Login attempts by outcome", ["outcome"])
# The one answer to every login refused before both factors are proven.
BAD_LOGIN = "invalid username, password or code"


def _refused(reason: str) -> Rejected:
    """A refused login: audited with `reason`, answered with the one answer every failure gets."""
    return Rejected(Code.UNAUTHENTICATED, BAD_LOGIN, reason)


@dataclass(frozen=True)
class Session:
    token: str
    expires: datetime
    user: dict[str, Any]


@dataclass
class Logins:
    store: UserStore
    throttle: Throttle
    revoker: Revoker
    issuer: TokenIssuer
    credentials: Credentials
    auditor: Auditor
    min_password_length: int

    def __post_init__(self) -> None:
        # Verified against when the username is unknown, so that both cases take the same time.
        self._dummy_hash = self.credentials.hash("not a password of anyone")

    async def login(self, username: str, password: str, totp_code: str, source: str, now: datetime) -> Session:
        event = audit_pb2.AuditEvent(action="login", username=username[:64])
        try:
            username = normalize_username(username)
        except AccountError:
            username = ""
        allowed = await self.throttle.attempt(source, username, now)
        found: dict[str, Any] | None = None
        try:
            if not allowed:
                raise _refused("throttled after repeated failures")
            found = await self.store.user_by_name(username) if username else None
            user, step = await self._check_login(found, password, totp_code, now)
            if not await self.store.claim_totp_step(user["_id"], step, {"last_login_at": now}):
                raise _refused("TOTP code reused")
        except Rejected as refused:
            LOGINS.labels("refused").inc()
            if found is not None:
                event.user_id, event.agency_id = found["_id"], found["agency_id"]
            event.outcome, event.reason = audit_pb2.OUTCOME_DENIED, refused.reason
            await self.auditor.record(None, event)
            raise
        await self.throttle.succeeded(source, username)
        agency = await self.store.agency(user["agency_id"]) or {}
        partners = (await self.store.sharing_with(user["agency_id"])
                    if Role.PARTNER_AGENCY_USER in user["roles"] else [])
        principal = Principal(user_id=user["_id"], username=user["username"], agency_id=user["agency_id"],
                              roles=frozenset(user["roles"]), second_factor=True,
                              training_until=training_until(user),
                              case_number_required=bool(agency.get("case_number_required", False)),
                              partner_agencies=tuple(partners))
        token, expires = self.issuer.issue(principal, now, ["pwd", "otp"])
        event.user_id, event.agency_id, event.outcome = user["_id"], user["agency_id"], audit_pb2.OUTCOME_ALLOWED
        event.roles.extend(sorted(user["roles"]))
        await self.auditor.record(None, event)
        LOGINS.labels("ok").inc()
        return Session(token, expires, user)

    async def _check_login(self, user: dict[str, Any] | None, password: str, totp_code: str,
                           now: datetime) -> tuple[dict[str, Any], int]:
        """Both factors are checked, whatever the first gave, before anything but the one answer is said."""
        if user is None:
            await asyncio.to_thread(self.credentials.verify, self._dummy_hash, password)
            raise _refused("unknown user")
        password_ok = await asyncio.to_thread(self.credentials.verify, user["password_hash"], password)
        step = totp_step(user["totp_secret"], totp_code, now, user.get("last_totp_step", 0))
        if not password_ok:
            raise _refused("wrong password")
        if not totp_code.strip():
            raise _refused("no second factor")
        if step is None:
            raise _refused("wrong or reused TOTP code")
        if not user.get("active", False):
            raise _refused("account disabled")
        if locked(user, now):
            raise _refused("account locked")
        until = training_until(user)
        if until is None or until <= now:
            when = f" on {until:%Y-%m-%d}" if until else ""
            raise Rejected(Code.PERMISSION_DENIED, f"your required training expired{when}: renew it to regain access",
                           "training expired")
        if self.credentials.needs_rehash(user["password_hash"]):
            await self.store.update_user(user["_id"], user["agency_id"],
                                          {"password_hash": await asyncio.to_thread(self.credentials.hash, password)})
        return user, step

    async def change_password(self, principal: Principal, old_password: str, new_password: str, totp_code: str,
                              source: str, now: datetime) -> None:
        """Proven by the old password and a TOTP code not used before; the person's tokens are revoked."""
        user = await self.store.user(principal.user_id)
        if user is None:
            raise Rejected(Code.NOT_FOUND, "no such user")
        try:
            check_new_password(new_password, user["username"], self.min_password_length)
        except AccountError as exc:
            raise Rejected(Code.INVALID_ARGUMENT, str(exc)) from exc
        event = audit_pb2.AuditEvent(action="user.password", subject=user["_id"])
        reason = ""
        if not await self.throttle.attempt(source, user["username"], now):
            reason = "throttled after repeated failures"
        else:
            ok = await asyncio.to_thread(self.credentials.verify, user["password_hash"], old_password)
            # A code already used (to log in, or for an earlier change) is refused like a wrong one.
            step = totp_step(user["totp_secret"], totp_code, now, user.get("last_totp_step", 0))
            if not ok or step is None:
                reason = "wrong password or code"
            elif not await self.store.claim_totp_step(user["_id"], step, {}):
                reason = "TOTP code reused"
        if reason:
            event.outcome, event.reason = audit_pb2.OUTCOME_DENIED, reason
            await self.auditor.record(principal, event)
            raise Rejected(Code.PERMISSION_DENIED, "old password or code is wrong", reason)
        await self.throttle.succeeded(source, user["username"])
        event.outcome = audit_pb2.OUTCOME_ALLOWED
        await self.auditor.record(principal, event)
        await self.revoker.revoke(user["_id"])
        new_hash = await asyncio.to_thread(self.credentials.hash, new_password)
        await self.store.update_user(user["_id"], user["agency_id"],
                                      {"password_hash": new_hash, "password_changed_at": now})

    async def logout(self, principal: Principal) -> None:
        # Recorded with the caller's token while it is still valid, then revoked.
        await self.auditor.record(principal, audit_pb2.AuditEvent(
            action="logout", outcome=audit_pb2.OUTCOME_ALLOWED, subject=principal.user_id))
        await self.revoker.revoke(principal.user_id)
