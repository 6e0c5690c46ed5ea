"""Service credentials: which Sightline service is calling, proven with that service's own key.

Each service holds its own Ed25519 key and signs short-lived service tokens with it: EdDSA JWTs with
`iss` "sightline-service", `sub` "service:<name>", `aud` the service called (e.g. "audit"), `iat` and `exp`
(five minutes). They carry no roles and no agency: they say only which service calls. A service that takes
calls from services alone (audit's Append) verifies them against the public keys of an allow-list of
service names; a person's access token is refused there with PERMISSION_DENIED.

Keys (settings in `KeySettings`): the calling service reads its private key from SIGHTLINE_SERVICE_KEY_FILE;
the called service reads `service_<name>_ed25519.pub.pem` for each allowed name from
SIGHTLINE_SERVICE_PUBLIC_KEYS_DIR. With neither set and dev keys on, a service's pair is generated once as
`<data_dir>/keys/service_<name>_ed25519.pem` and `.pub.pem`, and public keys are read from `<data_dir>/keys`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.common.auth import ALGORITHM, SERVICE_SUBJECT_PREFIX, KeySettings, load_private_key
from services.common.rejected import Code, Rejected

SERVICE_ISSUER = "sightline-service"
SERVICE_TOKEN_TTL_S = 300
SERVICES_ONLY = "only Sightline services may call this; people's actions are recorded by the service that performs them"


def service_key_name(service: str) -> str:
    """File stem of a service's key pair: `service_<name>_ed25519(.pub).pem`."""
    return f"service_{service}_ed25519"


class ServiceSigner:
    """Signs this service's tokens; one token per audience is reused until half its life has passed."""

    def __init__(self, service: str, key: Ed25519PrivateKey, ttl_s: int = SERVICE_TOKEN_TTL_S):
        self.service = service
        self._key = key
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, str]] = {}

    def token(self, audience: str) -> str:
        now = time.time()
        cached = self._cache.get(audience)
        if cached is not None and cached[0] > now:
            return cached[1]
        issued = int(now)
        token = jwt.encode({"iss": SERVICE_ISSUER, "sub": SERVICE_SUBJECT_PREFIX + self.service, "aud": audience,
                            "iat": issued, "exp": issued + self._ttl}, self._key, algorithm=ALGORITHM)
        self._cache[audience] = (now + self._ttl / 2, token)
        return token


def service_signer(service: str, settings: KeySettings) -> ServiceSigner:
    return ServiceSigner(service, load_private_key(settings.service_key_file, settings, service_key_name(service)))


class ServiceVerifier:
    """The calling service's name from its token, for the services in `allowed` only."""

    def __init__(self, audience: str, allowed: Iterable[str], keys_dir: Path, leeway_s: int = 30):
        self._audience = audience
        self._allowed = frozenset(allowed)
        self._dir = keys_dir
        self._leeway = leeway_s
        self._keys: dict[str, Ed25519PublicKey] = {}

    def _key(self, service: str) -> Ed25519PublicKey:
        key = self._keys.get(service)
        if key is None:  # read on first use: a service's dev key appears when that service first starts
            path = self._dir / f"{service_key_name(service)}.pub.pem"
            try:
                loaded = serialization.load_pem_public_key(path.read_bytes())
            except (OSError, ValueError) as exc:
                raise Rejected(Code.UNAUTHENTICATED, f"no public key for service {service!r}") from exc
            if not isinstance(loaded, Ed25519PublicKey):
                raise Rejected(Code.UNAUTHENTICATED, f"the key of service {service!r} is not Ed25519")
            key = self._keys[service] = loaded
        return key

    def verify(self, token: str) -> str:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError as exc:
            raise Rejected(Code.UNAUTHENTICATED, f"invalid token ({exc})") from exc
        subject = str(claims.get("sub", ""))
        if claims.get("iss") != SERVICE_ISSUER or not subject.startswith(SERVICE_SUBJECT_PREFIX):
            raise Rejected(Code.PERMISSION_DENIED, SERVICES_ONLY)
        service = subject.removeprefix(SERVICE_SUBJECT_PREFIX)
        if service not in self._allowed:
            raise Rejected(Code.PERMISSION_DENIED, f"service {service[:64]!r} may not call this")
        try:
            jwt.decode(token, self._key(service), algorithms=[ALGORITHM], audience=self._audience,
                       issuer=SERVICE_ISSUER, leeway=self._leeway, options={"require": ["exp", "iat", "sub", "aud"]})
        except jwt.InvalidTokenError as exc:
            raise Rejected(Code.UNAUTHENTICATED, f"invalid service token ({exc})") from exc
        return service


def service_verifier(audience: str, allowed: Iterable[str], settings: KeySettings) -> ServiceVerifier:
    keys_dir = settings.service_public_keys_dir
    if keys_dir is None:
        if not settings.dev_keys:
            raise SystemExit("SIGHTLINE_SERVICE_PUBLIC_KEYS_DIR is required when dev keys are off")
        keys_dir = settings.data_dir / "keys"
    return ServiceVerifier(audience, allowed, keys_dir, settings.token_leeway_s)
