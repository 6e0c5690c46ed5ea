"""HTTP bootstrap shared by the web front ends (the transparency portal and the staff console).

`serve_http()` runs a Starlette app under uvicorn with the services' JSON logs and OpenTelemetry, no access
log (paths and forms may carry plates or case numbers), and uvicorn's graceful SIGTERM handling.
`health_route()` is the Kubernetes probe: 200 while every dependency answers, 503 otherwise. `harden()` gives an
app the same security headers on every response and refuses Host headers it was not configured for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import uvicorn
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.grpc_server import Dependency
from services.common.logging import setup_logging
from services.common.settings import ServiceSettings
from services.common.telemetry import setup_telemetry


class HttpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_", extra="ignore", frozen=True)

    http_host: str = Field(
        default="0.0.0.0", description="Address the HTTP server binds to (0.0.0.0: every interface).")
    http_port: int = Field(default=8080, ge=1, le=65535, description="Port of the HTTP server.")
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Proxies (the ingress) whose X-Forwarded-Proto and X-Forwarded-For headers are trusted, comma "
                    "separated; \"*\" trusts any.")
    http_tls: bool = Field(default=True, description="Serve HTTPS with the TLS certificate and key of the "
                           "service's settings (SIGHTLINE_TLS_CERT_FILE / _KEY_FILE, re-read on restart). Off only "
                           "behind an ingress that terminates TLS (the chart's ingress.tls) or with TLS disabled.")
    allowed_hosts: list[str] = Field(
        default=["127.0.0.1", "localhost"], min_length=1,
        description="Host names this front end answers to (the request's Host header, port aside); any other "
                    "gets 400, so no page or redirect is ever built from a host the client chose. Production: "
                    "the ingress host names.")


class SecurityHeaders:
    """ASGI middleware: the same security headers on every response (pages, images, redirects, event streams,
    static files, errors), unless the response set that header itself; HSTS when the request came over TLS."""

    def __init__(self, app: ASGIApp, headers: Mapping[str, str]):
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        extra = self.headers + ([(b"strict-transport-security", HSTS.encode())] if scope["scheme"] == "https" else [])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *((k, v) for k, v in extra if k not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


HSTS = "max-age=31536000; includeSubDomains"


def harden(app: Starlette, http: HttpSettings, headers: Mapping[str, str]) -> Starlette:
    """Refuse unknown Host headers, never redirect to a slash variant (Starlette builds that URL from the Host
    header), and send `headers` on every response."""
    app.router.redirect_slashes = False
    app.add_middleware(SecurityHeaders, headers=headers)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=http.allowed_hosts, www_redirect=False)
    return app


def health_route(dependencies: Sequence[Dependency], path: str = "/healthz") -> Route:
    async def healthz(request: Request) -> JSONResponse:
        failed: list[str] = []
        for dep in dependencies:
            try:
                await asyncio.wait_for(dep.check(), dep.timeout_s)
            except Exception:  # noqa: BLE001 - any failure means the dependency is not usable
                failed.append(dep.name)
        return JSONResponse({"status": "unavailable" if failed else "ok", "failed": failed},
                            status_code=503 if failed else 200)

    return Route(path, healthz, methods=["GET"])


def serve_http(make_app: Callable[[], Starlette], settings: ServiceSettings, http: HttpSettings) -> None:
    """Run the app until SIGTERM/SIGINT: stop accepting, let in-flight requests finish (grace), run shutdown.

    `make_app` is called in the server's event loop after telemetry is set up, so the gRPC channels it opens
    belong to that loop and are instrumented.
    """
    setup_logging(settings.service_name, settings.log_level)
    setup_telemetry(settings.service_name, settings.metrics_port)

    tls: dict[str, Any] = {}
    if http.http_tls and settings.tls_enabled:
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            raise SystemExit("HTTPS: set SIGHTLINE_TLS_CERT_FILE and SIGHTLINE_TLS_KEY_FILE (or "
                             "SIGHTLINE_HTTP_TLS=false behind a TLS-terminating ingress)")
        tls = {"ssl_certfile": str(settings.tls_cert_file), "ssl_keyfile": str(settings.tls_key_file)}

    async def serve() -> None:
        config = uvicorn.Config(make_app(), host=http.http_host, port=http.http_port, log_config=None,
                                access_log=False, proxy_headers=True, forwarded_allow_ips=http.forwarded_allow_ips,
                                timeout_graceful_shutdown=int(settings.shutdown_grace_seconds), server_header=False,
                                **tls)
        await uvicorn.Server(config).serve()

    asyncio.run(serve())
