"""gRPC adapter of the retention service: agency retention settings, evidence holds, shredding reports.

Every hold and release, and every change of an agency's retention, is written to the audit trail before it
takes effect; when the audit trail cannot be written the call fails with UNAVAILABLE and nothing changes.
Refusals by a known caller are audited too. The verification job runs in the background (verify.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from prometheus_client import Counter

from services.audit.client import AccessGate, AuditClient
from services.common.auth import Permission, token_verifier
from services.common.data_keys import KeyStore, load_master_key
from services.common.grpc_server import ServiceSpec, retry_until_done
from services.common.reads import READS, ensure_indexes, to_datetime, to_timestamp
from services.common.rejected import Code, Rejected
from services.common.retention_policy import PolicyError, check_setting, effective_days
from services.common.service_tokens import service_signer
from services.common.storage import mongo_client, mongo_database, mongo_dependency, redis_client, redis_dependency
from services.retention.adapters.store import RetentionStore
from services.retention.domain.holds import InvalidHold, Scope, check_request, reads_filter
from services.retention.holds import HoldManager
from services.retention.settings import RetentionSettings
from services.retention.verify import Verifier
from sightline.audit.v1 import audit_pb2
from sightline.retention.v1 import retention_pb2, retention_pb2_grpc

log = logging.getLogger(__name__)

DAYS_SHREDDED = Counter("sightline_retention_days_shredded_total", "Capture days shredded, by outcome", ["ok"])
HOLDS = Counter("sightline_retention_holds_total", "Holds placed and released", ["action"])




def hold_to_proto(doc: dict[str, Any]) -> retention_pb2.Hold:
    hold = retention_pb2.Hold(
        hold_id=doc["_id"],
        agency_id=doc["agency_id"],
        case_number=doc["case_number"],
        justification=doc["justification"],
        requested_by_user_id=doc["requested_by"]["user_id"],
        requested_by_username=doc["requested_by"]["username"],
        status=retention_pb2.HOLD_STATUS_ACTIVE if doc["status"] == "active" else retention_pb2.HOLD_STATUS_RELEASED,
        created_at=to_timestamp(doc["created_at"]),
        read_count=doc.get("read_count", 0),
        image_count=doc.get("image_count", 0),
        release_reason=doc.get("release_reason", ""),
        released_by_user_id=doc.get("released_by", ""),
        reads_restored=doc.get("reads_restored", 0),
        reads_deleted=doc.get("reads_deleted", 0),
    )
    scope = doc["scope"]
    if "read_ids" in scope:
        hold.read_ids.ids.extend(scope["read_ids"])
    else:
        hold.window.plate, hold.window.camera_id = scope["plate"], scope["camera_id"]
        hold.window.start_time.CopyFrom(to_timestamp(scope["start"]))
        hold.window.end_time.CopyFrom(to_timestamp(scope["end"]))
    if doc.get("released_at"):
        hold.released_at.CopyFrom(to_timestamp(doc["released_at"]))
    return hold


def report_to_proto(doc: dict[str, Any]) -> retention_pb2.DayReport:
    fields = {k: v for k, v in doc.items() if k in retention_pb2.DayReport.DESCRIPTOR.fields_by_name}
    for name in ("retention_ended_at", "verified_at", "key_destroyed_at"):
        fields[name] = to_timestamp(fields.get(name))
    return retention_pb2.DayReport(**fields)


def _scope(request: retention_pb2.PlaceHoldRequest) -> Scope:
    if request.WhichOneof("scope") == "read_ids":
        return Scope(read_ids=tuple(request.read_ids.ids))
    w = request.window
    return Scope(
        plate=w.plate,
        camera_id=w.camera_id,
        start=to_datetime(w.start_time) if w.HasField("start_time") else None,
        end=to_datetime(w.end_time) if w.HasField("end_time") else None,
    )


class RetentionServicer(retention_pb2_grpc.RetentionServiceServicer):
    def __init__(
        self,
        settings: RetentionSettings,
        store: RetentionStore,
        holds: HoldManager,
        verifier,
        audit: AuditClient,
        lock: asyncio.Lock,
    ):
        self._settings = settings
        self._store = store
        self._holds = holds
        self._gate = AccessGate(verifier, audit)
        self._caps = settings.cap_table()
        # Holds, releases and the verification job never run at the same time.
        self._lock = lock

    def _retention(self, agency: dict[str, Any] | None, agency_id: str) -> retention_pb2.AgencyRetention:
        state = str((agency or {}).get("state") or "")
        cap = self._caps.cap(state)
        return retention_pb2.AgencyRetention(
            agency_id=agency_id,
            state=state,
            cap_days=cap.days,
            cap_source=cap.source,
            retention_days=effective_days(self._caps, agency, self._settings.read_retention_days),
        )

    # --- agency retention -----------------------------------------------------------------------------------

    async def GetAgencyRetention(self, request, context):  # noqa: N802 - gRPC method name
        principal = await self._gate.admit(
            context, Permission.MANAGE_AGENCY, Permission.MANAGE_HOLDS, Permission.AUDIT_REVIEW
        )
        return self._retention(await self._store.agency(principal.agency_id), principal.agency_id)

    async def SetAgencyRetention(self, request, context):  # noqa: N802
        event = audit_pb2.AuditEvent(action="agency.retention")
        event.details.update({"request": MessageToDict(request, preserving_proto_field_name=True)})
        principal = await self._gate.admit(context, Permission.MANAGE_AGENCY, event=event)
        event.subject = event.agency_id = principal.agency_id
        state = request.state.upper()
        try:
            check_setting(self._caps, state, request.retention_days)
        except PolicyError as exc:
            await self._gate.deny(principal, event, Rejected(Code.FAILED_PRECONDITION, str(exc)))
        await self._gate.record(principal, event)
        agency = await self._store.set_retention(principal.agency_id, state, request.retention_days)
        if agency is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "your agency is not registered")
        return self._retention(agency, principal.agency_id)

    # --- holds ----------------------------------------------------------------------------------------------

    async def PlaceHold(self, request, context):  # noqa: N802
        hold_id = str(uuid.uuid4())
        event = audit_pb2.AuditEvent(
            action="hold.place", subject=hold_id, case_number=request.case_number[:64], purpose="evidence hold"
        )
        event.details.update({"request": MessageToDict(request, preserving_proto_field_name=True)})
        principal = await self._gate.admit(context, Permission.MANAGE_HOLDS, event=event)
        event.data_agency_ids.append(principal.agency_id)
        try:
            scope = check_request(
                request.case_number, request.justification, _scope(request), self._settings.max_hold_reads
            )
        except InvalidHold as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if scope.plate:
            event.plates.append(scope.plate)
        now = datetime.now(UTC)
        flt = reads_filter(principal.agency_id, scope, now)
        async with self._lock:
            count = await self._store.db[READS].count_documents(flt, limit=self._settings.max_hold_reads + 1)
            if count > self._settings.max_hold_reads:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"the window covers more than {self._settings.max_hold_reads} reads: narrow it",
                )
            event.outcome, event.result_count = audit_pb2.OUTCOME_ALLOWED, count
            await self._gate.record(principal, event)
            doc = {
                "_id": hold_id,
                "agency_id": principal.agency_id,
                "case_number": request.case_number,
                "justification": request.justification,
                "scope": scope.document(),
                "status": "active",
                "requested_by": {"user_id": principal.user_id, "username": principal.username},
                "created_at": now,
                "read_count": 0,
                "image_count": 0,
            }
            await self._store.insert_hold(doc)
            reads, images = await self._holds.place(principal.agency_id, hold_id, flt, now)
            doc = await self._store.update_hold(hold_id, {"read_count": reads, "image_count": images})
        HOLDS.labels("place").inc()
        log.info("hold placed", extra={"hold_id": hold_id, "reads": reads, "images": images})
        return hold_to_proto(doc)

    async def ReleaseHold(self, request, context):  # noqa: N802
        event = audit_pb2.AuditEvent(action="hold.release", subject=request.hold_id[:64], purpose="evidence hold")
        event.details.update({"request": MessageToDict(request, preserving_proto_field_name=True)})
        principal = await self._gate.admit(context, Permission.MANAGE_HOLDS, event=event)
        event.data_agency_ids.append(principal.agency_id)
        if not request.reason.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "reason is required")
        async with self._lock:
            hold = await self._store.hold(principal.agency_id, request.hold_id)
            if hold is None or hold["status"] != "active":
                await context.abort(grpc.StatusCode.NOT_FOUND, "no such active hold in your agency")
            event.case_number, event.outcome = hold["case_number"], audit_pb2.OUTCOME_ALLOWED
            await self._gate.record(principal, event)
            now = datetime.now(UTC)
            days = effective_days(
                self._caps, await self._store.agency(principal.agency_id), self._settings.read_retention_days
            )
            counts = await self._holds.release(principal.agency_id, hold["_id"], timedelta(days=days), now)
            doc = await self._store.update_hold(
                hold["_id"],
                {
                    "status": "released",
                    "released_at": now,
                    "released_by": principal.user_id,
                    "release_reason": request.reason,
                    "reads_restored": counts.restored,
                    "reads_deleted": counts.deleted,
                },
            )
        HOLDS.labels("release").inc()
        log.info(
            "hold released", extra={"hold_id": hold["_id"], "restored": counts.restored, "deleted": counts.deleted}
        )
        return hold_to_proto(doc)

    async def ListHolds(self, request, context):  # noqa: N802
        principal = await self._gate.admit(context, Permission.MANAGE_HOLDS, Permission.AUDIT_REVIEW)
        docs = await self._store.holds(principal.agency_id, request.include_released)
        return retention_pb2.ListHoldsResponse(holds=[hold_to_proto(d) for d in docs])

    async def ListReports(self, request, context):  # noqa: N802
        principal = await self._gate.admit(context, Permission.AUDIT_REVIEW, Permission.MANAGE_AGENCY)
        days = request.days or 30
        if not 1 <= days <= 366:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "days must be 1-366")
        docs = await self._store.reports(principal.agency_id, days)
        return retention_pb2.ListReportsResponse(reports=[report_to_proto(d) for d in docs])


async def run_verifier(verifier: Verifier, lock: asyncio.Lock, interval_s: float) -> None:
    """The background verification job: every `interval_s`, shred and report the days whose retention ended."""
    while True:
        try:
            async with lock:
                reports = await verifier.run(datetime.now(UTC))
            for report in reports:
                DAYS_SHREDDED.labels(str(report["ok"]).lower()).inc()
                (log.info if report["ok"] else log.error)(
                    "capture day shredded",
                    extra={
                        "agency_id": report["agency_id"],
                        "day": report["day"],
                        "ok": report["ok"],
                        "reads_held": report["reads_held"],
                    },
                )
        except Exception as exc:  # noqa: BLE001 - try again next round; health shows a lost dependency
            log.warning("verification run failed", extra={"error": repr(exc)[:200]})
        await asyncio.sleep(interval_s)


async def make_spec(settings: RetentionSettings) -> ServiceSpec:
    mongo = mongo_client(settings)
    db = mongo_database(mongo, settings)
    redis = redis_client(settings)
    audit = AuditClient(
        settings.audit_address, settings.audit_timeout_s, service_signer(settings.service_name, settings), settings
    )
    store = RetentionStore(db)
    keys = KeyStore(db, load_master_key(settings), settings.data_key_cache_s)
    lock = asyncio.Lock()
    verifier = Verifier(store, keys, redis, settings.cap_table(), settings.read_retention_days)
    servicer = RetentionServicer(
        settings,
        store,
        HoldManager(store, keys, settings.hold_batch_size),
        token_verifier(settings, redis),
        audit,
        lock,
    )

    async def indexes() -> None:
        await ensure_indexes(db)
        await store.ensure_indexes()
        await keys.ensure_indexes()

    async def close_redis() -> None:
        await redis.aclose()

    return ServiceSpec(
        service_names=[retention_pb2.DESCRIPTOR.services_by_name["RetentionService"].full_name],
        register=lambda server: retention_pb2_grpc.add_RetentionServiceServicer_to_server(servicer, server),
        dependencies=[mongo_dependency(mongo), redis_dependency(redis), audit.dependency()],
        background=[
            lambda: retry_until_done("retention indexes", indexes),
            lambda: run_verifier(verifier, lock, settings.verify_interval_s),
        ],
        close=[audit.close, close_redis, mongo.close],
    )
