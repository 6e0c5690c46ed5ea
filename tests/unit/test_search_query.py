from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.auth import Principal
from services.common.plates import skeleton
from services.common.purpose import check_access
from services.common.rejected import Rejected
from services.search.domain.convoy import build_convoy_query, companions_pipeline
from services.search.domain.query import (
    InvalidQuery,
    PageToken,
    build_query,
    pattern_to_regex,
    scoped,
)
from sightline.common.v1 import read_pb2
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


def test_operator_injection_is_refused_or_a_plain_value() -> None:
    with pytest.raises(InvalidQuery, match="letters A-Z or digits 0-9"):
        build_query(q(plate_exact='{"$ne": null}'), 50, 500)
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


# --- fuzzy plates, attributes, distance, agency scope, purpose, convoy ---------------------------------------

def test_fuzzy_plate_is_one_indexed_equality_on_the_confusion_skeleton() -> None:
    query = build_query(q(plate_fuzzy="8-0x"), 50, 500)
    assert query.filter["plate_skeleton"] == "BOX" == skeleton("BDX") == skeleton("8QX")
    assert "plate_normalized" not in query.filter
    # However many confusable characters a plate has, the query stays one equality (no $in blow-up, no regex).
    assert build_query(q(plate_fuzzy="0" * 12), 50, 500).filter["plate_skeleton"] == "O" * 12


def test_vehicle_attributes_and_distance() -> None:
    req = q(vehicle=search_pb2.VehicleFilter(type=read_pb2.VEHICLE_TYPE_TRUCK, colour="White"),
            near=search_pb2.GeoCircle(center=read_pb2.GeoPoint(latitude=40.0, longitude=-73.0), radius_m=6378.1))
    flt = build_query(req, 50, 500).filter
    assert flt["vehicle.type"] == "truck" and flt["vehicle.colour"] == "white"
    assert flt["location"] == {"$geoWithin": {"$centerSphere": [[-73.0, 40.0], 0.001]}}
    assert build_query(q(vehicle=search_pb2.VehicleFilter(no_plate=True)), 50, 500).filter == {"plate_normalized": ""}
    for bad in (q(vehicle=search_pb2.VehicleFilter(colour='{"$ne":1}')),
                q(near=search_pb2.GeoCircle(center=read_pb2.GeoPoint(latitude=91), radius_m=10)),
                q(near=search_pb2.GeoCircle(radius_m=10 ** 7)),
                q(plate_exact="AB1", vehicle=search_pb2.VehicleFilter(no_plate=True))):
        with pytest.raises(InvalidQuery):
            build_query(bad, 50, 500)


def test_scope_restricts_to_agencies() -> None:
    assert scoped({"x": 1}, ("pd-a",)) == {"$and": [{"agency_id": "pd-a"}, {"x": 1}]}
    assert scoped({"x": 1}, ("pd-a", "pd-b")) == {"$and": [{"agency_id": {"$in": ["pd-a", "pd-b"]}}, {"x": 1}]}


def who(roles=("officer",), partners=(), case_required=False) -> Principal:
    return Principal("u", "amy", "pd-a", frozenset(roles), True, None, case_required, partners)


@pytest.mark.parametrize(("principal", "purpose", "case", "partners", "reason"), [
    (who(), search_pb2.PURPOSE_IMMIGRATION_ENFORCEMENT, "C-1", False, "prohibited purpose"),
    (who(), search_pb2.PURPOSE_TRAFFIC_ENFORCEMENT, "C-1", False, "prohibited purpose"),
    (who(), search_pb2.PURPOSE_NON_LAW_ENFORCEMENT, "C-1", False, "prohibited purpose"),
    (who(), search_pb2.PURPOSE_UNSPECIFIED, "C-1", False, "no purpose"),
    (who(), 77, "C-1", False, "no purpose"),
    (who(case_required=True), search_pb2.PURPOSE_ROBBERY, "", False, "no case number"),
    (who(), search_pb2.PURPOSE_ROBBERY, "x; drop", False, "malformed case number"),
    (who(), search_pb2.PURPOSE_ROBBERY, "C-1", True, "not a partner-agency user"),
    (who(("partner_agency_user",), ("pd-b",)), search_pb2.PURPOSE_ROBBERY, "", True,
     "partner access without a criminal case"),
    (who(("partner_agency_user",), ("pd-b",)), search_pb2.PURPOSE_MISSING_PERSON, "C-1", True,
     "partner access without a criminal case"),
    (who(("partner_agency_user",)), search_pb2.PURPOSE_ROBBERY, "C-1", True, "no sharing agreement"),
])
def test_access_refusals(principal, purpose, case, partners, reason) -> None:
    with pytest.raises(Rejected) as err:
        check_access(principal, purpose, case, partners)
    assert err.value.reason == reason


def test_access_scopes() -> None:
    own = check_access(who(), search_pb2.PURPOSE_MISSING_PERSON, "", False)
    assert own.agencies == ("pd-a",) and own.purpose == "PURPOSE_MISSING_PERSON" and not own.partner
    shared = check_access(who(("partner_agency_user",), ("pd-b",)), search_pb2.PURPOSE_ROBBERY, "R-9", True)
    assert shared.agencies == ("pd-a", "pd-b") and shared.partner


def test_convoy_query_and_pipeline() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    req = search_pb2.FindConvoyRequest(plate="ab 123", window_seconds=60, min_cameras=3)
    req.start_time.FromDatetime(start)
    req.end_time.FromDatetime(start + timedelta(days=1))
    cq = build_convoy_query(req, ("pd-a",))
    assert cq.plate == "AB123" and cq.window == timedelta(seconds=60) and cq.min_cameras == 3
    pipeline = companions_pipeline(cq, [("cam-1", start)], ("pd-a",))
    branch = pipeline[0]["$match"]["$or"][0]
    assert branch == {"$and": [{"agency_id": "pd-a"}, {"camera_id": "cam-1", "captured_at": {
        "$gte": start - timedelta(seconds=60), "$lte": start + timedelta(seconds=60)}}]}
    assert {"$match": {"$expr": {"$and": [{"$gte": ["$n", 3]}, {"$not": [{"$in": ["$_id", ["", "AB123"]]}]}]}}} \
        in pipeline
    req.end_time.FromDatetime(start + timedelta(days=40))
    with pytest.raises(InvalidQuery, match="31 days"):
        build_convoy_query(req, ("pd-a",))


@pytest.mark.parametrize(("typed", "searched"),
                         [("АВС123", "ABC123"), ("abc 123", "ABC123"), ("ＡＢＣ-１２３", "ABC123"),
                          ("ΑΒΕ·123", "ABE123")])
def test_confusable_letters_are_folded_not_dropped(typed: str, searched: str) -> None:
    """Finding 12 of the outside attack: Cyrillic 'АВС123' was searched as '123'."""
    assert build_query(q(plate_exact=typed), 50, 500).filter == {"plate_normalized": searched}


@pytest.mark.parametrize("typed", ["ЖЖЖ123", "ABC_123", "Ä12", "ABC123\n"])
def test_what_folds_to_no_plate_letter_is_refused(typed: str) -> None:
    for kind in ("plate_exact", "plate_fuzzy"):
        with pytest.raises(InvalidQuery, match="letters A-Z or digits 0-9"):
            build_query(q(**{kind: typed}), 50, 500)
    with pytest.raises(InvalidQuery, match="plate_pattern may hold only"):
        build_query(q(plate_pattern=typed + "*"), 50, 500)
