"""Ingest's mutual TLS against a real gRPC server: with the gateway client CA given as a PEM bundle, sites issued
by either CA get in (several issuers, or the old and the new CA while the gateway CA is replaced), and a site
whose CA is not in the bundle is refused (docs/operations.md, TLS)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common.tls import TlsSettings, server_credentials
from services.devstack.pki import DevPki

pytestmark = pytest.mark.integration


async def check(port: int, server_ca: Path, client: DevPki, site: str) -> bool:
    """Whether a gateway of `site`, with its certificate from `client`'s CA, gets an answer."""
    pair = client.gateway(site)
    root, key, chain = (path.read_bytes() for path in (server_ca, pair.key, pair.cert))  # noqa: ASYNC240 - tiny
    credentials = grpc.ssl_channel_credentials(root, key, chain)
    async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc  # the handshake failed
            return False
    return True


async def test_a_bundle_of_gateway_cas_admits_sites_of_each_and_no_other(tmp_path: Path) -> None:
    old, new, other = (DevPki(tmp_path / name).ensure(["ingest"], [f"{name}-site"]) for name in ("old", "new", "x"))
    bundle = tmp_path / "gateway-cas.pem"
    bundle.write_bytes(old.ca.read_bytes() + new.ca.read_bytes())
    ingest = old.server("ingest")
    settings = TlsSettings(tls_cert_file=ingest.cert, tls_key_file=ingest.key, tls_ca_file=old.ca,
                           tls_client_ca_file=bundle, tls_require_client_cert=True, dev_keys=False)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    credentials = server_credentials(settings)
    assert credentials is not None
    port = server.add_secure_port("localhost:0", credentials)
    await server.start()
    try:
        assert await check(port, old.ca, old, "old-site")
        assert await check(port, old.ca, new, "new-site")
        assert not await check(port, old.ca, other, "x-site")
    finally:
        await server.stop(None)
