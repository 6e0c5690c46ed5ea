"""Session fixtures that start the real servers (mongod, Redis, Triton, the services) on free ports.

Each server starts on first use and is shared by the whole session. Set SIGHTLINE_TRITON_URL to use a
Triton that is already running instead of starting one. The fault suite (tests/faults: kill -9, restarts,
stalls; about ten minutes) runs only with --faults, as .ci/run asks.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from pymongo import MongoClient

from services.common.tls import secure_channel
from services.devstack.pki import DevPki
from services.devstack.servers import free_port
from services.devstack.stack import TLS_SERVERS, LocalStack, Ports


def pytest_configure(config: pytest.Config) -> None:
    """One development CA for the whole session, every stack's servers certified by it: every test's client
    (in this process and in the tools it runs) trusts it and presents the dev-site camera gateway's
    certificate, so every call goes over TLS, ingest's over mutual TLS."""
    if "SIGHTLINE_DEV_PKI_DIR" in os.environ:
        return
    pki = DevPki(Path(tempfile.mkdtemp(prefix="sightline-pki-"))).ensure(TLS_SERVERS)
    gateway = pki.gateway()
    # SSL_CERT_FILE: this process's HTTPS clients (httpx, urllib) trust the CA too (no test reaches the internet).
    os.environ.update(SIGHTLINE_DEV_PKI_DIR=str(pki.folder), SIGHTLINE_TLS_CA_FILE=str(pki.ca),
                      SSL_CERT_FILE=str(pki.ca), SIGHTLINE_TLS_CLIENT_CERT_FILE=str(gateway.cert),
                      SIGHTLINE_TLS_CLIENT_KEY_FILE=str(gateway.key))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--faults", action="store_true", help="also run the fault suite (tests/faults)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--faults"):
        return
    faults = [item for item in items if item.get_closest_marker("faults")]
    if faults:
        config.hook.pytest_deselected(items=faults)
        items[:] = [item for item in items if not item.get_closest_marker("faults")]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(tmp_path_factory.mktemp("stack"), Ports.free())
    yield local
    local.stop()


@pytest.fixture(scope="session")
def mongo_uri(stack: LocalStack) -> str:
    if "mongod" not in stack.procs:
        stack.start_mongo()
    return stack.env["SIGHTLINE_MONGO_URI"]


@pytest.fixture(scope="session")
def redis_url(stack: LocalStack) -> str:
    if "redis" not in stack.procs:
        stack.start_redis()
    return stack.env["SIGHTLINE_REDIS_URL"]


@pytest.fixture(scope="session")
def triton_url(stack: LocalStack) -> str:
    if url := os.environ.get("SIGHTLINE_TRITON_URL"):  # a Triton already running, serving plain text
        stack.env["SIGHTLINE_TRITON_URL"] = url
        stack.env["SIGHTLINE_TRITON_TLS"] = "false"
    elif "triton" not in stack.procs:
        stack.start_triton()
    return stack.env["SIGHTLINE_TRITON_URL"]


def triton_ca(stack: LocalStack) -> Path | None:
    """The CA a Triton client verifies the stack's Triton against (None: it serves plain text)."""
    return stack.pki.ca if stack.env.get("SIGHTLINE_TRITON_TLS") == "true" else None


# Ingest started for its camera registry only (no Triton): replaced by a full one when a test needs frames read.
_REGISTRY_ONLY: set[str] = set()


@pytest.fixture(scope="session")
def ingest_addr(stack: LocalStack, mongo_uri: str, redis_url: str, triton_url: str) -> str:
    if "ingest" in _REGISTRY_ONLY:
        stack.procs.pop("ingest").stop()
        _REGISTRY_ONLY.discard("ingest")
    if "ingest" not in stack.procs:
        stack.start_service("ingest", SIGHTLINE_MAX_FRAME_BYTES=str(2 * 1024 * 1024))
    return stack.address("ingest")


@pytest.fixture(scope="session")
def camera_registry_addr(stack: LocalStack, mongo_uri: str, redis_url: str, audit_addr: str) -> str:
    """Ingest's CameraRegistryService, without starting Triton when no test needs frames read."""
    if "ingest" not in stack.procs:
        stack.start_service("ingest", SIGHTLINE_TRITON_URL=f"127.0.0.1:{free_port()}")
        _REGISTRY_ONLY.add("ingest")
    return stack.address("ingest")


@pytest.fixture(scope="session")
def search_addr(stack: LocalStack, mongo_uri: str, redis_url: str, audit_addr: str) -> str:
    if "search" not in stack.procs:
        stack.start_service("search")
    return stack.address("search")


@pytest.fixture(scope="session")
def mongo_db(mongo_uri: str):
    with MongoClient(mongo_uri, tz_aware=True) as client:
        yield client["sightline"]


