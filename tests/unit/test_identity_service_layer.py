"""Identity use cases (services/identity/service_layer) on fakes of the store, throttle, revocation and audit
trail: one answer for every refused login, each attempt audited first, admins confined to their agency, and
no change or token without its audit record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import jwt
import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.common.auth import Principal, TokenIssuer
from services.common.rejected import Code, Rejected
from services.identity.domain.accounts import Credentials, new_user_document
from services.identity.service_layer.administration import LOCKED_FOR_GOOD, NO_SUCH_USER, Administration
from services.identity.service_layer.logins import BAD_LOGIN, Logins
from sightline.audit.v1 import audit_pb2

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 4, 12, 0, 10, tzinfo=UTC)
CREDENTIALS = Credentials.argon2id(1, 8 * 1024, 1)
PASSWORD = "a long enough password"


class FakeStore:
    def __init__(self) -> None:
        self.users_by_id: dict[str, dict[str, Any]] = {}
        self.agencies: dict[str, dict[str, Any]] = {"pd-a": {"_id": "pd-a", "share_with": []},
                                                    "pd-b": {"_id": "pd-b", "share_with": ["pd-a"]}}

    def add(self, username: str, agency_id: str, roles: list[str], training_days: int = 30) -> dict[str, Any]:
        training = {"course": "alpr", "expires_at": NOW + timedelta(days=training_days)}
        doc, _ = new_user_document(username, agency_id, username, roles, CREDENTIALS.hash(PASSWORD), training, NOW)
        self.users_by_id[doc["_id"]] = doc
        return doc

    async def agency(self, agency_id: str) -> dict[str, Any] | None:
        return self.agencies.get(agency_id)

    async def set_agency_policy(self, agency_id: str, share_with: list[str], case_number_required: bool,
                                hotlist_share_with: list[str]) -> dict[str, Any] | None:
        self.agencies[agency_id].update(share_with=share_with, case_number_required=case_number_required,
                                        hotlist_share_with=hotlist_share_with)
        return self.agencies[agency_id]

    async def sharing_with(self, agency_id: str) -> list[str]:
        return sorted(a for a, doc in self.agencies.items() if agency_id in doc["share_with"])

    async def user_by_name(self, username: str) -> dict[str, Any] | None:
        return next((u for u in self.users_by_id.values() if u["username"] == username), None)

    async def user(self, user_id: str) -> dict[str, Any] | None:
        return self.users_by_id.get(user_id)

    async def users(self, agency_id: str) -> list[dict[str, Any]]:
        return [u for u in self.users_by_id.values() if u["agency_id"] == agency_id]

    async def insert_user(self, doc: dict[str, Any]) -> None:
        self.users_by_id[doc["_id"]] = doc

    async def update_user(self, user_id: str, agency_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        user = self.users_by_id.get(user_id)
        if user is None or user["agency_id"] != agency_id:
            return None
        user.update(changes)
        return user

    async def claim_totp_step(self, user_id: str, totp_step: int, changes: dict[str, Any]) -> bool:
        user = self.users_by_id[user_id]
        if user["last_totp_step"] >= totp_step:
            return False
        user.update(last_totp_step=totp_step, **changes)
        return True


class FakeThrottle:
    def __init__(self, waiting: bool = False) -> None:
        self.waiting = waiting
        self.attempts: list[str] = []
        self.cleared: list[str] = []

    async def attempt(self, source: str, username: str, now: datetime) -> bool:
        self.attempts.append(username)
        return not self.waiting

    async def succeeded(self, source: str, username: str) -> None:
        self.cleared.append(username)

    async def clear_account(self, username: str) -> None:
        self.cleared.append(username)


class FakeRevoker:
    def __init__(self) -> None:
        self.revoked: list[str] = []

    async def revoke(self, user_id: str) -> None:
        self.revoked.append(user_id)


class FakeAuditor:
    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.events: list[audit_pb2.AuditEvent] = []

    async def record(self, principal: Principal | None, event: audit_pb2.AuditEvent) -> None:
        if self.down:
            raise Rejected(Code.UNAVAILABLE, "audit trail unavailable")
        self.events.append(event)

    async def deny(self, principal: Principal | None, event: audit_pb2.AuditEvent, refusal: Rejected) -> NoReturn:
        event.outcome, event.reason = audit_pb2.OUTCOME_DENIED, refusal.reason
        self.events.append(event)
        raise refusal


class World:
    def __init__(self, audit_down: bool = False, throttled: bool = False) -> None:
        self.store, self.throttle, self.revoker = FakeStore(), FakeThrottle(throttled), FakeRevoker()
        self.auditor = FakeAuditor(audit_down)
        self.issuer = TokenIssuer(Ed25519PrivateKey.generate(), timedelta(minutes=15))
        self.logins = Logins(self.store, self.throttle, self.revoker, self.issuer, CREDENTIALS, self.auditor, 12)
        self.admin = Administration(self.store, self.throttle, self.revoker, CREDENTIALS, self.auditor, 12)


def code(user: dict[str, Any], at: datetime = NOW) -> str:
    return pyotp.TOTP(user["totp_secret"]).at(at)


def principal(user: dict[str, Any]) -> Principal:
    return Principal(user_id=user["_id"], username=user["username"], agency_id=user["agency_id"],
                     roles=frozenset(user["roles"]), second_factor=True, training_until=NOW + timedelta(days=30))


async def refused(call: Any) -> Rejected:
    with pytest.raises(Rejected) as err:
        await call
    return err.value


async def test_a_login_with_both_factors_is_audited_with_its_roles_and_gets_a_token() -> None:
    world = World()
    amy = world.store.add("amy", "pd-a", ["officer"])
    session = await world.logins.login("Amy", PASSWORD, code(amy), "10.0.0.1", NOW)
    assert session.token and session.expires == NOW + timedelta(minutes=15) and session.user["_id"] == amy["_id"]
    [event] = world.auditor.events
    assert (event.action, event.outcome, event.user_id, list(event.roles)) == (
        "login", audit_pb2.OUTCOME_ALLOWED, amy["_id"], ["officer"])
    assert world.throttle.cleared == ["amy"]


async def test_every_refused_login_gets_one_answer_and_is_audited_with_its_reason() -> None:
    world = World()
    amy = world.store.add("amy", "pd-a", ["officer"])
    wrong_code = "000000" if code(amy) != "000000" else "111111"
    attempts = {"unknown user": ("nobody", PASSWORD, code(amy)),
                "wrong password": ("amy", "not the password at all", code(amy)),
                "no second factor": ("amy", PASSWORD, ""),
                "wrong or reused TOTP code": ("amy", PASSWORD, wrong_code)}
    for reason, (username, password, totp) in attempts.items():
        err = await refused(world.logins.login(username, password, totp, "10.0.0.1", NOW))
        assert (err.code, err.message, err.reason) == (Code.UNAUTHENTICATED, BAD_LOGIN, reason)
    assert [(e.outcome, e.reason) for e in world.auditor.events] == [
        (audit_pb2.OUTCOME_DENIED, reason) for reason in attempts]


async def test_a_code_works_once() -> None:
    world = World()
    amy = world.store.add("amy", "pd-a", ["officer"])
    await world.logins.login("amy", PASSWORD, code(amy), "10.0.0.1", NOW)
    err = await refused(world.logins.login("amy", PASSWORD, code(amy), "10.0.0.1", NOW))
    assert err.message == BAD_LOGIN and err.reason == "wrong or reused TOTP code"


async def test_a_throttled_login_is_refused_before_its_password_is_checked() -> None:
    world = World(throttled=True)
    amy = world.store.add("amy", "pd-a", ["officer"])
    err = await refused(world.logins.login("amy", PASSWORD, code(amy), "10.0.0.1", NOW))
    assert err.reason == "throttled after repeated failures"
    assert amy["last_totp_step"] == 0  # the code was never checked, so it is still good


async def test_expired_training_is_said_only_after_both_factors() -> None:
    world = World()
    amy = world.store.add("amy", "pd-a", ["officer"], training_days=-1)
    err = await refused(world.logins.login("amy", PASSWORD, code(amy), "10.0.0.1", NOW))
    assert err.code == Code.PERMISSION_DENIED and "training expired" in err.message


async def test_no_token_without_its_audit_record() -> None:
    world = World(audit_down=True)
    amy = world.store.add("amy", "pd-a", ["officer"])
    err = await refused(world.logins.login("amy", PASSWORD, code(amy), "10.0.0.1", NOW))
    assert err.code == Code.UNAVAILABLE


async def test_a_partners_token_names_the_agencies_sharing_with_it() -> None:
    world = World()
    pat = world.store.add("pat", "pd-a", ["partner_agency_user"])
    session = await world.logins.login("pat", PASSWORD, code(pat), "10.0.0.1", NOW)
    assert jwt.decode(session.token, options={"verify_signature": False})["partners"] == ["pd-b"]


async def test_a_password_change_needs_an_unused_code_and_revokes_the_tokens() -> None:
    world = World()
    amy = world.store.add("amy", "pd-a", ["officer"])
    await world.logins.login("amy", PASSWORD, code(amy), "10.0.0.1", NOW)
    err = await refused(world.logins.change_password(principal(amy), PASSWORD, "another long password",
                                                     code(amy), "10.0.0.1", NOW))
    assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "wrong password or code")
    assert world.revoker.revoked == []
    later = NOW + timedelta(seconds=30)
    await world.logins.change_password(principal(amy), PASSWORD, "another long password", code(amy, later),
                                       "10.0.0.1", later)
    assert CREDENTIALS.verify(amy["password_hash"], "another long password")
    assert world.revoker.revoked == [amy["_id"]]
    assert [(e.action, e.outcome) for e in world.auditor.events[-2:]] == [
        ("user.password", audit_pb2.OUTCOME_DENIED), ("user.password", audit_pb2.OUTCOME_ALLOWED)]


async def test_another_agencys_user_is_denied_like_a_missing_one_and_left_alone() -> None:
    world = World()
    admin = principal(world.store.add("boss-a", "pd-a", ["agency_admin"]))
    bob = world.store.add("bob", "pd-b", ["officer"])
    for call in (world.admin.user(admin, bob["_id"]), world.admin.lock(admin, bob["_id"]),
                 world.admin.set_roles(admin, bob["_id"], ["agency_admin"]), world.admin.user(admin, "missing")):
        err = await refused(call)
        assert (err.code, err.message) == (Code.NOT_FOUND, NO_SUCH_USER)
    assert bob["roles"] == ["officer"] and bob["locked_until"] is None and world.revoker.revoked == []
    assert {e.outcome for e in world.auditor.events} == {audit_pb2.OUTCOME_DENIED}


async def test_changes_are_audited_first_and_revoke_what_tokens_carry() -> None:
    world = World()
    admin = principal(world.store.add("boss-a", "pd-a", ["agency_admin"]))
    amy = world.store.add("amy", "pd-a", ["officer"])
    await world.admin.set_roles(admin, amy["_id"], ["investigator"])
    await world.admin.lock(admin, amy["_id"])
    assert amy["roles"] == ["investigator"] and amy["locked_until"] == LOCKED_FOR_GOOD
    await world.admin.unlock(admin, amy["_id"])
    reset = await world.admin.reset_password(admin, amy["_id"])
    assert CREDENTIALS.verify(amy["password_hash"], reset.password)
    assert world.revoker.revoked == [amy["_id"]] * 3 and world.throttle.cleared == ["amy"]
    assert [e.action for e in world.auditor.events] == ["user.roles", "user.lock", "user.unlock",
                                                         "user.reset_password"]


async def test_with_the_audit_trail_down_nothing_changes() -> None:
    world = World(audit_down=True)
    admin = principal(world.store.add("boss-a", "pd-a", ["agency_admin"]))
    amy = world.store.add("amy", "pd-a", ["officer"])
    assert (await refused(world.admin.lock(admin, amy["_id"]))).code == Code.UNAVAILABLE
    assert (await refused(world.admin.create_user(admin, "cal", "Cal", ["officer"], None, ""))).code == \
        Code.UNAVAILABLE
    assert amy["locked_until"] is None and await world.store.user_by_name("cal") is None


async def test_a_new_user_gets_a_one_time_password_and_names_are_unique() -> None:
    world = World()
    admin = principal(world.store.add("boss-a", "pd-a", ["agency_admin"]))
    created = await world.admin.create_user(admin, "Cal", "Cal", ["officer"], None, "")
    assert created.user["username"] == "cal" and created.user["agency_id"] == "pd-a"
    assert CREDENTIALS.verify(created.user["password_hash"], created.password) and created.totp_secret
    assert (await refused(world.admin.create_user(admin, "cal", "Cal", ["officer"], None, ""))).code == \
        Code.ALREADY_EXISTS
    assert (await refused(world.admin.create_user(admin, "dee", "Dee", ["officer"], None, "short"))).code == \
        Code.INVALID_ARGUMENT


async def test_an_agency_never_shares_with_itself_and_bad_ids_are_refused() -> None:
    world = World()
    admin = principal(world.store.add("boss-a", "pd-a", ["agency_admin"]))
    doc = await world.admin.set_agency_policy(admin, ["pd-b", "pd-a", "pd-b"], True, ["pd-a"])
    assert (doc["share_with"], doc["hotlist_share_with"], doc["case_number_required"]) == (["pd-b"], [], True)
    assert (await refused(world.admin.set_agency_policy(admin, ["not an id!"], False, []))).code == \
        Code.INVALID_ARGUMENT
