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

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import grpc
from opentelemetry import trace
from prometheus_client import Counter

from services.audit.client import AuditClient, AuditUnavailable
from services.common.auth import (
    AuthError,
    Permission,
    Principal,
    TokenVerifier,
    check_call,
    token_verifier,
)
from services.common.grpc_server import ServiceSpec, retry_until_done
from services.common.ids import valid_id
from services.common.logging import redact_plate
from services.common.metrics import watch_stream_backlog
from services.common.purpose import Refusal, check_access, purpose_name
from services.common.service_tokens import service_signer
from services.common.storage import mongo_client, mongo_database, mongo_dependency, redis_client, redis_dependency
from services.hotlist.adapters.active_lists import ActiveLists, StaleVersion
from services.hotlist.adapters.alert_bus import AlertBus
from services.hotlist.adapters.codec import (
    DISPOSITION_FROM_PB,
    SOURCES,
    alert_to_pb,
    config_of,
    entry_fields_from_pb,
    entry_from_doc,
    entry_to_pb,
    list_to_pb,
)
from services.hotlist.adapters.sharing import SharingDirectory
from services.hotlist.adapters.store import ConcurrentImport, HotlistStore
from services.hotlist.alerting import AlertRaiser
from services.hotlist.backsearch import BackSearch
from services.hotlist.domain import alerts as wf
from services.hotlist.domain.fuzzy_index import is_pattern
from services.hotlist.domain.matcher import ListIndex, MatchIndex
from services.hotlist.domain.model import entry_id_for
from services.hotlist.domain.ncic import BadFile, Rejected, WildcardPolicy, build_entry, parse
from services.hotlist.index_sync import IndexSync
from services.hotlist.settings import HotlistSettings
from services.hotlist.stream_matcher import StreamMatcher
from sightline.audit.v1 import audit_pb2
from sightline.hotlist.v1 import hotlist_pb2, hotlist_pb2_grpc

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)
MAX_REJECTIONS_LISTED = 1000
# Entries one BackSearch may name (each is listed in its audit event).
MAX_BACKSEARCH_ENTRIES = 100
_FORMATS = {hotlist_pb2.FILE_FORMAT_CSV: "csv", hotlist_pb2.FILE_FORMAT_FIXED_WIDTH: "fixed"}
ALERTS_DELIVERED = Counter("sightline_hotlist_alerts_delivered_total",
                           "Alerts sent on SubscribeAlerts streams, one per subscriber", ["mode"])


class Gate:
    """The caller of each RPC (token, permission) and the audit trail written before anything changes."""

    def __init__(self, verifier: TokenVerifier, audit: AuditClient):
        self._verifier = verifier
        self._audit = audit

    async def admit(self, context, *allowed: Permission, event: audit_pb2.AuditEvent | None = None) -> Principal:
        """The caller, holding any of `allowed`; a refusal of a known caller is audited when `event` is given."""
        refusal: AuthError | None = None
        for permission in allowed:
            try:
                return await check_call(context, self._verifier, permission)
            except AuthError as exc:
                refusal = exc
                if exc.principal is None:  # no token or a bad one: no other permission changes that
                    break
        assert refusal is not None
        if event is not None and refusal.principal is not None:
            await self.deny(context, refusal.principal, event, refusal.code, refusal.message)
        await context.abort(refusal.code, refusal.message)
        raise AssertionError("unreachable")

    async def record(self, context, principal: Principal, event: audit_pb2.AuditEvent) -> None:
        """Audits an allowed action; UNAVAILABLE (and the action is not taken) when that cannot be written."""
        event.outcome = audit_pb2.OUTCOME_ALLOWED
        try:
            await self._audit.record(event, principal.token)
        except AuditUnavailable as exc:
            log.error("audit trail unavailable: refusing", extra={"action": event.action, "error": str(exc)[:200]})
            await context.abort(grpc.StatusCode.UNAVAILABLE, "audit trail unavailable: nothing was changed")

    async def deny(self, context, principal: Principal, event: audit_pb2.AuditEvent, code: grpc.StatusCode,
                   message: str) -> None:
        """Audits the refusal (best effort) and fails the call with `code`."""
        await self._audit.record_refusal(event, principal.token, message)
        await context.abort(code, message)


