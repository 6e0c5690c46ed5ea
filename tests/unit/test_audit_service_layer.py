"""Audit trail use cases (services/audit/service_layer/trail.py) on a fake store: a person's fields come from
their verified token, services are held to their rate and size, a tampered chain stops appends, and every
review is recorded before it is answered."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.audit.adapters.store import ChainTampered
from services.audit.domain.limits import RateLimiter
from services.audit.domain.review import FlagPolicy
from services.audit.service_layer.trail import Trail
from services.common.auth import Principal
from services.common.rejected import Code, Rejected
from sightline.audit.v1 import audit_pb2

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)
AUDITOR = Principal(user_id="u-aud", username="aud", agency_id="pd-a", roles=frozenset({"auditor"}),
                    second_factor=True, training_until=NOW + timedelta(days=30))


class FakeStore:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.failure: Exception | None = None
        self.flag_window: tuple[datetime, datetime] | None = None

    async def append(self, event: Mapping[str, Any]) -> dict[str, Any]:
        if self.failure is not None:
            raise self.failure
        entry = {"_id": len(self.entries) + 1, "hash": f"h{len(self.entries) + 1}", "event": dict(event)}
        self.entries.append(entry)
        return entry

    async def find(self, flt: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        return list(reversed(self.entries))[:limit]

    async def flag_counts(self, agency_id: str, start: datetime, end: datetime) -> dict[str, Any]:
        self.flag_window = (start, end)
        return {"no_case": {("u1", "amy"): 2}, "volume": {}, "plates": {}}


def trail(store: FakeStore, burst: int = 100) -> Trail:
    return Trail(store, RateLimiter(1.0, burst), FlagPolicy(), max_event_bytes=2048)


async def refused(call: Any) -> Rejected:
    with pytest.raises(Rejected) as err:
        await call
    return err.value


async def test_the_actors_fields_are_their_tokens_whatever_the_event_says() -> None:
    store = FakeStore()
    forged = audit_pb2.AuditEvent(action="search", user_id="someone-else", agency_id="pd-b", roles=["supervisor"])
    await trail(store).append("search", forged, AUDITOR, 0.0)
    event = store.entries[0]["event"]
    assert (event["user_id"], event["agency_id"], event["roles"], event["recorded_by"]) == (
        "u-aud", "pd-a", ["auditor"], "service:search")


async def test_a_service_is_held_to_its_rate_and_each_event_to_its_size() -> None:
    store = FakeStore()
    audit = trail(store, burst=2)
    for _ in range(2):
        await audit.append("search", audit_pb2.AuditEvent(action="search"), None, 0.0)
    assert (await refused(audit.append("search", audit_pb2.AuditEvent(action="search"), None, 0.0))).code == \
        Code.RESOURCE_EXHAUSTED
    await audit.append("ingest", audit_pb2.AuditEvent(action="frame"), None, 0.0)  # each service has its own rate
    big = audit_pb2.AuditEvent(action="search", reason="x" * 4096)
    assert (await refused(audit.append("ingest", big, None, 0.0))).code == Code.INVALID_ARGUMENT
    assert (await refused(audit.append("ingest", audit_pb2.AuditEvent(), None, 5.0))).code == Code.INVALID_ARGUMENT
    assert len(store.entries) == 3


async def test_a_tampered_chain_or_a_failing_store_stops_appends() -> None:
    store = FakeStore()
    store.failure = ChainTampered("head moved")
    err = await refused(trail(store).append("search", audit_pb2.AuditEvent(action="search"), None, 0.0))
    assert err.code == Code.UNAVAILABLE and "integrity" in err.message
    store.failure = OSError("connection reset")
    err = await refused(trail(store).append("search", audit_pb2.AuditEvent(action="search"), None, 0.0))
    assert (err.code, err.message) == (Code.UNAVAILABLE, "audit store unavailable")


async def test_a_review_is_recorded_before_it_is_answered_and_pages_onwards() -> None:
    store = FakeStore()
    audit = trail(store)
    for _ in range(3):
        await audit.append("search", audit_pb2.AuditEvent(action="search"), None, 0.0)
    page = await audit.review(AUDITOR, 2, {"page_size": 2}, {"action": "search"})
    assert [e["_id"] for e in page.entries] == [3, 2] and page.next_before_sequence == 2
    review = store.entries[-1]["event"]
    assert (review["action"], review["user_id"], review["result_count"]) == ("audit.review", "u-aud", 2)
    store.failure = OSError("down")
    assert (await refused(audit.review(AUDITOR, 2, {}, {}))).code == Code.UNAVAILABLE
    assert (await refused(audit.review(AUDITOR, 501, {}, {}))).code == Code.INVALID_ARGUMENT


async def test_flags_need_a_window_that_runs_forwards() -> None:
    store = FakeStore()
    audit = trail(store)
    assert (await refused(audit.flags(AUDITOR, NOW, NOW))).code == Code.INVALID_ARGUMENT
    flags = await audit.flags(AUDITOR, NOW - timedelta(days=1), NOW)
    assert [(f.kind, f.user_id) for f in flags] == [("no_case_number", "u1")]
    assert store.flag_window == (NOW - timedelta(days=1), NOW)
    assert store.entries[-1]["event"]["action"] == "audit.review"


async def test_a_refusal_is_recorded_best_effort() -> None:
    store = FakeStore()
    await trail(store).record_refusal("audit.review", AUDITOR, "missing permission")
    assert store.entries[0]["event"]["outcome"] == "OUTCOME_DENIED"
    store.failure = OSError("down")
    await trail(store).record_refusal("audit.review", AUDITOR, "missing permission")  # does not raise
