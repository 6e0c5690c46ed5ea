"""gRPC adapter of the audit service: verifies who calls (a service's token for Append, a reviewer's access
token for review), translates protobuf and calls the use cases in service_layer/trail.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.json_format import MessageToDict, ParseDict
from prometheus_client import Gauge

from services.audit.adapters.store import AuditStore, ChainTampered, audit_database
from services.audit.client import ACTOR_METADATA, AUDIENCE
from services.audit.domain.limits import RateLimiter
from services.audit.domain.review import FlagPolicy
from services.audit.service_layer.trail import Trail, refused_append
from services.audit.settings import AUDIT_KEY, AuditSettings
from services.common.auth import (
    Permission,
    Principal,
    bearer_token,
    check_call,
    load_private_key,
    token_verifier,
)
from services.common.grpc_server import Dependency, ServiceSpec
from services.common.rejected import Code, Rejected
from services.common.service_tokens import ServiceVerifier, service_verifier
from services.common.storage import mongo_client, mongo_dependency, redis_client, redis_dependency
from sightline.audit.v1 import audit_pb2, audit_pb2_grpc

log = logging.getLogger(__name__)

CHAIN_INTACT = Gauge("sightline_audit_chain_intact",
                     "1 while the stored chain is the one this service wrote; 0: tampered, nothing is appended")
_FLAG_KINDS = {"no_case_number": audit_pb2.FLAG_KIND_NO_CASE_NUMBER,
               "unusual_volume": audit_pb2.FLAG_KIND_UNUSUAL_VOLUME,
               "plate_many_users": audit_pb2.FLAG_KIND_PLATE_MANY_USERS}


def document_to_entry(doc: dict[str, Any]) -> audit_pb2.AuditEntry:
    entry = audit_pb2.AuditEntry(sequence=doc["_id"], prev_hash=doc["prev_hash"], hash=doc["hash"],
                                 event=ParseDict(doc["event"], audit_pb2.AuditEvent(), ignore_unknown_fields=True))
    entry.recorded_at.FromDatetime(doc["at"])
    return entry


def _range(start, end, has_start: bool, has_end: bool) -> tuple[datetime | None, datetime | None]:
    return (start.ToDatetime(tzinfo=UTC) if has_start else None, end.ToDatetime(tzinfo=UTC) if has_end else None)


def _metadata(context, key: str) -> str:
    for k, value in context.invocation_metadata() or ():
        if k == key and isinstance(value, str):
            return value
    return ""


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, trail: Trail, verifier, services: ServiceVerifier):
        self._trail = trail
        self._verifier = verifier
        self._services = services

    async def _caller(self, context, permission: Permission) -> Principal:
        try:
            return await check_call(context, self._verifier, permission)
        except Rejected as exc:
            if exc.principal is not None:  # a known caller refused: recorded like every other refusal
                await self._trail.record_refusal("audit.review", exc.principal, exc.message)
            raise

    async def _calling_service(self, context) -> str:
        """The service calling Append (its own service token); a person's token is PERMISSION_DENIED."""
        token = bearer_token(context)
        try:
            if not token:
                raise Rejected(Code.UNAUTHENTICATED, "a service token is required")
            return self._services.verify(token)
        except Rejected as exc:
            # A person's own valid token, trying to write the trail directly: refused, and recorded as theirs
            # (a fixed refusal, none of what they sent). A token that is no one's is only counted.
            with contextlib.suppress(Rejected):
                await self._trail.record_refusal("audit.append", self._verifier.verify(token or ""), exc.message)
            raise refused_append(exc.code, "caller", exc.message) from exc

    def _actor(self, context) -> Principal | None:
        """The person whose action the event records: the access token the service passed on, verified."""
        token = _metadata(context, ACTOR_METADATA)
        if not token:
            return None
        try:  # signature and expiry only: refusals for missing 2FA or expired training are recorded too
            return self._verifier.verify(token)
        except Rejected as exc:
            raise refused_append(Code.UNAUTHENTICATED, "actor", f"acting person: {exc.message}") from exc

    async def Append(self, request, context):  # noqa: N802 - gRPC method name
        """For Sightline services only, each within its rate; people's actions come with the person's token as
        the actor (ACTOR_METADATA), recorded by the service that performed them."""
        service = await self._calling_service(context)
        entry = await self._trail.append(service, request.event, self._actor(context), time.monotonic())
        return audit_pb2.AppendResponse(sequence=entry["_id"], hash=entry["hash"])

    async def QueryEntries(self, request, context):  # noqa: N802
        principal = await self._caller(context, Permission.AUDIT_REVIEW)
        start, end = _range(request.start_time, request.end_time, request.HasField("start_time"),
                            request.HasField("end_time"))
        page = await self._trail.review(
            principal, request.page_size, MessageToDict(request, preserving_proto_field_name=True),
            {"user_id": request.user_id, "plate": request.plate, "case_number": request.case_number,
             "purpose": request.purpose, "action": request.action, "start": start, "end": end,
             "before_sequence": request.before_sequence})
        return audit_pb2.QueryEntriesResponse(entries=[document_to_entry(d) for d in page.entries],
                                              next_before_sequence=page.next_before_sequence)

    async def ListFlags(self, request, context):  # noqa: N802
        principal = await self._caller(context, Permission.AUDIT_REVIEW)
        start, end = _range(request.start_time, request.end_time, request.HasField("start_time"),
                            request.HasField("end_time"))
        end = end or datetime.now(UTC)
        flags = await self._trail.flags(principal, start or end - timedelta(days=1), end)
        return audit_pb2.ListFlagsResponse(flags=[
            audit_pb2.Flag(kind=_FLAG_KINDS[f.kind], user_id=f.user_id, username=f.username, plate=f.plate,
                           count=f.count, detail=f.detail) for f in flags])


