"""Fault-test harness: a dedicated local stack, a metadata gateway on StreamReads, searches, health watching,
and the checks after a fault (reads stored exactly once, alerts neither lost nor duplicated).

Every fault case records one row (see `record_row`); `loadtest/fault_suite.py` prints the rows as a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pymongo import MongoClient

from services.common.auth import auth_metadata
from services.common.tls import secure_channel
from services.devstack.servers import wait_for
from services.devstack.stack import LocalStack, Ports
from services.devstack.tokens import dev_token
from services.gateway.window import RETRYABLE_CODES, backoff_delay
from services.ingest.client import register_camera
from sightline.common.v1 import read_pb2
from sightline.hotlist.v1 import hotlist_pb2, hotlist_pb2_grpc
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from sightline.search.v1 import search_pb2, search_pb2_grpc

AGENCY = "pd-faults"
FrameKey = tuple[str, str]  # camera id, frame id
SERVING = health_pb2.HealthCheckResponse.SERVING
_RETRYABLE = frozenset(code.value[0] for code in RETRYABLE_CODES)
# What a broken or stalled stream raises in the gateway.
_STREAM_BROKEN = (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError, TimeoutError, ConnectionError)
_ACKED = (ingest_pb2.FRAME_STATUS_STORED, ingest_pb2.FRAME_STATUS_DUPLICATE)

# Short intervals so that a fault and its recovery fit in a few seconds: health every 0.5 s, the outbox swept
# every second, dead consumers' pending entries claimed after 1-1.5 s, passes closed after 1 s without a read.
FAULT_ENV = {
    "SIGHTLINE_DRAIN_SECONDS": "0", "SIGHTLINE_HEALTH_INTERVAL_SECONDS": "0.5",
    "SIGHTLINE_OUTBOX_SWEEP_INTERVAL_S": "1", "SIGHTLINE_OUTBOX_MIN_AGE_S": "2",
    "SIGHTLINE_TRACKER__START_ID": "0", "SIGHTLINE_PASS_GAP_S": "1.0", "SIGHTLINE_TRACKER__CLAIM_IDLE_MS": "1500",
    "SIGHTLINE_TRACKER__CLAIM_INTERVAL_S": "0.5", "SIGHTLINE_MATCHER__START_ID": "0",
    "SIGHTLINE_MATCHER__CLAIM_IDLE_MS": "1000", "SIGHTLINE_MATCHER__CLAIM_INTERVAL_S": "0.5",
    "SIGHTLINE_VERIFY_INTERVAL_S": "3600", "SIGHTLINE_CHECKPOINT_INTERVAL_S": "1",
}
ALL_SERVICES = ("audit", "identity", "ingest", "tracker", "hotlist", "search", "retention")


def start_fault_stack(root: Path, triton: bool, services: tuple[str, ...] = ALL_SERVICES, **env: str) -> LocalStack:
    """mongod, Redis, (Triton) and the services on free ports under `root`. Every setting goes into the stack's
    env, so a service restarted by `LocalStack.restart` gets the same ones."""
    stack = LocalStack(root, Ports.free())
    stack.env.update(FAULT_ENV, SIGHTLINE_DATA_DIR=str(root / "data"), SIGHTLINE_AUDIT_ADDRESS=stack.address("audit"),
                     **env)
    if not triton:  # metadata-only ingest: no Triton (ingest's health reports it missing)
        stack.env["SIGHTLINE_TRITON_URL"] = f"127.0.0.1:{stack.ports.triton_grpc}"
    try:
        stack.start_mongo()
        stack.start_redis()
        if triton:
            stack.start_triton()
        with MongoClient(stack.env["SIGHTLINE_MONGO_URI"]) as client:
            client["sightline"]["agencies"].update_one({"_id": AGENCY}, {"$set": {
                "name": "Faults PD", "share_with": [], "case_number_required": False}}, upsert=True)
        for name in services:
            stack.start_service(name)
    except BaseException:
        stack.stop()
        raise
    return stack


def token(stack: LocalStack, *roles: str) -> tuple[tuple[str, str], ...]:
    return auth_metadata(dev_token(Path(stack.env["SIGHTLINE_DATA_DIR"]), AGENCY, roles))


def mongo(stack: LocalStack) -> MongoClient:
    return MongoClient(stack.env["SIGHTLINE_MONGO_URI"], tz_aware=True, serverSelectionTimeoutMS=20_000)


# --- workload -------------------------------------------------------------------------------------------------


@dataclass
class GatewayCounts:
    batches_sent: int = 0  # stream writes, resends included
    batches_resent: int = 0
    stream_failures: int = 0
    frames_retried: int = 0  # frames rejected with a retryable code, sent again
    frames_rejected: Counter[str] = field(default_factory=Counter)  # rejected for good


class ReadGateway:
    """A metadata-only camera gateway on IngestService/StreamReads: one batch in flight; a batch not
    acknowledged (stream failed, timed out) is sent again with backoff, frames rejected with a retryable code
    too. `acked` maps each acknowledged (camera, frame) to its read ids; `planted` holds the hot plates acknowledged."""

    def __init__(self, channel: grpc.aio.Channel, credentials: tuple, cameras: list[str], run_id: str,
                 rate: float = 20.0, frames_per_batch: int = 10, hot_plates: Sequence[str] = (),
                 plant_every: int = 100, captured_at=lambda: datetime.now(UTC) - timedelta(seconds=1)):
        self._stub = ingest_pb2_grpc.IngestServiceStub(channel)
        self._md = credentials
        self._cameras = cameras
        self._run_id = run_id
        self._interval = 1.0 / rate
        self._per_batch = frames_per_batch
        self._hot = list(hot_plates)
        self._plant_every = plant_every
        self._captured_at = captured_at
        self._rng = random.Random(run_id)
        self._seq = 0
        self.counts = GatewayCounts()
        self.acked: dict[FrameKey, list[str]] = {}
        self.planted: list[str] = []
        self._hot_frames: dict[FrameKey, str] = {}  # frames carrying a planted hot plate

    def next_batch(self) -> ingest_pb2.ReadBatch:
        frames = []
        for _ in range(self._per_batch):
            self._seq += 1
            camera = self._cameras[self._seq % len(self._cameras)]
            fr = ingest_pb2.FrameReads(camera_id=camera, frame_id=f"{self._run_id}-{self._seq}")
            if self._hot and self._seq % self._plant_every == 0:
                plate = self._hot_frames[camera, fr.frame_id] = self._hot.pop()
            else:
                plate = "".join(self._rng.choices("ABCDEFGHJKLMNPRSTUVWXYZ0123456789", k=7))
            fr.captured_at.FromDatetime(self._captured_at())
            fr.reads.add(plate=plate, confidence=0.95, region=read_pb2.Region(country="US", state="CA"),
                         plate_box=read_pb2.BoundingBox(x=600, y=420, width=120, height=40))
            frames.append(fr)
        return ingest_pb2.ReadBatch(frames=frames)

    async def run(self, stop: asyncio.Event) -> GatewayCounts:
        pending: ingest_pb2.ReadBatch | None = None
        failures = 0
        while pending is not None or not stop.is_set():
            try:
                call = self._stub.StreamReads(metadata=self._md, wait_for_ready=True)
                while pending is not None or not stop.is_set():
                    resend = pending is not None
                    batch = pending if resend else self.next_batch()
                    pending = batch
                    await call.write(batch)
                    self.counts.batches_sent += 1
                    self.counts.batches_resent += resend
                    reply = await asyncio.wait_for(call.read(), 10)
                    if reply is grpc.aio.EOF:
                        raise ConnectionError("stream ended")
                    pending = self._settle(batch, reply)
                    failures = 0
                    await asyncio.sleep(self._interval if pending is None else backoff_delay(1, 0.2, 2))
                await call.done_writing()
            except _STREAM_BROKEN:
                self.counts.stream_failures += 1
                failures += 1
                await asyncio.sleep(backoff_delay(failures, 0.1, 1.0, self._rng))
        return self.counts

    def _settle(self, batch: ingest_pb2.ReadBatch, reply: ingest_pb2.ReadBatchAck) -> ingest_pb2.ReadBatch | None:
        """Record the acknowledgements; the frames to send again (retryable rejections), if any."""
        again = []
        for frame, ack in zip(batch.frames, reply.acks, strict=True):
            if ack.status in _ACKED:
                key = frame.camera_id, frame.frame_id
                self.acked[key] = list(ack.read_ids)
                if key in self._hot_frames:
                    self.planted.append(self._hot_frames[key])
            elif ack.error_code in _RETRYABLE:
                self.counts.frames_retried += 1
                again.append(frame)
            else:
                self.counts.frames_rejected[ack.error_message[:60]] += 1
        return ingest_pb2.ReadBatch(frames=again) if again else None


class Searcher:
    """An investigator searching a plate twice a second; counts answers and failures."""

    def __init__(self, channel: grpc.aio.Channel, metadata: tuple, plate: str):
        self._stub = search_pb2_grpc.SearchServiceStub(channel)
        self._md = metadata
        self._plate = plate
        self.ok = 0
        self.failed: Counter[str] = Counter()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._stub.SearchReads(search_pb2.SearchReadsRequest(
                    plate_exact=self._plate, purpose=search_pb2.PURPOSE_ROBBERY, case_number="FAULT-1"),
                    metadata=self._md, timeout=5)
                self.ok += 1
            except grpc.aio.AioRpcError as exc:
                self.failed[exc.code().name] += 1
            await asyncio.sleep(0.5)


class HealthWatch:
    """Polls the gRPC health of services every 0.2 s: which were seen NOT_SERVING, and when each was last
    seen not SERVING (NOT_SERVING or unreachable)."""

    def __init__(self, stack: LocalStack, names: list[str]):
        self._channels = {n: secure_channel(stack.address(n)) for n in names}
        self.not_serving: set[str] = set()
        self.unreachable: set[str] = set()
        self.last_bad: dict[str, float] = {}

    async def poll(self) -> None:
        for name, channel in self._channels.items():
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == SERVING:
                    continue
                self.not_serving.add(name)
            except grpc.aio.AioRpcError:
                self.unreachable.add(name)
            self.last_bad[name] = time.monotonic()

    def observed(self) -> str:
        """What was seen, e.g. "search,identity (down: audit)"."""
        down = sorted(self.unreachable - self.not_serving)
        return (",".join(sorted(self.not_serving)) or "-") + (f" (down: {','.join(down)})" if down else "")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()
            await asyncio.sleep(0.2)

    async def all_serving(self, within_s: float = 30) -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            before = dict(self.last_bad)
            await self.poll()
            if self.last_bad == before:
                return True
            await asyncio.sleep(0.2)
        return False

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()


DOWN_S = 3.0  # how long a killed server stays down before it is started again


async def kill_and_restart(stack: LocalStack, name: str, watch: HealthWatch, down_s: float = DOWN_S) -> float:
    """kill -9 `name`, leave it down `down_s`, start it again; seconds from the kill until every watched
    service is SERVING again."""
    killed = time.monotonic()
    stack.procs[name].kill()
    await asyncio.sleep(down_s)
    await asyncio.to_thread(stack.restart, name, True)
    assert await watch.all_serving(30), f"not SERVING again: {sorted(watch.last_bad)}"
    return time.monotonic() - killed


# --- setup and checks ----------------------------------------------------------------------------------------


async def register_cameras(stack: LocalStack, prefix: str, n: int) -> tuple[list[str], tuple]:
    """n cameras of AGENCY; returns their ids and call metadata presenting all their credentials."""
    admin = dev_token(Path(stack.env["SIGHTLINE_DATA_DIR"]), AGENCY, ["agency_admin"])
    ids = [f"{prefix}-{i}" for i in range(n)]
    async with secure_channel(stack.address("ingest")) as channel:
        mds = [await register_camera(channel, ingest_pb2.Camera(
                site_id="dev-site", camera_id=c, name=c, active=True), admin)
               for c in ids]
    return ids, tuple(md[0] for md in mds)


async def hot_list(stack: LocalStack, plates: list[str]) -> str:
    """A new agency hot list with `plates`: its id."""
    list_id = f"faults-{uuid.uuid4().hex[:8]}"
    md = token(stack, "supervisor")
    async with secure_channel(stack.address("hotlist")) as channel:
        hot = hotlist_pb2_grpc.HotlistServiceStub(channel)
        await hot.UpsertList(hotlist_pb2.UpsertListRequest(list=hotlist_pb2.HotList(
            list_id=list_id, name="faults", source=hotlist_pb2.LIST_SOURCE_AGENCY, owner=AGENCY)), metadata=md,
            timeout=10)
        for plate in plates:
            await hot.AddEntry(hotlist_pb2.AddEntryRequest(entry=hotlist_pb2.HotlistEntry(
                list_id=list_id, plate=plate, state="CA", code="V", reason="stolen vehicle")), metadata=md, timeout=10)
    return list_id


def stored_once(client: MongoClient, acked: dict[FrameKey, list[str]]) -> tuple[bool, int, int]:
    """(every acknowledged frame's reads stored exactly once, frames acked, frames stored exactly once):
    the reads of each (camera, frame) are exactly the read ids its acknowledgement named."""
    found: dict[FrameKey, list[str]] = {}
    ids = sorted({frame for _, frame in acked})
    for i in range(0, len(ids), 5000):
        for doc in client["sightline"]["reads"].find({"frame_id": {"$in": ids[i:i + 5000]}},
                                                     {"camera_id": 1, "frame_id": 1}):
            found.setdefault((doc["camera_id"], doc["frame_id"]), []).append(doc["_id"])
    exact = sum(sorted(found.get(key, [])) == sorted(reads) for key, reads in acked.items())
    return exact == len(acked), len(acked), exact


async def alerts_settled(client: MongoClient, list_id: str, expected: int, within_s: float = 40) -> list[dict]:
    """The list's alerts once `expected` of them exist (or after `within_s`), and a little longer for any
    duplicate to show up."""
    coll = client["sightline"]["alerts"]
    with contextlib.suppress(TimeoutError):  # the caller compares the counts
        await wait_for("the alerts", lambda: coll.count_documents({"list_id": list_id}) >= expected, within_s, 0.5)
    await asyncio.sleep(2)
    return list(coll.find({"list_id": list_id}, {"entry": 1}))


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def record_row(row: dict) -> None:
    """Append a result row for loadtest/fault_suite.py (when it runs the suite)."""
    if path := os.environ.get("SIGHTLINE_FAULT_RESULTS"):
        with open(path, "a") as out:
            out.write(json.dumps(row) + "\n")


@dataclass
class FaultRow:
    component: str
    acked: int
    exact: int
    planted: int = 0
    alerts: int = 0
    duplicates: int = 0
    not_serving: str = ""
    recovery_s: float = 0.0
    retried: str = ""
    searches: str = ""
    note: str = ""

    @property
    def lost(self) -> int:
        return (self.acked - self.exact) + max(self.planted - (self.alerts - self.duplicates), 0)

    def save(self) -> None:
        record_row(asdict(self) | {"lost": self.lost})
