"""Issue #14, identity and tokens (findings 5, 10, 11, 14), replayed against the real identity, search, audit
and ingest servers on the session's mongod and Redis.

Identity trusts 'x-forwarded-for' from the stack's loopback (where the console runs), so each attack here
comes from its own documentation address (198.51.100.0/24) and does not throttle the other tests' logins;
the tests that need other throttle settings start an identity of their own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import jwt
import pytest

from services.common.auth import (
    ALGORITHM,
    AUDIENCE,
    ISSUER,
    TOKEN_KEY,
    KeySettings,
    Principal,
    auth_metadata,
    load_private_key,
)
from services.devstack.stack import LocalStack, Ports
from services.identity.adapters.throttle import KEY_PREFIX as THROTTLE_KEYS
from sightline.identity.v1 import identity_pb2, identity_pb2_grpc
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from sightline.search.v1 import search_pb2, search_pb2_grpc
from tests.conftest import Account, create_account

pytestmark = [pytest.mark.e2e, pytest.mark.security]

BAD_LOGIN = (grpc.StatusCode.UNAUTHENTICATED, "invalid username, password or code")
NO_SUCH_USER = (grpc.StatusCode.NOT_FOUND, "no such user in your agency")


def source(n: int) -> tuple[tuple[str, str], ...]:
    """Metadata naming the attacker's source address (forwarded, as the console does)."""
    return (("x-forwarded-for", f"198.51.100.{n}"),)


def new_account(mongo_db, agency: str = "pd-alpha", roles: tuple[str, ...] = ("officer",)) -> Account:
    return create_account(mongo_db, "sec", agency, list(roles))


def audit_entry(mongo_db, **match) -> dict | None:
    flt = {f"event.{k}": v for k, v in match.items()}
    return mongo_db.client["sightline_audit"]["audit_entries"].find_one(flt, sort=[("_id", -1)])


async def refusal(call, request, **kw) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(request, **kw)
    return err.value.code(), err.value.details()


@pytest.fixture
async def ident(identity_addr, channel_factory) -> identity_pb2_grpc.IdentityServiceStub:
    return identity_pb2_grpc.IdentityServiceStub(channel_factory(identity_addr))


@pytest.fixture
async def search(search_addr, channel_factory) -> search_pb2_grpc.SearchServiceStub:
    return search_pb2_grpc.SearchServiceStub(channel_factory(search_addr))


async def login(ident, mongo_db, acc: Account, n: int = 1) -> str:
    reply = await ident.Login(identity_pb2.LoginRequest(username=acc.username, password=acc.password,
                                              totp_code=await acc.fresh_code(mongo_db)), metadata=source(n))
    return reply.access_token


def a_search() -> search_pb2.SearchReadsRequest:
    return search_pb2.SearchReadsRequest(plate_exact="SEC0001", purpose=search_pb2.PURPOSE_HOMICIDE,
                                         case_number="SEC-14")


# --- finding 5: one answer, backoff instead of lockout ---------------------------------------------------------


async def test_every_login_failure_gets_the_same_answer(ident, mongo_db, accounts) -> None:
    """Finding 5: unknown user, wrong password, right password without a code, with a wrong code and with a
    used code all get one answer, so neither usernames nor passwords can be told apart."""
    acc = new_account(mongo_db)
    code = await acc.fresh_code(mongo_db)
    await ident.Login(identity_pb2.LoginRequest(username=acc.username, password=acc.password, totp_code=code),
                      metadata=source(10))
    wrong_code = "000000" if code != "000000" else "111111"
    attempts = [("nobody." + acc.username, acc.password, code), (acc.username, "not the password", code),
                (acc.username, acc.password, ""), (acc.username, acc.password, wrong_code),
                (acc.username, acc.password, code)]  # the code just used to log in
    answers = {
        await refusal(ident.Login, identity_pb2.LoginRequest(username=u, password=p, totp_code=c), metadata=source(10))
        for u, p, c in attempts
    }
    assert answers == {BAD_LOGIN}
    reasons = [
        e["event"]["reason"]
        for e in mongo_db.client["sightline_audit"]["audit_entries"].find(
            {"event.action": "login", "event.user_id": acc.user_id, "event.outcome": "OUTCOME_DENIED"}
        )
    ]
    assert {"wrong password", "no second factor", "wrong or reused TOTP code"} <= set(reasons)


