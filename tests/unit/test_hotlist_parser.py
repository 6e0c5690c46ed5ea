from datetime import UTC, datetime

import pytest

from services.hotlist.domain.ncic import BadFile, parse

pytestmark = pytest.mark.unit
NOW = datetime(2025, 6, 1, tzinfo=UTC)


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
