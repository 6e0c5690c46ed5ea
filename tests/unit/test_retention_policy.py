"""State caps, effective retention, capture days and hold requests (pure)."""

from datetime import UTC, datetime, timedelta

import pytest

from services.common.retention_policy import (
    CapTable,
    PolicyError,
    capture_day,
    check_setting,
    day_retention_ends,
    effective_days,
)
from services.retention.domain.holds import InvalidHold, Scope, check_request, reads_filter

pytestmark = pytest.mark.unit
TABLE = CapTable(30, {"CA": 60})


@pytest.mark.parametrize(("state", "days", "ok"), [
    ("VA", 21, True), ("VA", 22, False), ("me", 21, True), ("ME", 30, False), ("NC", 90, True), ("TN", 91, False),
    ("ZZ", 30, True), ("ZZ", 31, False), ("CA", 60, True), ("CA", 61, False),
])
def test_state_caps(state: str, days: int, ok: bool) -> None:
    if ok:
        assert check_setting(TABLE, state, days).days >= days
    else:
        with pytest.raises(PolicyError, match="at most"):
            check_setting(TABLE, state, days)


@pytest.mark.parametrize(("state", "days"), [("Virginia", 10), ("V1", 10), ("VA", 0)])
def test_bad_settings(state: str, days: int) -> None:
    with pytest.raises(PolicyError):
        check_setting(TABLE, state, days)


def test_effective_days_never_exceed_the_state_cap() -> None:
    assert effective_days(TABLE, None, 30) == 30
    assert effective_days(TABLE, {"retention_days": 7}, 30) == 7
    assert effective_days(TABLE, {"state": "VA"}, 30) == 21  # the default is above Virginia's cap
    assert effective_days(TABLE, {"state": "VA", "retention_days": 90}, 30) == 21


def test_a_day_ends_when_its_last_read_has_expired() -> None:
    at = datetime(2025, 3, 10, 23, 59, tzinfo=UTC)
    assert capture_day(at) == "2025-03-10"
    assert day_retention_ends("2025-03-10", 21) == datetime(2025, 4, 1, tzinfo=UTC)
    assert at + timedelta(days=21) < day_retention_ends("2025-03-10", 21)


def test_hold_requests_need_a_case_a_justification_and_a_scope() -> None:
    start, end = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC)
    with pytest.raises(InvalidHold, match="case_number"):
        check_request("", "a good reason here", Scope(read_ids=("a",)), 10)
    with pytest.raises(InvalidHold, match="justification"):
        check_request("C-1", "short", Scope(read_ids=("a",)), 10)
    with pytest.raises(InvalidHold, match="at most"):
        check_request("C-1", "a good reason here", Scope(read_ids=("a", "b")), 1)
    with pytest.raises(InvalidHold, match="window"):
        check_request("C-1", "a good reason here", Scope(start=end, end=start), 10)
    scope = check_request("C-1", "a good reason here", Scope(plate="abc-123", start=start, end=end), 10)
    flt = reads_filter("pd-a", scope, end)
    assert flt["plate_normalized"] == "ABC123" and flt["agency_id"] == "pd-a"
    assert flt["captured_at"] == {"$gte": start, "$lt": end} and flt["$nor"] == [{"expire_at": {"$lte": end}}]
    assert check_request("C-1", "a good reason here", Scope(read_ids=("a", "a", "b")), 10).read_ids == ("a", "b")