async def make_spec(settings: AuditSettings) -> ServiceSpec:
    mongo = mongo_client(settings)
    db = audit_database(mongo, settings.audit_mongo_db)
    key = load_private_key(settings.audit_signing_key_file, settings, AUDIT_KEY)
    store = AuditStore(mongo, db, key, timedelta(days=settings.audit_retention_days))
    redis = redis_client(settings)
    policy = FlagPolicy(settings.flag_volume_threshold, settings.flag_volume_factor, settings.flag_plate_min_users)
    trail = Trail(store, RateLimiter(settings.append_rate_per_s, settings.append_burst), policy,
                  settings.max_event_bytes)
    servicer = AuditServicer(trail, token_verifier(settings, redis),
                             service_verifier(AUDIENCE, settings.append_services, settings))

    async def chain_intact() -> None:
        CHAIN_INTACT.set(0 if store.tampered else 1)
        if store.tampered:
            raise ChainTampered(store.tampered)

    async def checkpoints() -> None:
        while True:
            try:
                if not store.ready:
                    await store.ensure()
                await store.checkpoint()
            except Exception as exc:  # noqa: BLE001 - MongoDB not reachable yet: next round
                log.warning("audit checkpoint failed", extra={"error": repr(exc)[:200]})
            await asyncio.sleep(settings.checkpoint_interval_s if store.ready else 1.0)

    async def final_checkpoint() -> None:
        try:
            await store.checkpoint()
        except Exception as exc:  # noqa: BLE001 - shutting down anyway; the next start signs the head
            log.warning("final audit checkpoint failed", extra={"error": repr(exc)[:200]})

    return ServiceSpec(
        service_names=[audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name],
        register=lambda server: audit_pb2_grpc.add_AuditServiceServicer_to_server(servicer, server),
        dependencies=[mongo_dependency(mongo), redis_dependency(redis), Dependency("audit chain", chain_intact)],
        background=[checkpoints],
        close=[final_checkpoint, redis.aclose, mongo.close],
    )
