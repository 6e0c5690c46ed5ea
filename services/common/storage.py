"""MongoDB and Redis clients, configured from settings, with health checks."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from pymongo import AsyncMongoClient, WriteConcern
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.read_concern import ReadConcern

from services.common.grpc_server import Dependency
from services.common.settings import MongoSettings, RedisSettings

Document = dict[str, Any]  # a MongoDB document as the clients return it


def mongo_client(settings: MongoSettings) -> AsyncMongoClient[Document]:
    # Acknowledged writes are on a majority of the replica set and in its journal: a restart loses nothing.
    return AsyncMongoClient(
        settings.mongo_uri,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        connectTimeoutMS=settings.mongo_timeout_ms,
        w="majority",
        journal=True,
        tz_aware=True,
        appname="sightline",
    )


def mongo_database(client: AsyncMongoClient[Document], settings: MongoSettings) -> AsyncDatabase[Document]:
    return client.get_database(
        settings.mongo_db,
        write_concern=WriteConcern(w="majority", j=True),
        read_concern=ReadConcern("majority"),
    )


def mongo_dependency(client: AsyncMongoClient[Document]) -> Dependency:
    async def check() -> None:
        await client.admin.command("ping")

    return Dependency("mongodb", check)


def redis_client(settings: RedisSettings) -> aioredis.Redis:
    return aioredis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=10
    )


def redis_dependency(client: aioredis.Redis) -> Dependency:
    async def check() -> None:
        await client.ping()

    return Dependency("redis", check)
