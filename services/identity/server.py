"""gRPC adapter of the identity service: login with password + TOTP, agency administration.

Every login attempt and every change of a user or an agency is written to the audit trail before the
answer goes out; when the audit trail cannot be written the call fails with UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from prometheus_client import Counter

from services.audit.client import AuditClient, AuditUnavailable
from services.common.agencies import HOTLIST_SHARE_WITH
from services.common.auth import (
    TOKEN_KEY,
    AuthError,
    Permission,
    Principal,
    Role,
    TokenIssuer,
    check_call,
    load_private_key,
    token_verifier,
)
from services.common.grpc_server import ServiceSpec, retry_until_done
from services.common.reads import to_timestamp
from services.common.service_tokens import service_signer
from services.common.storage import mongo_client, mongo_database, mongo_dependency
from services.identity.adapters.store import IdentityStore
from services.identity.domain.accounts import (
    PROTO_BY_ROLE,
    AccountError,
    Credentials,
    LockoutPolicy,
    check_agency_id,
    check_new_password,
    new_user_document,
    normalize_username,
    roles_from_proto,
    totp_step,
    totp_uri,
    training_document,
    training_until,
)
from services.identity.settings import IdentitySettings
from sightline.audit.v1 import audit_pb2
from sightline.identity.v1 import identity_pb2, identity_pb2_grpc

log = logging.getLogger(__name__)

LOGINS = Counter("sightline_identity_logins_total", "Login attempts by outcome", ["outcome"])
_BAD_LOGIN = "invalid username, password or code"




def user_to_proto(doc: dict[str, Any]) -> identity_pb2.User:
    user = identity_pb2.User(user_id=doc["_id"], username=doc["username"], agency_id=doc["agency_id"],
                             display_name=doc.get("display_name", ""), active=doc.get("active", False),
                             roles=[PROTO_BY_ROLE[Role(r)] for r in doc.get("roles", []) if r in PROTO_BY_ROLE])
    if training := doc.get("training"):
        user.training.course = training.get("course", "")
        user.training.expires_at.CopyFrom(to_timestamp(training["expires_at"]))
        if training.get("completed_at"):
            user.training.completed_at.CopyFrom(to_timestamp(training["completed_at"]))
    if doc.get("locked_until"):
        user.locked_until.CopyFrom(to_timestamp(doc["locked_until"]))
    return user


def agency_to_proto(doc: dict[str, Any]) -> identity_pb2.Agency:
    return identity_pb2.Agency(agency_id=doc["_id"], name=doc.get("name", ""), share_with=doc.get("share_with", []),
                               case_number_required=doc.get("case_number_required", False),
                               hotlist_share_with=doc.get(HOTLIST_SHARE_WITH, []))


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, reason: str, user: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.message, self.reason, self.user = code, message, reason, user


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, settings: IdentitySettings, store: IdentityStore, issuer: TokenIssuer, verifier,
                 audit: AuditClient):
        self._settings = settings
        self._store = store
        self._issuer = issuer
        self._verifier = verifier
        self._audit = audit
        self._credentials = Credentials.argon2id(settings.argon2_time_cost, settings.argon2_memory_kib,
                                                 settings.argon2_parallelism)
        self._lockout = LockoutPolicy(settings.max_failed_logins, timedelta(minutes=settings.lockout_minutes))
        # Verified against when the username is unknown, so that both cases take the same time.
        self._dummy_hash = self._credentials.hash("not a password of anyone")

    # --- audit ------------------------------------------------------------------------------------------

    async def _audit_or_abort(self, context, event: audit_pb2.AuditEvent, actor_token: str = "") -> None:
        """Record `event` as identity's own (a login, say), or as the action of the holder of `actor_token`."""
        try:
            await self._audit.record(event, actor_token)
        except AuditUnavailable as exc:
            log.error("audit trail unavailable: refusing", extra={"error": str(exc)[:200]})
            await context.abort(grpc.StatusCode.UNAVAILABLE, "audit trail unavailable; try again later")

    async def _caller(self, context, permission: Permission, action: str) -> Principal:
        """The verified caller; a refused known caller is audited (as `action`, denied) before the refusal."""
        try:
            return check_call(context, self._verifier, permission)
        except AuthError as exc:
            if exc.principal is not None:
                await self._audit.record_refusal(audit_pb2.AuditEvent(action=action), exc.principal.token, exc.message)
            await context.abort(exc.code, exc.message)
            raise

    async def _admin(self, context, action: str) -> Principal:
        return await self._caller(context, Permission.MANAGE_USERS, action)

    # --- login ------------------------------------------------------------------------------------------

    async def _check_login(self, request, now: datetime) -> tuple[dict[str, Any], int]:
        try:
            username = normalize_username(request.username)
        except AccountError:
            username = ""
        user = await self._store.user_by_name(username) if username else None
        if user is None:
            await asyncio.to_thread(self._credentials.verify, self._dummy_hash, request.password)
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, _BAD_LOGIN, "unknown user")
        if not user.get("active", False):
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, "this account is disabled", "account disabled", user)
        if (locked := user.get("locked_until")) and locked > now:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          f"account locked after repeated failed logins until {locked:%H:%M} UTC; "
                          "an agency admin can unlock it", "account locked", user)
        if not await asyncio.to_thread(self._credentials.verify, user["password_hash"], request.password):
            await self._failure(user, now)
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, _BAD_LOGIN, "wrong password", user)
        if not request.totp_code:
            await self._failure(user, now)
            raise Refused(grpc.StatusCode.UNAUTHENTICATED,
                          "two-factor login: a TOTP code from your authenticator app is required", "no second factor",
                          user)
        step = totp_step(user["totp_secret"], request.totp_code, now, user.get("last_totp_step", 0))
        if step is None:
            await self._failure(user, now)
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, _BAD_LOGIN, "wrong or reused TOTP code", user)
        until = training_until(user)
        if until is None or until <= now:
            when = f" on {until:%Y-%m-%d}" if until else ""
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          f"your required training expired{when}: renew it to regain access", "training expired", user)
        if self._credentials.needs_rehash(user["password_hash"]):
            await self._store.update_user(user["_id"], user["agency_id"],
                                          {"password_hash": await asyncio.to_thread(self._credentials.hash,
                                                                                    request.password)})
        return user, step

    async def _failure(self, user: dict[str, Any], now: datetime) -> None:
        failures = await self._store.record_failure(user["_id"])
        if (until := self._lockout.locked_until(failures, now)) is not None:
            await self._store.lock(user["_id"], until)

    async def Login(self, request, context):  # noqa: N802 - gRPC method name
        now = datetime.now(UTC)
        event = audit_pb2.AuditEvent(action="login", username=request.username[:64])
        try:
            user, step = await self._check_login(request, now)
        except Refused as refused:
            LOGINS.labels("refused").inc()
            if refused.user is not None:
                event.user_id, event.agency_id = refused.user["_id"], refused.user["agency_id"]
            event.outcome, event.reason = audit_pb2.OUTCOME_DENIED, refused.reason
            await self._audit_or_abort(context, event)
            await context.abort(refused.code, refused.message)
            raise
        agency = await self._store.agency(user["agency_id"]) or {}
        partners = (await self._store.sharing_with(user["agency_id"])
                    if Role.PARTNER_AGENCY_USER in user["roles"] else [])
        principal = Principal(user_id=user["_id"], username=user["username"], agency_id=user["agency_id"],
                              roles=frozenset(user["roles"]), second_factor=True,
                              training_until=training_until(user),
                              case_number_required=bool(agency.get("case_number_required", False)),
                              partner_agencies=tuple(partners))
        token, expires = self._issuer.issue(principal, now, ["pwd", "otp"])
        if not await self._store.claim_login(user["_id"], step, now):
            LOGINS.labels("refused").inc()
            event.user_id, event.agency_id = user["_id"], user["agency_id"]
            event.outcome, event.reason = audit_pb2.OUTCOME_DENIED, "TOTP code reused"
            await self._audit_or_abort(context, event)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, _BAD_LOGIN)
        event.user_id, event.agency_id, event.outcome = user["_id"], user["agency_id"], audit_pb2.OUTCOME_ALLOWED
        event.roles.extend(sorted(user["roles"]))
        await self._audit_or_abort(context, event)
        LOGINS.labels("ok").inc()
        return identity_pb2.LoginResponse(access_token=token, expires_at=to_timestamp(expires),
                                          user=user_to_proto(user))

    async def ChangePassword(self, request, context):  # noqa: N802
        principal = await self._caller(context, Permission.OWN_ACCOUNT, "user.password")  # any signed-in person
        now = datetime.now(UTC)
        user = await self._store.user(principal.user_id)
        if user is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such user")
        ok = await asyncio.to_thread(self._credentials.verify, user["password_hash"], request.old_password)
        if not ok or totp_step(user["totp_secret"], request.totp_code, now, 0) is None:
            await self._failure(user, now)
            await self._audit_or_abort(context, audit_pb2.AuditEvent(
                action="user.password", outcome=audit_pb2.OUTCOME_DENIED, subject=user["_id"],
                reason="wrong password or code"), principal.token)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "old password or code is wrong")
        try:
            check_new_password(request.new_password, user["username"], self._settings.min_password_length)
        except AccountError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        await self._audit_or_abort(context, audit_pb2.AuditEvent(
            action="user.password", outcome=audit_pb2.OUTCOME_ALLOWED, subject=user["_id"]), principal.token)
        new_hash = await asyncio.to_thread(self._credentials.hash, request.new_password)
        await self._store.update_user(user["_id"], user["agency_id"],
                                      {"password_hash": new_hash, "password_changed_at": now})
        return identity_pb2.ChangePasswordResponse()

    # --- administration (own agency only; audited before the change is applied) --------------------------

    def _change_event(self, action: str, subject: str, details: dict[str, Any]) -> audit_pb2.AuditEvent:
        event = audit_pb2.AuditEvent(action=action, outcome=audit_pb2.OUTCOME_ALLOWED, subject=subject)
        event.details.update(details)
        return event

    async def CreateUser(self, request, context):  # noqa: N802
        admin = await self._admin(context, "user.create")
        try:
            username = normalize_username(request.username)
            roles = roles_from_proto(list(request.roles))
            check_new_password(request.initial_password, username, self._settings.min_password_length)
        except AccountError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if await self._store.user_by_name(username) is not None:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, "username taken")
        password_hash = await asyncio.to_thread(self._credentials.hash, request.initial_password)
        doc, secret = new_user_document(username, admin.agency_id, request.display_name, roles, password_hash,
                                        training_document(request.training), datetime.now(UTC))
        await self._audit_or_abort(context, self._change_event(
            "user.create", doc["_id"], {"username": username, "roles": roles}), admin.token)
        await self._store.insert_user(doc)
        return identity_pb2.CreateUserResponse(user=user_to_proto(doc), totp_secret=secret,
                                               totp_uri=totp_uri(secret, username, admin.agency_id))

    async def _change_user(self, context, admin: Principal, user_id: str, action: str, changes: dict[str, Any],
                           details: dict[str, Any]):
        if await self._store.user(user_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such user")
        await self._audit_or_abort(context, self._change_event(action, user_id, details), admin.token)
        doc = await self._store.update_user(user_id, admin.agency_id, changes)
        if doc is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such user in your agency")
        return user_to_proto(doc)

    async def SetRoles(self, request, context):  # noqa: N802
        admin = await self._admin(context, "user.roles")
        try:
            roles = roles_from_proto(list(request.roles))
        except AccountError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return await self._change_user(context, admin, request.user_id, "user.roles", {"roles": roles},
                                       {"roles": roles})

    async def RecordTraining(self, request, context):  # noqa: N802
        admin = await self._admin(context, "user.training")
        training = training_document(request.training)
        if training is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "training.expires_at is required")
        return await self._change_user(context, admin, request.user_id, "user.training", {"training": training},
                                       {"course": training["course"], "expires_at": training["expires_at"].isoformat()})

    async def UnlockUser(self, request, context):  # noqa: N802
        admin = await self._admin(context, "user.unlock")
        return await self._change_user(context, admin, request.user_id, "user.unlock",
                                       {"locked_until": None, "failed_logins": 0}, {})

    async def SetAgencyPolicy(self, request, context):  # noqa: N802
        admin = await self._caller(context, Permission.MANAGE_AGENCY, "agency.policy")
        try:
            share_with = sorted({check_agency_id(a) for a in request.share_with} - {admin.agency_id})
            hotlist_share_with = sorted({check_agency_id(a) for a in request.hotlist_share_with} - {admin.agency_id})
        except AccountError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        await self._audit_or_abort(context, self._change_event(
            "agency.policy", admin.agency_id,
            {"share_with": share_with, "case_number_required": request.case_number_required,
             HOTLIST_SHARE_WITH: hotlist_share_with}), admin.token)
        doc = await self._store.set_agency_policy(admin.agency_id, share_with, request.case_number_required,
                                                  hotlist_share_with)
        if doc is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "your agency is not registered")
        return agency_to_proto(doc)

    async def GetAgency(self, request, context):  # noqa: N802
        principal = await self._caller(context, Permission.MANAGE_AGENCY, "agency.view")
        doc = await self._store.agency(principal.agency_id)
        if doc is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "your agency is not registered")
        return agency_to_proto(doc)


async def make_spec(settings: IdentitySettings) -> ServiceSpec:
    mongo = mongo_client(settings)
    db = mongo_database(mongo, settings)
    store = IdentityStore(db)
    issuer = TokenIssuer(load_private_key(settings.token_signing_key_file, settings, TOKEN_KEY),
                         timedelta(minutes=settings.token_ttl_minutes))
    audit = AuditClient(settings.audit_address, settings.audit_timeout_s,
                        service_signer(settings.service_name, settings))
    servicer = IdentityServicer(settings, store, issuer, token_verifier(settings), audit)


    return ServiceSpec(
        service_names=[identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name],
        register=lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server),
        dependencies=[mongo_dependency(mongo), audit.dependency()],
        background=[lambda: retry_until_done("identity indexes", store.ensure_indexes)],
        close=[audit.close, mongo.close],
    )
