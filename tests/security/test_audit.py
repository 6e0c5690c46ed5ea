"""Issue #14, findings 3 and 4: the audit trail rewritten through MongoDB, its tail cut off, and events forged
through Append, replayed against the real mongod and audit service.

Attacks on the stored trail run against an audit service of their own (a second LocalStack on the session's
mongod and dev keys, with its own audit database), so that the session's audit service, which the other tests
need, is not the one that stops. The attacker writes to MongoDB directly and knows the hashing scheme.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pymongo import ASCENDING, MongoClient

from services.audit.adapters.store import CHAIN, CHECKPOINTS, ENTRIES, HEAD
from services.audit.client import SERVICE_NAME, AuditClient, AuditUnavailable
from services.audit.domain.chain import entry_hash, verify_chain
from services.audit.settings import AUDIT_KEY
from services.common.auth import KeySettings, auth_metadata, load_public_key
from services.common.service_tokens import service_signer
from services.common.tls import secure_channel
from services.devstack.servers import wait_for
from services.devstack.stack import LocalStack, Ports
from sightline.audit.v1 import audit_pb2, audit_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.security]
INTERVAL_S = "0.5"  # the private audit service signs its head twice a second


class PrivateAudit:
    """An audit service on its own database, and the search service's credentials to append to it."""

    def __init__(self, stack: LocalStack, mongo_uri: str, root: Path, **env: str):
        self.name = f"audit_attack_{uuid.uuid4().hex[:8]}"
        self.stack = LocalStack(root, Ports.free())
        self.stack.env.update({"SIGHTLINE_MONGO_URI": mongo_uri, "SIGHTLINE_DATA_DIR": stack.env["SIGHTLINE_DATA_DIR"],
                               "SIGHTLINE_AUDIT_MONGO_DB": self.name, "SIGHTLINE_DRAIN_SECONDS": "0",
                               "SIGHTLINE_CHECKPOINT_INTERVAL_S": INTERVAL_S, **env})
        # Its own audit database, which the audit service's user has no rights on: the administrator's connection.
        self.admin_uri = mongo_uri
        self.stack.start_service("audit", SIGHTLINE_MONGO_URI=mongo_uri)
        self.mongo = MongoClient(mongo_uri, tz_aware=True)
        self.db = self.mongo[self.name]
        self.keys = KeySettings(data_dir=Path(stack.env["SIGHTLINE_DATA_DIR"]))
        self.client = AuditClient(self.stack.address("audit"), 5, service_signer("search", self.keys))
        self.channel = secure_channel(self.stack.address("audit"))

    async def append(self, n: int) -> None:
        for i in range(n):
            await self.client.record(audit_pb2.AuditEvent(
                action="search", outcome=audit_pb2.OUTCOME_ALLOWED, user_id="u-officer", agency_id="pd-alpha",
                purpose="PURPOSE_ROBBERY", case_number=f"ROB-{i}", plates=[f"TST{i:03d}"]))

    async def signed(self, seq: int) -> dict:
        await wait_for(f"checkpoint {seq}", lambda: self.db[CHECKPOINTS].find_one({"_id": seq}) is not None, 10)
        return self.db[CHECKPOINTS].find_one({"_id": seq})

    async def serving(self) -> bool:
        reply = await health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    async def stops_serving(self) -> None:
        deadline = time.monotonic() + 15
        while await self.serving():
            assert time.monotonic() < deadline, "the audit service kept serving a tampered chain"
            await asyncio.sleep(0.2)

    def verify(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.stack.env}
        return subprocess.run([sys.executable, "-m", "services.cli", "audit", "verify", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    def verify_later(self, minutes: int = 10):
        """`verify_chain` over the stored trail as it would run `minutes` from now."""
        key = load_public_key(None, self.keys, AUDIT_KEY)
        entries = self.db[ENTRIES].find({}).sort("_id", ASCENDING)
        return verify_chain(entries, list(self.db[CHECKPOINTS].find({})), self.db[CHAIN].find_one({"_id": HEAD}), key,
                            timedelta(days=400), datetime.now(UTC) + timedelta(minutes=minutes),
                            unsigned_grace=timedelta(seconds=61))

    async def close(self) -> None:
        await self.client.close()
        await self.channel.close()
        self.stack.stop()
        self.mongo.drop_database(self.name)
        self.mongo.close()


@pytest.fixture
async def private_audit(stack: LocalStack, mongo_uri: str, tmp_path):
    audits: list[PrivateAudit] = []

    def start(**env: str) -> PrivateAudit:
        audits.append(PrivateAudit(stack, mongo_uri, tmp_path / f"stack{len(audits)}", **env))
        return audits[-1]

    yield start
    for audit in audits:
        await audit.close()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)


def rewrite_entry(db, seq: int, event: dict) -> None:
    """Replace entry `seq`'s event and recompute its hash, every later hash and link, and the head."""
    prev = db[ENTRIES].find_one({"_id": seq - 1})["hash"] if seq > 1 else "0" * 64
    for doc in db[ENTRIES].find({"_id": {"$gte": seq}}).sort("_id", ASCENDING):
        if doc["_id"] == seq:
            doc["event"] = event
        doc["prev_hash"] = prev
        doc["hash"] = prev = entry_hash(doc["_id"], doc["at"], doc["event"], prev)
        db[ENTRIES].replace_one({"_id": doc["_id"]}, doc)
    db[CHAIN].update_one({"_id": HEAD}, {"$set": {"hash": prev}})


async def test_deleted_checkpoints_and_a_rewritten_entry_are_reported(private_audit, redis_url: str,
                                                                       tmp_path) -> None:
    """Finding 3: with MongoDB write access the tester deleted every checkpoint after the first, changed entry
    22 (a search) into a login and recomputed the hashes and the head; verification said "chain intact" and
    the service signed the forged head. Now the witness published by the portal is missing from the trail,
    the unsigned entries are reported, and the service refuses to sign or extend the forged chain."""
    audit = private_audit(SIGHTLINE_REDIS_URL=redis_url)
    for _ in range(3):
        await audit.append(10)
        await audit.signed(audit.db[CHAIN].find_one({"_id": HEAD})["seq"])
    assert audit.db[CHECKPOINTS].count_documents({}) >= 3
    # The portal publishing this private trail's witness reads it over the administrator's connection too.
    audit.stack.start_web("portal", SIGHTLINE_CACHE_SECONDS="0", SIGHTLINE_MONGO_URI=audit.admin_uri)
    published = await asyncio.to_thread(get_json, f"{audit.stack.url('portal')}/api/audit/checkpoint.json")
    assert published["seq"] == 30
    witness = tmp_path / "witness.json"
    witness.write_text(json.dumps(published))
    ok = audit.verify("--witness", str(witness))
    assert ok.returncode == 0, ok.stdout + ok.stderr

    audit.db[CHECKPOINTS].delete_many({"_id": {"$gt": 0}})
    entry = audit.db[ENTRIES].find_one({"_id": 22})
    assert entry["event"]["action"] == "search"
    rewrite_entry(audit.db, 22, {"action": "login", "outcome": "OUTCOME_ALLOWED", "user_id": "u-officer",
                                 "agency_id": "pd-alpha", "recorded_by": "service:identity"})
    forged_head = audit.db[CHAIN].find_one({"_id": HEAD})["hash"]

    await audit.stops_serving()
    with pytest.raises(AuditUnavailable, match="UNAVAILABLE"):
        await audit.append(1)
    await asyncio.sleep(1.5)  # three signing rounds
    assert audit.db[CHECKPOINTS].find_one({"hash": forged_head}) is None
    assert audit.db[ENTRIES].count_documents({}) == 30

    broken = audit.verify("--witness", str(witness))
    assert broken.returncode == 1 and "BROKEN at entry 30 (checkpoint)" in broken.stdout, broken.stdout
    assert "witnessed checkpoint at sequence 30 is missing" in broken.stdout
    later = audit.verify_later()  # without a witness: the entries were left unsigned
    assert later.problem is not None and later.problem.kind == "checkpoint" and later.problem.sequence == 1


async def test_a_truncated_tail_is_reported_and_its_sequence_numbers_are_not_reused(private_audit) -> None:
    """Finding 3: deleting the two newest entries and restoring the head passed verification, and later
    appends reused their sequence numbers. Now the service stops appending, signs the head it wrote as
    evidence, and verification names the deleted entries."""
    audit = private_audit(SIGHTLINE_CHECKPOINT_INTERVAL_S="3")
    await audit.append(10)
    await audit.signed(10)
    await audit.append(2)  # the two newest, not yet signed
    kept = audit.db[ENTRIES].find_one({"_id": 10})
    audit.db[ENTRIES].delete_many({"_id": {"$gt": 10}})
    audit.db[CHAIN].update_one({"_id": HEAD}, {"$set": {"seq": 10, "hash": kept["hash"], "at": kept["at"]}})

    with pytest.raises(AuditUnavailable, match="UNAVAILABLE"):
        await audit.append(1)  # would have become entry 11 again
    assert audit.db[ENTRIES].find_one({"_id": 11}) is None
    await audit.stops_serving()
    evidence = await audit.signed(12)  # the head the service wrote, signed by it
    assert evidence["seq"] == 12

    broken = audit.verify()
    assert broken.returncode == 1 and "BROKEN at entry 11 (deleted)" in broken.stdout, broken.stdout


async def test_a_persons_token_cannot_append(audit_addr: str, tokens, accounts, mongo_db, channel_factory) -> None:
    """Finding 4: an officer appended `search ALLOWED plates=[ABC123] data_agency_ids=[A]` (a fake partner
    search in agency A's review and portal), and 200 events of 60 KB in 2.2 s. Append is now for services
    only: the officer is refused, and so is every one of the 200 events."""
    stub = audit_pb2_grpc.AuditServiceStub(channel_factory(audit_addr))
    md = auth_metadata(await tokens("officer"))
    marker = f"FORGED-{uuid.uuid4().hex[:8]}"
    fake = audit_pb2.AuditEvent(action="search", outcome=audit_pb2.OUTCOME_ALLOWED, plates=["ABC123"],
                                data_agency_ids=["pd-alpha"], agency_id="pd-beta", case_number=marker)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Append(audit_pb2.AppendRequest(event=fake), metadata=md)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "only Sightline services" in err.value.details()
    big = audit_pb2.AuditEvent(action="search", case_number=marker, reason="x" * 60_000)
    codes = set()
    for _ in range(200):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Append(audit_pb2.AppendRequest(event=big), metadata=md)
        codes.add(err.value.code())
    assert codes == {grpc.StatusCode.PERMISSION_DENIED}
    trail = mongo_db.client["sightline_audit"][ENTRIES]
    assert trail.count_documents({"event.case_number": marker}) == 0
    # Each attempt is on the record as the officer's refused audit.append, holding nothing the officer sent.
    attempts = {"event.action": "audit.append", "event.user_id": accounts["officer"].user_id,
                "event.outcome": "OUTCOME_DENIED", "event.recorded_by": "service:audit"}
    assert trail.count_documents(attempts) >= 201


async def test_a_service_is_held_to_the_size_and_rate_limits(private_audit, tokens, accounts) -> None:
    """Finding 4: the size and rate limits hold for services too; the person a service acts for is the one
    its token names, whatever the event claims."""
    audit = private_audit(SIGHTLINE_APPEND_RATE_PER_S="5", SIGHTLINE_APPEND_BURST="20")
    big = audit_pb2.AuditEvent(action="search", reason="x" * 60_000)
    with pytest.raises(AuditUnavailable, match="INVALID_ARGUMENT: event too large"):
        await audit.client.record(big)
    officer = await tokens("officer")
    claimed = audit_pb2.AuditEvent(action="search", outcome=audit_pb2.OUTCOME_ALLOWED, user_id="someone-else",
                                   agency_id="pd-beta")
    await audit.client.record(claimed, officer)
    entry = audit.db[ENTRIES].find_one(sort=[("_id", -1)])
    assert entry["event"]["user_id"] == accounts["officer"].user_id and entry["event"]["agency_id"] == "pd-alpha"
    assert entry["event"]["recorded_by"] == "service:search"
    refused = 0
    for _ in range(200):
        try:
            await audit.client.record(audit_pb2.AuditEvent(action="search"))
        except AuditUnavailable as exc:
            assert "RESOURCE_EXHAUSTED" in str(exc)
            refused += 1
    assert refused >= 150 and audit.db[ENTRIES].count_documents({}) <= 60
