"""gRPC adapter of the search service: purpose-bound, audited before it answers, fail closed.

Each RPC: verify the caller's token and role, check the purpose, case number and agency scope, run the
query, write the audit entry (full query terms, purpose, case number, result count), and only then answer.
Refusals by a known caller are audited too. When the audit trail cannot be written the call fails with
UNAVAILABLE and returns nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf.json_format import MessageToDict

from services.audit.client import AccessGate, AuditClient
from services.common.auth import Permission, Principal, token_verifier
from services.common.data_keys import DataKeySettings, KeyStore, load_master_key
from services.common.grpc_server import ServiceSpec, retry_until_done
from services.common.plates import fold_plate_input, normalize_plate
from services.common.purpose import Access, check_access, purpose_name
from services.common.reads import document_to_read
from services.common.rejected import Rejected
from services.common.service_tokens import service_signer
from services.common.storage import mongo_client, mongo_database, mongo_dependency, redis_client, redis_dependency
from services.search.adapters.indexes import ensure_search_indexes
from services.search.adapters.reads import ReadStore
from services.search.service_layer.searches import Searches
from services.search.settings import SearchSettings
from sightline.audit.v1 import audit_pb2
from sightline.search.v1 import search_pb2, search_pb2_grpc

log = logging.getLogger(__name__)

def _query_plates(request: Any) -> list[str]:
    """The whole plate a request names, for review by plate (patterns name none)."""
    has_plate = "plate_query" in request.DESCRIPTOR.oneofs_by_name
    kind = request.WhichOneof("plate_query") if has_plate else None
    text = getattr(request, kind) if kind in ("plate_exact", "plate_fuzzy") else ""
    return [p] if (p := normalize_plate(fold_plate_input(text))) else []


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, searches: Searches, gate: AccessGate):
        self._searches = searches
        self._gate = gate

    async def _admit(self, context, permission: Permission, request: Any, action: str,
                     include_partners: bool) -> tuple[Principal, Access, audit_pb2.AuditEvent]:
        """The caller, allowed `permission` for the request's purpose and case number, the agencies it may
        search, and the audit event the use case completes; refusals audited."""
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

    async def SearchReads(self, request, context):  # noqa: N802 - gRPC method name
        principal, access, event = await self._admit(context, Permission.SEARCH, request, "search",
                                                     request.include_partner_agencies)
        page = await self._searches.search_reads(principal, access, request, event)
        return search_pb2.SearchReadsResponse(reads=[document_to_read(d) for d in page.reads],
                                              next_page_token=page.next_page_token)

    async def FindConvoy(self, request, context):  # noqa: N802
        principal, access, event = await self._admit(context, Permission.CONVOY, request, "convoy", False)
        event.plates[:] = [p] if (p := normalize_plate(fold_plate_input(request.plate))) else []
        convoy = await self._searches.find_convoy(principal, access, request, event)
        response = search_pb2.FindConvoyResponse(sightings=convoy.sightings)
        for doc in convoy.companions:
            companion = response.companions.add(plate_normalized=doc["_id"], camera_count=doc["n"],
                                                sighting_count=doc["sightings"], camera_ids=sorted(doc["cameras"]))
            companion.first_seen.FromDatetime(doc["first"])
            companion.last_seen.FromDatetime(doc["last"])
        return response

    async def GetRead(self, request, context):  # noqa: N802
        principal, access, event = await self._admit(context, Permission.SEARCH, request, "read.view",
                                                     request.include_partner_agencies)
        return document_to_read(await self._searches.get_read(principal, access, str(request.read_id), event))

    async def GetImage(self, request, context):  # noqa: N802
        principal, access, event = await self._admit(context, Permission.VIEW_IMAGES, request, "image.view",
                                                     request.include_partner_agencies)
        doc, data = await self._searches.get_image(principal, access, str(request.image_ref), event)
        return search_pb2.GetImageResponse(image_ref=doc["_id"], content_type=doc["content_type"], data=data)


async def make_spec(settings: SearchSettings) -> ServiceSpec:
    mongo = mongo_client(settings)
    db = mongo_database(mongo, settings)
    audit = AuditClient(settings.audit_address, settings.audit_timeout_s,
                        service_signer(settings.service_name, settings), settings)
    redis = redis_client(settings)
    key_settings = DataKeySettings()
    keys = KeyStore(db, load_master_key(key_settings), key_settings.data_key_cache_s)
    gate = AccessGate(token_verifier(settings, redis), audit)
    searches = Searches(ReadStore(db, keys, settings.query_timeout_ms), gate, settings.default_page_size,
                        settings.max_page_size)
    servicer = SearchServicer(searches, gate)


    return ServiceSpec(
        service_names=[search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name],
        register=lambda server: search_pb2_grpc.add_SearchServiceServicer_to_server(servicer, server),
        dependencies=[mongo_dependency(mongo), redis_dependency(redis), audit.dependency()],
        background=[lambda: retry_until_done("search indexes", lambda: ensure_search_indexes(db))],
        close=[audit.close, redis.aclose, mongo.close],
    )
