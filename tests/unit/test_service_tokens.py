"""Service tokens (each service's own key, an allow-list at the receiver) and the Append rate limit."""

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.domain.limits import RateLimiter
from services.common.auth import ALGORITHM, KeySettings, Principal, TokenIssuer, load_private_key
from services.common.rejected import Code, Rejected
from services.common.service_tokens import (
    SERVICE_ISSUER,
    ServiceSigner,
    service_key_name,
    service_signer,
    service_verifier,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(tmp_path) -> KeySettings:
    return KeySettings(data_dir=tmp_path)


def refused(verifier, token: str) -> Rejected:
    with pytest.raises(Rejected) as err:
        verifier.verify(token)
    return err.value


def test_a_services_own_token_is_accepted_once_its_name_is_allowed(settings) -> None:
    token = service_signer("search", settings).token("audit")
    assert service_verifier("audit", ["search"], settings).verify(token) == "search"
    assert refused(service_verifier("audit", ["ingest"], settings), token).code == Code.PERMISSION_DENIED
    assert refused(service_verifier("hotlist", ["search"], settings), token).code == Code.UNAUTHENTICATED
    assert (settings.data_dir / "keys" / f"{service_key_name('search')}.pub.pem").exists()


def test_a_persons_token_is_not_a_service_token(settings) -> None:
    person = Principal("u1", "amy", "pd-a", frozenset({"officer"}), True, datetime.now(UTC) + timedelta(days=9))
    token, _ = TokenIssuer(Ed25519PrivateKey.generate(), timedelta(minutes=5)).issue(person, datetime.now(UTC), ["otp"])
    err = refused(service_verifier("audit", ["search"], settings), token)
    assert err.code == Code.PERMISSION_DENIED and "only Sightline services" in err.message


def test_forged_and_expired_service_tokens_are_refused(settings) -> None:
    service_signer("search", settings)  # the real key exists
    verifier = service_verifier("audit", ["search"], settings)
    forged = ServiceSigner("search", Ed25519PrivateKey.generate()).token("audit")
    assert refused(verifier, forged).code == Code.UNAUTHENTICATED
    now = int(time.time())
    expired = jwt.encode({"iss": SERVICE_ISSUER, "sub": "service:search", "aud": "audit", "iat": now - 900,
                          "exp": now - 600}, load_private_key(None, settings, service_key_name("search")),
                         algorithm=ALGORITHM)
    assert refused(verifier, expired).code == Code.UNAUTHENTICATED
    assert refused(verifier, "garbage").code == Code.UNAUTHENTICATED


def test_a_service_without_a_key_is_refused(settings) -> None:
    token = ServiceSigner("retention", Ed25519PrivateKey.generate()).token("audit")
    err = refused(service_verifier("audit", ["retention"], settings), token)
    assert err.code == Code.UNAUTHENTICATED and "no public key" in err.message


def test_production_needs_the_public_keys_folder(tmp_path) -> None:
    with pytest.raises(SystemExit):
        service_verifier("audit", ["search"], KeySettings(data_dir=tmp_path, dev_keys=False))


def test_rate_limit_allows_the_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate=10, burst=5)
    assert [limiter.allow("search", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert limiter.allow("ingest", 0.0)  # per caller
    assert not limiter.allow("search", 0.05) and limiter.allow("search", 0.2)