def _list_event(action: str, list_id: str, **details: Any) -> audit_pb2.AuditEvent:
    event = audit_pb2.AuditEvent(action=action, subject=list_id[:128])
    event.details.update({"list_id": list_id, **details})
    return event


class HotlistServicer(hotlist_pb2_grpc.HotlistServiceServicer):
    def __init__(self, settings: HotlistSettings, store: HotlistStore, active: ActiveLists, backsearch: BackSearch,
                 raiser: AlertRaiser, sharing: SharingDirectory, gate: Gate):
        self._settings = settings
        self._store = store
        self._active = active
        self._backsearch = backsearch
        self._raiser = raiser
        self._sharing = sharing
        self._gate = gate
        self._wildcards = WildcardPolicy(settings.wildcard_min_fixed, settings.wildcard_max_per_list)

    async def _owned_list(self, list_id: str, principal: Principal, event: audit_pb2.AuditEvent,
                          context) -> dict[str, Any]:
        """The list, when the caller's agency owns it: NOT_FOUND, or PERMISSION_DENIED (audited)."""
        doc = await self._store.get_list(list_id) if list_id else None
        if doc is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no list {list_id!r}; create it with UpsertList")
        await self._check_owner(doc, principal, event, context)
        return doc

    async def _check_owner(self, doc: dict[str, Any], principal: Principal, event: audit_pb2.AuditEvent,
                           context) -> None:
        event.data_agency_ids[:] = [doc.get("owner", "")]
        if doc.get("owner") != principal.agency_id:
            await self._gate.deny(context, principal, event, grpc.StatusCode.PERMISSION_DENIED,
                                  f"list {doc['_id']!r} belongs to another agency: only its owner may change it")

    async def UpsertList(self, request, context):  # noqa: N802 - gRPC method name
        hl = request.list
        fields = {"name": hl.name, "source": SOURCES.get(hl.source, ""), "fuzzy_confusions": hl.fuzzy_confusions,
                  "max_edits": hl.max_edits}
        event = _list_event("hotlist.upsert", hl.list_id, **fields)
        principal = await self._gate.admit(context, Permission.HOTLIST_MANAGE, event=event)
        if not valid_id(hl.list_id):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "list_id must be 1-128 of A-Z a-z 0-9 . _ : -")
        if hl.max_edits not in (0, 1):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "max_edits must be 0 or 1")
        if hl.owner and hl.owner != principal.agency_id:
            await self._gate.deny(context, principal, event, grpc.StatusCode.PERMISSION_DENIED,
                                  "a list belongs to the agency that creates it: leave owner empty or set your own")
        existing = await self._store.get_list(hl.list_id)
        if existing is not None:
            await self._check_owner(existing, principal, event, context)
            event.details.update({"version": existing["version"]})
        event.details.update({"created": existing is None})
        event.data_agency_ids[:] = [principal.agency_id]
        await self._gate.record(context, principal, event)
        doc = await self._store.upsert_list(hl.list_id, principal.agency_id, fields, datetime.now(UTC))
        if doc is None:  # created by another agency since the check above
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"list {hl.list_id!r} belongs to another agency: only its owner may change it")
        if hl.list_id in (await self._active.snapshot()).versions:
            await self._active.set_config(hl.list_id, config_of(doc))
        else:
            await self._active.publish_version(hl.list_id, doc["version"], config_of(doc), [])
        return list_to_pb(doc)

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
                doc = await self._owned_list(chunk.list_id, principal, event, context)
                fmt = _FORMATS.get(chunk.format)
            size += len(chunk.data)
            if size > self._settings.max_import_bytes:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"file larger than {self._settings.max_import_bytes} bytes")
            data.append(chunk.data)
        if doc is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty import: the first chunk names the list")
        list_id = doc["_id"]
        text = b"".join(data).decode("utf-8", errors="replace")
        now = datetime.now(UTC)
        try:
            parsed = await asyncio.to_thread(parse, text.splitlines(), list_id, now, self._wildcards, fmt)
        except BadFile as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        event.details.update({"from_version": doc["version"], "version": doc["version"] + 1, "bytes": size,
                              "accepted": len(parsed.entries), "rejected": len(parsed.rejected)})
        event.result_count = len(parsed.entries)
        await self._gate.record(context, principal, event)
        try:
            doc = await self._store.replace_entries(list_id, doc["version"], parsed.entries, now)
        except ConcurrentImport as exc:
            await context.abort(grpc.StatusCode.ABORTED, str(exc))
        await self._active.publish_version(list_id, doc["version"], config_of(doc), parsed.entries)
        log.info("list imported", extra={"list_id": list_id, "version": doc["version"],
                                         "accepted": len(parsed.entries), "rejected": len(parsed.rejected)})
        return hotlist_pb2.ImportListResponse(
            list=list_to_pb(doc), accepted=len(parsed.entries), rejected_count=len(parsed.rejected),
            rejected=[hotlist_pb2.RejectedLine(line_number=n, reason=r)
                      for n, r in parsed.rejected[:MAX_REJECTIONS_LISTED]])

    async def AddEntry(self, request, context):  # noqa: N802
        event = _list_event("hotlist.entry.add", request.entry.list_id)
        principal = await self._gate.admit(context, Permission.HOTLIST_MANAGE, event=event)
        doc = await self._owned_list(request.entry.list_id, principal, event, context)
        try:
            entry = build_entry(doc["_id"], entry_fields_from_pb(request.entry), datetime.now(UTC), self._wildcards,
                                require_state=False)
            if is_pattern(entry.plate):
                self._wildcards.check_count(await self._store.partial_plates(doc["_id"], doc["version"]))
        except Rejected as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if request.entry.entry_id:
            if not valid_id(request.entry.entry_id):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "entry_id must be 1-128 of A-Z a-z 0-9 . _ : -")
            entry = replace(entry, entry_id=request.entry.entry_id)
        elif not entry.record_id:
            # Without a record id, each manual entry is its own record (two Amber alerts for one plate).
            entry = replace(entry, entry_id=entry_id_for(doc["_id"], entry.plate, entry.state, entry.code,
                                                         f"manual:{datetime.now(UTC).isoformat()}"))
        version = doc["version"]
        event.plates[:] = [entry.plate]
        event.details.update({"version": version, "entry_id": entry.entry_id, "state": entry.state,
                              "code": entry.code, "record_id": entry.record_id})
        await self._gate.record(context, principal, event)
        await self._store.add_entry(version, entry)
        try:
            await self._active.add_entry(version, entry)
        except StaleVersion as exc:
            await context.abort(grpc.StatusCode.ABORTED, f"{exc}; add the entry again")
        log.info("entry added", extra={"list_id": entry.list_id, "plate": redact_plate(entry.plate)})
        return hotlist_pb2.AddEntryResponse(entry=entry_to_pb(entry), list_version=version)

    async def RemoveEntry(self, request, context):  # noqa: N802
        event = _list_event("hotlist.entry.remove", request.list_id, entry_id=request.entry_id[:128])
        principal = await self._gate.admit(context, Permission.HOTLIST_MANAGE, event=event)
        doc = await self._owned_list(request.list_id, principal, event, context)
        event.details.update({"version": doc["version"]})
        await self._gate.record(context, principal, event)
        try:
            removed = await self._active.remove_entry(doc["_id"], doc["version"], request.entry_id)
        except StaleVersion as exc:
            await context.abort(grpc.StatusCode.ABORTED, str(exc))
        removed = await self._store.remove_entry(doc["_id"], doc["version"], request.entry_id) or removed
        return hotlist_pb2.RemoveEntryResponse(removed=removed)

    async def BackSearch(self, request, context):  # noqa: N802
        named = [e[:128] for e in request.entry_ids[:MAX_BACKSEARCH_ENTRIES]]
        event = _list_event("hotlist.backsearch", request.list_id, entry_ids=named)
        event.purpose, event.case_number = purpose_name(request.purpose), request.case_number[:64]
        principal = await self._gate.admit(context, Permission.HOTLIST_MANAGE, event=event)
        if not principal.can(Permission.SEARCH):
            await self._gate.deny(context, principal, event, grpc.StatusCode.PERMISSION_DENIED,
                                  f"a back-search is a search of reads: your roles do not allow {Permission.SEARCH}")
        doc = await self._owned_list(request.list_id, principal, event, context)
        try:
            check_access(principal, request.purpose, request.case_number, include_partners=False)
        except Refusal as exc:
            await self._gate.deny(context, principal, event, exc.code, exc.message)
        if not request.case_number.strip():
            await self._gate.deny(context, principal, event, grpc.StatusCode.INVALID_ARGUMENT,
                                  "a back-search needs the case or incident number it is made for")
        if len(request.entry_ids) > MAX_BACKSEARCH_ENTRIES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"at most {MAX_BACKSEARCH_ENTRIES} entry_ids; leave it empty to search the whole list")
        version = doc["version"]
        if request.entry_ids:
            docs = await self._store.entries_by_id(doc["_id"], version, request.entry_ids)
            if missing := set(request.entry_ids) - {d["entry_id"] for d in docs}:
                await context.abort(grpc.StatusCode.NOT_FOUND,
                                    f"no entry {sorted(missing)[0]!r} in version {version} of list {doc['_id']!r}")
        else:
            docs = [d async for d in self._store.entries(doc["_id"], version)]
        if not docs:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"list {doc['_id']!r} has no entries to search for")
        entries = [entry_from_doc(d) for d in docs]
        index = ListIndex(doc["_id"], version, config_of(doc), entries)
        agencies = (await self._sharing.load()).read_agencies(principal.agency_id)
        found = await self._backsearch.find(index, agencies)
        event.data_agency_ids[:] = agencies
        if request.entry_ids:
            event.plates[:] = sorted({e.plate for e in entries if not is_pattern(e.plate)})
        event.details.update({"version": version, "entries": len(entries), "truncated": found.truncated})
        event.result_count = found.count
        await self._gate.record(context, principal, event)
        try:
            raised = await self._raiser.raise_alerts(found.hits, historical=True, token=principal.token)
        except AuditUnavailable as exc:
            log.error("back-search hits not raised: audit trail unavailable", extra={"error": str(exc)[:200]})
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                "audit trail unavailable: the hits on partner agencies' reads were not raised")
        log.info("back-search", extra={"list_id": doc["_id"], "entries": len(entries), "hits": found.count,
                                       "alerts": raised, "partner_agencies": len(agencies) - 1})
        return hotlist_pb2.BackSearchResponse(historical_alerts=raised, truncated=found.truncated)


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
    def __init__(self, store: HotlistStore, bus: AlertBus, gate: Gate, replay_max: int):
        self._store = store
        self._bus = bus
        self._gate = gate
        self._replay_max = replay_max

    async def SubscribeAlerts(self, request, context) -> AsyncIterator[hotlist_pb2.Alert]:  # noqa: N802
        principal = await self._gate.admit(context, Permission.ALERTS_VIEW)
        if set(request.agency_ids) - {principal.agency_id}:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
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

    async def _agency_alert(self, alert_id: str, principal: Principal, context) -> dict[str, Any]:
        """The alert, when it is the caller's agency's (any other is NOT_FOUND, never shown)."""
        doc = await self._store.alert(alert_id) if alert_id else None
        if doc is None or doc.get("agency_id") != principal.agency_id:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such alert in your agency")
        return doc

    async def GetAlert(self, request, context):  # noqa: N802
        principal = await self._gate.admit(context, Permission.ALERTS_VIEW)
        return alert_to_pb(await self._agency_alert(request.alert_id, principal, context))

    async def _responder(self, request, action: str, context) -> tuple[Principal, audit_pb2.AuditEvent, dict]:
        """The officer taking a workflow step (the token's user), the alert, and the step's audit event."""
        event = audit_pb2.AuditEvent(action=action, subject=request.alert_id[:64])
        principal = await self._gate.admit(context, Permission.ALERTS_RESPOND, event=event)
        if request.officer_id and request.officer_id != principal.user_id:
            await self._gate.deny(context, principal, event, grpc.StatusCode.PERMISSION_DENIED,
                                  "officer_id must be empty or your own user id: steps are recorded as the caller")
        doc = await self._agency_alert(request.alert_id, principal, context)
        event.data_agency_ids[:] = [doc["agency_id"]]
        if plate := doc["read"].get("plate_normalized"):
            event.plates[:] = [plate]
        event.details.update({"alert_id": doc["_id"], "list_id": doc["list_id"],
                              "list_version": doc["list_version"], "entry_id": doc["entry"]["entry_id"]})
        return principal, event, doc

    async def _advance(self, doc, check, new: wf.Status, step: str, record: dict[str, Any],
                       principal: Principal, event: audit_pb2.AuditEvent, context):
        state = wf.WorkflowState(wf.Status(doc["status"]),
                                 (doc.get("verification") or {}).get("matched"),
                                 (doc.get("reconfirmation") or {}).get("record_active"))
        try:
            check(state)
        except wf.OutOfOrder as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        record = {"officer_id": principal.user_id, **record}
        event.details.update({step: record})
        await self._gate.record(context, principal, event)
        updated = await self._store.advance(doc["_id"], state.status, new, step,
                                            {**record, "at": datetime.now(UTC)})
        if updated is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the alert changed meanwhile; reload it")
        log.info("alert workflow step", extra={"alert_id": doc["_id"], "step": step,
                                               "officer_id": record["officer_id"]})
        return alert_to_pb(updated)

    async def RecordVerification(self, request, context):  # noqa: N802
        principal, event, doc = await self._responder(request, "alert.verify", context)
        record = {"plate_matches": request.plate_matches, "state_matches": request.state_matches,
                  "note": request.note, "matched": request.plate_matches and request.state_matches}
        return await self._advance(doc, wf.check_verification, wf.Status.VERIFIED, "verification", record,
                                   principal, event, context)

    async def RecordReconfirmation(self, request, context):  # noqa: N802
        principal, event, doc = await self._responder(request, "alert.reconfirm", context)
        record = {"record_active": request.record_active, "note": request.note}
        return await self._advance(doc, wf.check_reconfirmation, wf.Status.RECONFIRMED, "reconfirmation", record,
                                   principal, event, context)

    async def RecordDisposition(self, request, context):  # noqa: N802
        principal, event, doc = await self._responder(request, "alert.dispose", context)
        disposition = DISPOSITION_FROM_PB.get(request.disposition)
        if disposition is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "disposition is required")
        record = {"disposition": disposition.value, "note": request.note}
        return await self._advance(doc, lambda s: wf.check_disposition(s, disposition), wf.Status.DISPOSED,
                                   "disposition", record, principal, event, context)


