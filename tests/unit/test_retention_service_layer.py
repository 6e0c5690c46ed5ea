"""Retention use cases (services/retention/service_layer/evidence.py) on fakes of the store and the audit trail:
a retention period over the state's cap is refused and audited, and nothing changes unless audited first."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import pytest

from services.common.auth import Principal
from services.common.rejected import Code, Rejected
from services.common.retention_policy import CapTable
from services.retention.service_layer.evidence import Retention
from sightline.audit.v1 import audit_pb2

pytestmark = pytest.mark.unit

ADMIN = Principal(user_id="a1", username="a1", agency_id="pd-a", roles=frozenset({"agency_admin"}),
                  second_factor=True, training_until=datetime.now(UTC) + timedelta(days=30))


class FakeStore:
    def __init__(self) -> None:
        self.retention: dict[str, tuple[str, int]] = {}

    async def set_retention(self, agency_id: str, state: str, days: int) -> dict[str, Any] | None:
        self.retention[agency_id] = (state, days)
        return {"_id": agency_id, "state": state, "retention_days": days}

    async def hold(self, agency_id: str, hold_id: str) -> dict[str, Any] | None:
        return None


class FakeAuditor:
    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.recorded: list[str] = []
        self.denied: list[str] = []

    async def record(self, principal: Principal | None, event: audit_pb2.AuditEvent) -> None:
        if self.down:
            raise Rejected(Code.UNAVAILABLE, "audit trail unavailable")
        self.recorded.append(event.action)

    async def deny(self, principal: Principal | None, event: audit_pb2.AuditEvent, refusal: Rejected) -> NoReturn:
        self.denied.append(refusal.reason)
        raise refusal


def retention(store: FakeStore, auditor: FakeAuditor) -> Retention:
    return Retention(store, None, auditor, CapTable(365, {}), 30, 1000, asyncio.Lock())  # type: ignore[arg-type]


async def test_a_period_over_the_state_cap_is_refused_audited_and_not_stored() -> None:
    store, auditor = FakeStore(), FakeAuditor()
    with pytest.raises(Rejected) as err:
        await retention(store, auditor).set_agency_retention(ADMIN, "VA", 30, audit_pb2.AuditEvent(
            action="agency.retention"))
    assert err.value.code is Code.FAILED_PRECONDITION and auditor.denied and not store.retention
    agency = await retention(store, auditor).set_agency_retention(ADMIN, "VA", 21, audit_pb2.AuditEvent(
        action="agency.retention"))
    assert agency["retention_days"] == 21 and auditor.recorded == ["agency.retention"]


async def test_nothing_changes_when_the_audit_cannot_be_written_and_a_release_needs_a_reason() -> None:
    store = FakeStore()
    with pytest.raises(Rejected) as err:
        await retention(store, FakeAuditor(down=True)).set_agency_retention(ADMIN, "VA", 14, audit_pb2.AuditEvent())
    assert err.value.code is Code.UNAVAILABLE and not store.retention
    with pytest.raises(Rejected) as err:
        await retention(store, FakeAuditor()).release_hold(ADMIN, "h1", "  ", audit_pb2.AuditEvent())
    assert err.value.code is Code.INVALID_ARGUMENT
