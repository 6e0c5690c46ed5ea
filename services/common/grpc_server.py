"""gRPC server bootstrap shared by every service.

`serve()` builds a grpc.aio server with the standard health service (SERVING only while every dependency
answers), reflection, and a SIGTERM/SIGINT sequence: health NOT_SERVING, drain, `server.stop(grace)`,
close clients, flush telemetry.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.logging import setup_logging
from services.common.rejected import Code, Rejected
from services.common.settings import ServiceSettings
from services.common.telemetry import setup_telemetry
from services.common.tls import TlsError, server_credentials

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[object]]
# How long shutdown waits for cancelled background tasks (consumers, sweepers) to end.
BACKGROUND_STOP_S = 5.0


@dataclass
class Dependency:
    """A thing the service cannot work without; `check` raises (or times out) when it is unreachable."""

    name: str
    check: Check
    timeout_s: float = 2.0


@dataclass
class ServiceSpec:
    """What a service contributes to the shared bootstrap."""

    # Fully qualified gRPC service names, e.g. "sightline.ingest.v1.IngestService".
    service_names: Sequence[str]
    register: Callable[[grpc.aio.Server], None]
    dependencies: Sequence[Dependency] = ()
    # Run once after the server started (background consumers, sweepers); cancelled at shutdown.
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()
    # Awaited at shutdown after the server stopped (close clients).
    close: Sequence[Callable[[], Awaitable[object]]] = field(default_factory=list)


class HealthReporter:
    """Keeps the health service's status in step with the dependencies' state."""

    def __init__(self, servicer: health.aio.HealthServicer, names: Iterable[str], deps: Sequence[Dependency]):
        self._servicer = servicer
        self._names = ["", *names]
        self._deps = deps
        self.serving: bool | None = None
        self.shutting_down = False

    async def check_once(self) -> bool:
        ok = True
        for dep in self._deps:
            try:
                await asyncio.wait_for(dep.check(), dep.timeout_s)
            except Exception as exc:  # noqa: BLE001 - any failure means the dependency is not usable
                ok = False
                log.warning("dependency unavailable", extra={"dependency": dep.name, "error": repr(exc)[:300]})
        await self._set(ok and not self.shutting_down)
        return ok

    async def _set(self, serving: bool) -> None:
        if serving == self.serving:
            return
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in self._names:
            await self._servicer.set(name, status)
        if self.serving is not None or not serving:
            log.info("health changed", extra={"serving": serving})
        self.serving = serving

    async def run(self, interval_s: float) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(interval_s)

    async def enter_shutdown(self) -> None:
        self.shutting_down = True
        await self._servicer.enter_graceful_shutdown()
        self.serving = False


def status_of(code: Code) -> grpc.StatusCode:
    """The gRPC status of a refusal's code (the same name)."""
    return grpc.StatusCode[code.name]


async def abort(context: grpc.aio.ServicerContext, rejected: Rejected) -> NoReturn:
    """Fails the call with the refusal's status and message."""
    await context.abort(status_of(rejected.code), rejected.message)
    raise AssertionError("unreachable: context.abort raises")


async def retry_until_done(what: str, job: Callable[[], Awaitable[object]]) -> None:
    """Run a start-up job (index creation, say) until it succeeds, backing off to 10 s between tries.

    Meant as a `ServiceSpec.background` task: a dependency that is down at start delays the job without
    crashing the service, and the health service reports NOT_SERVING meanwhile.
    """
    delay = 0.5
    while True:
        try:
            await job()
            return
        except Exception as exc:  # noqa: BLE001 - dependency not up yet; health reports it
            log.warning("start-up job failed; retrying", extra={"job": what, "error": repr(exc)[:200]})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)


