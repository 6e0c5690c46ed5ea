"""gRPC adapter of the identity service: login with password + TOTP, logout, agency administration.

Logins are throttled by source address and by username (adapters/throttle.py), never locked by failures;
every refusal before both factors are proven gets one answer. Logout, password change, lock and role change
revoke the user's tokens in every service (services/common/auth.py Revocations).

Every login attempt and every change of a user or an agency is written to the audit trail before the
answer goes out; when the audit trail cannot be written the call fails with UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import Counter
from redis.exceptions import RedisError

from services.audit.client import AccessGate, AuditClient
from services.common.agencies import HOTLIST_SHARE_WITH
from services.common.auth import (
    TOKEN_KEY,
    Permission,
    Principal,
    Revocations,
    Role,
    TokenIssuer,
    load_private_key,
    token_verifier,
)
from services.common.data_keys import load_master_key
from services.common.grpc_server import ServiceSpec, abort, retry_until_done
from services.common.reads import to_timestamp
from services.common.rejected import Code, Rejected
from services.common.service_tokens import service_signer
from services.common.storage import mongo_client, mongo_database, mongo_dependency, redis_client, redis_dependency
from services.identity.adapters.store import IdentityStore
from services.identity.adapters.throttle import Backoff, LoginThrottle
from services.identity.domain.accounts import (
    PROTO_BY_ROLE,
    AccountError,
    Credentials,
    check_agency_id,
    check_new_password,
    generate_password,
    locked,
    new_totp_secret,
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
# The one answer to every login refused before both factors are proven.
_BAD_LOGIN = "invalid username, password or code"
# The one answer to an admin action on a user that does not exist or belongs to another agency.
_NO_SUCH_USER = "no such user in your agency"
# locked_until of an account locked by an admin: until an admin unlocks it.
LOCKED_FOR_GOOD = datetime(9999, 12, 31, tzinfo=UTC)

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


def _refused(reason: str) -> Rejected:
    """A refused login: audited with `reason`, answered with the one answer every failure gets."""
    return Rejected(Code.UNAUTHENTICATED, _BAD_LOGIN, reason)


def peer_address(context, trusted_proxies: list[IPv4Network | IPv6Network]) -> str:
    """The source address of a call: the peer's, or the 'x-forwarded-for' it sends when it is a trusted proxy."""
    peer = context.peer() or ""
    host = peer.split(":", 1)[1].rsplit(":", 1)[0].strip("[]") if ":" in peer else peer
    try:
        address = ip_address(host)
    except ValueError:
        return host or "unknown"
    if any(address in net for net in trusted_proxies):
        for key, value in context.invocation_metadata() or ():
            if key == "x-forwarded-for" and isinstance(value, str):
                forwarded = value.split(",")[-1].strip()
                try:
                    return str(ip_address(forwarded))
                except ValueError:
                    break
    return str(address)


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, settings: IdentitySettings, store: IdentityStore, issuer: TokenIssuer, verifier,
                 audit: AuditClient, throttle: LoginThrottle, revocations: Revocations):
        self._settings = settings
        self._store = store
        self._issuer = issuer
        self._gate = AccessGate(verifier, audit)
        self._throttle = throttle
        self._revocations = revocations
        self._credentials = Credentials.argon2id(settings.argon2_time_cost, settings.argon2_memory_kib,
                                                 settings.argon2_parallelism)
        # Verified against when the username is unknown, so that both cases take the same time.
        self._dummy_hash = self._credentials.hash("not a password of anyone")

    # --- audit ------------------------------------------------------------------------------------------

    async def _caller(self, context, permission: Permission, action: str) -> Principal:
        """The verified caller; a refused known caller is audited (as `action`, denied) before the refusal."""
        return await self._gate.admit(context, permission, event=audit_pb2.AuditEvent(action=action))

    async def _admin(self, context, action: str) -> Principal:
        return await self._caller(context, Permission.MANAGE_USERS, action)

    async def _revoke(self, context, user_id: str) -> None:
        """Void every token of `user_id` issued until now, in every service (fail closed)."""
        try:
            await self._revocations.revoke(user_id, datetime.now(UTC),
                                           self._issuer.ttl + timedelta(seconds=self._settings.token_leeway_s))
        except (RedisError, OSError) as exc:
            log.error("token revocation failed", extra={"error": repr(exc)[:200]})
            await context.abort(grpc.StatusCode.UNAVAILABLE, "could not revoke the tokens; try again later")

    async def _attempt(self, context, source: str, username: str, now: datetime) -> bool:
        """Count a credential check in the throttles; False while they make it wait."""
        try:
            return await self._throttle.attempt(source, username, now)
        except (RedisError, OSError) as exc:
            log.error("login throttle unavailable", extra={"error": repr(exc)[:200]})
            await context.abort(grpc.StatusCode.UNAVAILABLE, "login unavailable; try again later")
            raise

    # --- login ------------------------------------------------------------------------------------------

    async def _check_login(self, request, user: dict[str, Any] | None, now: datetime) -> tuple[dict[str, Any], int]:
        """Both factors are checked, whatever the first gave, before anything but the one answer is said."""
        if user is None:
            await asyncio.to_thread(self._credentials.verify, self._dummy_hash, request.password)
            raise _refused("unknown user")
        password_ok = await asyncio.to_thread(self._credentials.verify, user["password_hash"], request.password)
        step = totp_step(user["totp_secret"], request.totp_code, now, user.get("last_totp_step", 0))
        if not password_ok:
            raise _refused("wrong password")
        if not request.totp_code.strip():
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
        if self._credentials.needs_rehash(user["password_hash"]):
            await self._store.update_user(user["_id"], user["agency_id"],
                                          {"password_hash": await asyncio.to_thread(self._credentials.hash,
                                                                                    request.password)})
        return user, step

    async def Login(self, request, context):  # noqa: N802 - gRPC method name
        now = datetime.now(UTC)
        event = audit_pb2.AuditEvent(action="login", username=request.username[:64])
        source = peer_address(context, self._settings.login_trusted_proxies)
        try:
            username = normalize_username(request.username)
        except AccountError:
            username = ""
        found: dict[str, Any] | None = None
        try:
            if not await self._attempt(context, source, username, now):
                raise _refused("throttled after repeated failures")
            found = await self._store.user_by_name(username) if username else None
            user, step = await self._check_login(request, found, now)
            if not await self._store.claim_totp_step(user["_id"], step, {"last_login_at": now}):
                raise _refused("TOTP code reused")
        except Rejected as refused:
            LOGINS.labels("refused").inc()
            if found is not None:
                event.user_id, event.agency_id = found["_id"], found["agency_id"]
            event.outcome, event.reason = audit_pb2.OUTCOME_DENIED, refused.reason
            await self._gate.record(None, event)
            await abort(context, refused)
        await self._throttle.succeeded(source, username)
        agency = await self._store.agency(user["agency_id"]) or {}
        partners = (await self._store.sharing_with(user["agency_id"])
                    if Role.PARTNER_AGENCY_USER in user["roles"] else [])
        principal = Principal(user_id=user["_id"], username=user["username"], agency_id=user["agency_id"],
                              roles=frozenset(user["roles"]), second_factor=True,
                              training_until=training_until(user),
                              case_number_required=bool(agency.get("case_number_required", False)),
                              partner_agencies=tuple(partners))
        token, expires = self._issuer.issue(principal, now, ["pwd", "otp"])
        event.user_id, event.agency_id, event.outcome = user["_id"], user["agency_id"], audit_pb2.OUTCOME_ALLOWED
        event.roles.extend(sorted(user["roles"]))
        await self._gate.record(None, event)
        LOGINS.labels("ok").inc()
        return identity_pb2.LoginResponse(access_token=token, expires_at=to_timestamp(expires),
                                          user=user_to_proto(user))

    async def ChangePassword(self, request, context):  # noqa: N802
        principal = await self._caller(context, Permission.OWN_ACCOUNT, "user.password")
        now = datetime.now(UTC)
        user = await self._store.user(principal.user_id)
        if user is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such user")
        try:
            check_new_password(request.new_password, user["username"], self._settings.min_password_length)
        except AccountError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        source = peer_address(context, self._settings.login_trusted_proxies)
        reason = ""
        if not await self._attempt(context, source, user["username"], now):
            reason = "throttled after repeated failures"
        else:
            ok = await asyncio.to_thread(self._credentials.verify, user["password_hash"], request.old_password)
            # A code already used (to log in, or for an earlier change) is refused like a wrong one.
            step = totp_step(user["totp_secret"], request.totp_code, now, user.get("last_totp_step", 0))
            if not ok or step is None:
                reason = "wrong password or code"
            elif not await self._store.claim_totp_step(user["_id"], step, {}):
                reason = "TOTP code reused"
        if reason:
            await self._gate.record(principal, audit_pb2.AuditEvent(
                action="user.password", outcome=audit_pb2.OUTCOME_DENIED, subject=user["_id"], reason=reason))
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "old password or code is wrong")
        await self._throttle.succeeded(source, user["username"])
        await self._gate.record(principal, audit_pb2.AuditEvent(
            action="user.password", outcome=audit_pb2.OUTCOME_ALLOWED, subject=user["_id"]))
        await self._revoke(context, user["_id"])
        new_hash = await asyncio.to_thread(self._credentials.hash, request.new_password)
        await self._store.update_user(user["_id"], user["agency_id"],
                                      {"password_hash": new_hash, "password_changed_at": now})
        return identity_pb2.ChangePasswordResponse()

    async def Logout(self, request, context):  # noqa: N802
        principal = await self._caller(context, Permission.OWN_ACCOUNT, "logout")
        # Recorded with the caller's token while it is still valid, then revoked.
        await self._gate.record(principal, audit_pb2.AuditEvent(
            action="logout", outcome=audit_pb2.OUTCOME_ALLOWED, subject=principal.user_id))
        await self._revoke(context, principal.user_id)
        return identity_pb2.LogoutResponse()

    # --- administration (own agency only; audited before the change is applied) --------------------------

    def _change_event(self, action: str, subject: str, details: dict[str, Any]) -> audit_pb2.AuditEvent:
        event = audit_pb2.AuditEvent(action=action, outcome=audit_pb2.OUTCOME_ALLOWED, subject=subject)
        event.details.update(details)
        return event

    async def CreateUser(self, request, context):  # noqa: N802
        admin = await self._admin(context, "user.create")
        generated = "" if request.initial_password else generate_password()
        password = request.initial_password or generated
        try:
            username = normalize_username(request.username)
            roles = roles_from_proto(list(request.roles))
            check_new_password(password, username, self._settings.min_password_length)
        except AccountError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if await self._store.user_by_name(username) is not None:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, "username taken")
        password_hash = await asyncio.to_thread(self._credentials.hash, password)
        doc, secret = new_user_document(username, admin.agency_id, request.display_name, roles, password_hash,
                                        training_document(request.training), datetime.now(UTC))
        await self._gate.record(admin, self._change_event(
            "user.create", doc["_id"], {"username": username, "roles": roles}))
        await self._store.insert_user(doc)
        return identity_pb2.CreateUserResponse(user=user_to_proto(doc), totp_secret=secret,
                                               totp_uri=totp_uri(secret, username, admin.agency_id),
                                               generated_password=generated)

    async def ListUsers(self, request, context):  # noqa: N802
        admin = await self._admin(context, "user.list")
        return identity_pb2.ListUsersResponse(users=[user_to_proto(d)
                                                     for d in await self._store.users(admin.agency_id)])

    async def GetUser(self, request, context):  # noqa: N802
        admin = await self._admin(context, "user.view")
        user = await self._store.user(request.user_id) if request.user_id else None
        if user is None or user["agency_id"] != admin.agency_id:
            await self._gate.deny(admin, audit_pb2.AuditEvent(action="user.view", subject=request.user_id[:128]),
                                  Rejected(Code.NOT_FOUND, _NO_SUCH_USER))
        return user_to_proto(user)

    async def ResetPassword(self, request, context):  # noqa: N802
        admin = await self._admin(context, "user.reset_password")
        password = generate_password()
        password_hash = await asyncio.to_thread(self._credentials.hash, password)
        doc = await self._change_user(context, admin, request.user_id, "user.reset_password",
                                      {"password_hash": password_hash, "password_changed_at": datetime.now(UTC)}, {})
        await self._revoke(context, doc["_id"])
        return identity_pb2.ResetPasswordResponse(user=user_to_proto(doc), generated_password=password)

    async def ResetTotp(self, request, context):  # noqa: N802
        admin = await self._admin(context, "user.reset_totp")
        secret = new_totp_secret()
        doc = await self._change_user(context, admin, request.user_id, "user.reset_totp", {"totp_secret": secret}, {})
        await self._revoke(context, doc["_id"])
        return identity_pb2.ResetTotpResponse(user=user_to_proto(doc), totp_secret=secret,
                                              totp_uri=totp_uri(secret, doc["username"], admin.agency_id))

    async def _change_user(self, context, admin: Principal, user_id: str, action: str, changes: dict[str, Any],
                           details: dict[str, Any]) -> dict[str, Any]:
        """Apply `changes` to a user of the admin's agency, audited first. A user of another agency is refused,
        audited as denied, with the answer a missing user gets (no telling which)."""
        user = await self._store.user(user_id)
        if user is None or user["agency_id"] != admin.agency_id:
            await self._gate.deny(admin, audit_pb2.AuditEvent(action=action, subject=user_id[:128]),
                                  Rejected(Code.NOT_FOUND, _NO_SUCH_USER))
        await self._gate.record(admin, self._change_event(action, user_id, details))
        doc = await self._store.update_user(user_id, admin.agency_id, changes)
        if doc is None:  # moved to another agency meanwhile
            await context.abort(grpc.StatusCode.NOT_FOUND, _NO_SUCH_USER)
        return doc

    async def SetRoles(self, request, context):  # noqa: N802
        admin = await self._admin(context, "user.roles")
        try:
            roles = roles_from_proto(list(request.roles))
        except AccountError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        doc = await self._change_user(context, admin, request.user_id, "user.roles", {"roles": roles},
                                      {"roles": roles})
        await self._revoke(context, doc["_id"])  # tokens carry the roles: the new ones apply from the next login
        return user_to_proto(doc)

    async def RecordTraining(self, request, context):  # noqa: N802
        admin = await self._admin(context, "user.training")
        training = training_document(request.training)
        if training is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "training.expires_at is required")
        return user_to_proto(await self._change_user(
            context, admin, request.user_id, "user.training", {"training": training},
            {"course": training["course"], "expires_at": training["expires_at"].isoformat()}))

    async def LockUser(self, request, context):  # noqa: N802
        admin = await self._admin(context, "user.lock")
        doc = await self._change_user(context, admin, request.user_id, "user.lock", {"locked_until": LOCKED_FOR_GOOD},
                                      {})
        await self._revoke(context, doc["_id"])
        return user_to_proto(doc)

    async def UnlockUser(self, request, context):  # noqa: N802
        admin = await self._admin(context, "user.unlock")
        doc = await self._change_user(context, admin, request.user_id, "user.unlock", {"locked_until": None}, {})
        await self._throttle.clear_account(doc["username"])
        return user_to_proto(doc)

    async def SetAgencyPolicy(self, request, context):  # noqa: N802
        admin = await self._caller(context, Permission.MANAGE_AGENCY, "agency.policy")
        try:
            share_with = sorted({check_agency_id(a) for a in request.share_with} - {admin.agency_id})
            hotlist_share_with = sorted({check_agency_id(a) for a in request.hotlist_share_with} - {admin.agency_id})
        except AccountError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        await self._gate.record(admin, self._change_event(
            "agency.policy", admin.agency_id,
            {"share_with": share_with, "case_number_required": request.case_number_required,
             HOTLIST_SHARE_WITH: hotlist_share_with}))
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


