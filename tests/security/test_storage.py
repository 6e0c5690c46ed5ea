"""Finding 7 of the outside attack: unauthenticated MongoDB and Redis.

The tester read `sightline.users` (password hashes, TOTP secrets) with a plain MongoDB client, and an `XADD`
of a forged pass to `sightline:passes:v1` raised a real alert. Both servers now require authentication, and
each service has its own user with only what its code does (services/cli/storage.py, docs/security.md): the
pass stream, whose entries raise alerts, can be appended to by the tracker's user alone.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import redis
from pymongo import MongoClient
from pymongo.errors import OperationFailure
from redis.exceptions import NoPermissionError

from services.cli.storage import MONGO_PRIVILEGES, REDIS_SELECTORS
from services.common.auth import auth_metadata
from services.common.settings import RedisSettings
from services.common.storage import redis_client
from services.devstack.servers import wait_for
from services.devstack.stack import LocalStack
from services.hotlist.settings import HotlistSettings
from services.tracker.adapters.codec import single_read_pass
from services.tracker.adapters.stream import PassPublisher
from sightline.common.v1 import pass_pb2, read_pb2
from sightline.hotlist.v1 import hotlist_pb2, hotlist_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.security]

UNAUTHORIZED = 13  # MongoDB's error code for a command the user may not run
PASS_STREAM = HotlistSettings().pass_stream
AGENCY = "pd-alpha"  # the test supervisor's agency (tests/conftest.py)


def service_mongo(stack: LocalStack, service: str) -> MongoClient:
    return MongoClient(stack.storage_env(service)["SIGHTLINE_MONGO_URI"], tz_aware=True, serverSelectionTimeoutMS=5000)


def refused(operation) -> OperationFailure:
    with pytest.raises(OperationFailure) as failure:
        operation()
    assert failure.value.code == UNAUTHORIZED, failure.value
    return failure.value


def test_an_unauthenticated_mongodb_client_is_refused(mongo_uri: str, accounts) -> None:
    """Finding 7: a client without credentials can no longer read `sightline.users` (nor anything else)."""
    port = urlsplit(mongo_uri).port
    with MongoClient("127.0.0.1", port, directConnection=True, serverSelectionTimeoutMS=5000, tls=True,
                     tlsCAFile=os.environ["SIGHTLINE_TLS_CA_FILE"]) as anonymous:
        failure = refused(lambda: anonymous["sightline"]["users"].find_one({}))
        assert "requires authentication" in str(failure)
        refused(lambda: anonymous["sightline_audit"]["audit_entries"].delete_many({}))
    with MongoClient(mongo_uri.replace("@", "x@", 1), serverSelectionTimeoutMS=3000) as wrong_password, \
            pytest.raises(OperationFailure, match="Authentication failed"):
        wrong_password["sightline"]["users"].find_one({})


def test_an_unauthenticated_redis_client_is_refused(redis_url: str) -> None:
    """Finding 7: a client without credentials (the default user is off) can neither read nor append."""
    port = urlsplit(redis_url).port
    tls = {"ssl": True, "ssl_ca_certs": os.environ["SIGHTLINE_TLS_CA_FILE"]}
    with redis.Redis(port=port, protocol=2, socket_timeout=5, **tls) as anonymous:
        for attempt in (anonymous.ping, lambda: anonymous.xadd(PASS_STREAM, {"pass": b"forged"}),
                        lambda: anonymous.keys("*")):
            with pytest.raises(redis.AuthenticationError):
                attempt()
    with redis.Redis(port=port, protocol=2, username="default", password="", socket_timeout=5, **tls) as default, \
            pytest.raises(redis.AuthenticationError):
        default.ping()


def test_the_search_user_cannot_read_users_nor_change_the_audit_trail(stack: LocalStack, mongo_uri: str,
                                                                       accounts) -> None:
    """Finding 7 and issue #17 item 6: search's MongoDB user reads reads and images, but not users (password
    hashes, TOTP secrets), and can neither update nor delete an audit entry."""
    with service_mongo(stack, "search") as client:
        client["sightline"]["reads"].find_one({})
        client["sightline"]["images"].find_one({})
        refused(lambda: client["sightline"]["users"].find_one({"_id": accounts["officer"].user_id}))
        entries = client["sightline_audit"]["audit_entries"]
        refused(lambda: entries.update_one({}, {"$set": {"event.action": "login"}}))
        refused(lambda: entries.delete_one({}))
        refused(lambda: entries.find_one({}))


def test_only_the_audit_user_appends_to_the_trail_and_it_can_only_append(stack: LocalStack, mongo_uri: str) -> None:
    """Issue #17 item 6 (finding 3's premise): the audit collection is written by the audit service's user
    alone, and that user's role is insert-only: no update, no delete, even for the service itself."""
    forged = {"_id": 10**12, "event": {"action": "search"}, "hash": "0" * 64}
    for service in MONGO_PRIVILEGES:
        if service == "audit":
            continue
        with service_mongo(stack, service) as client:
            refused(lambda c=client: c["sightline_audit"]["audit_entries"].insert_one(dict(forged)))
    with service_mongo(stack, "audit") as client:
        entries = client["sightline_audit"]["audit_entries"]
        entries.find_one({})
        refused(lambda: entries.update_one({}, {"$set": {"event.action": "login"}}))
        refused(lambda: entries.replace_one({}, forged))
        refused(lambda: entries.delete_many({}))
        refused(lambda: entries.drop())


