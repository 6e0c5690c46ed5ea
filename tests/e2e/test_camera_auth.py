"""Per-camera gateway credentials and metadata-only ingest (SubmitReads), on the real ingest, mongod and Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis

from services.common.auth import auth_metadata
from services.ingest.adapters.camera_auth import secret_hash
from services.ingest.client import camera_metadata, register_camera
from services.ingest.domain.frames import read_id
from sightline.common.v1 import read_pb2
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc

pytestmark = pytest.mark.e2e

pb = ingest_pb2


def frame_reads(camera: str, frame_id: str, *plates: str) -> pb.FrameReads:
    fr = pb.FrameReads(camera_id=camera, frame_id=frame_id, location=read_pb2.GeoPoint(latitude=40.7, longitude=-74.0))
    fr.captured_at.FromDatetime(datetime.now(UTC) - timedelta(seconds=5))
    for plate in plates:
        fr.reads.add(plate=plate, confidence=0.93, region=read_pb2.Region(country="US", state="NY", confidence=0.8),
                     vehicle=read_pb2.Vehicle(type=read_pb2.VEHICLE_TYPE_CAR, colour="Red"))
    return fr


@pytest.fixture
async def ingest(ingest_addr, audit_addr, channel_factory):
    ch = channel_factory(ingest_addr)
    return ch, ingest_pb2_grpc.IngestServiceStub(ch), ingest_pb2_grpc.CameraRegistryServiceStub(ch)


def new_camera(prefix: str = "auth") -> pb.Camera:
    return pb.Camera(camera_id=f"{prefix}-{uuid.uuid4().hex[:8]}", name="test", active=True, site_id="dev-site")


async def test_registry_needs_an_agency_admin_and_audits_refusals(ingest, tokens, accounts, mongo_db) -> None:
    _, _, registry = ingest
    request = pb.UpsertCameraRequest(camera=new_camera())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await registry.UpsertCamera(request)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await registry.UpsertCamera(request, metadata=auth_metadata(await tokens("officer")))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "cameras:manage" in err.value.details()
    entry = mongo_db.client["sightline_audit"]["audit_entries"].find_one(
        {"event.action": "camera.upsert", "event.subject": request.camera.camera_id}, sort=[("_id", -1)])
    assert entry["event"]["outcome"] == "OUTCOME_DENIED" and entry["event"]["user_id"] == accounts["officer"].user_id
    assert mongo_db["cameras"].count_documents({"_id": request.camera.camera_id}) == 0


async def test_secret_is_issued_once_hashed_and_rotated(ingest, tokens, mongo_db) -> None:
    _, stub, registry = ingest
    admin = auth_metadata(await tokens("admin"))
    camera = new_camera()
    created = await registry.UpsertCamera(pb.UpsertCameraRequest(camera=camera), metadata=admin)
    assert len(created.secret) >= 40 and created.camera.agency_id == "pd-alpha"
    doc = mongo_db["cameras"].find_one({"_id": camera.camera_id})
    assert doc["secret_hash"] == secret_hash(created.secret) and created.secret not in str(doc)
    again = await registry.UpsertCamera(pb.UpsertCameraRequest(camera=camera), metadata=admin)
    assert again.secret == ""  # shown once only
    old = camera_metadata([(camera.camera_id, created.secret)])
    ok = await stub.SubmitReads(pb.ReadBatch(frames=[frame_reads(camera.camera_id, "r1", "ROT111")]), metadata=old)
    assert ok.acks[0].status == pb.FRAME_STATUS_STORED
    rotated = await registry.RotateCameraSecret(pb.RotateCameraSecretRequest(camera_id=camera.camera_id),
                                                metadata=admin)
    assert rotated.secret and rotated.secret != created.secret
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SubmitReads(pb.ReadBatch(frames=[frame_reads(camera.camera_id, "r2", "ROT111")]), metadata=old)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    new = camera_metadata([(camera.camera_id, rotated.secret)])
    ok = await stub.SubmitReads(pb.ReadBatch(frames=[frame_reads(camera.camera_id, "r2", "ROT111")]), metadata=new)
    assert ok.acks[0].status == pb.FRAME_STATUS_STORED


async def test_another_agencys_camera_id_cannot_be_taken_over(ingest, tokens, mongo_db) -> None:
    _, _, registry = ingest
    camera_id = f"beta-{uuid.uuid4().hex[:8]}"
    mongo_db["cameras"].insert_one({"_id": camera_id, "agency_id": "pd-beta", "active": True, "secret_hash": "x"})
    admin = auth_metadata(await tokens("admin"))
    for call, request in ((registry.UpsertCamera, pb.UpsertCameraRequest(camera=pb.Camera(camera_id=camera_id,
                                                                                             site_id="dev-site"))),
                          (registry.RotateCameraSecret, pb.RotateCameraSecretRequest(camera_id=camera_id))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request, metadata=admin)
        assert err.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND)
    assert mongo_db["cameras"].find_one({"_id": camera_id})["agency_id"] == "pd-beta"
    listed = await registry.ListCameras(pb.ListCamerasRequest(), metadata=admin)
    assert camera_id not in {c.camera_id for c in listed.cameras}


async def test_frames_need_the_cameras_own_credential(ingest, tokens) -> None:
    ch, stub, _ = ingest
    admin = await tokens("admin")
    cam_a, cam_b = new_camera("cam-a"), new_camera("cam-b")
    cred_a = await register_camera(ch, cam_a, admin)
    cred_b = await register_camera(ch, cam_b, admin)
    secret_a = cred_a[0][1].partition(":")[2]
    batch = pb.ReadBatch(frames=[frame_reads(cam_b.camera_id, "x1", "STEAL1")])
    cases = [
        ((), grpc.StatusCode.UNAUTHENTICATED),  # no credential
        (camera_metadata([(cam_b.camera_id, "not-the-secret")]), grpc.StatusCode.UNAUTHENTICATED),
        (camera_metadata([(cam_b.camera_id, secret_a)]), grpc.StatusCode.UNAUTHENTICATED),  # A's secret as B
        ((("authorization", f"Camera {cam_b.camera_id}"),), grpc.StatusCode.UNAUTHENTICATED),  # malformed
        (auth_metadata(admin), grpc.StatusCode.UNAUTHENTICATED),  # a person's token is no camera credential
    ]
    for metadata, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SubmitReads(batch, metadata=metadata)
        assert err.value.code() == code, metadata
    # Camera A, authenticated, sending camera B's frame: refused for that frame only.
    mixed = pb.ReadBatch(frames=[frame_reads(cam_b.camera_id, "x1", "STEAL1"), frame_reads(cam_a.camera_id, "x2")])
    reply = await stub.SubmitReads(mixed, metadata=cred_a)
    assert reply.acks[0].status == pb.FRAME_STATUS_REJECTED
    assert reply.acks[0].error_code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert reply.acks[1].status == pb.FRAME_STATUS_STORED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        frame = pb.Frame(camera_id=cam_b.camera_id, frame_id="img-1", jpeg=b"\xff\xd8")
        frame.captured_at.FromDatetime(datetime.now(UTC))
        await stub.SubmitFrame(frame, metadata=cred_a)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # One gateway may present several cameras' credentials on one call.
    both = await stub.SubmitReads(pb.ReadBatch(frames=[frame_reads(cam_b.camera_id, "y1", "BOTH22"),
                                                      frame_reads(cam_a.camera_id, "y2", "BOTH22")]),
                                  metadata=(*cred_a, *cred_b))
    assert [a.status for a in both.acks] == [pb.FRAME_STATUS_STORED, pb.FRAME_STATUS_STORED]


@pytest.fixture
def meta_camera(mongo_db):
    """A camera whose reads are removed afterwards (a plate-less read would show in other tests' searches)."""
    camera = new_camera("meta")
    yield camera
    mongo_db["reads"].delete_many({"camera_id": camera.camera_id})


async def test_submit_reads_stores_like_the_pipeline(ingest, tokens, mongo_db, redis_url, meta_camera) -> None:
    ch, stub, _ = ingest
    camera = meta_camera
    cred = await register_camera(ch, camera, await tokens("admin"))
    cam = camera.camera_id
    batch = pb.ReadBatch(frames=[frame_reads(cam, "m1", "ABC 123", "XYZ-9"), frame_reads(cam, "m2", ""),
                                frame_reads(cam, "m1", "ABC 123", "XYZ-9"),  # the same frame twice
                                frame_reads(cam, "bad id!", "Q1")])
    reply = await stub.SubmitReads(batch, metadata=cred)
    assert [a.status for a in reply.acks] == [pb.FRAME_STATUS_STORED, pb.FRAME_STATUS_STORED,
                                              pb.FRAME_STATUS_DUPLICATE, pb.FRAME_STATUS_REJECTED]
    assert list(reply.acks[0].read_ids) == [read_id(cam, "m1", 0), read_id(cam, "m1", 1)]
    assert list(reply.acks[2].read_ids) == list(reply.acks[0].read_ids)
    assert reply.acks[3].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    docs = {d["_id"]: d for d in mongo_db["reads"].find({"camera_id": cam})}
    first = docs[read_id(cam, "m1", 0)]
    assert first["plate_normalized"] == "ABC123" and first["agency_id"] == "pd-alpha"
    assert "plate" not in first and first["sealed"]  # sealed like every stored read
    assert first["vehicle"]["colour"] == "red" and first["expire_at"] > datetime.now(UTC)
    assert docs[read_id(cam, "m2", 0)]["plate_normalized"] == ""  # a vehicle without a readable plate
    frame = mongo_db["frames"].find_one({"_id": f"{cam}/m1"})
    assert frame["published"] is True and frame["image_ref"] == ""
    with redis.Redis.from_url(redis_url) as r:
        published = {e[1][b"read_id"].decode() for e in r.xrevrange("sightline:reads:v1", count=200)}
    assert set(reply.acks[0].read_ids) <= published
    # Sent again (a gateway retrying after a lost reply): nothing new is stored.
    again = await stub.SubmitReads(pb.ReadBatch(frames=[frame_reads(cam, "m1", "ABC 123", "XYZ-9")]), metadata=cred)
    assert again.acks[0].status == pb.FRAME_STATUS_DUPLICATE
    assert mongo_db["reads"].count_documents({"camera_id": cam}) == 3
    # The stream form: one acknowledgement batch per batch, in order.
    call = stub.StreamReads(iter([pb.ReadBatch(frames=[frame_reads(cam, f"s{i}", f"STR{i}")]) for i in range(3)]),
                            metadata=cred)
    acks = [batch_ack.acks[0] async for batch_ack in call]
    assert [(a.frame_id, a.status) for a in acks] == [(f"s{i}", pb.FRAME_STATUS_STORED) for i in range(3)]
