"""Fail closed: with the audit service stopped, a search answers UNAVAILABLE and returns nothing.

Runs its own audit and search processes (a second LocalStack on the shared mongod, Redis and keys, with its own audit
database: the audit service is its trail's only writer) so that the session's stack keeps its audit service
running for the other tests.
"""

from __future__ import annotations

import uuid

import grpc
import pytest

from services.common.auth import auth_metadata
from services.devstack.stack import LocalStack, Ports
from sightline.search.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.e2e


@pytest.fixture
def private_stack(stack: LocalStack, mongo_uri: str, redis_url: str, tmp_path):
    own = LocalStack(tmp_path / "stack", Ports.free())
    own.env.update({"SIGHTLINE_MONGO_URI": mongo_uri, "SIGHTLINE_REDIS_URL": redis_url,
                    "SIGHTLINE_DATA_DIR": stack.env["SIGHTLINE_DATA_DIR"],
                    "SIGHTLINE_AUDIT_ADDRESS": own.address("audit"), "SIGHTLINE_DRAIN_SECONDS": "0",
                    "SIGHTLINE_AUDIT_MONGO_DB": f"audit_down_{uuid.uuid4().hex[:8]}"})
    # Its own audit database, which the audit service's user has no rights on: the administrator's connection.
    own.start_service("audit", SIGHTLINE_MONGO_URI=mongo_uri)
    own.start_service("search")
    yield own
    own.stop()


async def test_search_fails_closed_when_the_audit_service_is_down(private_stack: LocalStack, tokens,
                                                                  channel_factory) -> None:
    search = search_pb2_grpc.SearchServiceStub(channel_factory(private_stack.address("search")))
    request = search_pb2.SearchReadsRequest(plate_exact="ACC0123", purpose=search_pb2.PURPOSE_HOMICIDE,
                                            case_number="HOM-DOWN")
    md = auth_metadata(await tokens("officer"))
    await search.SearchReads(request, metadata=md)  # audit up: answered
    private_stack.procs["audit"].stop()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await search.SearchReads(request, metadata=md)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "audit" in err.value.details()
