"""Integration fixtures on top of the session servers in tests/conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import tritonclient.grpc.aio as grpcclient

from services.inference.launcher import wait_ready

TRITON_MODELS = ("plate_detector", "vehicle_detector", "face_detector", "plate_text_detector", "plate_reader", "alpr")


@pytest.fixture(scope="session")
async def triton(triton_url: str) -> AsyncIterator[grpcclient.InferenceServerClient]:
    """One long-lived aio client of a Triton that has every model loaded."""
    await wait_ready(triton_url, 60, TRITON_MODELS)
    client = grpcclient.InferenceServerClient(triton_url)
    yield client
    await client.close()
