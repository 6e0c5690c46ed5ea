"""gRPC adapter of the retention service: agency retention settings, evidence holds, shredding reports.

Every hold and release, and every change of an agency's retention, is written to the audit trail before it
takes effect; when the audit trail cannot be written the call fails with UNAVAILABLE and nothing changes.
Refusals by a known caller are audited too. The verification job runs in the background (service_layer/verify.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from prometheus_client import Counter

from services.audit.client import AccessGate, AuditClient
from services.common.auth import Permission, token_verifier
from services.common.data_keys import KeyStore, load_master_key
from services.common.grpc_server import ServiceSpec, retry_until_done
from services.common.reads import ensure_indexes, to_datetime, to_timestamp
from services.common.rejected import Code, Rejected
from services.common.retention_policy import effective_days
from services.common.service_tokens import service_signer
from services.common.storage import mongo_client, mongo_database, mongo_dependency, redis_client, redis_dependency
from services.retention.adapters.store import RetentionStore
from services.retention.domain.holds import Scope
from services.retention.service_layer.evidence import Retention
from services.retention.service_layer.holds import HoldManager
from services.retention.service_layer.verify import Verifier
from services.retention.settings import RetentionSettings
from sightline.audit.v1 import audit_pb2
from sightline.retention.v1 import retention_pb2, retention_pb2_grpc

log = logging.getLogger(__name__)

DAYS_SHREDDED = Counter("sightline_retention_days_shredded_total", "Capture days shredded, by outcome", ["ok"])




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
    def __init__(self, retention: Retention, store: RetentionStore, gate: AccessGate):
        self._retention = retention
        self._store = store
        self._gate = gate

    def _agency_retention(self, agency: dict[str, Any] | None, agency_id: str) -> retention_pb2.AgencyRetention:
        caps = self._retention.caps
        cap = caps.cap(str((agency or {}).get("state") or ""))
        return retention_pb2.AgencyRetention(
            agency_id=agency_id, state=str((agency or {}).get("state") or ""), cap_days=cap.days,
            cap_source=cap.source, retention_days=effective_days(caps, agency, self._retention.default_days))

    async def GetAgencyRetention(self, request, context):  # noqa: N802 - gRPC method name
        principal = await self._gate.admit(
            context, Permission.MANAGE_AGENCY, Permission.MANAGE_HOLDS, Permission.AUDIT_REVIEW
        )
        return self._agency_retention(await self._store.agency(principal.agency_id), principal.agency_id)

    async def SetAgencyRetention(self, request, context):  # noqa: N802
        event = audit_pb2.AuditEvent(action="agency.retention")
        event.details.update({"request": MessageToDict(request, preserving_proto_field_name=True)})
        principal = await self._gate.admit(context, Permission.MANAGE_AGENCY, event=event)
        agency = await self._retention.set_agency_retention(principal, request.state.upper(), request.retention_days,
                                                            event)
        return self._agency_retention(agency, principal.agency_id)

    async def PlaceHold(self, request, context):  # noqa: N802
        hold_id = str(uuid.uuid4())
        event = audit_pb2.AuditEvent(
            action="hold.place", subject=hold_id, case_number=request.case_number[:64], purpose="evidence hold"
        )
        event.details.update({"request": MessageToDict(request, preserving_proto_field_name=True)})
        principal = await self._gate.admit(context, Permission.MANAGE_HOLDS, event=event)
        doc = await self._retention.place_hold(principal, hold_id, request.case_number, request.justification,
                                               _scope(request), event)
        return hold_to_proto(doc)

    async def ReleaseHold(self, request, context):  # noqa: N802
        event = audit_pb2.AuditEvent(action="hold.release", subject=request.hold_id[:64], purpose="evidence hold")
        event.details.update({"request": MessageToDict(request, preserving_proto_field_name=True)})
        principal = await self._gate.admit(context, Permission.MANAGE_HOLDS, event=event)
        return hold_to_proto(await self._retention.release_hold(principal, request.hold_id, request.reason, event))

    async def ListHolds(self, request, context):  # noqa: N802
        principal = await self._gate.admit(context, Permission.MANAGE_HOLDS, Permission.AUDIT_REVIEW)
        docs = await self._store.holds(principal.agency_id, request.include_released)
        return retention_pb2.ListHoldsResponse(holds=[hold_to_proto(d) for d in docs])

    async def ListReports(self, request, context):  # noqa: N802
        principal = await self._gate.admit(context, Permission.AUDIT_REVIEW, Permission.MANAGE_AGENCY)
        days = request.days or 30
        if not 1 <= days <= 366:
            raise Rejected(Code.INVALID_ARGUMENT, "days must be 1-366")
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
    gate = AccessGate(token_verifier(settings, redis), audit)
    retention = Retention(store, HoldManager(store, keys, settings.hold_batch_size), gate, settings.cap_table(),
                          settings.read_retention_days, settings.max_hold_reads, lock)
    servicer = RetentionServicer(retention, store, gate)

    async def indexes() -> None:
        await ensure_indexes(db)
        await store.ensure_indexes()
        await keys.ensure_indexes()

    return ServiceSpec(
        service_names=[retention_pb2.DESCRIPTOR.services_by_name["RetentionService"].full_name],
        register=lambda server: retention_pb2_grpc.add_RetentionServiceServicer_to_server(servicer, server),
        dependencies=[mongo_dependency(mongo), redis_dependency(redis), audit.dependency()],
        background=[
            lambda: retry_until_done("retention indexes", indexes),
            lambda: run_verifier(verifier, lock, settings.verify_interval_s),
        ],
        close=[audit.close, redis.aclose, mongo.close],
    )
