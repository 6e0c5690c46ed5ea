"""Grouping reads into vehicle passes: association, closing, plate vote, direction and heading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.tracker.domain.passes import (
    Direction,
    PassTracker,
    Sighting,
    TrackerConfig,
    direction_of,
    heading_of,
    pass_id_for,
    similar_plates,
    summarise,
    vote,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
CONFIG = TrackerConfig(gap=timedelta(seconds=2), max_duration=timedelta(seconds=30), preview_confidence=0.8)


def sighting(read_id: str, plate: str, t: float, conf: float = 0.9, height: int = 20, x: int = 100,
             camera: str = "cam") -> Sighting:
    return Sighting(read_id, camera, T0 + timedelta(seconds=t), plate, conf, (x, 300, height * 4, height), None)


def feed(tracker: PassTracker, sightings: list[Sighting]) -> None:
    for s in sightings:
        tracker.observe(s, s.captured_at)


def test_plates_within_one_edit_under_ocr_confusions_are_similar() -> None:
    assert similar_plates("ABC1234", "ABC1234")
    assert similar_plates("ABC1234", "A8C1234")  # B/8 confusion
    assert similar_plates("ABC1234", "ABC123")  # one missing
    assert similar_plates("ABC1234", "ABX1234")  # one substituted
    assert not similar_plates("ABC1234", "XYZ9876")
    assert not similar_plates("ABC1234", "ABX12X4")


def test_a_pass_groups_noisy_reads_and_votes_each_position_by_confidence() -> None:
    tracker = PassTracker(CONFIG)
    reads = [sighting("r1", "ABC1234", 0.0, 0.6, 12), sighting("r2", "A8C1234", 0.2, 0.5, 14),
             sighting("r3", "ABC1Z34", 0.4, 0.7, 16), sighting("r4", "ABC1234", 0.6, 0.95, 18),
             sighting("r5", "ABC123", 0.8, 0.3, 20), sighting("r6", "ABC1234", 1.0, 0.9, 24)]
    feed(tracker, reads)
    (track,) = tracker.open_tracks()
    assert track.pass_id == pass_id_for("cam", "r1")
    summary = summarise(track, CONFIG)
    assert summary.plate == "ABC1234"
    assert summary.best_read_id == "r4"  # the most confident read of the voted plate
    assert summary.read_ids == ("r1", "r2", "r3", "r4", "r5", "r6")
    assert summary.direction is Direction.APPROACHING
    assert summary.first_seen == T0 and summary.last_seen == T0 + timedelta(seconds=1)
    assert 0.5 < summary.confidence < 0.9


def test_vote_prefers_the_heavier_length_and_reports_no_plate_for_plate_less_reads() -> None:
    assert vote([sighting("a", "AB123", 0, 0.9), sighting("b", "AB1234", 0, 0.3),
                 sighting("c", "AB128", 0, 0.8)])[0] == "AB123"
    assert vote([sighting("a", "", 0, 0.0)]) == ("", 0.0)


def test_two_vehicles_in_view_stay_apart_and_a_new_pass_starts_after_the_gap() -> None:
    tracker = PassTracker(CONFIG)
    feed(tracker, [sighting("a1", "ABC1234", 0.0, x=100), sighting("b1", "XYZ9876", 0.1, x=120),
                   sighting("a2", "ABC1234", 0.3, x=110), sighting("b2", "XYZ9876", 0.4, x=130)])
    plates = sorted(vote(t.sightings)[0] for t in tracker.open_tracks())
    assert plates == ["ABC1234", "XYZ9876"]
    # The same plate again, later than the gap: the same car coming back is a new pass.
    tracker.observe(sighting("a3", "ABC1234", 5.0), T0 + timedelta(seconds=5))
    assert len(tracker.open_tracks()) == 3


def test_plate_less_reads_join_by_box_motion_and_other_cameras_never_join() -> None:
    tracker = PassTracker(CONFIG)
    feed(tracker, [sighting("a1", "ABC1234", 0.0, x=100), sighting("a2", "", 0.2, 0.0, x=115),
                   sighting("c1", "ABC1234", 0.1, camera="other"), sighting("far", "", 0.3, 0.0, x=900)])
    by_first = {t.sightings[0].read_id: [s.read_id for s in t.sightings] for t in tracker.open_tracks()}
    assert by_first == {"a1": ["a1", "a2"], "c1": ["c1"], "far": ["far"]}


def test_preview_once_per_pass_redelivery_changes_nothing_and_passes_close_after_the_gap() -> None:
    tracker = PassTracker(CONFIG)
    first = tracker.observe(sighting("r1", "ABC1234", 0.0, 0.5), T0)
    assert not first.preview_due  # not confident enough
    second = tracker.observe(sighting("r2", "ABC1234", 0.2, 0.9), T0 + timedelta(seconds=0.2))
    third = tracker.observe(sighting("r3", "ABC1234", 0.4, 0.95), T0 + timedelta(seconds=0.4))
    assert second.preview_due and not third.preview_due
    again = tracker.observe(sighting("r2", "ABC1234", 0.2, 0.9), T0 + timedelta(seconds=0.5))
    assert again.duplicate and len(again.track.sightings) == 3
    assert tracker.close_due(T0 + timedelta(seconds=2.3)) == []
    (closed,) = tracker.close_due(T0 + timedelta(seconds=2.5))
    assert closed.pass_id == pass_id_for("cam", "r1") and tracker.open_tracks() == []


def test_a_pass_that_never_ends_is_closed_at_its_maximum_duration() -> None:
    tracker = PassTracker(CONFIG)
    for i in range(40):
        tracker.observe(sighting(f"r{i}", "ABC1234", i), T0 + timedelta(seconds=i))
    assert tracker.close_due(T0 + timedelta(seconds=39)) != []


@pytest.mark.parametrize(("heights", "expected"), [
    ([10, 12, 15, 19, 24], Direction.APPROACHING),
    ([24, 19, 15, 12, 10], Direction.RECEDING),
    ([20, 20, 21, 20, 20], Direction.UNKNOWN),
    ([20], Direction.UNKNOWN),
])
def test_direction_from_plate_height_trend(heights: list[int], expected: Direction) -> None:
    sightings = [sighting(f"r{i}", "ABC1234", i * 0.1, height=h) for i, h in enumerate(heights)]
    assert direction_of(sightings, CONFIG.direction_ratio) is expected


def test_heading_from_camera_bearing() -> None:
    assert heading_of(Direction.RECEDING, 90.0) == 90.0
    assert heading_of(Direction.APPROACHING, 270.0) == 90.0
    assert heading_of(Direction.APPROACHING, None) is None
    assert heading_of(Direction.UNKNOWN, 10.0) is None
