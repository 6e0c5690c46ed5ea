"""Client of the audit service, used by every service that must record an access before answering.

Only services append: each call carries the calling service's own service token (services/common/
service_tokens.py) and, for a person's action, that person's access token in `ACTOR_METADATA`; the audit
service records the verified person as the actor and the service as `recorded_by`.

`AuditClient.record` raises `AuditUnavailable` when the event could not be written; callers then fail the
request with UNAVAILABLE (fail closed) instead of returning anything.
"""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.auth import auth_metadata
from services.common.grpc_server import Dependency
from services.common.service_tokens import ServiceSigner
from services.common.tls import TlsSettings, secure_channel
from sightline.audit.v1 import audit_pb2, audit_pb2_grpc

SERVICE_NAME = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name
# Audience of the service tokens the audit service accepts.
AUDIENCE = "audit"
# Metadata key carrying the access token of the person whose action an event records.
ACTOR_METADATA = "x-sightline-actor"

log = logging.getLogger(__name__)


class AuditUnavailable(Exception):
    """The audit trail could not be written."""


class AuditClient:
    def __init__(self, address: str, timeout_s: float, signer: ServiceSigner, tls: TlsSettings | None = None):
        """`tls`: the caller's TLS settings (a service passes its own); None reads them from the environment."""
        self._signer = signer
        self._channel = secure_channel(address, tls)
        self._stub = audit_pb2_grpc.AuditServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._timeout = timeout_s

    async def record(self, event: audit_pb2.AuditEvent, actor_token: str = "") -> audit_pb2.AppendResponse:
        """Append `event` as this service; `actor_token`: the access token of the person who acted (the audit
        service records that verified person as the actor), empty for the service's own events."""
        metadata = auth_metadata(self._signer.token(AUDIENCE))
        if actor_token:
            metadata += ((ACTOR_METADATA, actor_token),)
        try:
            return await self._stub.Append(audit_pb2.AppendRequest(event=event), metadata=metadata,
                                           timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise AuditUnavailable(f"{exc.code().name}: {exc.details()}") from exc

    async def record_refusal(self, event: audit_pb2.AuditEvent, actor_token: str, reason: str) -> None:
        """Append `event` as denied for `reason`, best effort: the refusal stands whether or not it could be
        written, so an unavailable audit trail is logged here, not raised."""
        event.outcome, event.reason = audit_pb2.OUTCOME_DENIED, reason
        try:
            await self.record(event, actor_token)
        except AuditUnavailable as exc:
            log.error("refusal not audited: audit trail unavailable",
                      extra={"action": event.action, "error": str(exc)[:200]})

    def dependency(self) -> Dependency:
        async def check() -> None:
            reply = await self._health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=self._timeout)
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                raise AuditUnavailable("audit service not serving")

        return Dependency("audit", check)

    async def close(self) -> None:
        await self._channel.close()
