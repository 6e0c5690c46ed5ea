"""The per-frame vision pipeline, served by Triton as the `alpr` model (model_repository/alpr)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton
from opentelemetry import trace
from tritonclient.utils import InferenceServerException

from services.common.grpc_server import Dependency
from services.common.rejected import Code, Rejected

tracer = trace.get_tracer(__name__)


class TritonAlpr:
    def __init__(self, url: str, model: str, timeout_s: float, ca_file: Path | None = None):
        """`ca_file`: Triton's gRPC endpoint serves TLS, verified against this CA (None: plain text)."""
        self._client = (triton.InferenceServerClient(url) if ca_file is None else
                        triton.InferenceServerClient(url, ssl=True, root_certificates=str(ca_file)))
        self._model = model
        self._timeout_s = timeout_s

    async def recognise(self, jpeg: bytes) -> tuple[dict[str, Any], bytes]:
        """(pipeline result as a dict, redacted JPEG). Raises Rejected with a meaningful status."""
        data = triton.InferInput("JPEG", [1], "BYTES")
        data.set_data_from_numpy(np.array([jpeg], dtype=np.object_))
        with tracer.start_as_current_span("triton.infer", attributes={"triton.model": self._model}):
            try:
                result = await self._client.infer(
                    self._model,
                    [data],
                    outputs=[triton.InferRequestedOutput("READS_JSON"), triton.InferRequestedOutput("REDACTED_JPEG")],
                    client_timeout=self._timeout_s,
                )
            except InferenceServerException as exc:
                raise _rejection(exc) from exc
        reads_json = result.as_numpy("READS_JSON").reshape(-1)[0]
        redacted = result.as_numpy("REDACTED_JPEG").reshape(-1)[0]
        return json.loads(reads_json), bytes(redacted)

    def dependency(self) -> Dependency:
        async def check() -> None:
            if not await self._client.is_model_ready(self._model):
                raise RuntimeError(f"model {self._model} not ready")

        return Dependency("triton", check)

    async def close(self) -> None:
        await self._client.close()


def _rejection(exc: InferenceServerException) -> Rejected:
    status = str(exc.status() or "")
    text = exc.message() or str(exc)
    if "INVALID_ARG" in status.upper() or "INVALID_ARG" in text.upper() or "decode" in text.lower():
        return Rejected(Code.INVALID_ARGUMENT, f"frame could not be processed: {text[:200]}")
    if "DEADLINE" in status.upper() or "Deadline" in text:
        return Rejected(Code.UNAVAILABLE, "inference timed out; retry the frame")
    return Rejected(Code.UNAVAILABLE, "inference service unavailable; retry the frame")