async def reconcile(store: HotlistStore, active: ActiveLists) -> None:
    """Republishes any list whose version in Redis differs from MongoDB's (e.g. Redis lost its data), and
    rewrites any list's settings there that differ (e.g. written before lists carried their agency)."""
    snap = await active.snapshot()
    for doc in await store.lists():
        if snap.versions.get(doc["_id"]) != doc["version"]:
            entries = [entry_from_doc(e) async for e in store.entries(doc["_id"], doc["version"])]
            await active.publish_version(doc["_id"], doc["version"], config_of(doc), entries)
            log.info("list republished to redis", extra={"list_id": doc["_id"], "version": doc["version"]})
        elif snap.configs.get(doc["_id"]) != config_of(doc):
            await active.set_config(doc["_id"], config_of(doc))


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
    gate = Gate(token_verifier(settings, redis), audit)
    hotlists = HotlistServicer(settings, store, active, backsearch, raiser, sharing, gate)
    alerts = AlertServicer(store, bus, gate, settings.replay_max)

    async def start_up() -> None:
        await retry_until_done("mongodb indexes", store.ensure_indexes)
        await retry_until_done("list reconciliation", lambda: reconcile(store, active))
        if settings.matcher_enabled:
            await StreamMatcher(redis, settings, IndexSync(active, MatchIndex()), raiser, sharing).run()

    def register(server: grpc.aio.Server) -> None:
        hotlist_pb2_grpc.add_HotlistServiceServicer_to_server(hotlists, server)
        hotlist_pb2_grpc.add_AlertServiceServicer_to_server(alerts, server)

    async def close_redis() -> None:
        await redis.aclose()

    return ServiceSpec(
        service_names=[hotlist_pb2.DESCRIPTOR.services_by_name[n].full_name
                       for n in ("HotlistService", "AlertService")],
        register=register,
        dependencies=[mongo_dependency(mongo), redis_dependency(redis)],
        background=[start_up, bus.run, lambda: watch_stream_backlog(redis, settings.pass_stream)],
        close=[audit.close, close_redis, mongo.close],
    )
