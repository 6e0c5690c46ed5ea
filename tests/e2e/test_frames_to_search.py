"""Frames in through the ingest gRPC API, reads out through the search gRPC API, on the real stack."""

import os
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from services.common.auth import auth_metadata
from services.common.tls import secure_channel
from services.ingest.client import register_camera
from services.simulator.render import SceneOptions, render_scene
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from sightline.search.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.e2e

CAMERA = "e2e-cam-1"
AGENCY = "pd-alpha"  # the test officer's agency (tests/conftest.py ACCOUNTS)
SEEDS = [1, 2, 3, 4]
WHY = {"purpose": search_pb2.PURPOSE_VEHICLE_THEFT, "case_number": "E2E-2026-1"}


def frame(frame_id: str, jpeg: bytes, camera: str = CAMERA) -> ingest_pb2.Frame:
    f = ingest_pb2.Frame(camera_id=camera, frame_id=frame_id, jpeg=jpeg)
    f.captured_at.FromDatetime(datetime.now(UTC) - timedelta(seconds=2))
    f.location.latitude, f.location.longitude = 40.7128, -74.0060
    return f


@pytest.fixture(scope="module")
async def registered(ingest_addr: str, tokens) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The ingest address and the camera's gateway credential (call metadata)."""
    async with secure_channel(ingest_addr) as ch:
        camera = ingest_pb2.Camera(
                site_id="dev-site", camera_id=CAMERA, agency_id=AGENCY, name="Main St eastbound", active=True)
        return ingest_addr, await register_camera(ch, camera, await tokens("admin"))


async def test_stream_stores_reads_rejects_bad_frames_and_goes_on(registered, search_addr, channel_factory,
                                                                  mongo_db, tokens) -> None:
    scenes = {f"good-{s}": render_scene(s, SceneOptions(difficulty=0.0)) for s in SEEDS}
    oversized = b"\xff\xd8\xff\xe0" + os.urandom(3 * 1024 * 1024)
    frames = [
        frame("good-1", scenes["good-1"].jpeg),
        frame("bad-corrupt", b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 64),
        frame("good-2", scenes["good-2"].jpeg),
        frame("bad-empty", b""),
        frame("bad-oversized", oversized),
        frame("bad-camera", scenes["good-3"].jpeg, camera="no-such-camera"),
        frame("good-3", scenes["good-3"].jpeg),
        frame("good-4", scenes["good-4"].jpeg),
    ]
    addr, credential = registered
    ingest = ingest_pb2_grpc.IngestServiceStub(channel_factory(addr))

    async def requests():
        for f in frames:
            yield f

    acks = [ack async for ack in ingest.StreamFrames(requests(), metadata=credential, timeout=300)]
    by_id = {a.frame_id: a for a in acks}
    assert [a.frame_id for a in acks] == [f.frame_id for f in frames]  # one ack each, in order
    for fid in ("good-1", "good-2", "good-3", "good-4"):
        assert by_id[fid].status == ingest_pb2.FRAME_STATUS_STORED, by_id[fid].error_message
    invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert by_id["bad-corrupt"].error_code == invalid and "JPEG" in by_id["bad-corrupt"].error_message
    assert by_id["bad-empty"].error_code == invalid and "empty" in by_id["bad-empty"].error_message
    assert by_id["bad-oversized"].error_code == invalid and "over the limit" in by_id["bad-oversized"].error_message
    assert by_id["bad-camera"].error_code == grpc.StatusCode.PERMISSION_DENIED.value[0]  # no credential for it
    for fid in ("bad-corrupt", "bad-empty", "bad-oversized"):
        assert by_id[fid].status == ingest_pb2.FRAME_STATUS_REJECTED
        assert mongo_db["frames"].count_documents({"_id": f"{CAMERA}/{fid}"}) == 0
    assert mongo_db["reads"].count_documents({"camera_id": "no-such-camera"}) == 0

    search = search_pb2_grpc.SearchServiceStub(channel_factory(search_addr))
    officer = auth_metadata(await tokens("officer"))
    for fid, scene in scenes.items():
        found = await search.SearchReads(search_pb2.SearchReadsRequest(plate_exact=scene.truth.plate_text,
                                                                       camera_ids=[CAMERA], **WHY), metadata=officer)
        assert [r.frame_id for r in found.reads] == [fid], (fid, scene.truth.plate_text,
                                                              [r.plate for r in by_id[fid].reads])
        read = found.reads[0]
        assert read.confidence > 0.5 and read.location.latitude == pytest.approx(40.7128)
        image = await search.GetImage(search_pb2.GetImageRequest(image_ref=read.image_ref, **WHY), metadata=officer)
        assert image.data[:2] == b"\xff\xd8"

    partial = scenes["good-1"].truth.plate_text[:3] + "*"
    found = await search.SearchReads(search_pb2.SearchReadsRequest(plate_pattern=partial, camera_ids=[CAMERA], **WHY),
                                     metadata=officer)
    assert "good-1" in {r.frame_id for r in found.reads}


async def test_resent_frame_is_acknowledged_as_duplicate(registered, channel_factory, mongo_db) -> None:
    addr, credential = registered
    ingest = ingest_pb2_grpc.IngestServiceStub(channel_factory(addr))
    f = frame("dup-1", render_scene(11).jpeg)
    first = await ingest.SubmitFrame(f, metadata=credential, timeout=120)
    second = await ingest.SubmitFrame(f, metadata=credential, timeout=120)
    assert first.status == ingest_pb2.FRAME_STATUS_STORED
    assert second.status == ingest_pb2.FRAME_STATUS_DUPLICATE
    assert list(second.read_ids) == list(first.read_ids)
    assert mongo_db["reads"].count_documents({"frame_id": "dup-1"}) == len(first.read_ids)


async def test_unary_submit_returns_grpc_errors(registered, channel_factory) -> None:
    addr, credential = registered
    ingest = ingest_pb2_grpc.IngestServiceStub(channel_factory(addr))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ingest.SubmitFrame(frame("unary-bad", b"not a jpeg"), metadata=credential, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ingest.SubmitFrame(frame("unary-cam", render_scene(5).jpeg, camera="ghost"), metadata=credential,
                                 timeout=30)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_health_reports_serving(registered, channel_factory) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    addr, _ = registered
    health = health_pb2_grpc.HealthStub(channel_factory(addr))
    reply = await health.Check(health_pb2.HealthCheckRequest(service="sightline.ingest.v1.IngestService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
