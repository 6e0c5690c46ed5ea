"""Publishes passes (previews and finals) on the pass stream, each with the trace context of its own publish."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.propagate import inject
from redis.typing import EncodableT, FieldT

from sightline.common.v1 import pass_pb2

tracer = trace.get_tracer(__name__)


class PassPublisher:
    def __init__(self, client: aioredis.Redis, stream: str, maxlen: int):
        self._client = client
        self._stream = stream
        self._maxlen = maxlen

    async def publish(self, passes: Sequence[tuple[pass_pb2.VehiclePass, Context | None]]) -> None:
        """One stream entry per pass, in one round trip. Each pass gets a producer span under its own parent
        context (None: the current one), whose trace context its entry carries."""
        current = context.get_current()
        spans = []
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for p, parent in passes:
                    span = tracer.start_span("redis.xadd", context=parent or current, kind=trace.SpanKind.PRODUCER,
                                             attributes={"db.system": "redis", "sightline.pass_id": p.pass_id,
                                                         "messaging.destination.name": self._stream})
                    spans.append(span)
                    carrier: dict[str, str] = {}
                    inject(carrier, context=trace.set_span_in_context(span))
                    stage = pass_pb2.PassStage.Name(p.stage).removeprefix("PASS_STAGE_").lower()
                    fields: dict[FieldT, EncodableT] = {"pass_id": p.pass_id, "agency_id": p.agency_id,
                                                        "camera_id": p.camera_id, "stage": stage,
                                                        "pass": p.SerializeToString()}
                    fields.update(carrier)
                    pipe.xadd(self._stream, fields, maxlen=self._maxlen, approximate=True)
                await pipe.execute()
        finally:
            for span in spans:
                span.end()
