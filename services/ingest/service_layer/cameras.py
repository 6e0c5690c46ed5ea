"""Use cases of the camera registry: an agency admin registers, updates and lists their own agency's cameras and
rotates a camera's secret. A camera id that belongs to another agency is refused and audited; every change is
audited before it is made. A camera's secret is generated here, handed back once, and stored as a hash only.
"""

from __future__ import annotations

from typing import Any, Protocol

from services.audit.client import Auditor
from services.common.auth import Principal
from services.common.rejected import Code, Rejected
from services.ingest.adapters.camera_auth import new_secret, secret_hash
from services.ingest.domain.frames import validate_camera_id, validate_site_id
from sightline.audit.v1 import audit_pb2
from sightline.ingest.v1 import ingest_pb2

NO_SUCH_CAMERA = "no such camera in your agency"
_TAKEN = "this camera id belongs to another agency"


class CameraStore(Protocol):
    async def upsert_camera(self, camera: ingest_pb2.Camera, new_secret_hash: str) -> bool | None: ...

    async def camera_site(self, camera_id: str) -> str | None: ...

    async def camera_agency(self, camera_id: str) -> str | None: ...

    async def set_camera_secret(self, camera_id: str, agency_id: str, new_secret_hash: str) -> bool: ...

    async def list_cameras(self, agency_id: str) -> list[dict[str, Any]]: ...


def camera_event(action: str, subject: str) -> audit_pb2.AuditEvent:
    return audit_pb2.AuditEvent(action=action, subject=subject[:128])


class CameraRegistry:
    def __init__(self, store: CameraStore, auditor: Auditor, default_site: str = ""):
        self._store = store
        self._auditor = auditor
        self._default_site = default_site

    async def upsert(self, admin: Principal, camera: ingest_pb2.Camera) -> tuple[ingest_pb2.Camera, str]:
        """The camera as registered, and its secret when it was created (empty on an update)."""
        event = camera_event("camera.upsert", camera.camera_id)
        if camera.agency_id and camera.agency_id != admin.agency_id:
            await self._auditor.deny(admin, event, Rejected(
                Code.PERMISSION_DENIED, "cameras can be registered for your own agency only"))
        camera.agency_id = admin.agency_id
        validate_camera_id(camera.camera_id)
        if not camera.site_id:  # an update keeps the camera's site; a new camera gets the default, if any
            camera.site_id = await self._store.camera_site(camera.camera_id) or self._default_site
        validate_site_id(camera.site_id)
        if await self._store.camera_agency(camera.camera_id) not in (None, admin.agency_id):
            await self._auditor.deny(admin, event, Rejected(Code.PERMISSION_DENIED, _TAKEN))
        await self._auditor.record(admin, camera_event("camera.upsert", camera.camera_id))
        secret = new_secret()
        created = await self._store.upsert_camera(camera, secret_hash(secret))
        if created is None:  # registered by another agency meanwhile
            await self._auditor.deny(admin, camera_event("camera.upsert", camera.camera_id),
                                     Rejected(Code.PERMISSION_DENIED, _TAKEN))
        return camera, secret if created else ""

    async def rotate_secret(self, admin: Principal, camera_id: str) -> str:
        """A new secret for the agency's camera; the old one stops working at once."""
        if await self._store.camera_agency(camera_id) != admin.agency_id:  # none, or another agency's
            await self._auditor.deny(admin, camera_event("camera.rotate_secret", camera_id),
                                     Rejected(Code.NOT_FOUND, NO_SUCH_CAMERA))
        await self._auditor.record(admin, camera_event("camera.rotate_secret", camera_id))
        secret = new_secret()
        if not await self._store.set_camera_secret(camera_id, admin.agency_id, secret_hash(secret)):
            raise Rejected(Code.NOT_FOUND, NO_SUCH_CAMERA)
        return secret

    async def cameras(self, admin: Principal, agency_id: str) -> list[dict[str, Any]]:
        if agency_id and agency_id != admin.agency_id:
            await self._auditor.deny(admin, camera_event("camera.list", agency_id), Rejected(
                Code.PERMISSION_DENIED, "only your own agency's cameras can be listed"))
        return await self._store.list_cameras(admin.agency_id)
