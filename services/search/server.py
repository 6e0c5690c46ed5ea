"""gRPC adapter of the search service."""

from __future__ import annotations

import logging

import grpc
from prometheus_client import Histogram
from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ExecutionTimeout, PyMongoError

from services.common.grpc_server import ServiceSpec
from services.common.reads import IMAGES, READS, document_to_read
from services.common.storage import mongo_client, mongo_database, mongo_dependency
from services.search.domain.query import InvalidQuery, PageToken, build_query
from services.search.settings import SearchSettings
from sightline.search.v1 import search_pb2, search_pb2_grpc

log = logging.getLogger(__name__)

SEARCH_SECONDS = Histogram("sightline_search_seconds", "SearchReads latency", ["kind"],
                           buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, settings: SearchSettings, db: AsyncDatabase):
        self._settings = settings
        self._db = db

    async def SearchReads(self, request, context):  # noqa: N802 - gRPC method name
        try:
            query = build_query(request, self._settings.default_page_size, self._settings.max_page_size)
        except InvalidQuery as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        kind = request.WhichOneof("plate_query") or "attributes"
        with SEARCH_SECONDS.labels(kind).time():
            try:
                cursor = (self._db[READS].find(query.filter)
                          .sort([("captured_at", DESCENDING), ("_id", DESCENDING)])
                          .limit(query.page_size + 1)
                          .max_time_ms(self._settings.query_timeout_ms))
                docs = await cursor.to_list(None)
            except ExecutionTimeout:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "query took too long: narrow it")
            except PyMongoError as exc:
                log.warning("search failed", extra={"error": repr(exc)[:200]})
                await context.abort(grpc.StatusCode.UNAVAILABLE, "read store unavailable")
        response = search_pb2.SearchReadsResponse(reads=[document_to_read(d) for d in docs[: query.page_size]])
        if len(docs) > query.page_size:
            last = docs[query.page_size - 1]
            response.next_page_token = PageToken(last["captured_at"], last["_id"]).encode()
        return response

    async def GetRead(self, request, context):  # noqa: N802
        if not request.read_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "read_id is required")
        doc = await self._db[READS].find_one({"_id": str(request.read_id)})
        if doc is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such read (it may have expired)")
        return document_to_read(doc)

    async def GetImage(self, request, context):  # noqa: N802
        if not request.image_ref:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "image_ref is required")
        doc = await self._db[IMAGES].find_one({"_id": str(request.image_ref)})
        if doc is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such image (it may have expired)")
        return search_pb2.GetImageResponse(image_ref=doc["_id"], content_type=doc["content_type"],
                                           data=bytes(doc["data"]))


async def make_spec(settings: SearchSettings) -> ServiceSpec:
    mongo = mongo_client(settings)
    db = mongo_database(mongo, settings)
    servicer = SearchServicer(settings, db)
    return ServiceSpec(
        service_names=[search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name],
        register=lambda server: search_pb2_grpc.add_SearchServiceServicer_to_server(servicer, server),
        dependencies=[mongo_dependency(mongo)],
        close=[mongo.close],
    )