def signing_key(settings: IdentitySettings) -> Ed25519PrivateKey:
    """The newest signing key: the last *.pem by name in the keys folder, else the key file (or dev key)."""
    if settings.token_signing_keys_dir is not None:
        newest = sorted(settings.token_signing_keys_dir.glob("*.pem"))
        if not newest:
            raise SystemExit(f"no signing key (*.pem) in {settings.token_signing_keys_dir}")
        return load_private_key(newest[-1], settings, TOKEN_KEY)
    return load_private_key(settings.token_signing_key_file, settings, TOKEN_KEY)


async def make_spec(settings: IdentitySettings) -> ServiceSpec:
    mongo = mongo_client(settings)
    db = mongo_database(mongo, settings)
    store = IdentityStore(db, load_master_key(settings))
    redis = redis_client(settings)
    issuer = TokenIssuer(signing_key(settings), timedelta(minutes=settings.token_ttl_minutes))
    audit = AuditClient(settings.audit_address, settings.audit_timeout_s,
                        service_signer(settings.service_name, settings), settings)
    base = settings.login_backoff_base_s
    throttle = LoginThrottle(redis,
                             Backoff(settings.login_source_free_failures, base, settings.login_source_backoff_max_s),
                             Backoff(settings.login_account_free_failures, base, settings.login_account_backoff_max_s),
                             settings.login_throttle_window_s)
    servicer = IdentityServicer(settings, store, issuer, token_verifier(settings, redis), audit, throttle,
                                Revocations(redis))

    return ServiceSpec(
        service_names=[identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name],
        register=lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server),
        dependencies=[mongo_dependency(mongo), redis_dependency(redis), audit.dependency()],
        background=[lambda: retry_until_done("identity indexes", store.ensure_indexes)],
        close=[audit.close, redis.aclose, mongo.close],
    )
