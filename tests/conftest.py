"""Session fixtures that start the real servers (mongod, Redis, Triton, the services) on free ports.

Each server starts on first use and is shared by the whole session. Set SIGHTLINE_TRITON_URL to use a
Triton that is already running instead of starting one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import pytest
from pymongo import MongoClient

from services.devstack.stack import LocalStack, Ports


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
    if url := os.environ.get("SIGHTLINE_TRITON_URL"):
        stack.env["SIGHTLINE_TRITON_URL"] = url
    elif "triton" not in stack.procs:
        stack.start_triton()
    return stack.env["SIGHTLINE_TRITON_URL"]


@pytest.fixture(scope="session")
def ingest_addr(stack: LocalStack, mongo_uri: str, redis_url: str, triton_url: str) -> str:
    if "ingest" not in stack.procs:
        stack.start_service("ingest", SIGHTLINE_MAX_FRAME_BYTES=str(2 * 1024 * 1024))
    return stack.address("ingest")


@pytest.fixture(scope="session")
def search_addr(stack: LocalStack, mongo_uri: str) -> str:
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
        ch = grpc.aio.insecure_channel(addr, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
        channels.append(ch)
        return ch

    yield make
    for ch in channels:
        await ch.close()


def now_utc() -> datetime:
    return datetime.now(UTC)
