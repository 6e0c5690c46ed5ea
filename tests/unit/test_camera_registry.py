"""Camera registry use cases (services/ingest/service_layer/cameras.py) on fakes of the camera store and the audit
trail: an admin registers their own agency's cameras only, a taken id is refused and audited, nothing changes
unless audited first, and a camera's secret is handed back once and stored as a hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import pytest

from services.common.auth import Principal
from services.common.rejected import Code, Rejected
from services.ingest.adapters.camera_auth import secret_hash
from services.ingest.service_layer.cameras import NO_SUCH_CAMERA, CameraRegistry
from sightline.audit.v1 import audit_pb2
from sightline.ingest.v1 import ingest_pb2

pytestmark = pytest.mark.unit

ADMIN = Principal(user_id="a1", username="a1", agency_id="pd-a", roles=frozenset({"agency_admin"}),
                  second_factor=True, training_until=datetime.now(UTC) + timedelta(days=30))


class FakeStore:
    def __init__(self) -> None:
        self.cameras: dict[str, dict[str, Any]] = {"cam-b": {"_id": "cam-b", "agency_id": "pd-b", "site_id": "s-b",
                                                             "secret_hash": "x"}}

    async def upsert_camera(self, camera: ingest_pb2.Camera, new_secret_hash: str) -> bool | None:
        current = self.cameras.get(camera.camera_id)
        if current is not None and current["agency_id"] != camera.agency_id:
            return None
        self.cameras[camera.camera_id] = {"_id": camera.camera_id, "agency_id": camera.agency_id,
                                          "site_id": camera.site_id,
                                          "secret_hash": current["secret_hash"] if current else new_secret_hash}
        return current is None

    async def camera_site(self, camera_id: str) -> str | None:
        return self.cameras[camera_id]["site_id"] if camera_id in self.cameras else None

    async def camera_agency(self, camera_id: str) -> str | None:
        return self.cameras[camera_id]["agency_id"] if camera_id in self.cameras else None

    async def set_camera_secret(self, camera_id: str, agency_id: str, new_secret_hash: str) -> bool:
        if self.cameras.get(camera_id, {}).get("agency_id") != agency_id:
            return False
        self.cameras[camera_id]["secret_hash"] = new_secret_hash
        return True

    async def list_cameras(self, agency_id: str) -> list[dict[str, Any]]:
        return [c for c in self.cameras.values() if c["agency_id"] == agency_id]


class FakeAuditor:
    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.events: list[tuple[str, str]] = []

    async def record(self, principal: Principal | None, event: audit_pb2.AuditEvent) -> None:
        if self.down:
            raise Rejected(Code.UNAVAILABLE, "audit trail unavailable")
        self.events.append((event.action, "allowed"))

    async def deny(self, principal: Principal | None, event: audit_pb2.AuditEvent, refusal: Rejected) -> NoReturn:
        self.events.append((event.action, "denied"))
        raise refusal


async def refused(call: Any) -> Rejected:
    with pytest.raises(Rejected) as err:
        await call
    return err.value


async def test_a_new_camera_gets_its_site_and_a_secret_stored_as_a_hash_only() -> None:
    store, auditor = FakeStore(), FakeAuditor()
    camera, secret = await CameraRegistry(store, auditor, "site-1").upsert(ADMIN, ingest_pb2.Camera(camera_id="cam-1"))
    assert (camera.agency_id, camera.site_id) == ("pd-a", "site-1") and secret
    assert store.cameras["cam-1"]["secret_hash"] == secret_hash(secret) != secret
    _, again = await CameraRegistry(store, auditor, "site-2").upsert(ADMIN, ingest_pb2.Camera(camera_id="cam-1"))
    assert again == "" and store.cameras["cam-1"]["site_id"] == "site-1"  # an update keeps site and secret
    assert auditor.events == [("camera.upsert", "allowed")] * 2


async def test_another_agencys_camera_id_or_agency_is_refused_and_audited() -> None:
    store, auditor = FakeStore(), FakeAuditor()
    registry = CameraRegistry(store, auditor)
    for camera in (ingest_pb2.Camera(camera_id="cam-b"), ingest_pb2.Camera(camera_id="cam-2", agency_id="pd-b")):
        assert (await refused(registry.upsert(ADMIN, camera))).code == Code.PERMISSION_DENIED
    assert (await refused(registry.rotate_secret(ADMIN, "cam-b"))).message == NO_SUCH_CAMERA
    assert (await refused(registry.cameras(ADMIN, "pd-b"))).code == Code.PERMISSION_DENIED
    assert [outcome for _, outcome in auditor.events] == ["denied"] * 4
    assert store.cameras["cam-b"]["secret_hash"] == "x" and "cam-2" not in store.cameras


async def test_a_malformed_camera_id_is_refused_before_anything_is_written() -> None:
    store, auditor = FakeStore(), FakeAuditor()
    err = await refused(CameraRegistry(store, auditor).upsert(ADMIN, ingest_pb2.Camera(camera_id="bad id\n")))
    assert err.code == Code.INVALID_ARGUMENT and auditor.events == [] and len(store.cameras) == 1


async def test_with_the_audit_trail_down_no_camera_is_registered_or_rotated() -> None:
    store = FakeStore()
    await CameraRegistry(store, FakeAuditor()).upsert(ADMIN, ingest_pb2.Camera(camera_id="cam-1", site_id="s"))
    hash_before = store.cameras["cam-1"]["secret_hash"]
    registry = CameraRegistry(store, FakeAuditor(down=True))
    new_camera = ingest_pb2.Camera(camera_id="cam-2", site_id="s-a")
    assert (await refused(registry.upsert(ADMIN, new_camera))).code == Code.UNAVAILABLE
    assert (await refused(registry.rotate_secret(ADMIN, "cam-1"))).code == Code.UNAVAILABLE
    assert "cam-2" not in store.cameras and store.cameras["cam-1"]["secret_hash"] == hash_before


async def test_a_rotated_secret_replaces_the_old_one() -> None:
    store = FakeStore()
    registry = CameraRegistry(store, FakeAuditor())
    _, first = await registry.upsert(ADMIN, ingest_pb2.Camera(camera_id="cam-1", site_id="s-a"))
    second = await registry.rotate_secret(ADMIN, "cam-1")
    assert second != first and store.cameras["cam-1"]["secret_hash"] == secret_hash(second)
    assert [c["_id"] for c in await registry.cameras(ADMIN, "")] == ["cam-1"]