@pytest.fixture
async def channel_factory():
    channels: list[grpc.aio.Channel] = []

    def make(addr: str) -> grpc.aio.Channel:
        ch = secure_channel(addr, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
        channels.append(ch)
        return ch

    yield make
    for ch in channels:
        await ch.close()


def now_utc() -> datetime:
    return datetime.now(UTC)


# --- identity, audit and access control --------------------------------------------------------------------


@pytest.fixture(scope="session")
def audit_addr(stack: LocalStack, mongo_uri: str, redis_url: str) -> str:
    if "audit" not in stack.procs:
        stack.start_service("audit", SIGHTLINE_CHECKPOINT_INTERVAL_S="1")
    return stack.address("audit")


@pytest.fixture(scope="session")
def identity_addr(stack: LocalStack, mongo_uri: str, redis_url: str, audit_addr: str) -> str:
    if "identity" not in stack.procs:
        # Every test logs in from loopback: the source-address throttle would let one test's deliberate
        # failures lock out the next test's logins. It is tested on private identity services.
        stack.start_service("identity", SIGHTLINE_LOGIN_SOURCE_FREE_FAILURES="1000")
    return stack.address("identity")


@pytest.fixture(scope="session")
def token_issuer(stack: LocalStack):
    """Signs tokens with the stack's dev identity key: for tests that need an expired or a 1-factor token."""
    from services.common.auth import TOKEN_KEY, KeySettings, TokenIssuer, load_private_key

    key = load_private_key(None, KeySettings(data_dir=Path(stack.env["SIGHTLINE_DATA_DIR"])), TOKEN_KEY)
    return TokenIssuer(key, timedelta(minutes=15))


@dataclass(frozen=True)
class Account:
    username: str
    password: str
    totp_secret: str
    user_id: str
    agency_id: str

    def code(self, steps_ahead: int = 0) -> str:
        import pyotp

        return pyotp.TOTP(self.totp_secret).at(datetime.now(UTC), counter_offset=steps_ahead)

    async def fresh_code(self, mongo_db) -> str:
        """A code identity accepts now: a time step later than the last one this account used (a code works
        once, and tests in one session log the same accounts in several times)."""
        import pyotp

        totp = pyotp.TOTP(self.totp_secret)
        while True:
            current = totp.timecode(datetime.now(UTC))
            step = max(current, mongo_db["users"].find_one({"_id": self.user_id})["last_totp_step"] + 1)
            if step <= current + 1:
                return totp.generate_otp(step)
            await asyncio.sleep(1)


@pytest.fixture(scope="session")
def account_of(mongo_db):
    """account_of(username, password, totp_secret) -> the Account of a user some test created another way."""

    def make(username: str, password: str, totp_secret: str) -> Account:
        doc = mongo_db["users"].find_one({"username": username})
        return Account(username, password, totp_secret, doc["_id"], doc["agency_id"])

    return make


# name -> (agency, roles, training valid for days (negative: expired))
ACCOUNTS = {
    "officer": ("pd-alpha", ["officer"], 300),
    "investigator": ("pd-alpha", ["investigator"], 300),
    "supervisor": ("pd-alpha", ["supervisor"], 300),
    "auditor": ("pd-alpha", ["auditor"], 300),
    "admin": ("pd-alpha", ["agency_admin"], 300),
    "stale": ("pd-alpha", ["officer"], -1),
    "login": ("pd-alpha", ["supervisor"], 300),  # for login tests only: a TOTP code works once
    "partner": ("pd-beta", ["officer", "partner_agency_user"], 300),
    "beta_officer": ("pd-beta", ["officer"], 300),
    "beta_supervisor": ("pd-beta", ["supervisor"], 300),
    "gamma_partner": ("pd-gamma", ["partner_agency_user"], 300),
}


def create_account(mongo_db, name: str, agency: str, roles: list[str], training_days: int = 300) -> Account:
    """A user of `agency` with `roles`, written straight to MongoDB (a unique username from `name`)."""
    from services.identity.domain.accounts import Credentials, new_user_document

    now = datetime.now(UTC)
    username, password = f"{name.replace('_', '.')}.{uuid.uuid4().hex[:6]}", f"correct horse {name} battery"
    password_hash = Credentials.argon2id(1, 8 * 1024, 1).hash(password)  # cheap for tests; rehashed on login
    doc, secret = new_user_document(username, agency, name, roles, password_hash,
                                    {"course": "ALPR policy", "completed_at": now - timedelta(days=60),
                                     "expires_at": now + timedelta(days=training_days)}, now)
    mongo_db["users"].insert_one(doc)
    return Account(username, password, secret, doc["_id"], agency)


@pytest.fixture(scope="session")
def accounts(mongo_db) -> dict[str, Account]:
    """Agencies pd-alpha (shares its reads with pd-beta), pd-beta, pd-gamma and one user per ACCOUNTS entry."""
    mongo_db["agencies"].update_one({"_id": "pd-alpha"}, {"$set": {"name": "Alpha PD", "share_with": ["pd-beta"],
                                                                   "case_number_required": False}}, upsert=True)
    for agency in ("pd-beta", "pd-gamma"):
        mongo_db["agencies"].update_one({"_id": agency}, {"$set": {"name": agency, "share_with": [],
                                                                   "case_number_required": False}}, upsert=True)
    return {name: create_account(mongo_db, name, agency, roles, days)
            for name, (agency, roles, days) in ACCOUNTS.items()}


@pytest.fixture(scope="session")
async def tokens(identity_addr: str, accounts: dict[str, Account], mongo_db, redis_url: str):
    """tokens(name) -> an access token of that account, logging in again once the cached one is near expiry or
    was revoked (a test that logs the shared account out, `sightline logout`, revokes every token of it)."""
    import jwt
    import redis as redis_sync

    from services.common.auth import REVOKED_KEY_PREFIX
    from sightline.identity.v1 import identity_pb2, identity_pb2_grpc

    cache: dict[str, identity_pb2.LoginResponse] = {}
    channel = secure_channel(identity_addr)
    stub = identity_pb2_grpc.IdentityServiceStub(channel)
    revocations = redis_sync.Redis.from_url(redis_url)

    def revoked(name: str, token: str) -> bool:
        before = float(revocations.get(f"{REVOKED_KEY_PREFIX}{accounts[name].user_id}") or 0)
        return float(jwt.decode(token, options={"verify_signature": False})["iat"]) <= before

    async def get(name: str) -> str:
        cached = cache.get(name)
        if cached is None or cached.expires_at.ToDatetime(tzinfo=UTC) - datetime.now(UTC) < timedelta(minutes=3) \
                or revoked(name, cached.access_token):
            acc = accounts[name]
            cache[name] = await stub.Login(identity_pb2.LoginRequest(username=acc.username, password=acc.password,
                                                                     totp_code=await acc.fresh_code(mongo_db)))
        return cache[name].access_token

    yield get
    await channel.close()
    revocations.close()


# --- hotlist -----------------------------------------------------------------------------------------------

# The matcher reads the pass stream from its start, takes over a dead predecessor's passes within a second,
# and re-reads the agencies' hot-list sharing every half second.
HOTLIST_ENV = {"SIGHTLINE_MATCHER__START_ID": "0", "SIGHTLINE_MATCHER__CLAIM_IDLE_MS": "1000",
               "SIGHTLINE_MATCHER__CLAIM_INTERVAL_S": "0.5", "SIGHTLINE_SHARING_REFRESH_S": "0.5",
               "SIGHTLINE_DRAIN_SECONDS": "0"}


def start_hotlist(stack: LocalStack, **env: str) -> None:
    stack.start_service("hotlist", **{**HOTLIST_ENV, **env})


@pytest.fixture(scope="session")
def hotlist_addr(stack: LocalStack, mongo_uri: str, redis_url: str, audit_addr: str) -> str:
    if "hotlist" not in stack.procs:
        start_hotlist(stack)
    return stack.address("hotlist")


# --- retention ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def retention_addr(stack: LocalStack, mongo_uri: str, redis_url: str, audit_addr: str) -> str:
    if "retention" not in stack.procs:
        stack.start_service("retention", SIGHTLINE_VERIFY_INTERVAL_S="3600")
    return stack.address("retention")


@pytest.fixture(scope="session")
def data_key_settings(stack: LocalStack):
    """The data-key settings of the stack's services (the same dev master key)."""
    from services.common.data_keys import DataKeySettings

    return DataKeySettings(data_dir=Path(stack.env["SIGHTLINE_DATA_DIR"]))


# --- web front ends ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def portal_url(stack: LocalStack, mongo_uri: str, redis_url: str) -> str:
    """The transparency portal, computing its figures afresh on every request."""
    if "portal" not in stack.procs:
        stack.start_web("portal", SIGHTLINE_CACHE_SECONDS="0")
    return stack.url("portal")


@pytest.fixture(scope="session")
def console_url(stack: LocalStack, identity_addr: str, search_addr: str, audit_addr: str, retention_addr: str,
                redis_url: str) -> str:
    """The staff console, with every service it calls (hotlist included) running."""
    if "hotlist" not in stack.procs:
        start_hotlist(stack)
    if "console" not in stack.procs:
        stack.start_web("console")
    return stack.url("console")


CHROMIUM = Path(os.environ.get("SIGHTLINE_CHROMIUM", "/usr/bin/chromium"))
HAVE_CHROMIUM = CHROMIUM.exists()
# The console and portal serve HTTPS with the session's development CA, which Chromium (NSS) is not told
# about: the test browser accepts their certificates.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--ignore-certificate-errors"]


@pytest.fixture(scope="session")
async def browser():
    """Headless Debian Chromium driven by Playwright (no browser download: `playwright install` is not used)."""
    if not HAVE_CHROMIUM:
        pytest.skip(f"{CHROMIUM} not installed (scripts/bootstrap.sh installs Debian's chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()
