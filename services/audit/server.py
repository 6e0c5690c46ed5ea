"""gRPC adapter of the audit service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict, ParseDict
from prometheus_client import Counter, Gauge, Histogram

from services.audit.adapters.store import AuditStore, ChainTampered, audit_database
from services.audit.client import ACTOR_METADATA, AUDIENCE
from services.audit.domain.chain import canonical
from services.audit.domain.limits import RateLimiter
from services.audit.domain.review import FlagPolicy, no_case_flags, plate_flags, review_filter, volume_flags
from services.audit.settings import AUDIT_KEY, AuditSettings
from services.common.auth import (
    Permission,
    Principal,
    bearer_token,
    check_call,
    load_private_key,
    token_verifier,
)
from services.common.grpc_server import Dependency, ServiceSpec, abort, status_of
from services.common.rejected import Code, Rejected
from services.common.service_tokens import SERVICE_SUBJECT_PREFIX, ServiceVerifier, service_verifier
from services.common.storage import mongo_client, mongo_dependency, redis_client, redis_dependency
from sightline.audit.v1 import audit_pb2, audit_pb2_grpc

log = logging.getLogger(__name__)

APPENDS = Counter("sightline_audit_appends_total", "Audit entries appended", ["action"])
APPENDS_REFUSED = Counter("sightline_audit_appends_refused_total", "Append calls refused", ["reason"])
CHAIN_INTACT = Gauge("sightline_audit_chain_intact",
                     "1 while the stored chain is the one this service wrote; 0: tampered, nothing is appended")
APPEND_SECONDS = Histogram("sightline_audit_append_seconds", "Audit append latency",
                           buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
_FLAG_KINDS = {"no_case_number": audit_pb2.FLAG_KIND_NO_CASE_NUMBER,
               "unusual_volume": audit_pb2.FLAG_KIND_UNUSUAL_VOLUME,
               "plate_many_users": audit_pb2.FLAG_KIND_PLATE_MANY_USERS}


def event_to_document(event: audit_pb2.AuditEvent) -> dict[str, Any]:
    return MessageToDict(event, preserving_proto_field_name=True)


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
    def __init__(self, settings: AuditSettings, store: AuditStore, verifier, services: ServiceVerifier):
        self._settings = settings
        self._store = store
        self._verifier = verifier
        self._services = services
        self._limiter = RateLimiter(settings.append_rate_per_s, settings.append_burst)
        self._policy = FlagPolicy(settings.flag_volume_threshold, settings.flag_volume_factor,
                                  settings.flag_plate_min_users)

    async def _caller(self, context, permission: Permission) -> Principal:
        try:
            return await check_call(context, self._verifier, permission)
        except Rejected as exc:
            if exc.principal is not None:  # a known caller refused: recorded like every other refusal
                await self._record_refusal("audit.review", exc.principal, exc.message)
            await abort(context, exc)

    async def _record_refusal(self, action: str, person: Principal, reason: str) -> None:
        """A person's refused call, recorded by the audit service itself (best effort: the refusal stands)."""
        event = audit_pb2.AuditEvent(action=action, outcome=audit_pb2.OUTCOME_DENIED, reason=reason)
        try:
            await self._record(event, person, SERVICE_SUBJECT_PREFIX + "audit")
        except Exception:
            log.exception("refusal not audited")

    async def _record(self, event: audit_pb2.AuditEvent, actor: Principal | None, recorded_by: str) -> dict[str, Any]:
        """Append `event` as recorded by the service `recorded_by`; with an `actor` (a person's verified token)
        the actor fields are that person's, whatever the event says."""
        if actor is not None:
            event.user_id, event.username, event.agency_id = actor.user_id, actor.username, actor.agency_id
            del event.roles[:]
            event.roles.extend(sorted(actor.roles))
        event.recorded_by = recorded_by
        doc = event_to_document(event)
        with APPEND_SECONDS.time():
            entry = await self._store.append(doc)
        APPENDS.labels(event.action).inc()
        return entry

    async def _refuse(self, context, code: grpc.StatusCode, reason: str, message: str) -> None:
        APPENDS_REFUSED.labels(reason).inc()
        await context.abort(code, message)

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
                await self._record_refusal("audit.append", self._verifier.verify(token or ""), exc.message)
            await self._refuse(context, status_of(exc.code), "caller", exc.message)
            raise  # unreachable: abort raises

    async def _actor(self, context) -> Principal | None:
        """The person whose action the event records: the access token the service passed on, verified."""
        token = _metadata(context, ACTOR_METADATA)
        if not token:
            return None
        try:  # signature and expiry only: refusals for missing 2FA or expired training are recorded too
            return self._verifier.verify(token)
        except Rejected as exc:
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, "actor", f"acting person: {exc.message}")
            raise  # unreachable: abort raises

    async def Append(self, request, context):  # noqa: N802 - gRPC method name
        """For Sightline services only, each within its rate; people's actions come with the person's token as
        the actor (ACTOR_METADATA), recorded by the service that performed them."""
        service = await self._calling_service(context)
        if not self._limiter.allow(service, time.monotonic()):
            await self._refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "rate",
                               f"service {service} is over its audit append rate")
        event = request.event
        if not event.action:
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "invalid", "event.action is required")
        size = len(canonical(event_to_document(event)))
        if size > self._settings.max_event_bytes:
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "size",
                               f"event too large ({size} bytes; at most {self._settings.max_event_bytes})")
        actor = await self._actor(context)
        try:
            entry = await self._record(event, actor, SERVICE_SUBJECT_PREFIX + service)
        except ChainTampered:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "audit trail integrity check failed: appends stopped")
        except Exception:
            log.exception("audit append failed")
            await context.abort(grpc.StatusCode.UNAVAILABLE, "audit store unavailable")
        return audit_pb2.AppendResponse(sequence=entry["_id"], hash=entry["hash"])

    async def _review_event(self, principal: Principal, details: dict[str, Any], count: int, context) -> None:
        event = audit_pb2.AuditEvent(action="audit.review", outcome=audit_pb2.OUTCOME_ALLOWED, result_count=count)
        event.details.update(details)
        try:
            await self._record(event, principal, SERVICE_SUBJECT_PREFIX + "audit")
        except Exception:
            log.exception("audit append failed")
            await context.abort(grpc.StatusCode.UNAVAILABLE, "audit store unavailable")

    async def QueryEntries(self, request, context):  # noqa: N802
        principal = await self._caller(context, Permission.AUDIT_REVIEW)
        if not 0 <= request.page_size <= 500:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_size must be between 1 and 500")
        size = request.page_size or 100
        start, end = _range(request.start_time, request.end_time, request.HasField("start_time"),
                            request.HasField("end_time"))
        flt = review_filter(principal.agency_id, user_id=request.user_id, plate=request.plate,
                            case_number=request.case_number, purpose=request.purpose, action=request.action,
                            start=start, end=end, before_sequence=request.before_sequence)
        docs = await self._store.find(flt, size + 1)
        await self._review_event(principal, {"query": MessageToDict(request, preserving_proto_field_name=True)},
                                 min(len(docs), size), context)
        response = audit_pb2.QueryEntriesResponse(entries=[document_to_entry(d) for d in docs[:size]])
        if len(docs) > size:
            response.next_before_sequence = docs[size - 1]["_id"]
        return response

    async def ListFlags(self, request, context):  # noqa: N802
        principal = await self._caller(context, Permission.AUDIT_REVIEW)
        now = datetime.now(UTC)
        start, end = _range(request.start_time, request.end_time, request.HasField("start_time"),
                            request.HasField("end_time"))
        end = end or now
        start = start or end - timedelta(days=1)
        if start >= end:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "start_time must be before end_time")
        counts = await self._store.flag_counts(principal.agency_id, start, end)
        flags = (no_case_flags(counts["no_case"]) + volume_flags(counts["volume"], self._policy)
                 + plate_flags(counts["plates"], self._policy))
        await self._review_event(principal, {"flags": {"start": start.isoformat(), "end": end.isoformat()}},
                                 len(flags), context)
        return audit_pb2.ListFlagsResponse(flags=[
            audit_pb2.Flag(kind=_FLAG_KINDS[f.kind], user_id=f.user_id, username=f.username, plate=f.plate,
                           count=f.count, detail=f.detail) for f in flags])


async def make_spec(settings: AuditSettings) -> ServiceSpec:
    mongo = mongo_client(settings)
    db = audit_database(mongo, settings.audit_mongo_db)
    key = load_private_key(settings.audit_signing_key_file, settings, AUDIT_KEY)
    store = AuditStore(mongo, db, key, timedelta(days=settings.audit_retention_days))
    redis = redis_client(settings)
    servicer = AuditServicer(settings, store, token_verifier(settings, redis),
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
