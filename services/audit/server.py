"""gRPC adapter of the audit service."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict, ParseDict
from prometheus_client import Counter, Histogram

from services.audit.adapters.store import AuditStore, audit_database
from services.audit.domain.chain import canonical
from services.audit.domain.review import FlagPolicy, no_case_flags, plate_flags, review_filter, volume_flags
from services.audit.settings import AUDIT_KEY, AuditSettings
from services.common.auth import (
    AuthError,
    Permission,
    Principal,
    bearer_token,
    check_call,
    load_private_key,
    token_verifier,
)
from services.common.grpc_server import ServiceSpec
from services.common.storage import mongo_client, mongo_dependency, redis_client, redis_dependency
from sightline.audit.v1 import audit_pb2, audit_pb2_grpc

log = logging.getLogger(__name__)

APPENDS = Counter("sightline_audit_appends_total", "Audit entries appended", ["action"])
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


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, settings: AuditSettings, store: AuditStore, verifier):
        self._settings = settings
        self._store = store
        self._verifier = verifier
        self._policy = FlagPolicy(settings.flag_volume_threshold, settings.flag_volume_factor,
                                  settings.flag_plate_min_users)

    async def _caller(self, context, permission: Permission) -> Principal:
        try:
            return await check_call(context, self._verifier, permission)
        except AuthError as exc:
            if exc.principal is not None:  # a known caller refused: recorded like every other refusal
                event = audit_pb2.AuditEvent(action="audit.review", outcome=audit_pb2.OUTCOME_DENIED,
                                             reason=exc.message)
                try:
                    await self._record(event, exc.principal)
                except Exception:
                    log.exception("refusal not audited")
            await context.abort(exc.code, exc.message)
            raise  # unreachable: abort raises

    async def _record(self, event: audit_pb2.AuditEvent, principal: Principal) -> dict[str, Any]:
        if principal.is_service:
            event.recorded_by = principal.user_id
        else:  # a user's token: the actor is the verified caller, whatever the event says
            event.user_id, event.username, event.agency_id = principal.user_id, principal.username, principal.agency_id
            del event.roles[:]
            event.roles.extend(sorted(principal.roles))
            event.recorded_by = ""
        doc = event_to_document(event)
        with APPEND_SECONDS.time():
            entry = await self._store.append(doc)
        APPENDS.labels(event.action).inc()
        return entry

    async def _appender(self, context) -> Principal:
        """Any valid token may record events about its holder, including refusals of that holder (expired
        training, no second factor), so only the signature, expiry and role are checked here."""
        try:
            token = bearer_token(context)
            if not token:
                raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "an access token is required")
            principal = await self._verifier.authenticate(token)
            if not principal.can(Permission.AUDIT_APPEND):
                raise AuthError(grpc.StatusCode.PERMISSION_DENIED, "this token cannot append audit events")
        except AuthError as exc:
            await context.abort(exc.code, exc.message)
            raise  # unreachable: abort raises
        return principal

    async def Append(self, request, context):  # noqa: N802 - gRPC method name
        principal = await self._appender(context)
        event = request.event
        if not event.action:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "event.action is required")
        if len(canonical(event_to_document(event))) > self._settings.max_event_bytes:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "event too large")
        try:
            entry = await self._record(event, principal)
        except Exception:
            log.exception("audit append failed")
            await context.abort(grpc.StatusCode.UNAVAILABLE, "audit store unavailable")
        return audit_pb2.AppendResponse(sequence=entry["_id"], hash=entry["hash"])

    async def _review_event(self, principal: Principal, details: dict[str, Any], count: int, context) -> None:
        event = audit_pb2.AuditEvent(action="audit.review", outcome=audit_pb2.OUTCOME_ALLOWED, result_count=count)
        event.details.update(details)
        try:
            await self._record(event, principal)
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
    servicer = AuditServicer(settings, store, token_verifier(settings, redis))

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
        dependencies=[mongo_dependency(mongo), redis_dependency(redis)],
        background=[checkpoints],
        close=[final_checkpoint, redis.aclose, mongo.close],
    )
