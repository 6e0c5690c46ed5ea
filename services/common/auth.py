"""Access tokens, roles and permissions, checked by every service.

The identity service signs short-lived JWTs with an Ed25519 key (EdDSA); every other service holds only the
public key and calls `authenticate(context, verifier, permission)` at the top of each RPC. The claims carry
what a service needs to decide without calling identity: the agency, roles by job function, whether the
login used a second factor, until when the user's training is valid, the agency's case-number policy and
the agencies that share their reads with it. A change to any of these takes effect at the next login
(tokens live minutes).

Identity revokes a user's tokens (logout, password change, lock, role change) by writing the instant before
which they are void to Redis (`sightline:revoked:<user_id>`, see `Revocations`); every service checks it in
`check_call`, through a cache of at most a second. Service principals (`sub` starting with `service:`) get the
service permissions only, whatever roles their token claims.

Keys come from files named in settings; when none is named and `dev_keys` is on, a key pair is generated
once into `<data_dir>/keys/` (never commit it). Production sets the files and turns `dev_keys` off.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import grpc
import jwt
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.rejected import Code, Rejected

TOKEN_KEY = "token_ed25519"
ISSUER = "sightline-identity"
log = logging.getLogger(__name__)

AUDIENCE = "sightline"
ALGORITHM = "EdDSA"
# The local stack's data folder in this checkout (services/devstack keeps its state under <repo>/.local).
LOCAL_DATA_DIR = Path(__file__).resolve().parents[2] / ".local" / "data"
# Subjects of the services' own tokens (services/common/service_tokens.py); never a person's.
SERVICE_SUBJECT_PREFIX = "service:"
# `<prefix><user_id>` = epoch seconds (float) before which that user's tokens are void; written by identity only.
REVOKED_KEY_PREFIX = "sightline:revoked:"


class KeySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        default=LOCAL_DATA_DIR,
        description="Local state of the dev stack (dev keys live under <data_dir>/keys). The default is the "
                    "folder `python -m services.devstack up` uses, whatever the working directory.")
    dev_keys: bool = Field(
        default=True,
        description="Use dev keys under <data_dir>/keys (generated on first use) for any key file that is not "
                    "set; turn off in production, where an unset key file then stops the service at start-up.")
    token_public_key_file: Path | None = Field(
        default=None,
        description="PEM Ed25519 public key that verifies access tokens (every service); unset with dev keys: "
                    "<data_dir>/keys/token_ed25519.pub.pem.")
    token_public_keys_dir: Path | None = Field(default=None, description=(
        "Folder of identity's public keys (*.pem), every one of which verifies access tokens by its kid: add the "
        "new key here before identity signs with it, remove the old one after the tokens' lifetime. Re-read "
        "without a restart. With token_public_key_file, both are used."))
    token_leeway_s: int = Field(
        default=30, ge=0, le=300, description="Seconds of clock skew tolerated when checking a token's times.")
    service_key_file: Path | None = Field(default=None, description=(
        "PEM Ed25519 private key this service signs its service tokens with (services/common/service_tokens.py); "
        "unset with dev keys: <data_dir>/keys/service_<name>_ed25519.pem, generated once"))
    service_public_keys_dir: Path | None = Field(default=None, description=(
        "Folder of the calling services' public keys, service_<name>_ed25519.pub.pem each (the audit service); "
        "unset with dev keys: <data_dir>/keys"))
    revocation_cache_s: float = Field(
        default=1.0, ge=0, le=1.0,
        description="How long a service trusts its last look at a user's revocation entry in Redis (at most 1 s: "
                    "a logout or password change reaches every service within this time).")


class Role(StrEnum):
    OFFICER = "officer"
    INVESTIGATOR = "investigator"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    AGENCY_ADMIN = "agency_admin"
    PARTNER_AGENCY_USER = "partner_agency_user"


class Permission(StrEnum):
    SEARCH = "reads:search"
    CONVOY = "reads:convoy"
    VIEW_IMAGES = "images:view"
    PARTNER_SEARCH = "reads:partner"
    AUDIT_REVIEW = "audit:review"
    MANAGE_USERS = "users:manage"
    MANAGE_AGENCY = "agency:manage"
    # Place and release evidence holds (reads kept past their expiry for a case).
    MANAGE_HOLDS = "holds:manage"
    # Register cameras and issue or rotate their gateway credentials (services/ingest CameraRegistryService).
    MANAGE_CAMERAS = "cameras:manage"
    # Create hot lists of the caller's agency, import them, add and remove their entries (services/hotlist).
    HOTLIST_MANAGE = "hotlists:manage"
    # Receive and read the alerts raised on the caller's agency's reads.
    ALERTS_VIEW = "alerts:view"
    # Record the officer's verification, reconfirmation and disposition of an alert.
    ALERTS_RESPOND = "alerts:respond"
    # A person's own account: change their password, log out (every role of a person; never a service).
    OWN_ACCOUNT = "account:own"


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OFFICER: frozenset({P.SEARCH, P.VIEW_IMAGES, P.ALERTS_VIEW, P.ALERTS_RESPOND, P.OWN_ACCOUNT}),
    Role.INVESTIGATOR: frozenset({P.SEARCH, P.CONVOY, P.VIEW_IMAGES, P.MANAGE_HOLDS, P.ALERTS_VIEW,
                                  P.ALERTS_RESPOND, P.OWN_ACCOUNT}),
    Role.SUPERVISOR: frozenset({P.SEARCH, P.CONVOY, P.VIEW_IMAGES, P.MANAGE_HOLDS, P.AUDIT_REVIEW, P.OWN_ACCOUNT,
                                P.HOTLIST_MANAGE, P.ALERTS_VIEW, P.ALERTS_RESPOND}),
    Role.AUDITOR: frozenset({P.AUDIT_REVIEW, P.OWN_ACCOUNT}),
    Role.AGENCY_ADMIN: frozenset({P.MANAGE_USERS, P.MANAGE_AGENCY, P.MANAGE_HOLDS, P.MANAGE_CAMERAS,
                                  P.HOTLIST_MANAGE, P.OWN_ACCOUNT}),
    Role.PARTNER_AGENCY_USER: frozenset({P.SEARCH, P.VIEW_IMAGES, P.PARTNER_SEARCH, P.OWN_ACCOUNT}),
}


def permissions(roles: Iterable[str]) -> frozenset[Permission]:
    out: set[Permission] = set()
    for name in roles:
        if name in Role._value2member_map_:
            out |= ROLE_PERMISSIONS[Role(name)]
    return frozenset(out)


@dataclass(frozen=True)
class Principal:
    """The verified caller."""

    user_id: str
    username: str
    agency_id: str
    roles: frozenset[str]
    second_factor: bool
    training_until: datetime | None
    case_number_required: bool = False
    # Agencies that share their reads with this one (from the sharing agreements at login).
    partner_agencies: tuple[str, ...] = ()
    # The token itself, passed on to the audit service, which records its verified holder as the actor.
    token: str = field(default="", repr=False, compare=False)

    # When the token was issued (epoch seconds); 0 for a principal that is not from a token.
    issued_at: float = field(default=0.0, compare=False)

    def can(self, permission: Permission) -> bool:
        return permission in permissions(self.roles)


def authorize(principal: Principal, permission: Permission, now: datetime) -> None:
    """Raise Rejected unless the principal may use `permission` now."""
    if not principal.second_factor:
        raise Rejected(Code.UNAUTHENTICATED, "two-factor authentication is required: log in with a TOTP code",
                       principal=principal)
    if principal.training_until is None or principal.training_until <= now:
        raise Rejected(Code.PERMISSION_DENIED, "your required training has expired: renew it to regain access",
                       principal=principal)
    if not principal.can(permission):
        roles = ", ".join(sorted(principal.roles)) or "none"
        raise Rejected(Code.PERMISSION_DENIED, f"your roles ({roles}) do not allow {permission}", principal=principal)


class Revocations:
    """Per-user revocation instants in Redis. Identity writes them; every service reads them through a cache
    of at most `cache_s` seconds per user. A lookup that fails refuses the call (fail closed)."""

    def __init__(self, redis: aioredis.Redis, cache_s: float = 1.0, max_cached: int = 100_000):
        self._redis = redis
        self._cache_s = cache_s
        self._max_cached = max_cached
        self._cache: dict[str, tuple[float, float]] = {}  # user id -> (monotonic time looked up, revoked before)

    async def revoked_before(self, user_id: str) -> float:
        """Epoch seconds before which `user_id`'s tokens are void (0: none revoked)."""
        now = time.monotonic()
        cached = self._cache.get(user_id)
        if cached is not None and now - cached[0] < self._cache_s:
            return cached[1]
        try:
            value = await self._redis.get(REVOKED_KEY_PREFIX + user_id)
        except (aioredis.RedisError, OSError) as exc:
            raise Rejected(Code.UNAVAILABLE,
                            "cannot check whether the access token was revoked; try again later") from exc
        cutoff = float(value) if value else 0.0
        if len(self._cache) >= self._max_cached:
            self._cache.clear()
        self._cache[user_id] = (now, cutoff)
        return cutoff

    async def revoke(self, user_id: str, at: datetime, keep: timedelta) -> None:
        """Void every token of `user_id` issued up to `at`; the entry outlives them (`keep`: the longest
        token lifetime plus leeway)."""
        key = REVOKED_KEY_PREFIX + user_id
        # Never move the instant back (a late writer must not revive tokens an earlier one revoked).
        await self._redis.eval(_REVOKE_SCRIPT, 1, key, repr(at.timestamp()), max(int(keep.total_seconds()), 1))


