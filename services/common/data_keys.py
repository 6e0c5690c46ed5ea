"""Data keys: one per agency per capture day and one per evidence hold, stored wrapped by a master key.

The `data_keys` collection holds `{_id: key id, kind: "day"|"hold", agency_id, day | hold_id, wrapped,
created_at, destroyed_at}`. Destroying a key removes `wrapped` and sets `destroyed_at`; the document stays as
the record of the destruction. Ingest (seal), search (open) and the retention service (re-seal, destroy)
share this module; each process caches unwrapped keys for `data_key_cache_s` seconds.

The master key is 32 random bytes, base64, in the file `SIGHTLINE_DATA_MASTER_KEY_FILE`; with dev keys on
and no file named, one is generated once under `<data_dir>/keys/` (never commit it).
"""

from __future__ import annotations

import base64
import fcntl
import os
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from bson.binary import Binary
from pydantic import Field
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.common import sealing
from services.common.auth import KeySettings

DATA_KEYS = "data_keys"
DEV_MASTER_KEY = "data_master.key"


class DataKeySettings(KeySettings):
    data_master_key_file: Path | None = Field(
        default=None,
        description="File holding base64 of 32 random bytes, the master key that wraps every data key; unset with "
                    "dev keys: <data_dir>/keys/data_master.key.")
    data_key_cache_s: float = Field(
        default=60.0, ge=0, le=3600,
        description="Seconds an unwrapped data key stays in a process's memory (a destroyed key is refused at once by "
                    "the process that destroyed it, and by the others within this time).")


class KeyShredded(Exception):
    """The data key was destroyed: what it sealed is gone for good."""


def day_key_id(agency_id: str, day: str) -> str:
    return f"day:{agency_id}:{day}"


def hold_key_id(hold_id: str) -> str:
    return f"hold:{hold_id}"


def load_master_key(settings: DataKeySettings) -> bytes:
    path = settings.data_master_key_file
    if path is None:
        if not settings.dev_keys:
            raise SystemExit("SIGHTLINE_DATA_MASTER_KEY_FILE is not set and dev keys are off")
        path = _ensure_dev_master_key(settings.data_dir)
    key = base64.b64decode(path.read_text().strip())
    if len(key) != sealing.KEY_BYTES:
        raise SystemExit(f"{path} must hold base64 of {sealing.KEY_BYTES} bytes")
    return key


def _ensure_dev_master_key(data_dir: Path) -> Path:
    path = data_dir / "keys" / DEV_MASTER_KEY
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(base64.b64encode(sealing.new_key()).decode())
            path.with_suffix(".tmp").rename(path)
    return path


class KeyStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], master: bytes, cache_s: float = 60.0):
        self._db = db
        self._master = master
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, bytes | None]] = {}

    async def ensure_indexes(self) -> None:
        await self._db[DATA_KEYS].create_indexes([
            IndexModel([("kind", ASCENDING), ("agency_id", ASCENDING), ("day", ASCENDING)], name="kind_agency_day"),
        ])

    def _remember(self, key_id: str, key: bytes | None) -> bytes | None:
        self._cache[key_id] = (time.monotonic(), key)
        return key

    def _cached(self, key_id: str) -> tuple[bool, bytes | None]:
        hit = self._cache.get(key_id)
        if hit is None:
            return False, None
        if hit[1] is None or time.monotonic() - hit[0] < self._cache_s:  # destroyed keys never come back
            return True, hit[1]
        return False, None

    def _from_doc(self, doc: dict[str, Any] | None) -> bytes | None:
        if doc is None or doc.get("wrapped") is None:
            return None
        return sealing.unwrap(self._master, doc["_id"], bytes(doc["wrapped"]))

    async def _create(self, key_id: str, fields: dict[str, Any], now: datetime) -> bytes:
        """The key `key_id`, created if it does not exist yet (concurrent creators agree on one)."""
        found, key = self._cached(key_id)
        if found:
            if key is None:
                raise KeyShredded(key_id)
            return key
        doc = await self._db[DATA_KEYS].find_one({"_id": key_id})
        if doc is None:
            key = sealing.new_key()
            try:
                await self._db[DATA_KEYS].insert_one({"_id": key_id, **fields, "created_at": now, "destroyed_at": None,
                                                      "wrapped": Binary(sealing.wrap(self._master, key_id, key))})
                return self._remember(key_id, key) or key
            except DuplicateKeyError:
                doc = await self._db[DATA_KEYS].find_one({"_id": key_id})
        key = self._remember(key_id, self._from_doc(doc))
        if key is None:
            raise KeyShredded(key_id)
        return key

    async def day_key(self, agency_id: str, day: str, now: datetime) -> tuple[str, bytes]:
        """(key id, key) sealing `agency_id`'s reads captured on `day`; KeyShredded once that day is shredded."""
        key_id = day_key_id(agency_id, day)
        return key_id, await self._create(key_id, {"kind": "day", "agency_id": agency_id, "day": day}, now)

    async def hold_key(self, agency_id: str, hold_id: str, now: datetime) -> tuple[str, bytes]:
        key_id = hold_key_id(hold_id)
        return key_id, await self._create(key_id, {"kind": "hold", "agency_id": agency_id, "hold_id": hold_id}, now)

    async def keys(self, key_ids: Iterable[str]) -> dict[str, bytes | None]:
        """The keys named (None for a destroyed or unknown key), from the cache or one query."""
        out: dict[str, bytes | None] = {}
        missing = []
        for key_id in set(key_ids):
            found, key = self._cached(key_id)
            if found:
                out[key_id] = key
            else:
                missing.append(key_id)
        if missing:
            docs = {d["_id"]: d for d in await self._db[DATA_KEYS].find({"_id": {"$in": missing}}).to_list(None)}
            for key_id in missing:
                doc = docs.get(key_id)
                # A key not created yet may be created any moment by another process: only keys that exist
                # (or were destroyed, which is final) are cached.
                out[key_id] = self._from_doc(doc) if doc is None else self._remember(key_id, self._from_doc(doc))
        return out

    async def destroy(self, key_id: str, now: datetime) -> datetime | None:
        """Destroy the key; returns when it was destroyed (now, or earlier), None when there was no key."""
        self._remember(key_id, None)
        await self._db[DATA_KEYS].update_one({"_id": key_id, "destroyed_at": None},
                                             {"$unset": {"wrapped": ""}, "$set": {"destroyed_at": now}})
        doc = await self._db[DATA_KEYS].find_one({"_id": key_id}, {"destroyed_at": 1})
        return None if doc is None else doc["destroyed_at"]

    async def open_reads(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Read documents with their sealed fields in clear; a shredded read keeps its clear fields only."""
        keys = await self.keys(d["key_id"] for d in docs if "sealed" in d)
        for doc in docs:
            if "sealed" in doc:
                key = keys.get(doc["key_id"])
                if key is None:
                    doc.pop("sealed")
                else:
                    sealing.open_read(doc, key)
        return docs

    async def open_image(self, doc: dict[str, Any]) -> bytes:
        """The image's bytes; KeyShredded when its key was destroyed."""
        if "key_id" not in doc:
            return bytes(doc["data"])
        key = (await self.keys([doc["key_id"]]))[doc["key_id"]]
        if key is None:
            raise KeyShredded(doc["key_id"])
        return sealing.open_image(doc["_id"], bytes(doc["data"]), key)
