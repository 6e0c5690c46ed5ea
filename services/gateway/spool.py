"""The store-and-forward spool: picked stills on disk until ingest acknowledges them.

One SQLite file in WAL mode with `synchronous=FULL`: a still is on disk (the WAL fsynced) before `put`
returns, so it survives a kill -9 or a power cut. Each row is a serialised `ingest.v1.Frame` with its stable
frame id; (camera_id, frame_id) is unique, so a still spooled twice (a dropped file picked up again after a
crash) is kept once. A row is deleted only when ingest acknowledges its frame (STORED or DUPLICATE) or
rejects it for good.

The spool holds at most `max_bytes` of frames. When a new still does not fit, the oldest frames not in
flight are dropped (and returned, to be counted); if even that leaves no room, the new still is refused.

SQLite calls block, so every call runs on the spool's own thread (`AsyncSpool`); one connection, one thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sightline.ingest.v1 import ingest_pb2

R = TypeVar("R")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    camera_id  TEXT    NOT NULL,
    frame_id   TEXT    NOT NULL,
    spooled_at REAL    NOT NULL,
    size       INTEGER NOT NULL,
    frame      BLOB    NOT NULL,
    UNIQUE (camera_id, frame_id)
);
CREATE INDEX IF NOT EXISTS frames_by_camera ON frames (camera_id, seq);
"""


@dataclass(frozen=True)
class SpooledFrame:
    seq: int
    spooled_at: float  # Unix time
    frame: ingest_pb2.Frame

    @property
    def key(self) -> tuple[str, str]:
        return self.frame.camera_id, self.frame.frame_id


@dataclass(frozen=True)
class PutResult:
    stored: bool  # False: already spooled, or refused (no room)
    refused: bool  # no room even after dropping every frame not in flight
    dropped: list[tuple[str, int]]  # (camera_id, size) of the older frames dropped to make room


class Spool:
    def __init__(self, path: Path, max_bytes: int, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self._clock = clock
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.bytes_by_camera: Counter[str] = Counter(
            dict(self._db.execute("SELECT camera_id, SUM(size) FROM frames GROUP BY camera_id").fetchall()))

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_camera.values())

    def count(self, camera_id: str | None = None) -> int:
        if camera_id is None:
            return self._db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM frames WHERE camera_id = ?", (camera_id,)).fetchone()[0]

    def put(self, frame: ingest_pb2.Frame, in_flight: Collection[int] = ()) -> PutResult:
        data = frame.SerializeToString()
        size = len(data)
        dropped: list[tuple[str, int]] = []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._db.execute("SELECT 1 FROM frames WHERE camera_id = ? AND frame_id = ?",
                                (frame.camera_id, frame.frame_id)).fetchone():
                self._db.execute("COMMIT")
                return PutResult(False, False, [])
            excess = self.total_bytes + size - self.max_bytes
            if excess > 0:
                dropped = self._drop_oldest(excess, in_flight)
                if sum(s for _, s in dropped) < excess:
                    self._db.execute("ROLLBACK")
                    return PutResult(False, True, [])
            self._db.execute("INSERT INTO frames (camera_id, frame_id, spooled_at, size, frame) VALUES (?,?,?,?,?)",
                             (frame.camera_id, frame.frame_id, self._clock(), size, data))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        for camera_id, dropped_size in dropped:
            self.bytes_by_camera[camera_id] -= dropped_size
        self.bytes_by_camera[frame.camera_id] += size
        return PutResult(True, False, dropped)

    def _drop_oldest(self, excess: int, in_flight: Collection[int]) -> list[tuple[str, int]]:
        dropped: list[tuple[str, int]] = []
        freed = 0
        for seq, camera_id, size in self._db.execute("SELECT seq, camera_id, size FROM frames ORDER BY seq"):
            if seq in in_flight:
                continue
            dropped.append((seq, camera_id, size))
            freed += size
            if freed >= excess:
                break
        if freed >= excess:
            self._db.executemany("DELETE FROM frames WHERE seq = ?", [(seq,) for seq, _, _ in dropped])
        return [(camera_id, size) for _, camera_id, size in dropped]

    def next_frames(self, camera_id: str, exclude: Collection[int], limit: int, *,
                    newest_since: float | None = None) -> list[SpooledFrame]:
        """The camera's oldest frames not in `exclude`; or, with `newest_since`, its newest ones spooled since."""
        params: list[object] = [camera_id]
        where = "camera_id = ?"
        if newest_since is not None:
            where += " AND spooled_at >= ?"
            params.append(newest_since)
        if exclude:
            where += f" AND seq NOT IN ({','.join('?' * len(exclude))})"
            params.extend(exclude)
        order = "DESC" if newest_since is not None else "ASC"
        rows = self._db.execute(f"SELECT seq, spooled_at, frame FROM frames WHERE {where} ORDER BY seq {order} "
                                "LIMIT ?", (*params, limit)).fetchall()
        return [SpooledFrame(seq, spooled_at, ingest_pb2.Frame.FromString(data)) for seq, spooled_at, data in rows]

    def remove(self, seq: int) -> bool:
        row = self._db.execute("DELETE FROM frames WHERE seq = ? RETURNING camera_id, size", (seq,)).fetchone()
        if row is None:
            return False
        self.bytes_by_camera[row[0]] -= row[1]
        return True

    def close(self) -> None:
        self._db.close()


class AsyncSpool:
    """The spool's calls, each run on its one thread."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="spool")

    async def call(self, fn: Callable[..., R], *args: object, **kwargs: object) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._thread, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.spool.close()