_REVOKE_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local at = tonumber(ARGV[1])
if at > current then current = at end
redis.call('SET', KEYS[1], string.format('%.6f', current), 'EX', tonumber(ARGV[2]))
return 1
"""


def key_id(public_key: Ed25519PublicKey) -> str:
    """A signing key's `kid`: the first 16 bytes of the SHA-256 of its raw public key, base64url."""
    digest = hashlib.sha256(public_key.public_bytes_raw()).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


KeySource = Callable[[], Sequence[Ed25519PublicKey]]


class TokenVerifier:
    """Verifies access tokens against a set of identity public keys, chosen by the token's `kid`: during a
    rotation the previous key and the new one are both in the set, so tokens signed by either verify; a key
    removed from the set stops verifying. With a `source` (a folder of public keys), an unknown `kid` makes
    the verifier look at the source again (at most every `reload_s`), and the set is refreshed that often
    anyway: keys are added and removed without a restart."""

    def __init__(self, public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey], leeway_s: int = 30,
                 revocations: Revocations | None = None, source: KeySource | None = None, reload_s: float = 10.0):
        self._keys = self._index([public_key] if isinstance(public_key, Ed25519PublicKey) else public_key)
        self._leeway = leeway_s
        self._revocations = revocations
        self._source = source
        self._reload_s = reload_s
        self._loaded_at = time.monotonic()

    @staticmethod
    def _index(keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
        return {key_id(k): k for k in keys}

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def _reload(self, force: bool) -> None:
        if self._source is None:
            return
        now = time.monotonic()
        if now - self._loaded_at < self._reload_s and not (force and now - self._loaded_at >= 1.0):
            return
        self._loaded_at = now
        try:
            keys = self._index(self._source())
        except (OSError, ValueError, SystemExit) as exc:
            log.warning("token keys not reloaded; keeping the current set", extra={"error": str(exc)[:200]})
            return
        if keys:
            self._keys = keys

    def _key_for(self, token: str) -> Ed25519PublicKey | list[Ed25519PublicKey]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise Rejected(Code.UNAUTHENTICATED, f"invalid access token ({exc})") from exc
        self._reload(force=False)
        if kid is None:  # signed before keys had ids: any key of the set
            return list(self._keys.values())
        if kid not in self._keys:
            self._reload(force=True)
        if kid not in self._keys:
            raise Rejected(Code.UNAUTHENTICATED, "access token signed by an unknown or retired key")
        return self._keys[str(kid)]

    async def authenticate(self, token: str) -> Principal:
        """`verify`, then refuse a token of a user whose tokens were revoked after it was issued."""
        principal = self.verify(token)
        if self._revocations is not None \
                and principal.issued_at <= await self._revocations.revoked_before(principal.user_id):
            raise Rejected(Code.UNAUTHENTICATED, "access token revoked: log in again")
        return principal

    def _decode(self, token: str, keys: Ed25519PublicKey | list[Ed25519PublicKey]) -> dict[str, Any]:
        candidates = keys if isinstance(keys, list) else [keys]
        error: jwt.InvalidTokenError = jwt.InvalidSignatureError("no key")
        for key in candidates:
            try:
                return jwt.decode(token, key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                                  leeway=self._leeway, options={"require": ["exp", "iat", "sub", "agency"]})
            except jwt.InvalidSignatureError as exc:
                error = exc
        raise error

    def verify(self, token: str) -> Principal:
        """The principal of a validly signed, unexpired token (revocation is checked by `authenticate`)."""
        keys = self._key_for(token)
        try:
            claims = self._decode(token, keys)
        except jwt.ExpiredSignatureError as exc:
            raise Rejected(Code.UNAUTHENTICATED, "access token expired: log in again") from exc
        except jwt.InvalidTokenError as exc:
            raise Rejected(Code.UNAUTHENTICATED, f"invalid access token ({exc})") from exc
        if str(claims["sub"]).startswith(SERVICE_SUBJECT_PREFIX):
            # A service is never a person: its own tokens go to the audit service only, never through here.
            raise Rejected(Code.UNAUTHENTICATED, "a service identity cannot act as a person")
        training = claims.get("training_until")
        return Principal(
            user_id=str(claims["sub"]),
            username=str(claims.get("name", "")),
            agency_id=str(claims["agency"]),
            roles=frozenset(str(r) for r in claims.get("roles", [])),
            second_factor="otp" in claims.get("amr", []),
            training_until=datetime.fromtimestamp(training, UTC) if isinstance(training, int | float) else None,
            case_number_required=bool(claims.get("case_required", False)),
            partner_agencies=tuple(str(a) for a in claims.get("partners", [])),
            token=token,
            issued_at=float(claims["iat"]),
        )


class TokenIssuer:
    """Signs access tokens (the identity service, and tools holding its key), naming the key in `kid`."""

    def __init__(self, private_key: Ed25519PrivateKey, ttl: timedelta):
        self._key = private_key
        self.kid = key_id(private_key.public_key())
        self.ttl = ttl

    def issue(self, principal: Principal, now: datetime, amr: Iterable[str]) -> tuple[str, datetime]:
        if principal.user_id.startswith(SERVICE_SUBJECT_PREFIX):
            raise ValueError("a person's token never names a service subject")
        expires = now + self.ttl
        claims: dict[str, object] = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": principal.user_id, "name": principal.username,
            "agency": principal.agency_id, "roles": sorted(principal.roles), "amr": list(amr),
            # iat to the microsecond: a revocation voids the tokens issued up to its instant, not a new login
            # made in the same second.
            "iat": now.timestamp(), "exp": int(expires.timestamp()), "jti": uuid.uuid4().hex,
            "case_required": principal.case_number_required, "partners": list(principal.partner_agencies),
        }
        if principal.training_until is not None:
            claims["training_until"] = int(principal.training_until.timestamp())
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid}), expires


