import re
from datetime import UTC, datetime

import pytest

from services.hotlist.domain.ncic import BadFile, InvalidEntry, WildcardPolicy, build_entry
from services.hotlist.domain.ncic import parse as parse_with

pytestmark = pytest.mark.unit
NOW = datetime(2025, 6, 1, tzinfo=UTC)
WILDCARDS = WildcardPolicy(min_fixed=4, max_per_list=2)


def parse(lines, list_id, now, fmt=None):
    return parse_with(lines, list_id, now, WILDCARDS, fmt)


def test_csv_with_ncic_field_codes() -> None:
    result = parse(["LIC,LIS,TYP,NIC,ORI,EXP,VMA,VCO,MIS",
                    "abc-123,ca,V,V123456789,CA0190000,20261231,TOYT,BLK,",
                    "7XYZ 9,TX,A,A000000001,TX0000000,,,,Child abducted"], "ncic", NOW)
    assert result.rejected == []
    first, second = result.entries
    assert (first.plate, first.state, first.code, first.reason, first.owner) == (
        "ABC123", "CA", "V", "stolen vehicle", "CA0190000")
    assert first.expires_at == datetime(2026, 12, 31, tzinfo=UTC)
    assert first.vehicle is not None and (first.vehicle.make, first.vehicle.colour) == ("TOYT", "BLK")
    assert (second.plate, second.code, second.reason, second.vehicle) == ("7XYZ9", "A", "Child abducted", None)


def test_fixed_width_layout_is_detected() -> None:
    line = "P" + "P000000042" + "ABC123".ljust(10) + "NY" + "NY0303000" + "20300101" + "FORD" + "F15" + "2019" + "RED"
    result = parse([line], "state", NOW)
    assert result.rejected == []
    entry = result.entries[0]
    assert (entry.code, entry.record_id, entry.plate, entry.state, entry.owner) == (
        "P", "P000000042", "ABC123", "NY", "NY0303000")
    assert entry.vehicle is not None and entry.vehicle.year == "2019"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("AB!12,CA,V,,", "plate has characters other than letters, digits, '?' and '*'"),
        (",CA,V,,", "missing plate"),
        ("ABCDEFGHIJKLM,CA,V,,", "plate longer than 12 characters"),
        ("ABC1,,V,,", "missing state"),
        ("ABC1,QQ,V,,", "unknown state 'QQ'"),
        ("ABC1,CA,Q,,", "unknown record type 'Q'"),
        ("ABC1,CA,,,", "missing record type"),
        ("ABC1,CA,V,,2020-13-45", "bad expiry date '2020-13-45' (YYYYMMDD or ISO 8601)"),
        ("ABC1,CA,V,,20200101", "record already expired"),
        ("ABC1,CA,V", "3 fields where the header has 5"),
        ("***,CA,V,,", "bad partial plate: plate_pattern needs at least one letter or digit"),
    ],
)
def test_each_rejection_reason(line: str, reason: str) -> None:
    result = parse(["LIC,LIS,TYP,NIC,EXP", line], "l", NOW)
    assert result.entries == [] and result.rejected == [(2, reason)]


def test_duplicates_and_short_fixed_lines_are_rejected_with_line_numbers() -> None:
    result = parse(["LIC,LIS,TYP,NIC", "# comment", "AAA1,CA,V,N1", "", "AAA1,CA,V,N1"], "l", NOW)
    assert result.rejected == [(5, "duplicate of line 3")]
    assert parse(["VN000000001ABC"], "l", NOW).rejected == [(1, "line shorter than 23 characters")]


def test_csv_without_a_plate_column_is_refused() -> None:
    with pytest.raises(BadFile):
        parse(["NAME,STATE", "x,CA"], "l", NOW, fmt="csv")


@pytest.mark.parametrize(
    ("plate", "reason"),
    [
        ("X*", "a partial plate needs at least 4 fixed letters or digits"),
        ("*XYZ1", "a partial plate may not start with '?' or '*' (it would match too many plates)"),
        ("?BC123", "a partial plate may not start with '?' or '*' (it would match too many plates)"),
        ("Q*", "a partial plate needs at least 4 fixed letters or digits"),
        ("AB?1*", "a partial plate needs at least 4 fixed letters or digits"),
    ],
)
def test_broad_partial_plates_are_refused(plate: str, reason: str) -> None:
    """Finding 2: 'X*' and 'Q*' swept every read of a letter; a partial plate must fix its start and enough
    characters to stand for one vehicle."""
    with pytest.raises(InvalidEntry, match=re.escape(reason)):
        build_entry("l", {"plate": plate, "code": "V"}, NOW, WILDCARDS, require_state=False)
    assert parse(["LIC,LIS,TYP", f"{plate},CA,V"], "l", NOW).rejected == [(2, reason)]
    assert build_entry("l", {"plate": "AB?12*", "code": "V"}, NOW, WILDCARDS, require_state=False).plate == "AB?12*"


def test_an_import_rejects_partial_plates_beyond_the_cap_per_list() -> None:
    result = parse(["LIC,LIS,TYP", "ABC1*,CA,V", "ABC1*,CA,V", "ABD1*,CA,V", "ABE1*,CA,V", "ABC123,CA,V"], "l", NOW)
    assert [e.plate for e in result.entries] == ["ABC1*", "ABD1*", "ABC123"]
    assert result.rejected == [(3, "duplicate of line 2"), (5, "a list may hold at most 2 partial plates")]
