"""Consumes the pass stream through a consumer group and raises alerts for vehicle passes that match a hot list.

The tracker publishes each pass twice, as a preview (its first confident read) and when it closes (the plate
voted over its frames); both are matched, and since alert ids are built on the pass id, a pass raises an
alert per entry once, whichever comes first. Per-frame reads raise no alerts.

A pass is matched against the lists of its read's agency and of the agencies that agency shares its reads
with for hot-list matching. A hit of another agency's list is audited for both agencies before its alert is
raised, with the matcher's service token; without one, or while the audit trail cannot be written, only the
read's own agency's lists raise alerts (fail closed: the partner's hit is logged and counted, not raised).

Delivery is at least once: a batch is acknowledged (XACK) only after its alerts are stored, and alert ids
are idempotent, so a pass redelivered after a crash raises nothing twice. A restarted process is a new
consumer; it first takes over passes its dead predecessor left pending (XAUTOCLAIM, once idle longer than
`matcher.claim_idle_ms`), and keeps doing so periodically for any replica that dies.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.propagate import extract
from prometheus_client import Counter, Histogram

from services.audit.client import AuditUnavailable
from services.common.reads import read_to_document
from services.common.streams import ConsumerGroup, Entry, consume, trace_carrier
from services.hotlist.adapters.sharing import SharingDirectory
from services.hotlist.domain.matcher import Match
from services.hotlist.service_layer.alerting import AlertRaiser
from services.hotlist.service_layer.index_sync import IndexSync
from services.hotlist.settings import HotlistSettings
from sightline.common.v1 import pass_pb2

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)
PASSES_MATCHED = Counter("sightline_hotlist_passes_total", "Passes taken from the stream", ["outcome"])
PARTNER_HITS_UNAUDITED = Counter("sightline_hotlist_partner_hits_unaudited_total",
                                 "Hits of another agency's list not raised: their audit could not be written")
MATCH_SECONDS = Histogram("sightline_hotlist_match_seconds", "Index lookup time per pass",
                          buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2))


class StreamMatcher:
    def __init__(self, redis: aioredis.Redis, settings: HotlistSettings, sync: IndexSync, raiser: AlertRaiser,
                 sharing: SharingDirectory):
        self._sync = sync
        self._raiser = raiser
        self._sharing = sharing
        self._group = ConsumerGroup(redis, settings.pass_stream, settings.matcher)

    async def process(self, entries: list[Entry]) -> int:
        """Matches a batch, stores its alerts, then acknowledges it. Returns the number of entries."""
        if not entries:
            return 0
        now = datetime.now(UTC)
        sharing = await self._sharing.current()
        for _, fields in entries:
            if not fields:  # trimmed from the stream before it was claimed
                PASSES_MATCHED.labels("gone").inc()
                continue
            try:
                vehicle_pass = pass_pb2.VehiclePass.FromString(fields[b"pass"])
            except Exception:  # noqa: BLE001 - a malformed entry is logged and acknowledged, never retried
                PASSES_MATCHED.labels("malformed").inc()
                log.warning("malformed pass stream entry", extra={"pass_id": fields.get(b"pass_id", b"").decode()})
                continue
            read = vehicle_pass.best_read
            # The pass's span is a child of the tracker's publish; the alerts it raises are pushed inside it.
            with tracer.start_as_current_span("hotlist.match", context=extract(trace_carrier(fields)),
                                              kind=trace.SpanKind.CONSUMER) as span:
                t0 = time.perf_counter()
                agencies = sharing.list_agencies(read.agency_id)
                matches = self._sync.index.match(vehicle_pass.plate_normalized, read.region.state, now, agencies)
                MATCH_SECONDS.observe(time.perf_counter() - t0)
                PASSES_MATCHED.labels("hit" if matches else "miss").inc()
                span.set_attribute("sightline.matches", len(matches))
                if matches:
                    doc = read_to_document(read)
                    # The alert shows the pass's plate (voted over its frames) and the best frame's image.
                    doc.update(pass_id=vehicle_pass.pass_id, plate=vehicle_pass.plate_normalized,
                               plate_normalized=vehicle_pass.plate_normalized, confidence=vehicle_pass.confidence)
                    await self._raise(doc, matches)
        await self._group.ack(eid for eid, _ in entries)
        return len(entries)

    async def _raise(self, doc: dict[str, Any], matches: list[Match]) -> None:
        own = [m for m in matches if m.agency_id == doc["agency_id"]]
        if len(own) == len(matches):
            await self._raiser.raise_alerts([(doc, own)], historical=False, token="")
            return
        try:  # partner hits are audited by the matcher itself (its service key), on no person's behalf
            await self._raiser.raise_alerts([(doc, matches)], historical=False, token="")
        except AuditUnavailable as exc:
            PARTNER_HITS_UNAUDITED.inc(len(matches) - len(own))
            log.error("partner hits not raised: audit trail unavailable",
                      extra={"pass_id": doc["pass_id"], "hits": len(matches) - len(own), "error": str(exc)[:200]})
            await self._raiser.raise_alerts([(doc, own)], historical=False, token="")

    async def run(self) -> None:
        """Until cancelled; the index follows list changes between batches (services.common.streams.consume)."""
        await consume(self._group, self.process, self._sync.refresh)
