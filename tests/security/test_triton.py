"""Finding 1 of the outside attack: code execution through Triton's model repository API.

The tester loaded a python-backend `model.py` of its own with `POST /v2/repository/models/<x>/load` on a
Triton listening on every interface, and read the token signing key with it. The local Triton now binds to
loopback and runs `--model-control-mode=none`: the load API is refused over HTTP and gRPC alike.
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request

import pytest
from tritonclient.utils import InferenceServerException

from services.devstack.stack import LocalStack
from services.inference.launcher import triton_client
from tests.conftest import triton_ca

pytestmark = [pytest.mark.integration, pytest.mark.security]

EVIL_CONFIG = json.dumps({"backend": "python", "max_batch_size": 0,
                          "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [1]}],
                          "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [1]}]})
EVIL_MODEL = b"import os\nos.system('touch /tmp/sightline-pwned')\nclass TritonPythonModel:\n    pass\n"


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port` (IPv4 and IPv6), from /proc/net."""
    found: set[str] = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with open(table) as rows:
            for row in list(rows)[1:]:
                local, state = row.split()[1], row.split()[3]
                address, hex_port = local.split(":")
                if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(address)
                # /proc prints each 32-bit word in host (little-endian) order.
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(family, raw))
    return found


def test_triton_listens_on_loopback_only(stack: LocalStack, triton_url: str) -> None:
    if "triton" not in stack.procs:
        pytest.skip("SIGHTLINE_TRITON_URL points at a Triton these tests did not start")
    for port in (stack.ports.triton_http, stack.ports.triton_grpc, stack.ports.triton_metrics):
        addresses = _listening_addresses(port)
        assert addresses and addresses <= {"127.0.0.1", "::1", "::ffff:127.0.0.1"}, (port, addresses)


def test_http_model_load_with_files_is_refused(stack: LocalStack, triton_url: str) -> None:
    body = json.dumps({"parameters": {
        "config": EVIL_CONFIG,
        "file:1/model.py": base64.b64encode(EVIL_MODEL).decode(),
    }}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{stack.ports.triton_http}/v2/repository/models/evil/load",
                                     data=body, method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert "not allowed" in refused.value.read().decode().lower()
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{stack.ports.triton_http}/v2/models/evil/ready", timeout=30)
    unload = urllib.request.Request(f"http://127.0.0.1:{stack.ports.triton_http}/v2/repository/models/alpr/unload",
                                    data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(unload, timeout=30)


async def test_grpc_model_load_is_refused_and_serving_models_stay(triton_url: str, stack) -> None:
    client = triton_client(triton_url, triton_ca(stack))
    try:
        with pytest.raises(InferenceServerException, match="(?i)not allowed"):
            await client.load_model("evil", config=EVIL_CONFIG, files={"file:1/model.py": EVIL_MODEL})
        with pytest.raises(InferenceServerException, match="(?i)not allowed"):
            await client.unload_model("alpr")
        assert await client.is_model_ready("alpr")
    finally:
        await client.close()


async def test_tritons_grpc_endpoint_serves_tls_only(triton_url: str, stack) -> None:
    """Issue #17: frames go from ingest to Triton over TLS; a plain-text client of the gRPC endpoint is refused."""
    if triton_ca(stack) is None:
        pytest.skip("an external Triton (SIGHTLINE_TRITON_URL) serving plain text")
    plain = triton_client(triton_url, None)
    try:
        with pytest.raises(InferenceServerException):
            await plain.is_server_ready(client_timeout=5)
    finally:
        await plain.close()
    verified = triton_client(triton_url, triton_ca(stack))
    try:
        assert await verified.is_server_ready()
    finally:
        await verified.close()
