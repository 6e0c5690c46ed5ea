from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.search.domain.query import InvalidQuery, PageToken, build_query, pattern_to_regex
from sightline.search.v1 import search_pb2

pytestmark = pytest.mark.unit


def q(**kw) -> search_pb2.SearchReadsRequest:
    return search_pb2.SearchReadsRequest(**kw)


def test_exact_plate_is_normalised() -> None:
    query = build_query(q(plate_exact="ab-123 cd"), 50, 500)
    assert query.filter == {"plate_normalized": "AB123CD"}
    assert query.page_size == 50


@pytest.mark.parametrize(("pattern", "regex"), [("AB?12*", "^AB.12.*$"), ("*123", "^.*123$"), ("a**b", "^A.*B$")])
def test_pattern_to_regex(pattern: str, regex: str) -> None:
    assert pattern_to_regex(pattern) == regex


@pytest.mark.parametrize("bad", ["", "***", "??", "AB(1", "A|B", "$where", "A" * 13, "ÄB1"])
def test_bad_patterns_are_refused(bad: str) -> None:
    with pytest.raises(InvalidQuery):
        build_query(q(plate_pattern=bad), 50, 500)


@given(st.text(max_size=40))
def test_any_pattern_yields_a_safe_regex_or_a_clear_error(text: str) -> None:
    try:
        regex = pattern_to_regex(text)
    except InvalidQuery:
        return
    body = regex[1:-1]
    assert regex.startswith("^") and regex.endswith("$")
    assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.*")
    assert ".*.*" not in body  # no nested unbounded runs: linear-time matching


def test_operator_injection_becomes_a_plain_value() -> None:
    query = build_query(q(plate_exact='{"$ne": null}'), 50, 500)
    assert query.filter == {"plate_normalized": "NENULL"}
    query = build_query(q(camera_ids=['{"$gt": ""}']), 50, 500)
    assert query.filter["camera_id"] == {"$in": ['{"$gt": ""}']}


def test_empty_query_and_bad_paging_are_refused() -> None:
    with pytest.raises(InvalidQuery, match="give a plate"):
        build_query(q(), 50, 500)
    with pytest.raises(InvalidQuery, match="page_size"):
        build_query(q(plate_exact="ABC", page_size=501), 50, 500)
    with pytest.raises(InvalidQuery, match="page_token"):
        build_query(q(plate_exact="ABC", page_token="garbage!"), 50, 500)


def test_time_range_and_page_token() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    req = q(camera_ids=["cam-1"], page_size=10)
    req.start_time.FromDatetime(start)
    req.end_time.FromDatetime(start + timedelta(days=1))
    token = PageToken(start + timedelta(hours=1), "read-9")
    req.page_token = token.encode()
    query = build_query(req, 50, 500)
    base, after = query.filter["$and"]
    assert base["captured_at"] == {"$gte": start, "$lt": start + timedelta(days=1)}
    assert after["$or"][1] == {"captured_at": token.captured_at, "_id": {"$lt": "read-9"}}
    assert PageToken.decode(token.encode()) == token


def test_reversed_time_range_is_refused() -> None:
    req = q(plate_exact="ABC")
    req.start_time.FromDatetime(datetime(2026, 1, 2, tzinfo=UTC))
    req.end_time.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidQuery, match="before"):
        build_query(req, 50, 500)