async def test_an_outsider_cannot_lock_an_account_and_backoff_slows_guessing(ident, mongo_db) -> None:
    """Finding 5: an outsider's wrong passwords never lock the account; past five failures every attempt on it
    must wait (doubling), even the right one, so guessing is slowed; once the wait is over the real user's
    password and code get in."""
    acc = new_account(mongo_db)

    async def wrong() -> None:
        assert (
            await refusal(
                ident.Login,
                identity_pb2.LoginRequest(
                    username=acc.username, password="guess " + uuid.uuid4().hex, totp_code="123456"
                ),
                metadata=source(20),
            )
            == BAD_LOGIN
        )

    async def right(n: int) -> tuple[grpc.StatusCode, str]:
        return await refusal(
            ident.Login,
            identity_pb2.LoginRequest(
                username=acc.username, password=acc.password, totp_code=await acc.fresh_code(mongo_db)
            ),
            metadata=source(n),
        )

    for _ in range(6):  # five free failures; the sixth makes the next attempt wait 1 s
        await wrong()
    assert await right(21) == BAD_LOGIN  # from another address too: not even checked during the wait
    assert audit_entry(mongo_db, action="login", username=acc.username, reason="throttled after repeated failures")
    await asyncio.sleep(1.1)
    await wrong()  # the seventh failure: a 2 s wait
    t = time.monotonic()
    await asyncio.sleep(1.1)
    assert await right(21) == BAD_LOGIN  # still waiting
    await asyncio.sleep(max(0.0, 2.1 - (time.monotonic() - t)))
    await login(ident, mongo_db, acc, 21)  # the wait is over: the real user gets in
    assert mongo_db["users"].find_one({"_id": acc.user_id}).get("locked_until") is None


@pytest.fixture
def private_identity(stack: LocalStack, redis_url: str, audit_addr: str, tmp_path, channel_factory):
    """start(**env) -> a stub of an identity with settings of its own. It shares the session's Redis (a service's
    user may not select another database), so the throttle it counts for the loopback source is cleared when
    the test ends: the session's identity is never slowed by this test's deliberate failures."""
    import redis

    stacks: list[LocalStack] = []

    def start(**env: str) -> identity_pb2_grpc.IdentityServiceStub:
        own = LocalStack(tmp_path / f"stack{len(stacks)}", Ports.free())
        own.env.update({**stack.env, "SIGHTLINE_DRAIN_SECONDS": "0", **env})
        own.start_service("identity")
        stacks.append(own)
        return identity_pb2_grpc.IdentityServiceStub(channel_factory(own.address("identity")))

    yield start
    for own in stacks:
        own.stop()
    with redis.Redis.from_url(redis_url) as client:
        client.delete(*(f"{THROTTLE_KEYS}source:{address}" for address in ("127.0.0.1", "::1")))


async def test_failures_from_one_source_slow_that_source_only(private_identity, mongo_db) -> None:
    """Finding 5: a source spraying one password over many usernames must wait; other sources are not slowed."""
    ident = private_identity(SIGHTLINE_LOGIN_SOURCE_FREE_FAILURES="3", SIGHTLINE_LOGIN_BACKOFF_BASE_S="30")
    acc = new_account(mongo_db)
    for i in range(4):  # three free failures from one address, the fourth makes it wait 30 s
        assert (
            await refusal(
                ident.Login,
                identity_pb2.LoginRequest(
                    username=f"spray.{i}.{acc.username}", password="Summer2026!", totp_code="123456"
                ),
                metadata=source(30),
            )
            == BAD_LOGIN
        )
    right = identity_pb2.LoginRequest(
        username=acc.username, password=acc.password, totp_code=await acc.fresh_code(mongo_db)
    )
    assert await refusal(ident.Login, right, metadata=source(30)) == BAD_LOGIN
    await ident.Login(right, metadata=source(31))


async def test_the_forwarded_address_of_an_untrusted_peer_is_ignored(private_identity, mongo_db) -> None:
    """Finding 5: only the console's address may name the source; another peer rotating 'x-forwarded-for' is
    throttled by its own address."""
    ident = private_identity(
        SIGHTLINE_LOGIN_TRUSTED_PROXIES='["10.0.0.0/8"]',
        SIGHTLINE_LOGIN_SOURCE_FREE_FAILURES="3",
        SIGHTLINE_LOGIN_BACKOFF_BASE_S="30",
    )
    acc = new_account(mongo_db)
    for i in range(4):
        assert (
            await refusal(
                ident.Login,
                identity_pb2.LoginRequest(
                    username=f"rot.{i}.{acc.username}", password="Summer2026!", totp_code="123456"
                ),
                metadata=source(40 + i),
            )
            == BAD_LOGIN
        )
    right = identity_pb2.LoginRequest(
        username=acc.username, password=acc.password, totp_code=await acc.fresh_code(mongo_db)
    )
    assert await refusal(ident.Login, right, metadata=source(49)) == BAD_LOGIN


