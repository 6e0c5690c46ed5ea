"""Prometheus metrics of the running services: ingest's /metrics after real frames, and the stream backlog
gauges sampled from a real Redis's XINFO GROUPS."""

from __future__ import annotations

import math
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from services.common.metrics import sample_stream_backlog
from services.common.settings import RedisSettings
from services.common.storage import redis_client
from services.common.tls import secure_channel
from services.devstack.servers import free_port
from services.devstack.stack import LocalStack
from services.ingest.client import register_camera
from services.simulator.render import SceneOptions, render_scene
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def ingest_metrics(stack: LocalStack, mongo_uri: str, redis_url: str, triton_url: str) -> tuple[str, str]:
    """(gRPC address, /metrics URL) of an ingest started with SIGHTLINE_METRICS_PORT, as the chart starts it."""
    port = free_port()
    if (running := stack.procs.pop("ingest", None)) is not None:
        running.stop()
    # The same frame limit as the session's ingest (tests/conftest.py), which later tests then reuse.
    stack.start_service("ingest", SIGHTLINE_MAX_FRAME_BYTES=str(2 * 1024 * 1024), SIGHTLINE_METRICS_PORT=str(port))
    return stack.address("ingest"), f"http://127.0.0.1:{port}/metrics"


async def test_ingest_counts_frames_reads_and_inference_time(ingest_metrics: tuple[str, str], tokens) -> None:
    addr, url = ingest_metrics
    camera = f"metrics-cam-{uuid.uuid4().hex[:6]}"
    scene = render_scene(7, SceneOptions(difficulty=0.0))
    before = scrape(url)
    async with secure_channel(addr) as channel:
        credential = await register_camera(channel, ingest_pb2.Camera(site_id="dev-site",
            camera_id=camera, agency_id="pd-alpha", name="metrics", active=True), await tokens("admin"))
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        frame = ingest_pb2.Frame(camera_id=camera, frame_id="f1", jpeg=scene.jpeg)
        frame.captured_at.FromDatetime(datetime.now(UTC) - timedelta(seconds=1))
        ack = await ingest.SubmitFrame(frame, metadata=credential, timeout=120)
        assert ack.status == ingest_pb2.FRAME_STATUS_STORED and ack.reads
        with pytest.raises(grpc.aio.AioRpcError):
            await ingest.SubmitFrame(ingest_pb2.Frame(camera_id=camera, frame_id="f2", jpeg=b""), metadata=credential,
                                     timeout=30)
    after = scrape(url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("sightline_ingest_frames_total", status="stored") == 1
    assert moved("sightline_ingest_frames_total", status="rejected") == 1
    assert moved("sightline_ingest_reads_stored_total") == len(ack.reads)
    assert moved("sightline_ingest_frame_seconds_count") == 2
    # only the stored frame reached Triton; the empty one was rejected before
    assert moved("sightline_ingest_inference_seconds_count") == 1
    assert 0 < moved("sightline_ingest_inference_seconds_sum") <= moved("sightline_ingest_frame_seconds_sum")


async def test_stream_backlog_gauges_follow_xinfo_groups(redis_url: str) -> None:
    stream = f"test:metrics:{uuid.uuid4().hex[:8]}"
    redis = redis_client(RedisSettings(redis_url=redis_url))
    try:
        assert await sample_stream_backlog(redis, stream) == {}  # no stream yet: nothing, no error
        await redis.xgroup_create(stream, "fast", id="0", mkstream=True)
        await redis.xgroup_create(stream, "slow", id="0")
        ids = [await redis.xadd(stream, {"n": str(i)}) for i in range(5)]
        await redis.xreadgroup("fast", "c1", {stream: ">"}, count=3)
        await redis.xack(stream, "fast", *[entry_id for entry_id, _ in
                                           (await redis.xreadgroup("fast", "c1", {stream: "0"}, count=1))[0][1]])
        assert await sample_stream_backlog(redis, stream) == {"fast": (2.0, 2), "slow": (5.0, 0)}
        assert REGISTRY.get_sample_value("sightline_stream_lag", {"stream": stream, "group": "slow"}) == 5
        assert REGISTRY.get_sample_value("sightline_stream_pending", {"stream": stream, "group": "fast"}) == 2
        # an entry deleted (XDEL) from what the slow group has not read: Redis cannot count its lag any more
        await redis.xdel(stream, ids[3])
        lag, _ = (await sample_stream_backlog(redis, stream))["slow"]
        assert math.isnan(lag)
    finally:
        await redis.delete(stream)
        await redis.aclose()
