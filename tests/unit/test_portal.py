"""The transparency portal's pure parts: the uses it lists, the figures' shapes and the SVG plots."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.common.purpose import CRIMINAL, NON_CRIMINAL, PROHIBITED, purpose_label
from services.portal.domain.transparency import (
    ACCEPTABLE_USES,
    PROHIBITED_USES,
    Series,
    Transparency,
    bar_chart_svg,
    deletion_summary,
    window_days,
)
from sightline.search.v1 import search_pb2

pytestmark = pytest.mark.unit


def test_uses_come_from_the_search_purposes() -> None:
    assert len(ACCEPTABLE_USES) == len(CRIMINAL | NON_CRIMINAL)
    assert len(PROHIBITED_USES) == len(PROHIBITED)
    assert purpose_label(search_pb2.PURPOSE_HIT_AND_RUN) == "Hit and run"
    assert any(u.startswith("Immigration enforcement: ") for u in PROHIBITED_USES)
    assert not set(ACCEPTABLE_USES) & {u.split(":")[0] for u in PROHIBITED_USES}


def test_window_is_the_days_ending_today_oldest_first() -> None:
    days = window_days(date(2026, 3, 2), 3)
    assert days == [date(2026, 2, 28), date(2026, 3, 1), date(2026, 3, 2)]


def test_series_fills_missing_days_with_zero() -> None:
    days = window_days(date(2026, 1, 3), 3)
    s = Series.from_counts("Searches", days, {"2026-01-01": 4, "2026-01-03": 1, "2025-12-31": 9})
    assert s.values == [4, 0, 1] and s.total == 5


def report(**kw) -> Transparency:
    days = window_days(date(2026, 1, 2), 2)
    base = dict(agency_id="pd-x", agency_name="X PD", as_of="2026-01-02T00:00:00+00:00", window_days=2,
                retention_days=30, policy="p", cameras=[], reads=Series("Reads", days, [3, 4]),
                vehicles_daily=Series("Vehicles", days, [2, 3]), unique_vehicles=4,
                searches=Series("Searches", days, [0, 1]), searches_refused=1, partner_searches=0,
                hotlist_hits=Series("Hits", days, [0, 0]), hit_outcomes={}, shares_with=["pd-y"], shared_by=[],
                evidence_holds=0, latest_deletion_report=None)
    return Transparency(**{**base, **kw})


def test_json_has_totals_and_daily_figures_but_no_sum_of_distinct_counts() -> None:
    doc = report().to_json()
    assert doc["reads"] == {"total": 7, "daily": [{"day": "2026-01-01", "count": 3}, {"day": "2026-01-02", "count": 4}]}
    assert "total" not in doc["vehicles_daily"] and doc["unique_vehicles"] == 4
    assert "plots" not in doc and doc["prohibited_uses"] == list(PROHIBITED_USES)


def test_deletion_summary_keeps_the_public_fields_as_text() -> None:
    at = datetime(2026, 2, 1, 3, 0, tzinfo=UTC)
    summary = deletion_summary({"_id": "pd-x:2026-01-01", "day": "2026-01-01", "verified_at": at, "ok": True,
                                "hold_ids": ["h1"], "unheld_reads_remaining": 0})
    assert summary == {"day": "2026-01-01", "verified_at": "2026-02-01T03:00:00+00:00", "ok": True,
                       "unheld_reads_remaining": 0}
    assert deletion_summary(None) is None


def test_bar_chart_is_self_contained_svg_with_a_bar_per_day() -> None:
    days = window_days(date(2026, 1, 30), 30)
    svg = bar_chart_svg(Series("Reads <&>", days, list(range(30))))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<rect") == 30 and "Reads &lt;&amp;&gt;" in svg
    assert "href" not in svg and "<script" not in svg
    assert ">50</text>" in svg  # axis maximum: the next 1-2-5 step above the peak (29)


def test_bar_chart_of_nothing_draws_empty_bars() -> None:
    days = window_days(date(2026, 1, 30), 3)
    svg = bar_chart_svg(Series("Hits", days, [0, 0, 0]))
    assert svg.count('height="0.0"') == 3
