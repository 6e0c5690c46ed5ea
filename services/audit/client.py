"""Client of the audit service, used by every service that must record an access before answering.

Only services append: each call carries the calling service's own service token (services/common/
service_tokens.py) and, for a person's action, that person's access token in `ACTOR_METADATA`; the audit
service records the verified person as the actor and the service as `recorded_by`.

`AuditClient.record` raises `AuditUnavailable` when the event could not be written. `AccessGate` is the one
access sequence every service runs on top of it: admit the caller for a permission, record the action before
it takes effect (failing closed with UNAVAILABLE when the trail cannot be written), and deny a refused caller
with one code and message, its refusal audited.
"""

from __future__ import annotations

import logging
from typing import NoReturn, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.auth import Permission, Principal, TokenVerifier, auth_metadata, check_call
from services.common.grpc_server import Dependency
from services.common.rejected import Code, Rejected
from services.common.service_tokens import ServiceSigner
from services.common.tls import TlsSettings, secure_channel
from sightline.audit.v1 import audit_pb2, audit_pb2_grpc

SERVICE_NAME = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name
# Audience of the service tokens the audit service accepts.
AUDIENCE = "audit"
# Metadata key carrying the access token of the person whose action an event records.
ACTOR_METADATA = "x-sightline-actor"
# What a caller reads when its action was refused because the audit trail could not be written.
UNAVAILABLE = "audit trail unavailable: nothing was done; try again later"

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


class Auditor(Protocol):
    """What a service layer needs of the audit trail (AccessGate is the real one; unit tests use fakes)."""

    async def record(self, principal: Principal | None, event: audit_pb2.AuditEvent) -> None:
        """Audit before the change; raises Rejected (UNAVAILABLE) when the trail cannot be written."""

    async def deny(self, principal: Principal | None, event: audit_pb2.AuditEvent, refusal: Rejected) -> NoReturn:
        """Raise `refusal`, audited first when the caller is known."""


class AccessGate:
    """Admits a call for a permission, records it, or denies it: the same for every service. Each refusal is
    raised as `Rejected`, which the gRPC bootstrap turns into the call's status (RejectionsAsStatus)."""

    def __init__(self, verifier: TokenVerifier, audit: AuditClient):
        self.verifier = verifier
        self.audit = audit

    async def admit(self, context: grpc.aio.ServicerContext, *allowed: Permission,
                    event: audit_pb2.AuditEvent | None = None) -> Principal:
        """The caller, holding any of `allowed`. A known caller's refusal is audited as `event`, when given."""
        refusal: Rejected | None = None
        for permission in allowed:
            try:
                return await check_call(context, self.verifier, permission)
            except Rejected as exc:
                refusal = exc
                if exc.principal is None:  # no token or a bad one: no other permission changes that
                    break
        assert refusal is not None, "admit needs at least one permission"
        await self.deny(refusal.principal if event is not None else None, event or audit_pb2.AuditEvent(), refusal)

    async def record(self, principal: Principal | None, event: audit_pb2.AuditEvent) -> None:
        """Audits an action of `principal` (None: the service's own) before it takes effect, as allowed unless the
        event says otherwise; Rejected (UNAVAILABLE), nothing done, when the trail cannot be written."""
        if event.outcome == audit_pb2.OUTCOME_UNSPECIFIED:
            event.outcome = audit_pb2.OUTCOME_ALLOWED
        try:
            await self.audit.record(event, principal.token if principal else "")
        except AuditUnavailable as exc:
            log.error("audit trail unavailable: refusing", extra={"action": event.action, "error": str(exc)[:200]})
            raise Rejected(Code.UNAVAILABLE, UNAVAILABLE) from exc

    async def deny(self, principal: Principal | None, event: audit_pb2.AuditEvent, refusal: Rejected) -> NoReturn:
        """Raises the refusal; a known caller's is audited first (best effort: the refusal stands either way)."""
        if principal is not None:
            await self.audit.record_refusal(event, principal.token, refusal.reason)
        raise refusal
