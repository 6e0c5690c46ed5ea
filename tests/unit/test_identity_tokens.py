from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.common.auth import (
    AUDIENCE,
    ISSUER,
    KeySettings,
    Permission,
    Principal,
    TokenIssuer,
    TokenVerifier,
    authorize,
    load_private_key,
    load_public_key,
)
from services.common.rejected import Code, Rejected

pytestmark = pytest.mark.unit

KEY = Ed25519PrivateKey.generate()
NOW = datetime.now(UTC)


def principal(roles=("officer",), second_factor=True, training_days=30, **kw) -> Principal:
    return Principal("u1", "amy", "pd-a", frozenset(roles), second_factor, NOW + timedelta(days=training_days), **kw)


def roundtrip(p: Principal, amr=("pwd", "otp"), issued: datetime | None = None) -> Principal:
    # Issued now by default: the verifier checks expiry against the clock, and a long session may run these
    # tests many minutes after this module was imported.
    token, _ = TokenIssuer(KEY, timedelta(minutes=15)).issue(p, issued or datetime.now(UTC), amr)
    return TokenVerifier(KEY.public_key()).verify(token)


def test_token_carries_the_claims_services_need() -> None:
    p = roundtrip(principal(roles=("partner_agency_user",), case_number_required=True, partner_agencies=("pd-b",)))
    assert (p.user_id, p.agency_id, p.roles, p.second_factor) == ("u1", "pd-a", {"partner_agency_user"}, True)
    assert p.case_number_required and p.partner_agencies == ("pd-b",)
    assert abs((p.training_until - (NOW + timedelta(days=30))).total_seconds()) < 1


def test_expired_forged_and_garbage_tokens_are_refused() -> None:
    with pytest.raises(Rejected, match="expired"):
        roundtrip(principal(), issued=NOW - timedelta(hours=1))
    forged, _ = TokenIssuer(Ed25519PrivateKey.generate(), timedelta(minutes=5)).issue(principal(), NOW, ["otp"])
    for token in (forged, "not.a.token", ""):
        with pytest.raises(Rejected) as err:
            TokenVerifier(KEY.public_key()).verify(token)
        assert err.value.code == Code.UNAUTHENTICATED


@pytest.mark.parametrize(("p", "permission", "code", "text"), [
    (principal(second_factor=False), Permission.SEARCH, Code.UNAUTHENTICATED, "two-factor"),
    (principal(training_days=-1), Permission.SEARCH, Code.PERMISSION_DENIED, "training"),
    (principal(roles=("auditor",)), Permission.SEARCH, Code.PERMISSION_DENIED, "reads:search"),
    (principal(roles=("officer",)), Permission.CONVOY, Code.PERMISSION_DENIED, "reads:convoy"),
    (principal(roles=("officer",)), Permission.AUDIT_REVIEW, Code.PERMISSION_DENIED, "audit:review"),
])
def test_authorize_refusals(p, permission, code, text) -> None:
    with pytest.raises(Rejected) as err:
        authorize(p, permission, NOW)
    assert err.value.code == code and text in err.value.message and err.value.principal == p


def test_authorize_allows_by_role() -> None:
    authorize(principal(roles=("investigator",)), Permission.CONVOY, NOW)
    authorize(principal(roles=("supervisor",)), Permission.AUDIT_REVIEW, NOW)


@pytest.mark.parametrize("roles", [("officer",), ("supervisor", "agency_admin")])
def test_a_service_subject_is_never_a_person(roles) -> None:
    """Finding 14: a token naming a service and carrying a person's roles passed search without 2FA or training.
    Services prove who they are with their own keys, to the audit service only (services/common/service_tokens.py):
    identity never signs an access token naming a service, and one signed anyway (a leaked key) is refused."""
    now = datetime.now(UTC)
    forged = Principal("service:search", "search", "pd-a", frozenset(roles), True, now + timedelta(days=30))
    with pytest.raises(ValueError):
        TokenIssuer(KEY, timedelta(minutes=5)).issue(forged, now, ["pwd", "otp"])
    token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "service:search", "agency": "pd-a",
                        "roles": list(roles), "amr": ["pwd", "otp"], "iat": int(now.timestamp()),
                        "exp": int((now + timedelta(minutes=5)).timestamp()),
                        "training_until": int((now + timedelta(days=30)).timestamp())}, KEY, algorithm="EdDSA")
    with pytest.raises(Rejected) as err:
        TokenVerifier(KEY.public_key()).verify(token)
    assert err.value.code == Code.UNAUTHENTICATED


def test_tokens_carry_their_issue_time_to_the_microsecond() -> None:
    issued = datetime.now(UTC).replace(microsecond=123456)
    assert roundtrip(principal(), issued=issued).issued_at == issued.timestamp()


def test_dev_keys_are_generated_once_and_pair_up(tmp_path) -> None:
    settings = KeySettings(data_dir=tmp_path)
    private = load_private_key(None, settings, "k")
    assert load_private_key(None, settings, "k").public_key().public_bytes_raw() == \
        load_public_key(None, settings, "k").public_bytes_raw() == private.public_key().public_bytes_raw()
    assert (tmp_path / "keys" / "k.pem").stat().st_mode & 0o077 == 0
    with pytest.raises(SystemExit):
        load_public_key(None, KeySettings(data_dir=tmp_path / "none", dev_keys=False), "k")
