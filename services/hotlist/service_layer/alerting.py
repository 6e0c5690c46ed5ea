"""Raising alerts: store each once (idempotent id), then push the new ones to subscribers.

An alert is the list's agency's (its `agency_id`). A hit of a list on a read of another agency (one that
shares its reads with the list's agency for hot-list matching) is written to the audit trail before the
alert is stored: one "hotlist.hit" event for the list's agency and one for the read's agency, each naming the
other in `data_agency_ids`. When that cannot be written, `raise_alerts` raises AuditUnavailable and stores
nothing (fail closed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from services.audit.client import AuditClient
from services.common.logging import redact_plate
from services.hotlist.adapters.alert_bus import AlertBus
from services.hotlist.adapters.codec import alert_doc, alert_to_pb
from services.hotlist.adapters.store import HotlistStore
from services.hotlist.domain.alerts import alert_id
from services.hotlist.domain.matcher import Match
from sightline.audit.v1 import audit_pb2

log = logging.getLogger(__name__)
ALERTS_RAISED = Counter("sightline_hotlist_alerts_total", "Alerts raised", ["kind", "historical"])
PARTNER_HITS = Counter("sightline_hotlist_partner_hits_total",
                       "Hits of a list on another agency's read, audited for both agencies", ["historical"])


def is_partner_hit(doc: dict[str, Any]) -> bool:
    """The alert's list belongs to another agency than the read."""
    return bool(doc["agency_id"] != doc["read"].get("agency_id", ""))


def hit_events(doc: dict[str, Any]) -> list[audit_pb2.AuditEvent]:
    """The two audit events of a partner hit: the list's agency's, then the read's agency's."""
    list_agency, read_agency = doc["agency_id"], doc["read"].get("agency_id", "")
    events = []
    for side, agency, other in (("list", list_agency, read_agency), ("read", read_agency, list_agency)):
        event = audit_pb2.AuditEvent(action="hotlist.hit", outcome=audit_pb2.OUTCOME_ALLOWED, agency_id=agency,
                                     subject=doc["_id"], result_count=1, data_agency_ids=sorted({agency, other}))
        if plate := doc["read"].get("plate_normalized"):
            event.plates[:] = [plate]
        event.details.update({"side": side, "alert_id": doc["_id"], "list_id": doc["list_id"],
                              "list_agency_id": list_agency, "list_version": doc["list_version"],
                              "entry_id": doc["entry"]["entry_id"], "read_id": doc["read"]["_id"],
                              "read_agency_id": read_agency, "camera_id": doc["camera_id"],
                              "match": doc["match_kind"], "historical": doc["historical"]})
        events.append(event)
    return events


class AlertRaiser:
    def __init__(self, store: HotlistStore, bus: AlertBus, audit: AuditClient):
        self._store = store
        self._bus = bus
        self._audit = audit

    async def raise_alerts(self, hits: Iterable[tuple[dict[str, Any], list[Match]]], historical: bool,
                           token: str) -> int:
        """Stores an alert per (read, match) unless stored before; pushes and returns the number of new ones.

        Partner hits not stored before are audited first, on behalf of `token`'s person (the back-searching
        user; empty for the live matcher); raises AuditUnavailable, storing nothing, when that fails.
        """
        now = datetime.now(UTC)
        # A live alert is keyed on the vehicle pass (preview and final raise it once), a historical one on the read.
        docs = [alert_doc(alert_id(read.get("pass_id", read["_id"]), m.entry.entry_id, m.list_version), read, m,
                          historical, now)
                for read, matches in hits for m in matches]
        partner = [d for d in docs if is_partner_hit(d)]
        if partner:
            stored = await self._store.stored_alert_ids([d["_id"] for d in partner])
            for doc in partner:
                if doc["_id"] not in stored:
                    for event in hit_events(doc):
                        await self._audit.record(event, token)
                    PARTNER_HITS.labels(str(historical).lower()).inc()
        new = await self._store.insert_alerts(docs)
        for doc in new:
            ALERTS_RAISED.labels(doc["match_kind"], str(historical).lower()).inc()
            log.info("alert raised", extra={"alert_id": doc["_id"], "list_id": doc["list_id"],
                                            "agency_id": doc["agency_id"], "partner": is_partner_hit(doc),
                                            "plate": redact_plate(doc["read"]["plate_normalized"]),
                                            "match": doc["match_kind"], "historical": historical})
        await self._bus.publish([alert_to_pb(d) for d in new])
        return len(new)
