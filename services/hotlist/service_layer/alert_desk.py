"""Use cases of an alert's workflow: an officer of the alert's agency verifies it, reconfirms the record,
and records a disposition, in that order; each step is recorded as that officer and audited first."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from services.audit.client import Auditor
from services.common.auth import Principal
from services.common.rejected import Code, Rejected
from services.hotlist.domain.alerts import (
    Disposition,
    OutOfOrder,
    Status,
    WorkflowState,
    check_disposition,
    check_reconfirmation,
    check_verification,
)
from sightline.audit.v1 import audit_pb2

log = logging.getLogger(__name__)


class AlertStore(Protocol):
    async def alert(self, alert_id: str) -> dict[str, Any] | None: ...

    async def advance(self, alert_id: str, expected: Status, new: Status, step: str,
                      record: dict[str, Any]) -> dict[str, Any] | None: ...


class AlertDesk:
    def __init__(self, store: AlertStore, auditor: Auditor):
        self._store = store
        self._auditor = auditor

    async def agency_alert(self, alert_id: str, principal: Principal) -> dict[str, Any]:
        """The alert, when it is the caller's agency's (any other is NOT_FOUND, never shown)."""
        doc = await self._store.alert(alert_id) if alert_id else None
        if doc is None or doc.get("agency_id") != principal.agency_id:
            raise Rejected(Code.NOT_FOUND, "no such alert in your agency")
        return doc

    async def verify(self, principal: Principal, alert_id: str, officer_id: str, plate_matches: bool,
                     state_matches: bool, note: str, event: audit_pb2.AuditEvent) -> dict[str, Any]:
        record = {"plate_matches": plate_matches, "state_matches": state_matches, "note": note,
                  "matched": plate_matches and state_matches}
        return await self._step(principal, alert_id, officer_id, check_verification, Status.VERIFIED,
                                "verification", record, event)

    async def reconfirm(self, principal: Principal, alert_id: str, officer_id: str, record_active: bool, note: str,
                        event: audit_pb2.AuditEvent) -> dict[str, Any]:
        return await self._step(principal, alert_id, officer_id, check_reconfirmation, Status.RECONFIRMED,
                                "reconfirmation", {"record_active": record_active, "note": note}, event)

    async def dispose(self, principal: Principal, alert_id: str, officer_id: str, disposition: Disposition | None,
                      note: str, event: audit_pb2.AuditEvent) -> dict[str, Any]:
        if disposition is None:
            raise Rejected(Code.INVALID_ARGUMENT, "disposition is required")
        return await self._step(principal, alert_id, officer_id, lambda s: check_disposition(s, disposition),
                                Status.DISPOSED, "disposition", {"disposition": disposition.value, "note": note},
                                event)

    async def _step(self, principal: Principal, alert_id: str, officer_id: str,
                    check: Callable[[WorkflowState], None], new: Status, step: str, record: dict[str, Any],
                    event: audit_pb2.AuditEvent) -> dict[str, Any]:
        if officer_id and officer_id != principal.user_id:
            await self._auditor.deny(principal, event, Rejected(
                Code.PERMISSION_DENIED,
                "officer_id must be empty or your own user id: steps are recorded as the caller"))
        doc = await self.agency_alert(alert_id, principal)
        event.data_agency_ids[:] = [doc["agency_id"]]
        if plate := doc["read"].get("plate_normalized"):
            event.plates[:] = [plate]
        event.details.update({"alert_id": doc["_id"], "list_id": doc["list_id"],
                              "list_version": doc["list_version"], "entry_id": doc["entry"]["entry_id"]})
        state = WorkflowState(Status(doc["status"]), (doc.get("verification") or {}).get("matched"),
                              (doc.get("reconfirmation") or {}).get("record_active"))
        try:
            check(state)
        except OutOfOrder as exc:
            raise Rejected(Code.FAILED_PRECONDITION, str(exc)) from exc
        record = {"officer_id": principal.user_id, **record}
        event.details.update({step: record})
        await self._auditor.record(principal, event)
        updated = await self._store.advance(doc["_id"], state.status, new, step, {**record, "at": datetime.now(UTC)})
        if updated is None:
            raise Rejected(Code.FAILED_PRECONDITION, "the alert changed meanwhile; reload it")
        log.info("alert workflow step", extra={"alert_id": doc["_id"], "step": step, "officer_id": principal.user_id})
        return updated