# --- finding 10: codes work once, tokens are revoked ------------------------------------------------------------


async def test_change_password_refuses_the_code_used_to_log_in(ident, search, mongo_db) -> None:
    """Finding 10: the TOTP code that logged in cannot change the password; a fresh one can, and the password
    change revokes the session's token in search."""
    acc = new_account(mongo_db)
    code = await acc.fresh_code(mongo_db)
    reply = await ident.Login(
        identity_pb2.LoginRequest(username=acc.username, password=acc.password, totp_code=code), metadata=source(50)
    )
    # From the same (forwarded) address as the login: the session's other tests fail logins from loopback.
    md = auth_metadata(reply.access_token) + source(50)
    change = identity_pb2.ChangePasswordRequest(
        old_password=acc.password, new_password="a brand new passphrase", totp_code=code
    )
    assert (await refusal(ident.ChangePassword, change, metadata=md))[0] == grpc.StatusCode.PERMISSION_DENIED
    assert audit_entry(mongo_db, action="user.password", subject=acc.user_id)["event"]["outcome"] == "OUTCOME_DENIED"
    await search.SearchReads(a_search(), metadata=md)  # still valid: nothing changed
    change.totp_code = await acc.fresh_code(mongo_db)
    await ident.ChangePassword(change, metadata=md)
    await asyncio.sleep(1.1)
    code_, details = await refusal(search.SearchReads, a_search(), metadata=md)
    assert code_ == grpc.StatusCode.UNAUTHENTICATED and "revoked" in details


@pytest.mark.parametrize("action", ["logout", "roles", "lock"])
async def test_tokens_are_refused_by_search_after_logout_role_change_and_lock(
    ident, search, tokens, mongo_db, action
) -> None:
    """Finding 10: logout, a role change and a lock revoke the user's tokens in every service (here search)
    within a second, not when they expire."""
    acc = new_account(mongo_db)
    token = await login(ident, mongo_db, acc, 60)
    md = auth_metadata(token)
    await search.SearchReads(a_search(), metadata=md)
    admin = auth_metadata(await tokens("admin"))
    if action == "logout":
        await ident.Logout(identity_pb2.LogoutRequest(), metadata=md)
    elif action == "roles":
        await ident.SetRoles(
            identity_pb2.SetRolesRequest(user_id=acc.user_id, roles=[identity_pb2.ROLE_INVESTIGATOR]), metadata=admin
        )
    else:
        await ident.LockUser(identity_pb2.LockUserRequest(user_id=acc.user_id), metadata=admin)
    await asyncio.sleep(1.1)
    code, details = await refusal(search.SearchReads, a_search(), metadata=md)
    assert code == grpc.StatusCode.UNAUTHENTICATED and "revoked" in details
    if action == "lock":
        right = identity_pb2.LoginRequest(
            username=acc.username, password=acc.password, totp_code=await acc.fresh_code(mongo_db)
        )
        assert await refusal(ident.Login, right, metadata=source(60)) == BAD_LOGIN
        await ident.UnlockUser(identity_pb2.UnlockUserRequest(user_id=acc.user_id), metadata=admin)
    # A new login gets a working token.
    await search.SearchReads(a_search(), metadata=auth_metadata(await login(ident, mongo_db, acc, 60)))


# --- finding 11: cross-agency admin actions ----------------------------------------------------------------------


async def test_cross_agency_admin_actions_are_denied_audited_and_answered_like_a_missing_user(
    ident, tokens, accounts, mongo_db
) -> None:
    """Finding 11: pd-alpha's admin acting on a pd-beta user is refused, recorded DENIED (never ALLOWED), and
    answered exactly as for a user that does not exist."""
    admin = auth_metadata(await tokens("admin"))
    victim = accounts["beta_officer"]
    before = mongo_db["users"].find_one({"_id": victim.user_id})
    for user_id in (victim.user_id, "no-such-user-" + uuid.uuid4().hex[:6]):
        calls = [
            (
                "user.roles",
                ident.SetRoles,
                identity_pb2.SetRolesRequest(user_id=user_id, roles=[identity_pb2.ROLE_AGENCY_ADMIN]),
            ),
            ("user.unlock", ident.UnlockUser, identity_pb2.UnlockUserRequest(user_id=user_id)),
            ("user.lock", ident.LockUser, identity_pb2.LockUserRequest(user_id=user_id)),
        ]
        for action, call, request in calls:
            assert await refusal(call, request, metadata=admin) == NO_SUCH_USER
            event = audit_entry(mongo_db, action=action, subject=user_id)["event"]
            assert event["outcome"] == "OUTCOME_DENIED" and event["user_id"] == accounts["admin"].user_id
    after = mongo_db["users"].find_one({"_id": victim.user_id})
    assert (after["roles"], after.get("locked_until")) == (before["roles"], before.get("locked_until"))


