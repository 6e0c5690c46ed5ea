"""Ingest's published client side: how a camera gateway presents its cameras, and registering a camera.

A gateway presents `authorization: Camera <camera_id>:<secret>`, one metadata entry per camera it sends for
(services/ingest/adapters/camera_auth.py checks them).
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from services.common.auth import auth_metadata
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc


def camera_metadata(credentials: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """gRPC metadata presenting (camera_id, secret) pairs."""
    return tuple(("authorization", f"Camera {camera_id}:{secret}") for camera_id, secret in credentials)


async def register_camera(channel: grpc.aio.Channel, camera: ingest_pb2.Camera,
                          admin_token: str) -> tuple[tuple[str, str], ...]:
    """Upsert `camera` as an agency admin and return the
    call metadata presenting its secret: the one issued on creation, or a rotated one when it existed."""
    registry = ingest_pb2_grpc.CameraRegistryServiceStub(channel)
    admin = auth_metadata(admin_token)
    reply = await registry.UpsertCamera(ingest_pb2.UpsertCameraRequest(camera=camera), metadata=admin, timeout=30)
    secret = reply.secret or (await registry.RotateCameraSecret(
        ingest_pb2.RotateCameraSecretRequest(camera_id=camera.camera_id), metadata=admin, timeout=30)).secret
    return camera_metadata([(camera.camera_id, secret)])


class CameraRegistry:
    """CameraRegistryService as an agency admin (permission cameras:manage), every call with a deadline."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 10.0):
        self._stub = ingest_pb2_grpc.CameraRegistryServiceStub(channel)
        self._timeout = timeout

    async def list(self, token: str) -> list[ingest_pb2.Camera]:
        reply = await self._stub.ListCameras(ingest_pb2.ListCamerasRequest(), metadata=auth_metadata(token),
                                             timeout=self._timeout)
        return list(reply.cameras)

    async def upsert(self, token: str, camera: ingest_pb2.Camera) -> ingest_pb2.UpsertCameraResponse:
        """Register or update `camera`; the reply's secret is set (once) when it was created."""
        return await self._stub.UpsertCamera(ingest_pb2.UpsertCameraRequest(camera=camera),
                                             metadata=auth_metadata(token), timeout=self._timeout)

    async def rotate(self, token: str, camera_id: str) -> str:
        """A new secret for the camera (the old one stops working), returned once."""
        reply = await self._stub.RotateCameraSecret(ingest_pb2.RotateCameraSecretRequest(camera_id=camera_id),
                                                    metadata=auth_metadata(token), timeout=self._timeout)
        return reply.secret
