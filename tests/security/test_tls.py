"""TLS on the gRPC hops (issue #17): plain text and untrusted peers are refused, a camera gateway's client
certificate names its site and ingest holds it to the cameras that site owns, expired certificates are
refused, and a renewed server certificate is picked up without a restart while a stream stays open."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.auth import auth_metadata
from services.common.tls import TlsSettings, secure_channel
from services.devstack.pki import DevPki, Pair
from services.devstack.servers import wait_for
from services.devstack.stack import LocalStack, Ports
from services.ingest.client import register_camera
from sightline.common.v1 import read_pb2
from sightline.ingest.v1 import ingest_pb2, ingest_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.security]

pb = ingest_pb2


def reads(camera: str, frame_id: str, plate: str = "TLS123") -> pb.ReadBatch:
    fr = pb.FrameReads(camera_id=camera, frame_id=frame_id, location=read_pb2.GeoPoint(latitude=40.7, longitude=-74.0))
    fr.captured_at.FromDatetime(datetime.now(UTC) - timedelta(seconds=5))
    fr.reads.add(plate=plate, confidence=0.93, region=read_pb2.Region(country="US", state="NY", confidence=0.8))
    return pb.ReadBatch(frames=[fr])


async def health(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return reply.status


async def refused(channel: grpc.aio.Channel) -> grpc.StatusCode:
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health(channel)
    return err.value.code()


async def test_a_plain_text_client_is_refused_and_the_refusal_logged(stack: LocalStack, search_addr: str) -> None:
    assert await refused(grpc.aio.insecure_channel(search_addr)) == grpc.StatusCode.UNAVAILABLE
    log = stack.procs["search"].log_path
    await wait_for("the refusal in search's log", lambda: "WRONG_VERSION_NUMBER" in log.read_text(errors="replace"),
                   10)
    text = log.read_text(errors="replace")
    assert "Handshake failed" in text and "WRONG_VERSION_NUMBER" in text
    assert "TLS only" in text  # and at start, what the port serves
    async with secure_channel(search_addr) as channel:  # the same call over TLS is answered
        assert await health(channel) == health_pb2.HealthCheckResponse.SERVING


async def test_a_client_that_does_not_trust_the_ca_is_refused(search_addr: str, tmp_path: Path) -> None:
    other = DevPki(tmp_path / "other-ca").ensure(())
    code = await refused(secure_channel(search_addr, TlsSettings(tls_ca_file=other.ca)))
    assert code == grpc.StatusCode.UNAVAILABLE


async def test_ingest_requires_a_gateway_certificate(stack: LocalStack, ingest_addr: str) -> None:
    # Trusting the CA is not enough for ingest: no client certificate, no connection.
    assert await refused(stack.channel("ingest", site=None)) == grpc.StatusCode.UNAVAILABLE


async def test_an_expired_gateway_certificate_is_refused(stack: LocalStack, ingest_addr: str, tmp_path) -> None:
    pki = stack.pki
    expired = pki.issue(Pair(tmp_path / "old.crt", tmp_path / "old.key"), "site:dev-site", server=False,
                        client=True, days=1, not_before=datetime.now(UTC) - timedelta(days=3))
    tls = TlsSettings(tls_ca_file=pki.ca, tls_client_cert_file=expired.cert, tls_client_key_file=expired.key)
    assert await refused(secure_channel(ingest_addr, tls)) == grpc.StatusCode.UNAVAILABLE


async def test_a_site_certificate_cannot_send_another_sites_camera(stack: LocalStack, ingest_addr: str,
                                                                   tokens, mongo_db) -> None:
    admin = await tokens("admin")
    camera = f"site-b-{uuid.uuid4().hex[:8]}"
    async with stack.channel("ingest") as channel:
        credential = await register_camera(channel, pb.Camera(camera_id=camera, name="B", active=True,
                                                               site_id="site-b"), admin)
    assert mongo_db["cameras"].find_one({"_id": camera})["site_id"] == "site-b"
    async with stack.channel("ingest", site="site-a") as channel:  # site A's gateway, B's camera and secret
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ingest_pb2_grpc.IngestServiceStub(channel).SubmitReads(reads(camera, "a1"), metadata=credential)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "site-a" in err.value.details()
    assert mongo_db["frames"].count_documents({"_id": {"$regex": f"^{camera}"}}) == 0
    async with stack.channel("ingest", site="site-b") as channel:  # its own site's gateway: stored
        ack = await ingest_pb2_grpc.IngestServiceStub(channel).SubmitReads(reads(camera, "b1"), metadata=credential)
    assert ack.acks[0].status == pb.FRAME_STATUS_STORED


async def test_a_camera_registered_without_a_site_is_refused(private_ingest, tokens) -> None:
    own, _ = private_ingest  # no default site, as in production (the local stack's is dev-site)
    async with own.channel("ingest") as channel:
        registry = ingest_pb2_grpc.CameraRegistryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await registry.UpsertCamera(pb.UpsertCameraRequest(camera=pb.Camera(camera_id="no-site", active=True)),
                                        metadata=auth_metadata(await tokens("admin")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "site_id" in err.value.details()


def served_serial(port: int, tls: TlsSettings) -> int:
    """The serial number of the certificate a fresh TLS connection to 127.0.0.1:`port` is shown."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(tls.tls_ca_file))
    if tls.tls_client_cert_file:
        context.load_cert_chain(str(tls.tls_client_cert_file), str(tls.tls_client_key_file))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as conn:
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
def private_ingest(stack: LocalStack, mongo_uri: str, redis_url: str, audit_addr: str, tmp_path: Path):
    """An ingest of its own (metadata-only reads need no Triton) with certificate files this test renews."""
    own = LocalStack(tmp_path / "stack", Ports.free())
    own.env.update({"SIGHTLINE_MONGO_URI": mongo_uri, "SIGHTLINE_REDIS_URL": redis_url,
                    "SIGHTLINE_DATA_DIR": stack.env["SIGHTLINE_DATA_DIR"], "SIGHTLINE_AUDIT_ADDRESS": audit_addr,
                    "SIGHTLINE_TRITON_URL": f"127.0.0.1:{own.ports.triton_grpc}", "SIGHTLINE_DRAIN_SECONDS": "0"})
    pair = stack.pki.issue(Pair(tmp_path / "ingest.crt", tmp_path / "ingest.key"), "ingest", server=True,
                           client=False)
    own.start_service("ingest", SIGHTLINE_TLS_CERT_FILE=str(pair.cert), SIGHTLINE_TLS_KEY_FILE=str(pair.key),
                      SIGHTLINE_DEFAULT_CAMERA_SITE="")
    yield own, pair
    own.stop()


