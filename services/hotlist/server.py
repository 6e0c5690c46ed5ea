"""gRPC adapter of the hotlist service (HotlistService, AlertService) and its wiring.

One process serves the API and runs the read-stream matcher as a background task (`matcher_enabled`):
the matcher needs no port of its own, shares the clients, and its health is the process's health. Replicas
scale both together; API-only replicas turn the matcher off. Alerts reach every replica's subscribers
through Redis pub/sub, so a client may be connected to any replica.

Every RPC checks the caller's access token (services/common/auth.py). Lists belong to an agency: only users
of that agency with HOTLIST_MANAGE change them (UpsertList, ImportList, AddEntry, RemoveEntry); each change
is written to the audit trail before it takes effect, and fails with UNAVAILABLE, changing nothing, when
the audit trail cannot be written. A list matches only the reads of its agency and of the agencies that
share theirs with it for hot-list matching (services/common/agencies.py); BackSearch is a search of reads,
bound to a purpose and a case number like SearchReads (services/common/purpose.py) and audited before it
answers. Alerts are the list's agency's (ALERTS_VIEW): a partner's list hitting this agency's read shows up
in this agency's audit trail, not in its alerts. Each workflow step is recorded as the token's user
(ALERTS_RESPOND) and audited first in the same way.
Refusals of a known caller are audited too. The matcher and the delivery of alerts to subscribers keep
running while the audit service is down (officers still receive alerts), so audit is not a health
dependency of this service; the change and workflow RPCs are what fail closed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import grpc
from opentelemetry import trace
from prometheus_client import Counter

from services.audit.client import AccessGate, AuditClient
from services.common.auth import Permission, Principal, token_verifier
from services.common.grpc_server import ServiceSpec, retry_until_done
from services.common.metrics import watch_stream_backlog
from services.common.purpose import purpose_name
from services.common.rejected import Code, Rejected
from services.common.service_tokens import service_signer
from services.common.storage import mongo_client, mongo_database, mongo_dependency, redis_client, redis_dependency
from services.hotlist.adapters.active_lists import ActiveLists
from services.hotlist.adapters.alert_bus import AlertBus
from services.hotlist.adapters.codec import (
    DISPOSITION_FROM_PB,
    SOURCES,
    alert_to_pb,
    entry_fields_from_pb,
    entry_to_pb,
    list_to_pb,
)
from services.hotlist.adapters.sharing import SharingDirectory
from services.hotlist.adapters.store import HotlistStore
from services.hotlist.domain.matcher import MatchIndex
from services.hotlist.domain.ncic import Format, WildcardPolicy
from services.hotlist.service_layer.alert_desk import AlertDesk
from services.hotlist.service_layer.alerting import AlertRaiser
from services.hotlist.service_layer.backsearch import BackSearch
from services.hotlist.service_layer.index_sync import IndexSync
from services.hotlist.service_layer.lists import MAX_BACKSEARCH_ENTRIES, HotLists, reconcile
from services.hotlist.service_layer.stream_matcher import StreamMatcher
from services.hotlist.settings import HotlistSettings
from sightline.audit.v1 import audit_pb2
from sightline.hotlist.v1 import hotlist_pb2, hotlist_pb2_grpc

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)
MAX_REJECTIONS_LISTED = 1000
_FORMATS: dict[int, Format] = {hotlist_pb2.FILE_FORMAT_CSV: "csv", hotlist_pb2.FILE_FORMAT_FIXED_WIDTH: "fixed"}
ALERTS_DELIVERED = Counter("sightline_hotlist_alerts_delivered_total",
                           "Alerts sent on SubscribeAlerts streams, one per subscriber", ["mode"])


def _list_event(action: str, list_id: str, **details: Any) -> audit_pb2.AuditEvent:
    event = audit_pb2.AuditEvent(action=action, subject=list_id[:128])
    event.details.update({"list_id": list_id, **details})
    return event


class HotlistServicer(hotlist_pb2_grpc.HotlistServiceServicer):
    def __init__(self, lists: HotLists, store: HotlistStore, reads: BackSearch, raiser: AlertRaiser,
                 sharing: SharingDirectory, gate: AccessGate):
        self._lists = lists
        self._store = store
        self._reads = reads
        self._raiser = raiser
        self._sharing = sharing
        self._gate = gate

    async def UpsertList(self, request, context):  # noqa: N802 - gRPC method name
        hl = request.list
        fields = {"name": hl.name, "source": SOURCES.get(hl.source, ""), "fuzzy_confusions": hl.fuzzy_confusions,
                  "max_edits": hl.max_edits}
        event = _list_event("hotlist.upsert", hl.list_id, **fields)
        principal = await self._gate.admit(context, Permission.HOTLIST_MANAGE, event=event)
        return list_to_pb(await self._lists.upsert(principal, hl.list_id, hl.owner, fields, event))

    async def ListLists(self, request, context):  # noqa: N802
        principal = await self._gate.admit(context, Permission.ALERTS_VIEW, Permission.HOTLIST_MANAGE)
        docs = await self._store.lists(principal.agency_id)
        return hotlist_pb2.ListListsResponse(lists=[list_to_pb(d) for d in docs])

    async def ImportList(self, request_iterator, context):  # noqa: N802
        event = audit_pb2.AuditEvent(action="hotlist.import")
        principal = await self._gate.admit(context, Permission.HOTLIST_MANAGE, event=event)
        doc: dict[str, Any] | None = None
        fmt, data, size = None, [], 0
        async for chunk in request_iterator:
            if doc is None:  # the first chunk names the list: refuse before reading the rest of the file
                event = _list_event("hotlist.import", chunk.list_id)
                doc = await self._lists.owned_list(chunk.list_id, principal, event)
                fmt = _FORMATS.get(chunk.format)
            size += len(chunk.data)
            if size > self._lists.max_import_bytes:  # stop reading: the use case refuses it
                break
            data.append(chunk.data)
        if doc is None:
            raise Rejected(Code.INVALID_ARGUMENT, "empty import: the first chunk names the list")
        imported = await self._lists.import_file(principal, doc, fmt, b"".join(data), event, size)
        rejected = imported.parsed.rejected
        return hotlist_pb2.ImportListResponse(
            list=list_to_pb(imported.doc), accepted=len(imported.parsed.entries), rejected_count=len(rejected),
            rejected=[hotlist_pb2.RejectedLine(line_number=n, reason=r) for n, r in rejected[:MAX_REJECTIONS_LISTED]])

    async def AddEntry(self, request, context):  # noqa: N802
        event = _list_event("hotlist.entry.add", request.entry.list_id)
        principal = await self._gate.admit(context, Permission.HOTLIST_MANAGE, event=event)
        entry, version = await self._lists.add_entry(principal, request.entry.list_id,
                                                     entry_fields_from_pb(request.entry), request.entry.entry_id,
                                                     event)
        return hotlist_pb2.AddEntryResponse(entry=entry_to_pb(entry), list_version=version)

    async def RemoveEntry(self, request, context):  # noqa: N802
        event = _list_event("hotlist.entry.remove", request.list_id, entry_id=request.entry_id[:128])
        principal = await self._gate.admit(context, Permission.HOTLIST_MANAGE, event=event)
        removed = await self._lists.remove_entry(principal, request.list_id, request.entry_id, event)
        return hotlist_pb2.RemoveEntryResponse(removed=removed)

    async def BackSearch(self, request, context):  # noqa: N802
        named = [e[:128] for e in request.entry_ids[:MAX_BACKSEARCH_ENTRIES]]
        event = _list_event("hotlist.backsearch", request.list_id, entry_ids=named)
        event.purpose, event.case_number = purpose_name(request.purpose), request.case_number[:64]
        principal = await self._gate.admit(context, Permission.HOTLIST_MANAGE, event=event)
        agencies = (await self._sharing.load()).read_agencies(principal.agency_id)
        result = await self._lists.back_search(principal, request.list_id, list(request.entry_ids), request.purpose,
                                               request.case_number, event, agencies, self._reads, self._raiser)
        return hotlist_pb2.BackSearchResponse(historical_alerts=result.alerts, truncated=result.truncated)


def _accepts(req: hotlist_pb2.SubscribeAlertsRequest):
    agencies, cameras, lists = set(req.agency_ids), set(req.camera_ids), set(req.list_ids)

    def accept(alert: hotlist_pb2.Alert) -> bool:
        return ((not agencies or alert.agency_id in agencies)
                and (not cameras or alert.read.camera_id in cameras)
                and (not lists or alert.entry.list_id in lists))

    mongo_filter: dict[str, Any] = {}
    if agencies:
        mongo_filter["agency_id"] = {"$in": sorted(agencies)}
    if cameras:
        mongo_filter["camera_id"] = {"$in": sorted(cameras)}
    if lists:
        mongo_filter["list_id"] = {"$in": sorted(lists)}
    return accept, mongo_filter


class AlertServicer(hotlist_pb2_grpc.AlertServiceServicer):
    def __init__(self, desk: AlertDesk, store: HotlistStore, bus: AlertBus, gate: AccessGate, replay_max: int):
        self._desk = desk
        self._store = store
        self._bus = bus
        self._gate = gate
        self._replay_max = replay_max

    async def SubscribeAlerts(self, request, context) -> AsyncIterator[hotlist_pb2.Alert]:  # noqa: N802
        principal = await self._gate.admit(context, Permission.ALERTS_VIEW)
        if set(request.agency_ids) - {principal.agency_id}:
            raise Rejected(Code.PERMISSION_DENIED,
                           "alerts of other agencies are not available: filter on your own agency or none")
        scoped = hotlist_pb2.SubscribeAlertsRequest()
        scoped.CopyFrom(request)
        scoped.agency_ids[:] = [principal.agency_id]
        accept, mongo_filter = _accepts(scoped)
        with self._bus.subscribe(accept) as sub:  # subscribed before the replay: nothing falls in between
            replayed: set[str] = set()
            if request.HasField("replay_since"):
                since = request.replay_since.ToDatetime(tzinfo=UTC)
                for doc in await self._store.alerts_since(since, mongo_filter, self._replay_max):
                    replayed.add(doc["_id"])
                    try:
                        alert = alert_to_pb(doc)
                    except (KeyError, TypeError, ValueError):  # one damaged record must not end every replay
                        ALERTS_DELIVERED.labels("undecodable").inc()
                        log.error("stored alert cannot be decoded: skipped in replay", extra={"alert_id": doc["_id"]})
                        continue
                    yield alert
                    ALERTS_DELIVERED.labels("replay").inc()
            subscription = trace.Link(trace.get_current_span().get_span_context())
            while (item := await sub.queue.get()) is not None:
                alert, raised_in = item
                if alert.alert_id in replayed:
                    continue
                # A child of the trace that raised the alert, linked to this subscription's RPC span.
                span = tracer.start_span("hotlist.deliver_alert", context=raised_in, kind=trace.SpanKind.PRODUCER,
                                         links=[subscription], attributes={"sightline.alert_id": alert.alert_id})
                try:
                    yield alert
                    ALERTS_DELIVERED.labels("live").inc()
                finally:
                    span.end()
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            "subscriber fell too far behind; reconnect with replay_since")

    async def GetAlert(self, request, context):  # noqa: N802
        principal = await self._gate.admit(context, Permission.ALERTS_VIEW)
        return alert_to_pb(await self._desk.agency_alert(request.alert_id, principal))

    async def _responder(self, request, action: str, context) -> tuple[Principal, audit_pb2.AuditEvent]:
        """The officer taking a workflow step (the token's user) and the step's audit event."""
        event = audit_pb2.AuditEvent(action=action, subject=request.alert_id[:64])
        return await self._gate.admit(context, Permission.ALERTS_RESPOND, event=event), event

    async def RecordVerification(self, request, context):  # noqa: N802
        principal, event = await self._responder(request, "alert.verify", context)
        return alert_to_pb(await self._desk.verify(principal, request.alert_id, request.officer_id,
                                                   request.plate_matches, request.state_matches, request.note, event))

    async def RecordReconfirmation(self, request, context):  # noqa: N802
        principal, event = await self._responder(request, "alert.reconfirm", context)
        return alert_to_pb(await self._desk.reconfirm(principal, request.alert_id, request.officer_id,
                                                      request.record_active, request.note, event))

    async def RecordDisposition(self, request, context):  # noqa: N802
        principal, event = await self._responder(request, "alert.dispose", context)
        return alert_to_pb(await self._desk.dispose(principal, request.alert_id, request.officer_id,
                                                    DISPOSITION_FROM_PB.get(request.disposition), request.note, event))


async def make_spec(settings: HotlistSettings) -> ServiceSpec:
    mongo = mongo_client(settings)
    db = mongo_database(mongo, settings)
    redis = redis_client(settings)
    store = HotlistStore(db)
    active = ActiveLists(redis, settings.hotlist_key_prefix)
    bus = AlertBus(redis, settings.alert_channel, settings.subscriber_queue)
    audit = AuditClient(settings.audit_address, settings.audit_timeout_s,
                        service_signer(settings.service_name, settings), settings)
    raiser = AlertRaiser(store, bus, audit)
    backsearch = BackSearch(db, settings.backsearch_max_alerts, settings.backsearch_timeout_ms)
    sharing = SharingDirectory(db, settings.sharing_refresh_s)
    gate = AccessGate(token_verifier(settings, redis), audit)
    lists = HotLists(store, active, gate, WildcardPolicy(settings.wildcard_min_fixed, settings.wildcard_max_per_list),
                     settings.max_import_bytes)
    hotlists = HotlistServicer(lists, store, backsearch, raiser, sharing, gate)
    alerts = AlertServicer(AlertDesk(store, gate), store, bus, gate, settings.replay_max)

    async def start_up() -> None:
        await retry_until_done("mongodb indexes", store.ensure_indexes)
        await retry_until_done("list reconciliation", lambda: reconcile(store, active))
        if settings.matcher_enabled:
            await StreamMatcher(redis, settings, IndexSync(active, MatchIndex()), raiser, sharing).run()

    def register(server: grpc.aio.Server) -> None:
        hotlist_pb2_grpc.add_HotlistServiceServicer_to_server(hotlists, server)
        hotlist_pb2_grpc.add_AlertServiceServicer_to_server(alerts, server)

    return ServiceSpec(
        service_names=[hotlist_pb2.DESCRIPTOR.services_by_name[n].full_name
                       for n in ("HotlistService", "AlertService")],
        register=register,
        dependencies=[mongo_dependency(mongo), redis_dependency(redis)],
        background=[start_up, bus.run, lambda: watch_stream_backlog(redis, settings.pass_stream)],
        close=[audit.close, redis.aclose, mongo.close],
    )
