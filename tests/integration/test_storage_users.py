"""`sightline storage provision` (the chart's storage-users Job) against the real mongod and Redis: it gives each
service user of the connection files the matrix's privileges (services/cli/storage.py), idempotently."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from pymongo import MongoClient
from pymongo.errors import OperationFailure
from redis.exceptions import NoPermissionError

from services.cli.storage import MONGO_PRIVILEGES, REDIS_SELECTORS
from services.devstack.stack import LocalStack

pytestmark = pytest.mark.integration


def test_provision_sets_each_users_privileges_from_the_connection_files(stack: LocalStack, mongo_uri: str,
                                                                         redis_url: str, tmp_path: Path) -> None:
    mongo_dir, redis_dir = tmp_path / "mongodb", tmp_path / "redis"
    mongo_dir.mkdir()
    redis_dir.mkdir()
    for service in MONGO_PRIVILEGES:
        (mongo_dir / service).write_text(stack.storage_env(service)["SIGHTLINE_MONGO_URI"])
    for service in REDIS_SELECTORS:
        (redis_dir / service).write_text(stack.storage_env(service)["SIGHTLINE_REDIS_URL"])
    (tmp_path / "admin-mongo").write_text(mongo_uri)
    (tmp_path / "admin-redis").write_text(redis_url)
    env = {**os.environ, "SIGHTLINE_ADMIN_MONGO_URI_FILE": str(tmp_path / "admin-mongo"),
           "SIGHTLINE_ADMIN_REDIS_URL_FILE": str(tmp_path / "admin-redis")}
    done = subprocess.run([sys.executable, "-m", "services.cli", "storage", "provision", "--mongo-uris",
                           str(mongo_dir), "--redis-urls", str(redis_dir)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

    with MongoClient((mongo_dir / "ingest").read_text(), serverSelectionTimeoutMS=5000) as ingest:
        ingest["sightline"]["frames"].find_one({})
        with pytest.raises(OperationFailure):
            ingest["sightline"]["users"].find_one({})
    with redis.Redis.from_url((redis_dir / "tracker").read_text()) as tracker, \
            redis.Redis.from_url((redis_dir / "ingest").read_text()) as ingest:
        try:  # allowed: the consumer's commands on the read stream (which may not exist yet)
            tracker.xinfo_groups("sightline:reads:v1")
        except redis.ResponseError as exc:
            assert "no such key" in str(exc).lower()
        with pytest.raises(NoPermissionError):
            ingest.xadd("sightline:passes:v1", {"pass": b"forged"})
        with pytest.raises(NoPermissionError):
            tracker.xadd("sightline:reads:v1", {"read": b"forged"})


def test_a_connection_file_naming_another_user_is_refused(tmp_path: Path) -> None:
    (tmp_path / "search").write_text("mongodb://sightline-admin:pw@mongodb:27017/")
    done = subprocess.run([sys.executable, "-m", "services.cli", "storage", "provision", "--mongo-uris", str(tmp_path)],
                          env={**os.environ, "SIGHTLINE_ADMIN_MONGO_URI_FILE": "/nonexistent"}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "expected a mongodb URI with user sightline-search" in done.stderr
