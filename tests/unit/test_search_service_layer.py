"""Search use cases (services/search/service_layer/searches.py) on fakes of the read store and the audit trail:
every answer, even "not found", is audited first, and nothing is answered when the audit cannot be written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.auth import Principal
from services.common.purpose import Access
from services.common.rejected import Code, Rejected
from services.search.service_layer.searches import Searches
from sightline.audit.v1 import audit_pb2
from sightline.search.v1 import search_pb2

pytestmark = pytest.mark.unit

CALLER = Principal(user_id="u1", username="u1", agency_id="pd-a", roles=frozenset({"officer"}), second_factor=True,
                   training_until=datetime.now(UTC) + timedelta(days=30))
ACCESS = Access("PURPOSE_HOMICIDE", "H-1", ("pd-a",))


class FakeKeys:
    async def open_reads(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**d, "opened": True} for d in docs]


class FakeReads:
    keys = FakeKeys()

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs
        self.filters: list[dict[str, Any]] = []

    async def newest(self, flt: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        self.filters.append(flt)
        return self.docs[:limit]

    async def read(self, flt: dict[str, Any], projection: dict[str, Any] | None = None) -> dict[str, Any] | None:
        self.filters.append(flt)
        return next((d for d in self.docs if d["_id"] == flt.get("_id")), None)


class FakeAuditor:
    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.events: list[tuple[str, int]] = []

    async def record(self, principal: Principal | None, event: audit_pb2.AuditEvent) -> None:
        if self.down:
            raise Rejected(Code.UNAVAILABLE, "audit trail unavailable")
        self.events.append((event.action, event.result_count))


def searches(reads: FakeReads, auditor: FakeAuditor) -> Searches:
    return Searches(reads, auditor, 2, 10)  # type: ignore[arg-type]


def doc(n: int) -> dict[str, Any]:
    return {"_id": f"r{n}", "captured_at": datetime(2026, 12, 1, tzinfo=UTC) - timedelta(minutes=n),
            "plate_normalized": "ABC123", "agency_id": "pd-a"}


async def test_a_page_is_scoped_opened_audited_and_continues_with_a_token() -> None:
    reads, auditor = FakeReads([doc(1), doc(2), doc(3)]), FakeAuditor()
    page = await searches(reads, auditor).search_reads(CALLER, ACCESS, search_pb2.SearchReadsRequest(
        plate_exact="ABC123", purpose=search_pb2.PURPOSE_HOMICIDE, case_number="H-1"), audit_pb2.AuditEvent(
        action="search"))
    assert [d["_id"] for d in page.reads] == ["r1", "r2"] and all(d["opened"] for d in page.reads)
    assert page.next_page_token and auditor.events == [("search", 2)]
    assert "pd-a" in str(reads.filters[0])  # the agencies the caller may search, never more


async def test_a_missing_read_is_audited_then_not_found_and_nothing_answers_without_audit() -> None:
    auditor = FakeAuditor()
    with pytest.raises(Rejected) as err:
        await searches(FakeReads([]), auditor).get_read(CALLER, ACCESS, "r9", audit_pb2.AuditEvent(action="read.view"))
    assert err.value.code is Code.NOT_FOUND and auditor.events == [("read.view", 0)]
    with pytest.raises(Rejected) as err:
        await searches(FakeReads([doc(1)]), FakeAuditor(down=True)).get_read(
            CALLER, ACCESS, "r1", audit_pb2.AuditEvent(action="read.view"))
    assert err.value.code is Code.UNAVAILABLE
