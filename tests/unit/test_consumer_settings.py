"""One settings shape for every stream consumer: SIGHTLINE_<NAME>__<FIELD>, each consumer keeping its own
group and name unless told otherwise, and bad values refused at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.hotlist.settings import HotlistSettings
from services.tracker.settings import TrackerSettings

pytestmark = pytest.mark.unit


def test_a_nested_variable_changes_one_field_and_keeps_the_consumers_own_defaults(monkeypatch) -> None:
    monkeypatch.setenv("SIGHTLINE_MATCHER__START_ID", "0")
    monkeypatch.setenv("SIGHTLINE_TRACKER__CLAIM_IDLE_MS", "1500")
    matcher, tracker = HotlistSettings().matcher, TrackerSettings().tracker
    assert (matcher.group, matcher.consumer, matcher.start_id) == ("hotlist-matcher", "", "0")
    assert (tracker.group, tracker.consumer, tracker.claim_idle_ms) == ("pass-tracker", "tracker", 1500)


def test_a_bad_value_fails_at_start_up(monkeypatch) -> None:
    monkeypatch.setenv("SIGHTLINE_MATCHER__BATCH", "0")
    with pytest.raises(ValidationError, match="batch"):
        HotlistSettings()