def bearer_token(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.lower().startswith("bearer "):
            return value[7:].strip()
    return None


async def check_call(context: grpc.aio.ServicerContext, verifier: TokenVerifier, permission: Permission,
                     now: datetime | None = None) -> Principal:
    """The verified caller of this RPC, or Rejected (no token, bad, expired or revoked token, no 2FA, training,
    role)."""
    token = bearer_token(context)
    if not token:
        raise Rejected(Code.UNAUTHENTICATED,
                        "an access token is required (metadata 'authorization: Bearer <token>')")
    principal = await verifier.authenticate(token)
    authorize(principal, permission, now or datetime.now(UTC))
    return principal


def auth_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# --- keys -------------------------------------------------------------------------------------------------


def _dev_key_paths(data_dir: Path, name: str) -> tuple[Path, Path]:
    keys = data_dir / "keys"
    return keys / f"{name}.pem", keys / f"{name}.pub.pem"


def _ensure_dev_pair(data_dir: Path, name: str) -> tuple[Path, Path]:
    """Create `<name>.pem` / `<name>.pub.pem` under data_dir/keys once, safely across processes."""
    private, public = _dev_key_paths(data_dir, name)
    private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(private.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not private.exists():
            key = Ed25519PrivateKey.generate()
            tmp = private.with_suffix(".tmp")
            tmp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
            tmp.chmod(0o600)
            public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
            tmp.rename(private)
    return private, public


def load_private_key(path: Path | None, settings: KeySettings, dev_name: str) -> Ed25519PrivateKey:
    if path is None:
        if not settings.dev_keys:
            raise SystemExit(f"no private key file configured for {dev_name} and dev keys are off")
        path, _ = _ensure_dev_pair(settings.data_dir, dev_name)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SystemExit(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path | None, settings: KeySettings, dev_name: str) -> Ed25519PublicKey:
    if path is None:
        if not settings.dev_keys:
            raise SystemExit(f"no public key file configured for {dev_name} and dev keys are off")
        _, path = _ensure_dev_pair(settings.data_dir, dev_name)
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise SystemExit(f"{path} is not an Ed25519 public key")
    return key


def token_verifier(settings: KeySettings, redis: aioredis.Redis | None) -> TokenVerifier:
    """The verifier of a service: the identity public key, and the revocation entries in `redis` (None only for
    the console, which reaches no database and whose every call is checked again by the service it calls)."""
    revocations = Revocations(redis, settings.revocation_cache_s) if redis is not None else None

    def keys() -> list[Ed25519PublicKey]:
        folder = settings.token_public_keys_dir
        found = [load_public_key(p, settings, TOKEN_KEY) for p in sorted(folder.glob("*.pem"))] if folder else []
        if settings.token_public_key_file is not None or not found:
            found.append(load_public_key(settings.token_public_key_file, settings, TOKEN_KEY))
        return found

    return TokenVerifier(keys(), settings.token_leeway_s, revocations,
                         source=keys if settings.token_public_keys_dir is not None else None)
