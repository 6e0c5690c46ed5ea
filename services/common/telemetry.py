"""OpenTelemetry tracing and Prometheus metrics.

Configured by the standard OTEL_* variables: spans are exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT
(or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; otherwise spans still exist so logs carry trace ids.
Call `setup_telemetry` before building a grpc.aio server or channel: the instrumentors patch them.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer, filters
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from prometheus_client import start_http_server

# Readiness probes (gRPC health, and the Triton model-ready check behind ingest's health) are not traced.
_HEALTH_FILTER = filters.negate(filters.any_of(
    filters.service_name("grpc.health.v1.Health"),
    filters.full_method_name("/inference.GRPCInferenceService/ModelReady"),
))


def _otlp_exporter() -> SpanExporter | None:
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def setup_telemetry(service: str, metrics_port: int = 0) -> TracerProvider:
    """Install the global tracer provider, instrument grpc.aio, and serve /metrics when a port is given."""
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", service)})
    provider = TracerProvider(resource=resource)
    exporter = _otlp_exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    GrpcAioInstrumentorServer(filter_=_HEALTH_FILTER).instrument()  # type: ignore[no-untyped-call]
    GrpcAioInstrumentorClient(filter_=_HEALTH_FILTER).instrument()  # type: ignore[no-untyped-call]
    if metrics_port:
        start_http_server(metrics_port)
    return provider
