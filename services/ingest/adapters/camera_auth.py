"""Per-camera gateway credentials.

CameraRegistryService issues each camera a random 32-byte secret once (on creation, or on rotation) and keeps
only its SHA-256. A gateway presents `authorization: Camera <camera_id>:<secret>`, one metadata entry per camera
it sends for; ingest accepts a frame only for a camera presented with its right secret. A high-entropy random
secret needs no slow password hash: SHA-256 of it cannot be brute-forced, and checking it costs microseconds.
The camera record (with the hash) comes from FrameStore's short cache, so a frame costs no lookup; a rotated
secret stops working on other replicas within that cache time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc

from services.common.rejected import Code, Rejected
from services.common.tls import SITE_PREFIX, peer_site

log = logging.getLogger(__name__)

SCHEME = "camera "
SECRET_BYTES = 32

# A call whose connection presents no site certificate: what the log and the caller are told.
NO_SITE = (f"camera frames need mutual TLS: the connection presented no camera gateway certificate naming a "
           f"site (common name '{SITE_PREFIX}<site_id>')")

CameraLookup = Callable[[str], Awaitable[dict[str, Any] | None]]


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def presented(metadata: Iterable[tuple[str, Any]]) -> list[tuple[str, str]]:
    """The (camera_id, secret) pairs of the call's `authorization: Camera ...` entries."""
    out = []
    for key, value in metadata:
        if key == "authorization" and isinstance(value, str) and value[:len(SCHEME)].lower() == SCHEME:
            camera_id, sep, secret = value[len(SCHEME):].strip().partition(":")
            if not sep or not camera_id or not secret:
                raise Rejected(Code.UNAUTHENTICATED, "camera credential must be 'Camera <id>:<secret>'")
            out.append((camera_id, secret))
    return out


async def authenticate_cameras(context: grpc.aio.ServicerContext, lookup: CameraLookup) -> frozenset[str]:
    """The cameras this call proved it speaks for; Rejected (UNAUTHENTICATED) when none or any is wrong."""
    pairs = presented(context.invocation_metadata() or ())
    if not pairs:
        raise Rejected(Code.UNAUTHENTICATED,
                        "camera credentials are required (metadata 'authorization: Camera <camera_id>:<secret>')")
    for camera_id, secret in pairs:
        doc = await lookup(camera_id)
        stored = (doc or {}).get("secret_hash", "")
        # Compared even when the camera is unknown, so that both cases take the same time.
        if not hmac.compare_digest(stored or secret_hash(""), secret_hash(secret)) or not stored:
            raise Rejected(Code.UNAUTHENTICATED,
                            f"camera {camera_id[:128]!r}: unknown or inactive camera, or wrong secret")
    return frozenset(camera_id for camera_id, _ in pairs)


async def check_site(context: grpc.aio.ServicerContext, cameras: Iterable[str], lookup: CameraLookup) -> str:
    """The site of the call's client certificate, when it owns every camera presented; Rejected otherwise
    (UNAUTHENTICATED without a site certificate, PERMISSION_DENIED for another site's camera)."""
    site = peer_site(context)
    if site is None:
        log.warning("camera call refused: no site certificate", extra={"peer": context.peer()})
        raise Rejected(Code.UNAUTHENTICATED, NO_SITE)
    for camera_id in cameras:
        owner = ((await lookup(camera_id)) or {}).get("site_id")
        if owner != site:
            log.warning("camera call refused: camera of another site",
                        extra={"camera_id": camera_id[:128], "site": site[:128], "peer": context.peer()})
            raise Rejected(Code.PERMISSION_DENIED,
                            f"camera {camera_id[:128]!r} does not belong to site {site[:128]!r} (the site named by "
                            "this gateway's certificate)")
    return site
