from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.plates import skeleton
from services.hotlist.domain.fuzzy_index import candidate_regex
from services.hotlist.domain.matcher import ListIndex, MatchIndex, explain
from services.hotlist.domain.model import Entry, HotlistSharing, ListConfig

pytestmark = pytest.mark.unit
NOW = datetime(2025, 6, 1, tzinfo=UTC)
FUZZY1 = ListConfig(fuzzy_confusions=True, max_edits=1)


def entry(plate: str, state: str = "CA", entry_id: str | None = None, **kw) -> Entry:
    return Entry(entry_id or f"e-{plate}-{state}", "l", plate, state, "V", **kw)


def how(index: ListIndex, plate: str, state: str = "CA") -> list[tuple[str, str]]:
    return sorted((m.kind, m.detail) for m in index.match(plate, state, NOW))


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        ("B0G5LT", [("exact", "exact")]),
        ("80G5LT", [("fuzzy", "fuzzy: 8→B")]),
        ("BOG5LT", [("fuzzy", "fuzzy: O→0")]),
        ("BDGS1T", [("fuzzy", "fuzzy: D→0, S→5, 1→L")]),
        ("B0G5L", [("fuzzy", "fuzzy: missing T")]),
        ("B0G5LTX", [("fuzzy", "fuzzy: extra X")]),
        ("B0X5LT", [("fuzzy", "fuzzy: X→G substituted")]),
        ("X0X5LT", []),
    ],
)
def test_fuzzy_matching_says_how_it_matched(read: str, expected: list) -> None:
    assert how(ListIndex("l", 1, FUZZY1, [entry("B0G5LT")]), read) == expected


def test_exact_only_list_ignores_confusions_and_state_must_agree() -> None:
    index = ListIndex("l", 1, ListConfig(fuzzy_confusions=False, max_edits=0), [entry("ABC123")])
    assert how(index, "ABC123") == [("exact", "exact")]
    assert how(index, "A8C123") == []
    assert how(index, "ABC123", "TX") == []
    assert how(index, "ABC123", "") == [("exact", "exact (state not read)")]


def test_confusions_without_edits() -> None:
    index = ListIndex("l", 1, ListConfig(fuzzy_confusions=True, max_edits=0), [entry("ABC123")])
    assert how(index, "A8C1Z3") == [("fuzzy", "fuzzy: 8→B, Z→2")]
    assert how(index, "ABC12") == []


def test_wildcards_expiry_and_manual_changes() -> None:
    index = ListIndex("l", 3, FUZZY1, [entry("AB?12*", state=""), entry("OLD1", expires_at=NOW - timedelta(1))])
    assert how(index, "ABX1299", "TX") == [("wildcard", "wildcard: AB?12*")]
    assert how(index, "OLD1") == []
    index.add(entry("NEW8"))
    assert how(index, "NEWB") == [("fuzzy", "fuzzy: B→8")]
    index.remove("e-NEW8-CA")
    assert how(index, "NEW8") == []
    combined = MatchIndex()
    combined.lists["l"] = index
    assert [m.list_version for m in combined.match("ABX12", "CA", NOW, {""})] == [3]


def test_a_list_matches_only_the_reads_its_agency_may_match() -> None:
    """Finding 2: agency B's list never matches agency A's read unless A shares its reads with B for hot-list
    matching (hotlist_share_with); read-search sharing is another setting and plays no part here."""
    own = ListConfig(agency_id="pd-a")
    partner = ListConfig(agency_id="pd-b")
    combined = MatchIndex()
    combined.lists["a"] = ListIndex("a", 1, own, [Entry("ea", "a", "XYZ789", "", "V")])
    combined.lists["b"] = ListIndex("b", 1, partner, [Entry("eb", "b", "XYZ789", "", "V")])
    nobody = HotlistSharing({})
    assert [m.agency_id for m in combined.match("XYZ789", "CA", NOW, nobody.list_agencies("pd-a"))] == ["pd-a"]
    assert combined.match("XYZ789", "CA", NOW, nobody.list_agencies("pd-c")) == []
    a_shares_with_b = HotlistSharing({"pd-a": frozenset({"pd-b"})})
    assert sorted(m.agency_id for m in combined.match("XYZ789", "CA", NOW,
                                                      a_shares_with_b.list_agencies("pd-a"))) == ["pd-a", "pd-b"]
    # Sharing goes one way: B's reads stay B's.
    assert a_shares_with_b.list_agencies("pd-b") == {"pd-b"}
    assert a_shares_with_b.read_agencies("pd-b") == ["pd-b", "pd-a"]
    assert a_shares_with_b.read_agencies("pd-a") == ["pd-a"]


def test_removed_base_entry_is_not_matched_fuzzily() -> None:
    index = ListIndex("l", 1, FUZZY1, [entry("QRS789")])
    index.remove("e-QRS789-CA")
    assert how(index, "QRS789") == [] and how(index, "0RS789") == []


PLATE = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=2, max_size=8)


@given(PLATE, st.data())
def test_index_finds_whatever_explain_accepts(plate: str, data) -> None:
    """The index (symmetric-delete keys on skeletons) misses nothing the exact rule accepts."""
    read = data.draw(PLATE)
    index = ListIndex("l", 1, FUZZY1, [entry(plate)])
    found = index.match(read, "CA", NOW)
    assert bool(found) == (explain(read, plate, FUZZY1) is not None)
    if found:
        import re
        assert re.match(candidate_regex(plate, True, 1), read)


def test_skeleton_collapses_confusion_classes() -> None:
    assert skeleton("0DQO1ILT8B5S2Z6G") == skeleton("O" * 4 + "I" * 4 + "BB" + "SS" + "ZZ" + "GG")
