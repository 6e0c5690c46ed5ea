"""gRPC adapter of the identity service: login with password + TOTP, logout, agency administration.

The servicer admits each call through the access gate, translates protobuf and calls the use cases in
service_layer/ (logins.py: a person's own account; administration.py: an agency admin's). Refusals raised as
`Rejected` become the call's status (common/grpc_server.py RejectionsAsStatus).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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
from services.common.grpc_server import ServiceSpec, retry_until_done
from services.common.reads import to_timestamp
from services.common.rejected import Code, Rejected
from services.common.service_tokens import service_signer
from services.common.storage import mongo_client, mongo_database, mongo_dependency, redis_client, redis_dependency
from services.identity.adapters.revoker import TokenRevoker
from services.identity.adapters.store import IdentityStore
from services.identity.adapters.throttle import Backoff, LoginThrottle
from services.identity.domain.accounts import (
    PROTO_BY_ROLE,
    AccountError,
    Credentials,
    roles_from_proto,
    totp_uri,
    training_document,
)
from services.identity.service_layer.administration import Administration
from services.identity.service_layer.logins import Logins
from services.identity.settings import IdentitySettings
from sightline.audit.v1 import audit_pb2
from sightline.identity.v1 import identity_pb2, identity_pb2_grpc


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


def _roles(values) -> list[str]:
    try:
        return roles_from_proto(list(values))
    except AccountError as exc:
        raise Rejected(Code.INVALID_ARGUMENT, str(exc)) from exc


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
    """Admits each call through the access gate, translates protobuf and calls the use cases."""

    def __init__(self, settings: IdentitySettings, gate: AccessGate, logins: Logins, administration: Administration):
        self._trusted_proxies = settings.login_trusted_proxies
        self._gate = gate
        self._logins = logins
        self._admin = administration

    async def _caller(self, context, permission: Permission, action: str) -> Principal:
        """The verified caller; a refused known caller is audited (as `action`, denied) before the refusal."""
        return await self._gate.admit(context, permission, event=audit_pb2.AuditEvent(action=action))

    async def _agency_admin(self, context, action: str) -> Principal:
        return await self._caller(context, Permission.MANAGE_USERS, action)

    async def Login(self, request, context):  # noqa: N802 - gRPC method name
        session = await self._logins.login(request.username, request.password, request.totp_code,
                                           peer_address(context, self._trusted_proxies), datetime.now(UTC))
        return identity_pb2.LoginResponse(access_token=session.token, expires_at=to_timestamp(session.expires),
                                          user=user_to_proto(session.user))

    async def ChangePassword(self, request, context):  # noqa: N802
        principal = await self._caller(context, Permission.OWN_ACCOUNT, "user.password")
        await self._logins.change_password(principal, request.old_password, request.new_password, request.totp_code,
                                           peer_address(context, self._trusted_proxies), datetime.now(UTC))
        return identity_pb2.ChangePasswordResponse()

    async def Logout(self, request, context):  # noqa: N802
        await self._logins.logout(await self._caller(context, Permission.OWN_ACCOUNT, "logout"))
        return identity_pb2.LogoutResponse()

    async def CreateUser(self, request, context):  # noqa: N802
        admin = await self._agency_admin(context, "user.create")
        created = await self._admin.create_user(admin, request.username, request.display_name, _roles(request.roles),
                                                training_document(request.training), request.initial_password)
        username = created.user["username"]
        return identity_pb2.CreateUserResponse(user=user_to_proto(created.user), totp_secret=created.totp_secret,
                                               totp_uri=totp_uri(created.totp_secret, username, admin.agency_id),
                                               generated_password=created.password)

    async def ListUsers(self, request, context):  # noqa: N802
        admin = await self._agency_admin(context, "user.list")
        return identity_pb2.ListUsersResponse(users=[user_to_proto(d) for d in await self._admin.users(admin)])

    async def GetUser(self, request, context):  # noqa: N802
        admin = await self._agency_admin(context, "user.view")
        return user_to_proto(await self._admin.user(admin, request.user_id))

    async def ResetPassword(self, request, context):  # noqa: N802
        admin = await self._agency_admin(context, "user.reset_password")
        reset = await self._admin.reset_password(admin, request.user_id)
        return identity_pb2.ResetPasswordResponse(user=user_to_proto(reset.user), generated_password=reset.password)

    async def ResetTotp(self, request, context):  # noqa: N802
        admin = await self._agency_admin(context, "user.reset_totp")
        reset = await self._admin.reset_totp(admin, request.user_id)
        return identity_pb2.ResetTotpResponse(user=user_to_proto(reset.user), totp_secret=reset.totp_secret,
                                              totp_uri=totp_uri(reset.totp_secret, reset.user["username"],
                                                                admin.agency_id))

    async def SetRoles(self, request, context):  # noqa: N802
        admin = await self._agency_admin(context, "user.roles")
        return user_to_proto(await self._admin.set_roles(admin, request.user_id, _roles(request.roles)))

    async def RecordTraining(self, request, context):  # noqa: N802
        admin = await self._agency_admin(context, "user.training")
        return user_to_proto(await self._admin.record_training(admin, request.user_id,
                                                               training_document(request.training)))

    async def LockUser(self, request, context):  # noqa: N802
        admin = await self._agency_admin(context, "user.lock")
        return user_to_proto(await self._admin.lock(admin, request.user_id))

    async def UnlockUser(self, request, context):  # noqa: N802
        admin = await self._agency_admin(context, "user.unlock")
        return user_to_proto(await self._admin.unlock(admin, request.user_id))

    async def SetAgencyPolicy(self, request, context):  # noqa: N802
        admin = await self._caller(context, Permission.MANAGE_AGENCY, "agency.policy")
        return agency_to_proto(await self._admin.set_agency_policy(
            admin, list(request.share_with), request.case_number_required, list(request.hotlist_share_with)))

    async def GetAgency(self, request, context):  # noqa: N802
        principal = await self._caller(context, Permission.MANAGE_AGENCY, "agency.view")
        return agency_to_proto(await self._admin.agency(principal))


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
    credentials = Credentials.argon2id(settings.argon2_time_cost, settings.argon2_memory_kib,
                                       settings.argon2_parallelism)
    revoker = TokenRevoker(Revocations(redis), issuer.ttl + timedelta(seconds=settings.token_leeway_s))
    gate = AccessGate(token_verifier(settings, redis), audit)
    servicer = IdentityServicer(
        settings, gate,
        Logins(store, throttle, revoker, issuer, credentials, gate, settings.min_password_length),
        Administration(store, throttle, revoker, credentials, gate, settings.min_password_length))

    return ServiceSpec(
        service_names=[identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name],
        register=lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server),
        dependencies=[mongo_dependency(mongo), redis_dependency(redis), audit.dependency()],
        background=[lambda: retry_until_done("identity indexes", store.ensure_indexes)],
        close=[audit.close, redis.aclose, mongo.close],
    )
