from datetime import UTC, datetime

import pytest

from services.audit.domain.review import FlagPolicy, no_case_flags, plate_flags, review_filter, volume_flags

pytestmark = pytest.mark.unit


def test_review_filter_is_scoped_to_the_agency_and_takes_values_only() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    flt = review_filter("pd-a", user_id='{"$ne": 1}', plate="AB1", start=start, before_sequence=10)
    scope, *rest = flt["$and"]
    assert scope == {"$or": [{"event.agency_id": "pd-a"}, {"event.data_agency_ids": "pd-a"}]}
    assert {"event.user_id": '{"$ne": 1}'} in rest and {"event.plates": "AB1"} in rest
    assert {"at": {"$gte": start}} in rest and {"_id": {"$lt": 10}} in rest


def test_volume_flags_threshold_and_median() -> None:
    counts = {("u1", "a"): 3, ("u2", "b"): 4, ("u3", "c"): 5, ("u4", "d"): 40, ("u5", "e"): 250}
    flags = volume_flags(counts, FlagPolicy(volume_threshold=200, volume_factor=5))
    assert [(f.user_id, f.count) for f in flags] == [("u5", 250), ("u4", 40)]


def test_plate_and_no_case_flags() -> None:
    assert [f.plate for f in plate_flags({"AB1": 6, "CD2": 2}, FlagPolicy(plate_min_users=5))] == ["AB1"]
    flags = no_case_flags({("u1", "a"): 2, ("u2", "b"): 0})
    assert [(f.kind, f.user_id, f.count) for f in flags] == [("no_case_number", "u1", 2)]
