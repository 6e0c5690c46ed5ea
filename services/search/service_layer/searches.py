"""Use cases of search: search reads, find a convoy, view one read, view one image.

The caller was admitted and its purpose, case number and agency scope checked (`Access`) by the entrypoint.
Each use case runs its query within that scope, writes the audit event (query terms, purpose, case number,
result count) and only then returns: when the trail cannot be written the Auditor raises and nothing is
answered. Refusals are raised as `Rejected`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import Histogram

from services.audit.client import Auditor
from services.common.auth import Principal
from services.common.data_keys import KeyShredded
from services.common.logging import redact_plate
from services.common.plates import InvalidQuery
from services.common.purpose import Access
from services.common.rejected import Code, Rejected
from services.search.adapters.reads import ReadStore
from services.search.domain.convoy import MAX_SIGHTINGS, build_convoy_query, companions_pipeline
from services.search.domain.query import PageToken, build_query, scoped
from sightline.audit.v1 import audit_pb2
from sightline.search.v1 import search_pb2

log = logging.getLogger(__name__)
SEARCH_SECONDS = Histogram("sightline_search_seconds", "SearchReads latency", ["kind"],
                           buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
AUDIT_SECONDS = Histogram("sightline_search_audit_seconds", "Audit write per search",
                          buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))


@dataclass(frozen=True)
class Page:
    reads: list[dict[str, Any]]  # opened
    next_page_token: str


@dataclass(frozen=True)
class Convoy:
    sightings: int
    companions: list[dict[str, Any]]


class Searches:
    def __init__(self, reads: ReadStore, auditor: Auditor, default_page_size: int, max_page_size: int):
        self._reads = reads
        self._auditor = auditor
        self._default_page_size = default_page_size
        self._max_page_size = max_page_size

    async def _answer(self, principal: Principal, event: audit_pb2.AuditEvent, count: int) -> None:
        event.outcome, event.result_count = audit_pb2.OUTCOME_ALLOWED, count
        with AUDIT_SECONDS.time():
            await self._auditor.record(principal, event)

    async def search_reads(self, principal: Principal, access: Access, request: search_pb2.SearchReadsRequest,
                           event: audit_pb2.AuditEvent) -> Page:
        try:
            query = build_query(request, self._default_page_size, self._max_page_size)
        except InvalidQuery as exc:
            raise Rejected(Code.INVALID_ARGUMENT, str(exc)) from exc
        kind = request.WhichOneof("plate_query") or "attributes"
        with SEARCH_SECONDS.labels(kind).time():
            docs = await self._reads.newest(scoped(query.filter, access.agencies), query.page_size + 1)
        page = await self._reads.keys.open_reads(docs[: query.page_size])
        await self._answer(principal, event, len(page))
        log.info("search", extra={"kind": kind, "plate": redact_plate(event.plates[0] if event.plates else ""),
                                  "results": len(page), "partner": access.partner})
        token = ""
        if len(docs) > query.page_size:
            last = docs[query.page_size - 1]
            token = PageToken(last["captured_at"], last["_id"]).encode()
        return Page(page, token)

    async def find_convoy(self, principal: Principal, access: Access, request: search_pb2.FindConvoyRequest,
                          event: audit_pb2.AuditEvent) -> Convoy:
        try:
            q = build_convoy_query(request, access.agencies)
        except InvalidQuery as exc:
            raise Rejected(Code.INVALID_ARGUMENT, str(exc)) from exc
        with SEARCH_SECONDS.labels("convoy").time():
            sightings = await self._reads.sightings(q.sightings_filter, MAX_SIGHTINGS)
            found: list[dict[str, Any]] = []
            if sightings:
                found = await self._reads.aggregate(companions_pipeline(
                    q, [(s["camera_id"], s["captured_at"]) for s in sightings], access.agencies))
        await self._answer(principal, event, len(found))
        return Convoy(len(sightings), found)

    async def get_read(self, principal: Principal, access: Access, read_id: str,
                       event: audit_pb2.AuditEvent) -> dict[str, Any]:
        if not read_id:
            raise Rejected(Code.INVALID_ARGUMENT, "read_id is required")
        event.subject = read_id[:128]
        doc = await self._reads.read(scoped({"_id": read_id}, access.agencies))
        if doc is not None and doc.get("plate_normalized"):
            event.plates[:] = [doc["plate_normalized"]]
        await self._answer(principal, event, int(doc is not None))
        if doc is None:
            raise Rejected(Code.NOT_FOUND, "no such read (it may have expired)")
        return (await self._reads.keys.open_reads([doc]))[0]

    async def get_image(self, principal: Principal, access: Access, image_ref: str,
                        event: audit_pb2.AuditEvent) -> tuple[dict[str, Any], bytes]:
        if not image_ref:
            raise Rejected(Code.INVALID_ARGUMENT, "image_ref is required")
        event.subject = image_ref[:128]
        # The image belongs to whichever agency's read references it.
        owner = await self._reads.read(scoped({"image_ref": image_ref}, access.agencies), {"_id": 1})
        doc = await self._reads.image(image_ref) if owner is not None else None
        data = None
        if doc is not None:
            with contextlib.suppress(KeyShredded):  # its retention ended: the same as deleted
                data = await self._reads.keys.open_image(doc)
        await self._answer(principal, event, int(data is not None))
        if doc is None or data is None:
            raise Rejected(Code.NOT_FOUND, "no such image (it may have expired)")
        return doc, data
