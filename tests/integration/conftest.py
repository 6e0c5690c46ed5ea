"""Integration fixtures on top of the session servers in tests/conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import tritonclient.grpc.aio as grpcclient

from services.inference.launcher import triton_client, wait_ready
from tests.conftest import triton_ca

TRITON_MODELS = ("plate_detector", "vehicle_detector", "face_detector", "plate_text_detector", "plate_reader", "alpr")


@pytest.fixture(scope="session")
async def triton(triton_url: str, stack) -> AsyncIterator[grpcclient.InferenceServerClient]:
    """One long-lived aio client of a Triton that has every model loaded."""
    ca = triton_ca(stack)
    await wait_ready(triton_url, 60, TRITON_MODELS, ca)
    client = triton_client(triton_url, ca)
    yield client
    await client.close()
