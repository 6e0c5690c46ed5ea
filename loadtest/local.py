"""A local stack and signed-in users for the load generators: real servers on free ports (services/devstack),
users created in MongoDB like the test fixtures do, logged in through the identity service with password + TOTP."""

from __future__ import annotations

import os
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
from pymongo import MongoClient

from services.common.tls import secure_channel
from services.devstack.stack import LocalStack, Ports
from services.identity.domain.accounts import Credentials, new_user_document
from sightline.identity.v1 import identity_pb2, identity_pb2_grpc

AGENCY = "pd-load"


def start_stack(services: list[str], triton: bool = False, **env: str) -> LocalStack:
    """mongod, Redis, (Triton), and the named services, under a temporary folder."""
    root = Path(tempfile.mkdtemp(prefix="sightline-load-"))
    stack = LocalStack(root, Ports.free())
    stack.env.update(SIGHTLINE_DATA_DIR=str(root / "data"), SIGHTLINE_AUDIT_ADDRESS=stack.address("audit"),
                     SIGHTLINE_DRAIN_SECONDS="0", **env)
    os.environ.update(stack.client_env())  # this process's clients trust the stack's CA
    if not triton:  # ingest then serves metadata-only reads (its health reports Triton missing)
        stack.env.setdefault("SIGHTLINE_TRITON_URL", f"127.0.0.1:{stack.ports.triton_grpc}")
    print(f"starting mongod, redis{', triton' if triton else ''}, {', '.join(services)} under {root} …", flush=True)
    stack.start_mongo()
    stack.start_redis()
    if triton:
        stack.start_triton()
    for name in services:
        stack.start_service(name)
    return stack


def seed_agency(uri: str, agency: str = AGENCY) -> None:
    with MongoClient(uri) as client:
        client["sightline"]["agencies"].update_one({"_id": agency}, {"$setOnInsert": {
            "name": agency, "share_with": [], "case_number_required": False}}, upsert=True)


async def login_new_user(uri: str, identity_addr: str, roles: list[str], agency: str = AGENCY) -> str:
    """Create a user with `roles` in MongoDB and log it in (password + TOTP): its access token."""
    now = datetime.now(UTC)
    username, password = f"load.{roles[0].replace('_', '-')}.{uuid.uuid4().hex[:6]}", "load test password 1"
    doc, secret = new_user_document(username, agency, username, roles,
                                    Credentials.argon2id(1, 8 * 1024, 1).hash(password),
                                    {"course": "ALPR", "expires_at": now + timedelta(days=30)}, now)
    seed_agency(uri, agency)
    with MongoClient(uri) as client:
        client["sightline"]["users"].insert_one(doc)
    async with secure_channel(identity_addr) as ch:
        reply = await identity_pb2_grpc.IdentityServiceStub(ch).Login(identity_pb2.LoginRequest(
            username=username, password=password, totp_code=pyotp.TOTP(secret).now()), wait_for_ready=True,
            timeout=30)
    return reply.access_token