def forged_read(plate: str) -> read_pb2.Read:
    read = read_pb2.Read(read_id=str(uuid.uuid4()), camera_id="cam-forged", agency_id=AGENCY, plate=plate,
                         plate_normalized=plate, region=read_pb2.Region(country="US", state="CA"))
    now = datetime.now(UTC)
    read.captured_at.FromDatetime(now)
    read.stored_at.FromDatetime(now)
    read.expires_at.FromDatetime(now + timedelta(days=30))
    return read


@pytest.fixture(scope="module")
def matcher_addr(stack: LocalStack, mongo_uri: str, redis_url: str, audit_addr: str) -> str:
    """The hotlist service with its pass-stream matcher (the session's, when another test started it)."""
    if "hotlist" not in stack.procs:
        stack.start_service("hotlist", SIGHTLINE_DRAIN_SECONDS="0")
    return stack.address("hotlist")


async def publish_as(stack: LocalStack, service: str, read: read_pb2.Read) -> None:
    client = redis_client(RedisSettings(redis_url=stack.storage_env(service)["SIGHTLINE_REDIS_URL"]))
    try:
        await PassPublisher(client, PASS_STREAM, 1_000_000).publish(
            [(single_read_pass(read, pass_pb2.PASS_STAGE_FINAL), None)])
    finally:
        await client.aclose()


async def test_a_forged_pass_is_refused_for_every_user_but_the_trackers(stack: LocalStack, matcher_addr: str,
                                                                        channel_factory, tokens, mongo_db) -> None:
    """Finding 7: the forged `XADD` to the pass stream that raised a real alert. Every service user but the
    tracker's is refused, and no alert results; the same pass appended by the tracker's user does raise one
    (so the matcher was listening all along)."""
    hot = hotlist_pb2_grpc.HotlistServiceStub(channel_factory(matcher_addr))
    supervisor = auth_metadata(await tokens("supervisor"))
    plate = f"FRG{uuid.uuid4().hex[:4].upper()}"
    list_id = f"forged-{uuid.uuid4().hex[:8]}"
    await hot.UpsertList(hotlist_pb2.UpsertListRequest(list=hotlist_pb2.HotList(
        list_id=list_id, name="forged passes", source=hotlist_pb2.LIST_SOURCE_AGENCY, owner=AGENCY)),
        metadata=supervisor)
    await hot.AddEntry(hotlist_pb2.AddEntryRequest(entry=hotlist_pb2.HotlistEntry(
        list_id=list_id, plate=plate, state="CA", code="V")), metadata=supervisor)

    for service in sorted(REDIS_SELECTORS):
        if service == "tracker":
            continue
        with pytest.raises(NoPermissionError):
            await publish_as(stack, service, forged_read(plate))
    await asyncio.sleep(3)
    assert mongo_db["alerts"].count_documents({"read.plate_normalized": plate}) == 0

    await publish_as(stack, "tracker", forged_read(plate))
    await wait_for("the tracker's pass to raise an alert",
                   lambda: mongo_db["alerts"].count_documents({"read.plate_normalized": plate}) == 1, 15)


def test_storage_refuses_plain_text(mongo_uri: str, redis_url: str) -> None:
    """Issue #17: mongod runs with --tlsMode requireTLS and redis-server with its TLS port only; a client that
    does not speak TLS gets nothing, not even a refusal to authenticate."""
    from pymongo.errors import ServerSelectionTimeoutError

    assert "tls=true" in mongo_uri and redis_url.startswith("rediss://")
    plain_mongo = mongo_uri.split("&tls=")[0]
    with MongoClient(plain_mongo, serverSelectionTimeoutMS=2000, directConnection=True) as plain, \
            pytest.raises(ServerSelectionTimeoutError):
        plain.admin.command("ping")
    plain_redis = "redis://" + redis_url.removeprefix("rediss://").split("?")[0]
    with redis.Redis.from_url(plain_redis, socket_timeout=3) as plain, pytest.raises(redis.ConnectionError):
        plain.ping()
    with MongoClient(mongo_uri, serverSelectionTimeoutMS=5000) as verified:  # the same URI with TLS: answered
        assert verified.admin.command("ping")["ok"] == 1
