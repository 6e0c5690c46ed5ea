"""Consumes the read stream through a consumer group and publishes one pass per vehicle and camera.

Delivery is at least once. A read stays unacknowledged until the pass it belongs to is closed, stored in
MongoDB and published; only then are all its reads acknowledged (XACK). A tracker that dies with passes open
leaves their reads pending: its successor takes them over (XAUTOCLAIM, once idle longer than
`tracker.claim_idle_ms`), rebuilds the same passes, and, since a pass id is derived from its camera and
first read, stores and publishes them under the same ids (the hotlist's alert ids are built on it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract
from prometheus_client import Counter, Histogram

from services.common.streams import ConsumerGroup, Entry, consume, trace_carrier
from services.tracker.adapters.codec import build_pass, pass_to_document, sighting_of
from services.tracker.adapters.store import PassStore
from services.tracker.adapters.stream import PassPublisher
from services.tracker.domain.passes import PassTracker, Track, TrackerConfig
from sightline.common.v1 import pass_pb2, read_pb2

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)
READS_TRACKED = Counter("sightline_tracker_reads_total", "Reads taken from the read stream", ["outcome"])
PASSES_PUBLISHED = Counter("sightline_tracker_passes_total", "Passes published", ["stage"])
PASS_FRAMES = Histogram("sightline_tracker_pass_frames", "Reads grouped into one pass",
                        buckets=(1, 2, 3, 5, 8, 13, 21, 34, 55))


@dataclass(frozen=True)
class _Pending:
    entry_id: bytes
    read: read_pb2.Read
    carrier: dict[str, str]


class PassBuilder:
    def __init__(self, group: ConsumerGroup, config: TrackerConfig, store: PassStore, publisher: PassPublisher):
        self._group = group
        self._config = config
        self._store = store
        self._publisher = publisher
        self.tracker = PassTracker(config)
        self._pending: dict[str, _Pending] = {}  # read id -> its stream entry, while its pass is open

    async def process(self, entries: list[Entry]) -> None:
        """Adds each read to its pass, publishing a pass's preview when its first confident read comes in."""
        now = datetime.now(UTC)
        done: list[bytes] = []
        previews: list[tuple[pass_pb2.VehiclePass, Context]] = []
        for entry_id, fields in entries:
            if not fields:  # trimmed from the stream before it was claimed
                READS_TRACKED.labels("gone").inc()
                done.append(entry_id)
                continue
            try:
                read = read_pb2.Read.FromString(fields[b"read"])
            except Exception:  # noqa: BLE001 - a malformed entry is logged and acknowledged, never retried
                READS_TRACKED.labels("malformed").inc()
                log.warning("malformed read stream entry", extra={"read_id": fields.get(b"read_id", b"").decode()})
                done.append(entry_id)
                continue
            carrier = trace_carrier(fields)
            with tracer.start_as_current_span("tracker.observe", context=extract(carrier),
                                              kind=trace.SpanKind.CONSUMER) as span:
                observed = self.tracker.observe(sighting_of(read), now)
                span.set_attribute("sightline.pass_id", observed.track.pass_id)
                if observed.duplicate:
                    READS_TRACKED.labels("duplicate").inc()
                    continue
                READS_TRACKED.labels("tracked").inc()
                self._pending[read.read_id] = _Pending(entry_id, read, carrier)
                if observed.preview_due:  # published under this span, with the rest of the batch's previews
                    previews.append((await self._build(observed.track, pass_pb2.PASS_STAGE_PREVIEW),
                                     context.get_current()))
        if previews:
            await self._publisher.publish(previews)
            PASSES_PUBLISHED.labels("preview").inc(len(previews))
        await self._group.ack(done)

    async def close_due(self) -> int:
        """Stores, publishes and acknowledges every pass whose gap has passed, all in a few round trips.
        Returns how many. On failure the passes' reads stay pending, and claim() rebuilds them once idle."""
        closed = self.tracker.close_due(datetime.now(UTC))
        if not closed:
            return 0
        try:
            finals = [(await self._build(track, pass_pb2.PASS_STAGE_FINAL),
                       extract(self._pending[track.sightings[0].read_id].carrier)) for track in closed]
            await self._store.save([pass_to_document(p) for p, _ in finals])
            # Each final pass's publish is a child of its first read's publish.
            await self._publisher.publish(finals)
            entries = [self._pending[s.read_id].entry_id for track in closed for s in track.sightings]
            await self._group.ack(entries)
        finally:
            for track in closed:
                for s in track.sightings:
                    self._pending.pop(s.read_id, None)
        PASSES_PUBLISHED.labels("final").inc(len(finals))
        for p, _ in finals:
            PASS_FRAMES.observe(p.frame_count)
        return len(finals)

    async def _build(self, track: Track, stage: int) -> pass_pb2.VehiclePass:
        reads = {s.read_id: self._pending[s.read_id].read for s in track.sightings}
        return build_pass(track, reads, stage, self._config, await self._store.bearing(track.camera_id))

    async def run(self) -> None:
        """Until cancelled; passes whose gap has passed close between batches (services.common.streams.consume).
        Reads of passes still open are pending with this consumer: after a restart they come back as duplicates."""
        await consume(self._group, self.process, self.close_due)
