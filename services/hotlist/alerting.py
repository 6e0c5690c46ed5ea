"""Raising alerts: store each once (idempotent id), then push the new ones to subscribers."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from services.common.logging import redact_plate
from services.hotlist.adapters.alert_bus import AlertBus
from services.hotlist.adapters.codec import alert_doc, alert_to_pb
from services.hotlist.adapters.store import HotlistStore
from services.hotlist.domain.alerts import alert_id
from services.hotlist.domain.matcher import Match

log = logging.getLogger(__name__)
ALERTS_RAISED = Counter("sightline_hotlist_alerts_total", "Alerts raised", ["kind", "historical"])


class AlertRaiser:
    def __init__(self, store: HotlistStore, bus: AlertBus):
        self._store = store
        self._bus = bus

    async def raise_alerts(self, hits: Iterable[tuple[dict[str, Any], list[Match]]], historical: bool) -> int:
        """Stores an alert per (read, match) unless stored before; pushes and returns the number of new ones."""
        now = datetime.now(UTC)
        # A live alert is keyed on the vehicle pass (preview and final raise it once), a historical one on the read.
        docs = [alert_doc(alert_id(read.get("pass_id", read["_id"]), m.entry.entry_id, m.list_version), read, m,
                          historical, now)
                for read, matches in hits for m in matches]
        new = await self._store.insert_alerts(docs)
        for doc in new:
            ALERTS_RAISED.labels(doc["match_kind"], str(historical).lower()).inc()
            log.info("alert raised", extra={"alert_id": doc["_id"], "list_id": doc["list_id"],
                                            "plate": redact_plate(doc["read"]["plate_normalized"]),
                                            "match": doc["match_kind"], "historical": historical})
        await self._bus.publish([alert_to_pb(d) for d in new])
        return len(new)
