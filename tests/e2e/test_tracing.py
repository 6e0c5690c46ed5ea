"""One frame, one trace: camera -> ingest (Triton, MongoDB, Redis) -> tracker (the vehicle pass) -> hotlist
matcher -> alert delivery.

Every process of a stack of its own exports OTLP to receivers in this test (gRPC for the services, HTTP for
Triton); the test checks the trace's shape and prints it as a tree.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import inject
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from services.common.auth import auth_metadata
from services.common.tls import secure_channel
from services.devstack.servers import free_port
from services.devstack.stack import LocalStack, Ports
from services.devstack.tokens import dev_token
from services.ingest.client import register_camera
from services.simulator.render import SceneOptions, render_scene
from sightline.hotlist.v1 import hotlist_pb2, hotlist_pb2_grpc
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc

pytestmark = pytest.mark.e2e

CAMERA = "trace-cam"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every exported span with its service name. Runs in threads, apart from the test's event loop."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []
        self._lock = threading.Lock()

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self._lock:
            for resource_spans in request.resource_spans:
                service = next((a.value.string_value for a in resource_spans.resource.attributes
                                if a.key == SERVICE_NAME), "?")
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((service, span) for span in scope_spans.spans)

    def Export(self, request, context):  # noqa: N802 - gRPC method name
        self.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id: bytes) -> list[tuple[str, Span]]:
        with self._lock:
            return [(svc, s) for svc, s in self.spans if s.trace_id == trace_id]


def _hex_ids_to_base64(value):
    """OTLP/JSON writes trace and span ids in hex where protobuf's JSON mapping expects base64."""
    if isinstance(value, list):
        return [_hex_ids_to_base64(v) for v in value]
    if isinstance(value, dict):
        return {k: base64.b64encode(bytes.fromhex(v)).decode() if k in _ID_FIELDS and v else _hex_ids_to_base64(v)
                for k, v in value.items()}
    return value


_ID_FIELDS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


def http_receiver(collector: Collector) -> ThreadingHTTPServer:
    """OTLP/HTTP (protobuf) on /v1/traces, which is how Triton exports."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keeps the exporter's connection open, as a collector does

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if "json" in self.headers.get("Content-Type", ""):
                collector.add(json_format.ParseDict(_hex_ids_to_base64(json.loads(body)),
                                                    trace_service_pb2.ExportTraceServiceRequest(),
                                                    ignore_unknown_fields=True))
            else:
                collector.add(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, str, str]]:
    """(collector, OTLP gRPC endpoint, OTLP/HTTP traces URL)."""
    spans = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(spans, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    http = http_receiver(spans)
    yield spans, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{http.server_port}/v1/traces"
    http.shutdown()
    server.stop(0)


@pytest.fixture(scope="module")
def traced_stack(tmp_path_factory: pytest.TempPathFactory, collector) -> Iterator[LocalStack]:
    _, endpoint, http_url = collector
    stack = LocalStack(tmp_path_factory.mktemp("traced"), Ports.free())
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100"}
    try:
        stack.start_mongo()
        stack.start_redis()
        with pytest.MonkeyPatch.context() as env:  # the Triton launcher reads its settings from the environment
            env.setenv("SIGHTLINE_TRITON_TRACE_URL", http_url)
            env.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
            stack.start_triton()
        stack.env.update(otel, SIGHTLINE_DATA_DIR=str(stack.root / "data"),
                         SIGHTLINE_AUDIT_ADDRESS=stack.address("audit"))
        stack.start_service("audit")  # the camera registry audits its changes
        stack.start_service("ingest")
        stack.start_service("tracker", SIGHTLINE_TRACKER__START_ID="0", SIGHTLINE_PASS_GAP_S="1",
                            SIGHTLINE_DRAIN_SECONDS="0")
        stack.start_service("hotlist", SIGHTLINE_MATCHER__START_ID="0", SIGHTLINE_DRAIN_SECONDS="0")
        yield stack
    finally:
        stack.stop()


def camera_tracer(endpoint: str) -> TracerProvider:
    """The camera's side: its span is exported too, as the root of the trace."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: "camera (test)"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    return provider


