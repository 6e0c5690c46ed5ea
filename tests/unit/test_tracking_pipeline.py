"""Rendered vehicle passes through the in-process pipeline and the tracker: one pass per vehicle, its plate,
its direction. Two vehicles pass the same camera at the same time, one approaching, one receding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.inference.vision.pipeline import AlprPipeline
from services.inference.vision.runner import OnnxRunner
from services.inference.vision.settings import VisionSettings
from services.simulator.render import SceneOptions, render_sequence
from services.tracker.domain.passes import Direction, PassTracker, Sighting, TrackerConfig, summarise

pytestmark = pytest.mark.unit

FRAMES = 6
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_two_simultaneous_passes_on_one_camera_give_two_passes_with_plate_and_direction() -> None:
    settings = VisionSettings()
    pipeline = AlprPipeline(OnnxRunner(settings.model_repository, intra_op_threads=1), settings)
    options = SceneOptions(difficulty=0.2)
    approaching = list(render_sequence(3, FRAMES, options, "approach"))
    receding = list(render_sequence(4, FRAMES, options, "recede"))
    tracker = PassTracker(TrackerConfig(gap=timedelta(seconds=1)))
    for i in range(FRAMES):
        for name, scene in (("a", approaching[i]), ("r", receding[i])):
            at = T0 + timedelta(seconds=0.2 * i)
            for j, read in enumerate(pipeline.run(scene.image).plates):
                tracker.observe(Sighting(f"{name}{i}-{j}", "cam", at, read.normalized, read.confidence,
                                         read.box if read.normalized else None,
                                         read.vehicle.box if read.vehicle else None), at)
    passes = {p.plate: p for p in (summarise(t, TrackerConfig()) for t in tracker.close_due(T0 + timedelta(days=1)))}
    truth_a, truth_r = approaching[0].truth.plate_text, receding[0].truth.plate_text
    assert set(passes) == {truth_a, truth_r}
    assert passes[truth_a].direction is Direction.APPROACHING
    assert passes[truth_r].direction is Direction.RECEDING
    assert all(rid.startswith("a") for rid in passes[truth_a].read_ids)
    assert len(passes[truth_a].read_ids) >= FRAMES - 1
