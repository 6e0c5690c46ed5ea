"""Use cases of retention: an agency's retention period within its state's cap, and evidence holds placed on
and released from stored reads.

Each takes the verified caller and the audit event its request opened, checks the request, audits before the
change (the Auditor raises when it cannot), then changes the store. Holds, releases and the verification job
never run at the same time (one lock per process, one retention replica). Refusals are raised as `Rejected`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter

from services.audit.client import Auditor
from services.common.auth import Principal
from services.common.rejected import Code, Rejected
from services.common.retention_policy import CapTable, PolicyError, check_setting, effective_days
from services.retention.adapters.store import RetentionStore
from services.retention.domain.holds import InvalidHold, Scope, check_request, reads_filter
from services.retention.service_layer.holds import HoldManager
from sightline.audit.v1 import audit_pb2

log = logging.getLogger(__name__)
HOLDS = Counter("sightline_retention_holds_total", "Holds placed and released", ["action"])


class Retention:
    def __init__(self, store: RetentionStore, holds: HoldManager, auditor: Auditor, caps: CapTable,
                 default_days: int, max_hold_reads: int, lock: asyncio.Lock):
        self._store = store
        self._holds = holds
        self._auditor = auditor
        self.caps = caps
        self.default_days = default_days
        self._max_hold_reads = max_hold_reads
        self._lock = lock

    async def set_agency_retention(self, principal: Principal, state: str, days: int,
                                   event: audit_pb2.AuditEvent) -> dict[str, Any]:
        event.subject = event.agency_id = principal.agency_id
        try:
            check_setting(self.caps, state, days)
        except PolicyError as exc:
            await self._auditor.deny(principal, event, Rejected(Code.FAILED_PRECONDITION, str(exc)))
        await self._auditor.record(principal, event)
        agency = await self._store.set_retention(principal.agency_id, state, days)
        if agency is None:
            raise Rejected(Code.NOT_FOUND, "your agency is not registered")
        return agency

    async def place_hold(self, principal: Principal, hold_id: str, case_number: str, justification: str,
                         scope: Scope, event: audit_pb2.AuditEvent) -> dict[str, Any]:
        """Holds every read in scope (and its image) beyond its retention, re-sealed with the hold's own key."""
        event.data_agency_ids.append(principal.agency_id)
        try:
            scope = check_request(case_number, justification, scope, self._max_hold_reads)
        except InvalidHold as exc:
            raise Rejected(Code.INVALID_ARGUMENT, str(exc)) from exc
        if scope.plate:
            event.plates.append(scope.plate)
        now = datetime.now(UTC)
        flt = reads_filter(principal.agency_id, scope, now)
        async with self._lock:
            count = await self._store.count_reads(flt, self._max_hold_reads + 1)
            if count > self._max_hold_reads:
                raise Rejected(Code.FAILED_PRECONDITION,
                               f"the window covers more than {self._max_hold_reads} reads: narrow it")
            event.outcome, event.result_count = audit_pb2.OUTCOME_ALLOWED, count
            await self._auditor.record(principal, event)
            await self._store.insert_hold({
                "_id": hold_id, "agency_id": principal.agency_id, "case_number": case_number,
                "justification": justification, "scope": scope.document(), "status": "active",
                "requested_by": {"user_id": principal.user_id, "username": principal.username},
                "created_at": now, "read_count": 0, "image_count": 0,
            })
            reads, images = await self._holds.place(principal.agency_id, hold_id, flt, now)
            doc = await self._store.update_hold(hold_id, {"read_count": reads, "image_count": images})
        HOLDS.labels("place").inc()
        log.info("hold placed", extra={"hold_id": hold_id, "reads": reads, "images": images})
        return doc

    async def release_hold(self, principal: Principal, hold_id: str, reason: str,
                           event: audit_pb2.AuditEvent) -> dict[str, Any]:
        """Releases an active hold of the caller's agency: its records go back to their day's retention, or
        are deleted at once when that has passed."""
        event.data_agency_ids.append(principal.agency_id)
        if not reason.strip():
            raise Rejected(Code.INVALID_ARGUMENT, "reason is required")
        async with self._lock:
            hold = await self._store.hold(principal.agency_id, hold_id)
            if hold is None or hold["status"] != "active":
                raise Rejected(Code.NOT_FOUND, "no such active hold in your agency")
            event.case_number, event.outcome = hold["case_number"], audit_pb2.OUTCOME_ALLOWED
            await self._auditor.record(principal, event)
            now = datetime.now(UTC)
            days = effective_days(self.caps, await self._store.agency(principal.agency_id), self.default_days)
            counts = await self._holds.release(principal.agency_id, hold["_id"], timedelta(days=days), now)
            doc = await self._store.update_hold(hold["_id"], {
                "status": "released", "released_at": now, "released_by": principal.user_id,
                "release_reason": reason, "reads_restored": counts.restored, "reads_deleted": counts.deleted,
            })
        HOLDS.labels("release").inc()
        log.info("hold released", extra={"hold_id": hold["_id"], "restored": counts.restored,
                                         "deleted": counts.deleted})
        return doc