async def test_a_renewed_certificate_is_served_without_restart_while_a_stream_stays_open(
        stack: LocalStack, private_ingest, tokens, mongo_db) -> None:
    own, pair = private_ingest
    tls = stack.client_tls()
    camera = f"rot-{uuid.uuid4().hex[:8]}"
    async with own.channel("ingest") as channel:
        credential = await register_camera(channel, pb.Camera(camera_id=camera, name="rot", active=True,
                                                               site_id="dev-site"), await tokens("admin"))
        before = await asyncio.to_thread(served_serial, own.ports.ingest, tls)
        pid = own.procs["ingest"].popen.pid
        outgoing: asyncio.Queue[pb.ReadBatch | None] = asyncio.Queue()

        async def batches():
            while (batch := await outgoing.get()) is not None:
                yield batch

        stream = ingest_pb2_grpc.IngestServiceStub(channel).StreamReads(batches(), metadata=credential)
        acks = []
        await outgoing.put(reads(camera, "f1"))
        acks.append(await stream.read())
        stack.pki.issue(pair, "ingest", server=True, client=False)  # renewed in place, as cert-manager does
        renewed = x509.load_pem_x509_certificate(pair.cert.read_bytes()).serial_number
        deadline = time.monotonic() + 15
        while (after := await asyncio.to_thread(served_serial, own.ports.ingest, tls)) != renewed:
            assert time.monotonic() < deadline, "the renewed certificate was not picked up"
            await asyncio.sleep(0.5)
        assert after != before and own.procs["ingest"].popen.pid == pid  # new connections, same process
        for i in range(2, 5):  # the open stream goes on
            await outgoing.put(reads(camera, f"f{i}"))
            acks.append(await stream.read())
        await outgoing.put(None)
    assert [a.acks[0].status for a in acks] == [pb.FRAME_STATUS_STORED] * 4
    assert mongo_db["frames"].count_documents({"_id": {"$regex": f"^{camera}"}}) == 4
    assert "TLS certificate reloaded" in own.procs["ingest"].log_path.read_text()


async def test_the_console_serves_https_only_with_hsts_and_secure_cookies(console_url: str) -> None:
    assert console_url.startswith("https://")
    async with httpx.AsyncClient(base_url=console_url) as client:  # trusts the session CA (SSL_CERT_FILE)
        reply = await client.get("/login")
    assert reply.status_code == 200 and reply.headers["strict-transport-security"].startswith("max-age=")
    cookies = reply.headers.get_list("set-cookie")
    assert cookies and all("secure" in c.lower() and "httponly" in c.lower() for c in cookies)
    plain = "http://" + console_url.removeprefix("https://")
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.HTTPError):  # plain HTTP to the HTTPS port gets no page
            (await client.get(f"{plain}/login")).raise_for_status()