async def test_rotating_another_agencys_camera_secret_is_denied_and_audited(
    stack: LocalStack, mongo_uri, redis_url, audit_addr, tokens, token_issuer, tmp_path, channel_factory, mongo_db
) -> None:
    """Finding 11: RotateCameraSecret on another agency's camera is recorded DENIED and answered like an
    unknown camera (the registry needs no Triton: this ingest runs without one)."""
    own = LocalStack(tmp_path / "stack", Ports.free())
    own.env.update(
        {**stack.env, "SIGHTLINE_TRITON_URL": f"127.0.0.1:{own.ports.triton_grpc}", "SIGHTLINE_DRAIN_SECONDS": "0"}
    )
    own.start_service("ingest")
    try:
        registry = ingest_pb2_grpc.CameraRegistryServiceStub(channel_factory(own.address("ingest")))
        camera_id = f"sec-cam-{uuid.uuid4().hex[:6]}"
        now = datetime.now(UTC)
        beta_admin, _ = token_issuer.issue(
            Principal(
                "sec-beta-admin", "beta.admin", "pd-beta", frozenset({"agency_admin"}), True, now + timedelta(days=1)
            ),
            now,
            ["pwd", "otp"],
        )
        await registry.UpsertCamera(
            ingest_pb2.UpsertCameraRequest(
                camera=ingest_pb2.Camera(camera_id=camera_id, name="beta cam", site_id="dev-site")
            ),
            metadata=auth_metadata(beta_admin),
            timeout=30,
        )
        admin = auth_metadata(await tokens("admin"))
        for target in (camera_id, "sec-cam-none"):
            code, details = await refusal(
                registry.RotateCameraSecret, ingest_pb2.RotateCameraSecretRequest(camera_id=target), metadata=admin
            )
            assert (code, details) == (grpc.StatusCode.NOT_FOUND, "no such camera in your agency")
            event = audit_entry(mongo_db, action="camera.rotate_secret", subject=target)["event"]
            assert event["outcome"] == "OUTCOME_DENIED"
    finally:
        own.stop()


# --- finding 14: service tokens carry no person's role -----------------------------------------------------------


async def test_a_service_token_claiming_a_persons_role_cannot_search(stack: LocalStack, search) -> None:
    """Finding 14: a token with a service subject and an officer's role (and even 2FA and training claims) is
    refused by search: a service is never a person (services prove themselves to audit with their own keys)."""
    key = load_private_key(None, KeySettings(data_dir=Path(stack.env["SIGHTLINE_DATA_DIR"])), TOKEN_KEY)
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "service:identity",
        "name": "identity",
        "agency": "pd-alpha",
        "roles": ["officer", "investigator"],
        "amr": ["pwd", "otp"],
        "iat": now,
        "exp": now + 300,
        "training_until": now + 86400,
    }
    token = jwt.encode(claims, key, algorithm=ALGORITHM)
    code, details = await refusal(search.SearchReads, a_search(), metadata=auth_metadata(token))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "service identity" in details


async def test_logging_out_of_the_console_revokes_the_token_everywhere(console_url, ident, search, mongo_db) -> None:
    """Finding 10: the console's "Log out" calls identity's Logout: the session's token is then refused by
    search, not only forgotten by the browser."""
    import re

    import httpx

    from services.console.domain.forms import SESSION_COOKIE

    acc = new_account(mongo_db)
    token = await login(ident, mongo_db, acc, 70)
    async with httpx.AsyncClient(base_url=console_url, cookies={SESSION_COOKIE: token}) as browser:
        page = await browser.get("/search")
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)
        reply = await browser.post("/logout", data={"csrf": csrf})
        assert reply.status_code == 303 and reply.headers["location"] == "/login"
    await asyncio.sleep(1.1)
    code, details = await refusal(search.SearchReads, a_search(), metadata=auth_metadata(token))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "revoked" in details
    assert audit_entry(mongo_db, action="logout", user_id=acc.user_id)["event"]["outcome"] == "OUTCOME_ALLOWED"