class RejectionsAsStatus(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no type hints
    """Every service's one translation of errors: a `Rejected` raised anywhere below a handler (service layer,
    domain, access gate) ends the call with its status and message."""

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        kinds = (("unary_unary", grpc.unary_unary_rpc_method_handler, _answering),
                 ("stream_unary", grpc.stream_unary_rpc_method_handler, _answering),
                 ("unary_stream", grpc.unary_stream_rpc_method_handler, _streaming),
                 ("stream_stream", grpc.stream_stream_rpc_method_handler, _streaming))
        for kind, make, wrap in kinds:
            if behaviour := getattr(handler, kind):
                return make(wrap(behaviour), request_deserializer=handler.request_deserializer,
                            response_serializer=handler.response_serializer)
        return handler


def _answering(behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def answer(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behaviour(request, context)
        except Rejected as exc:
            await abort(context, exc)

    return answer


def _streaming(behaviour: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            replies = behaviour(request, context)
            if inspect.isasyncgen(replies):
                async for reply in replies:
                    yield reply
            else:
                await replies
        except Rejected as exc:
            await abort(context, exc)

    return stream


def build_server(settings: ServiceSettings) -> grpc.aio.Server:
    opts = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    return grpc.aio.server(options=opts, interceptors=[RejectionsAsStatus()])


def bind_port(server: grpc.aio.Server, settings: ServiceSettings, address: str) -> None:
    """Listen on `address` with TLS only (the one place every service's port is opened); a plain-text or
    untrusted client is refused during the handshake. Missing certificate files stop the start."""
    try:
        credentials = server_credentials(settings)
    except TlsError as exc:
        raise SystemExit(f"TLS: {exc} (set SIGHTLINE_TLS_CERT_FILE and SIGHTLINE_TLS_KEY_FILE)") from exc
    if credentials is None:
        log.warning("TLS DISABLED: serving plain text; calls, tokens and credentials cross the network in clear",
                    extra={"address": address})
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, credentials)
        log.info("TLS only: plain-text and untrusted clients are refused at the handshake (grpc logs "
                 "'Handshake failed' with the reason)",
                 extra={"address": address, "cert_file": str(settings.tls_cert_file),
                        "mutual_tls": settings.tls_require_client_cert})
    if bound == 0:
        raise SystemExit(f"cannot bind {address}")


async def serve(settings: ServiceSettings, make_spec: Callable[[], Awaitable[ServiceSpec]]) -> None:
    """Run a service until SIGTERM/SIGINT. `make_spec` builds clients and servicers (after telemetry)."""
    setup_logging(settings.service_name, settings.log_level)
    provider = setup_telemetry(settings.service_name, settings.metrics_port)
    spec = await make_spec()
    server = build_server(settings)
    spec.register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*spec.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    bind_port(server, settings, address)
    probes: grpc.aio.Server | None = None
    if settings.health_port:
        # The kubelet's gRPC probes speak no TLS: the health service alone, in plain text, on its own port.
        probes = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probes)
        if probes.add_insecure_port(f"{settings.grpc_host}:{settings.health_port}") == 0:
            raise SystemExit(f"cannot bind health port {settings.health_port}")
        await probes.start()
    reporter = HealthReporter(health_servicer, spec.service_names, spec.dependencies)
    await reporter.check_once()
    await server.start()
    log.info("serving", extra={"address": address, "services": list(spec.service_names)})

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(reporter.run(settings.health_interval_seconds))]
    tasks += [asyncio.create_task(job()) for job in spec.background]
    await stop.wait()

    log.info("shutting down: not serving, draining")
    await reporter.enter_shutdown()
    await asyncio.sleep(settings.drain_seconds)
    await server.stop(settings.shutdown_grace_seconds)
    if probes is not None:
        await probes.stop(0)
    for task in tasks:
        task.cancel()
    # A task whose client library swallowed the cancellation must not hold the shutdown up.
    _, still_running = await asyncio.wait(tasks, timeout=BACKGROUND_STOP_S)
    if still_running:
        log.warning("background tasks did not stop; leaving them", extra={"tasks": len(still_running)})
    for close in spec.close:
        await close()
    provider.shutdown()
    log.info("stopped")


def run(settings: ServiceSettings, make_spec: Callable[[], Awaitable[ServiceSpec]]) -> None:
    asyncio.run(serve(settings, make_spec))
