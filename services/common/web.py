"""HTTP bootstrap shared by the web front ends (the transparency portal and the staff console).

`serve_http()` runs a Starlette app under uvicorn with the services' JSON logs and OpenTelemetry, no access
log (paths and forms may carry plates or case numbers), and uvicorn's graceful SIGTERM handling.
`health_route()` is the Kubernetes probe: 200 while every dependency answers, 503 otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import uvicorn
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.common.grpc_server import Dependency
from services.common.logging import setup_logging
from services.common.settings import ServiceSettings
from services.common.telemetry import setup_telemetry


class HttpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_", extra="ignore", frozen=True)

    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=1, le=65535)
    # Proxies whose X-Forwarded-Proto/For are trusted (the ingress); "*" trusts any.
    forwarded_allow_ips: str = "127.0.0.1"


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

    async def serve() -> None:
        config = uvicorn.Config(make_app(), host=http.http_host, port=http.http_port, log_config=None,
                                access_log=False, proxy_headers=True, forwarded_allow_ips=http.forwarded_allow_ips,
                                timeout_graceful_shutdown=int(settings.shutdown_grace_seconds), server_header=False)
        await uvicorn.Server(config).serve()

    asyncio.run(serve())
