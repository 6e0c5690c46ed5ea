"""Publishes stored reads on the Redis read stream for downstream consumers (hotlist matching)."""

from __future__ import annotations

import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.propagate import inject
from redis.typing import EncodableT, FieldT

from sightline.common.v1 import read_pb2

tracer = trace.get_tracer(__name__)


class ReadPublisher:
    def __init__(self, client: aioredis.Redis, stream: str, maxlen: int):
        self._client = client
        self._stream = stream
        self._maxlen = maxlen

    async def publish(self, reads: list[read_pb2.Read]) -> None:
        """One stream entry per read, carrying the serialised Read and the trace context of this publish."""
        with tracer.start_as_current_span("redis.xadd", kind=trace.SpanKind.PRODUCER,
                                          attributes={"db.system": "redis", "messaging.destination.name": self._stream,
                                                      "messaging.batch.message_count": len(reads)}):
            carrier: dict[str, str] = {}
            inject(carrier)
            async with self._client.pipeline(transaction=False) as pipe:
                for read in reads:
                    fields: dict[FieldT, EncodableT] = {"read_id": read.read_id, "agency_id": read.agency_id,
                                                        "camera_id": read.camera_id, "read": read.SerializeToString()}
                    fields.update(carrier)
                    pipe.xadd(self._stream, fields, maxlen=self._maxlen, approximate=True)
                await pipe.execute()
