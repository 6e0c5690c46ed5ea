"""gRPC adapter of the search service: purpose-bound, audited before it answers, fail closed.

Each RPC: verify the caller's token and role, check the purpose, case number and agency scope, run the
query, write the audit entry (full query terms, purpose, case number, result count), and only then answer.
Refusals by a known caller are audited too. When the audit trail cannot be written the call fails with
UNAVAILABLE and returns nothing.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from prometheus_client import Histogram
from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ExecutionTimeout, PyMongoError

from services.audit.client import AccessGate, AuditClient
from services.common.auth import Permission, Principal, token_verifier
from services.common.data_keys import DataKeySettings, KeyShredded, KeyStore, load_master_key
from services.common.grpc_server import ServiceSpec, retry_until_done
from services.common.logging import redact_plate
from services.common.plates import fold_plate_input, normalize_plate
from services.common.purpose import Access, check_access, purpose_name
from services.common.reads import IMAGES, READS, document_to_read
from services.common.rejected import Rejected
from services.common.service_tokens import service_signer
from services.common.storage import mongo_client, mongo_database, mongo_dependency, redis_client, redis_dependency
from services.search.adapters.indexes import ensure_search_indexes
from services.search.domain.convoy import MAX_SIGHTINGS, build_convoy_query, companions_pipeline
from services.search.domain.query import InvalidQuery, PageToken, build_query, scoped
from services.search.settings import SearchSettings
from sightline.audit.v1 import audit_pb2
from sightline.search.v1 import search_pb2, search_pb2_grpc

log = logging.getLogger(__name__)

SEARCH_SECONDS = Histogram("sightline_search_seconds", "SearchReads latency", ["kind"],
                           buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
AUDIT_SECONDS = Histogram("sightline_search_audit_seconds", "Audit write per search",
                          buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))


def _query_plates(request: Any) -> list[str]:
    """The whole plate a request names, for review by plate (patterns name none)."""
    has_plate = "plate_query" in request.DESCRIPTOR.oneofs_by_name
    kind = request.WhichOneof("plate_query") if has_plate else None
    text = getattr(request, kind) if kind in ("plate_exact", "plate_fuzzy") else ""
    return [p] if (p := normalize_plate(fold_plate_input(text))) else []


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, settings: SearchSettings, db: AsyncDatabase, verifier, audit: AuditClient, keys: KeyStore):
        self._settings = settings
        self._db = db
        self._keys = keys
        self._gate = AccessGate(verifier, audit)

    # --- the access sequence shared by every RPC ----------------------------------------------------------

    async def _record(self, context, principal: Principal, event: audit_pb2.AuditEvent) -> None:
        with AUDIT_SECONDS.time():
            await self._gate.record(principal, event)

    async def _admit(self, context, permission: Permission, request: Any, action: str,
                     include_partners: bool) -> tuple[Principal, Access, audit_pb2.AuditEvent]:
        event = audit_pb2.AuditEvent(action=action, purpose=purpose_name(request.purpose),
                                     case_number=request.case_number[:64], plates=_query_plates(request))
        event.details.update({"request": MessageToDict(request, preserving_proto_field_name=True)})
        principal = await self._gate.admit(context, permission, event=event)
        try:
            access = check_access(principal, request.purpose, request.case_number, include_partners)
        except Rejected as exc:
            await self._gate.deny(principal, event, exc)
        event.data_agency_ids.extend(access.agencies)
        return principal, access, event

    # --- RPCs -----------------------------------------------------------------------------------------------

    async def SearchReads(self, request, context):  # noqa: N802 - gRPC method name
        principal, access, event = await self._admit(context, Permission.SEARCH, request, "search",
                                                     request.include_partner_agencies)
        try:
            query = build_query(request, self._settings.default_page_size, self._settings.max_page_size)
        except InvalidQuery as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        kind = request.WhichOneof("plate_query") or "attributes"
        with SEARCH_SECONDS.labels(kind).time():
            docs = await self._run(context, lambda: self._db[READS].find(scoped(query.filter, access.agencies))
                                   .sort([("captured_at", DESCENDING), ("_id", DESCENDING)])
                                   .limit(query.page_size + 1)
                                   .max_time_ms(self._settings.query_timeout_ms).to_list(None))
        page = await self._keys.open_reads(docs[: query.page_size])
        event.outcome, event.result_count = audit_pb2.OUTCOME_ALLOWED, len(page)
        await self._record(context, principal, event)
        log.info("search", extra={"kind": kind, "plate": redact_plate(event.plates[0] if event.plates else ""),
                                  "results": len(page), "partner": access.partner})
        response = search_pb2.SearchReadsResponse(reads=[document_to_read(d) for d in page])
        if len(docs) > query.page_size:
            last = docs[query.page_size - 1]
            response.next_page_token = PageToken(last["captured_at"], last["_id"]).encode()
        return response

    async def FindConvoy(self, request, context):  # noqa: N802
        principal, access, event = await self._admit(context, Permission.CONVOY, request, "convoy", False)
        event.plates[:] = [p] if (p := normalize_plate(fold_plate_input(request.plate))) else []
        try:
            q = build_convoy_query(request, access.agencies)
        except InvalidQuery as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        timeout = self._settings.query_timeout_ms
        with SEARCH_SECONDS.labels("convoy").time():
            sightings = await self._run(context, lambda: self._db[READS].find(q.sightings_filter,
                                                                                {"camera_id": 1, "captured_at": 1})
                                        .sort("captured_at", DESCENDING).limit(MAX_SIGHTINGS)
                                        .max_time_ms(timeout).to_list(None))
            found: list[dict[str, Any]] = []
            if sightings:
                pipeline = companions_pipeline(q, [(s["camera_id"], s["captured_at"]) for s in sightings],
                                               access.agencies)

                async def aggregate() -> list[dict[str, Any]]:
                    cursor = await self._db[READS].aggregate(pipeline, maxTimeMS=timeout)
                    return await cursor.to_list(None)

                found = await self._run(context, aggregate)
        event.outcome, event.result_count = audit_pb2.OUTCOME_ALLOWED, len(found)
        await self._record(context, principal, event)
        response = search_pb2.FindConvoyResponse(sightings=len(sightings))
        for doc in found:
            companion = response.companions.add(plate_normalized=doc["_id"], camera_count=doc["n"],
                                                sighting_count=doc["sightings"], camera_ids=sorted(doc["cameras"]))
            companion.first_seen.FromDatetime(doc["first"])
            companion.last_seen.FromDatetime(doc["last"])
        return response

    async def GetRead(self, request, context):  # noqa: N802
        principal, access, event = await self._admit(context, Permission.SEARCH, request, "read.view",
                                                     request.include_partner_agencies)
        if not request.read_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "read_id is required")
        event.subject = request.read_id[:128]
        doc = await self._run(context, lambda: self._db[READS].find_one(
            scoped({"_id": str(request.read_id)}, access.agencies)))
        if doc is not None:
            event.plates[:] = [doc.get("plate_normalized", "")] if doc.get("plate_normalized") else []
        event.outcome, event.result_count = audit_pb2.OUTCOME_ALLOWED, int(doc is not None)
        await self._record(context, principal, event)
        if doc is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such read (it may have expired)")
        return document_to_read((await self._keys.open_reads([doc]))[0])

    async def GetImage(self, request, context):  # noqa: N802
        principal, access, event = await self._admit(context, Permission.VIEW_IMAGES, request, "image.view",
                                                     request.include_partner_agencies)
        if not request.image_ref:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "image_ref is required")
        event.subject = request.image_ref[:128]
        # The image belongs to whichever agency's read references it.
        owner = await self._run(context, lambda: self._db[READS].find_one(
            scoped({"image_ref": str(request.image_ref)}, access.agencies), {"_id": 1}))
        doc = None
        if owner is not None:
            doc = await self._run(context, lambda: self._db[IMAGES].find_one({"_id": str(request.image_ref)}))
        data = None
        if doc is not None:
            with contextlib.suppress(KeyShredded):  # its retention ended: the same as deleted
                data = await self._keys.open_image(doc)
        event.outcome, event.result_count = audit_pb2.OUTCOME_ALLOWED, int(data is not None)
        await self._record(context, principal, event)
        if doc is None or data is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such image (it may have expired)")
        return search_pb2.GetImageResponse(image_ref=doc["_id"], content_type=doc["content_type"], data=data)

    async def _run(self, context, query):
        try:
            return await query()
        except ExecutionTimeout:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "query took too long: narrow it")
        except PyMongoError as exc:
            log.warning("search failed", extra={"error": repr(exc)[:200]})
            await context.abort(grpc.StatusCode.UNAVAILABLE, "read store unavailable")


async def make_spec(settings: SearchSettings) -> ServiceSpec:
    mongo = mongo_client(settings)
    db = mongo_database(mongo, settings)
    audit = AuditClient(settings.audit_address, settings.audit_timeout_s,
                        service_signer(settings.service_name, settings), settings)
    redis = redis_client(settings)
    key_settings = DataKeySettings()
    keys = KeyStore(db, load_master_key(key_settings), key_settings.data_key_cache_s)
    servicer = SearchServicer(settings, db, token_verifier(settings, redis), audit, keys)


    return ServiceSpec(
        service_names=[search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name],
        register=lambda server: search_pb2_grpc.add_SearchServiceServicer_to_server(servicer, server),
        dependencies=[mongo_dependency(mongo), redis_dependency(redis), audit.dependency()],
        background=[lambda: retry_until_done("search indexes", lambda: ensure_search_indexes(db))],
        close=[audit.close, redis.aclose, mongo.close],
    )