def tree(spans: list[tuple[str, Span]]) -> str:
    by_id = {s.span_id: (svc, s) for svc, s in spans}
    children: dict[bytes, list[tuple[str, Span]]] = {}
    for svc, s in sorted(spans, key=lambda p: p[1].start_time_unix_nano):
        children.setdefault(s.parent_span_id if s.parent_span_id in by_id else b"", []).append((svc, s))
    lines: list[str] = []

    def walk(parent: bytes, depth: int) -> None:
        for svc, s in children.get(parent, []):
            ms = (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6
            lines.append(f"{'  ' * depth}{svc}: {s.name} [{Span.SpanKind.Name(s.kind).removeprefix('SPAN_KIND_')}] "
                         f"{ms:.1f} ms")
            walk(s.span_id, depth + 1)

    walk(b"", 0)
    return "\n".join(lines)


async def test_one_trace_follows_a_frame_to_its_alert(traced_stack: LocalStack, collector) -> None:
    spans, endpoint, _ = collector
    scene = render_scene(1, SceneOptions(difficulty=0.0))
    async with secure_channel(traced_stack.address("ingest")) as ingest_ch, \
            secure_channel(traced_stack.address("hotlist")) as hot_ch:
        admin = dev_token(traced_stack.root / "data", "trace-pd", ["agency_admin"])
        # Lists are managed by a supervisor, alerts received by an officer, of the camera's agency.
        supervisor = auth_metadata(dev_token(traced_stack.root / "data", "trace-pd", ["supervisor"]))
        officer = auth_metadata(dev_token(traced_stack.root / "data", "trace-pd", ["officer"]))
        credential = await register_camera(ingest_ch, ingest_pb2.Camera(site_id="dev-site",
            camera_id=CAMERA, agency_id="trace-pd", name="traced", active=True), admin)
        # A first frame, untraced by the camera (Triton still traces it, at rate 1), shows Triton's exporter
        # delivering before the frame under test: Triton exports from its own process, in batches.
        warm = ingest_pb2.Frame(camera_id=CAMERA, frame_id="warm-up", jpeg=render_scene(2, SceneOptions()).jpeg)
        warm.captured_at.FromDatetime(datetime.now(UTC) - timedelta(seconds=5))
        warm_ack = await ingest_pb2_grpc.IngestServiceStub(ingest_ch).SubmitFrame(warm, metadata=credential,
                                                                                 timeout=120)
        assert warm_ack.status == ingest_pb2.FRAME_STATUS_STORED, warm_ack.error_message
        for _ in range(150):  # 30 s at most
            if any(svc == "triton" for svc, _ in spans.spans):
                break
            await asyncio.sleep(0.2)
        hot = hotlist_pb2_grpc.HotlistServiceStub(hot_ch)
        list_id = f"trace-{uuid.uuid4().hex[:8]}"
        await hot.UpsertList(hotlist_pb2.UpsertListRequest(list=hotlist_pb2.HotList(
            list_id=list_id, name="traced", source=hotlist_pb2.LIST_SOURCE_AGENCY, owner="trace-pd",
            fuzzy_confusions=True, max_edits=1)), metadata=supervisor)
        await hot.AddEntry(hotlist_pb2.AddEntryRequest(entry=hotlist_pb2.HotlistEntry(
            list_id=list_id, plate=scene.truth.plate_text, code="S", reason="stolen vehicle")), metadata=supervisor)
        alerts = hotlist_pb2_grpc.AlertServiceStub(hot_ch).SubscribeAlerts(
            hotlist_pb2.SubscribeAlertsRequest(list_ids=[list_id]), metadata=officer)
        await asyncio.sleep(1.0)  # the subscription and the matcher's index are in place

        provider = camera_tracer(endpoint)
        frame = ingest_pb2.Frame(camera_id=CAMERA, frame_id=f"f-{uuid.uuid4().hex[:6]}", jpeg=scene.jpeg)
        frame.captured_at.FromDatetime(datetime.now(UTC) - timedelta(seconds=1))
        with provider.get_tracer(__name__).start_as_current_span("camera.send_frame") as root:
            metadata: dict[str, str] = {}
            inject(metadata)
            ack = await ingest_pb2_grpc.IngestServiceStub(ingest_ch).SubmitFrame(
                frame, metadata=(*metadata.items(), *credential), timeout=120)
        provider.shutdown()
        assert ack.status == ingest_pb2.FRAME_STATUS_STORED, ack.error_message
        alert = await asyncio.wait_for(alerts.read(), 30)
        alerts.cancel()
    assert alert.read.frame_id == frame.frame_id

    trace_id = root.get_span_context().trace_id.to_bytes(16, "big")
    wanted = {"ingest": {"/sightline.ingest.v1.IngestService/SubmitFrame", "triton.infer",
                         "/inference.GRPCInferenceService/ModelInfer", "mongodb.store_frame", "redis.xadd"},
              "tracker": {"tracker.observe", "redis.xadd"},
              "hotlist": {"hotlist.match", "hotlist.deliver_alert"}}
    deadline = time.monotonic() + 60  # Triton batches its span exports (5 s by default) and may lag under load
    while time.monotonic() < deadline:
        found = spans.trace(trace_id)
        names = {(svc, s.name) for svc, s in found}
        if all((svc, n) in names for svc, ns in wanted.items() for n in ns) and "triton" in {s for s, _ in names}:
            break
        await asyncio.sleep(0.2)
    print(f"\ntrace {trace_id.hex()}\n{tree(found)}")

    def one(service: str, name: str) -> Span:
        matching = [s for svc, s in found if svc == service and s.name == name]
        assert len(matching) == 1, (service, name, tree(found))
        return matching[0]

    server = one("ingest", "/sightline.ingest.v1.IngestService/SubmitFrame")
    infer, infer_rpc = one("ingest", "triton.infer"), one("ingest", "/inference.GRPCInferenceService/ModelInfer")
    store, xadd = one("ingest", "mongodb.store_frame"), one("ingest", "redis.xadd")
    deliver = one("hotlist", "hotlist.deliver_alert")
    observes = [s for svc, s in found if svc == "tracker" and s.name == "tracker.observe"]  # one per read
    by_id = {s.span_id: s for _, s in found}
    assert server.parent_span_id == root.get_span_context().span_id.to_bytes(8, "big")
    assert infer.parent_span_id == store.parent_span_id == xadd.parent_span_id == server.span_id
    assert infer_rpc.parent_span_id == infer.span_id
    assert observes and all(o.parent_span_id == xadd.span_id and o.kind == Span.SPAN_KIND_CONSUMER
                            for o in observes)
    # The pass is published as a preview (inside tracker.observe) and when it closes (a child of its first
    # read's publish); each is matched, and the one alert is delivered once.
    matches = [s for svc, s in found if svc == "hotlist" and s.name == "hotlist.match"]
    assert matches and all(m.kind == Span.SPAN_KIND_CONSUMER for m in matches)
    for match in matches:
        publish = by_id[match.parent_span_id]
        assert publish.name == "redis.xadd" and publish.kind == Span.SPAN_KIND_PRODUCER
        assert publish.parent_span_id in {xadd.span_id, *(o.span_id for o in observes)}
    assert deliver.parent_span_id in {m.span_id for m in matches}
    triton = [s for svc, s in found if svc == "triton"]
    exported_by_triton = sum(svc == "triton" for svc, _ in spans.spans)
    assert triton, f"none of Triton's {exported_by_triton} exported spans is of this trace"
    assert any(s.parent_span_id == infer_rpc.span_id for s in triton)

    exported = {s.name for _, s in spans.spans}
    assert not {n for n in exported if "grpc.health" in n or "ModelReady" in n}, exported
