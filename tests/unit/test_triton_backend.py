"""The batching arithmetic shared by the python-backend ONNX models (no Triton needed)."""

from __future__ import annotations

import numpy as np
import pytest

from services.inference.triton_backend import group_by_shape, infer_batched, model_parameters, session_providers

pytestmark = pytest.mark.unit


def doubled(calls: list[int]):
    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2, "n": np.full((len(inputs["x"]), 1), len(inputs["x"]))}

    return run


def test_requests_of_one_shape_run_as_one_batch_and_split_back_in_order() -> None:
    items = [{"x": np.full((rows, 3), index, np.float32)} for index, rows in enumerate([1, 2, 1])]
    calls: list[int] = []

    results = infer_batched(doubled(calls), items, max_rows=None)

    assert calls == [4]
    assert [r["y"].shape for r in results] == [(1, 3), (2, 3), (1, 3)]
    assert [float(r["y"][0, 0]) for r in results] == [0.0, 2.0, 4.0]


def test_fixed_batch_models_run_once_per_row() -> None:
    items = [{"x": np.ones((2, 3), np.float32)}, {"x": np.ones((1, 3), np.float32)}]
    calls: list[int] = []

    results = infer_batched(doubled(calls), items, max_rows=1)

    assert calls == [1, 1, 1]
    assert [r["y"].shape for r in results] == [(2, 3), (1, 3)]


def test_requests_of_different_shapes_run_apart_and_keep_their_order() -> None:
    items = [
        {"x": np.zeros((1, 3, 48, 320), np.float32)},
        {"x": np.zeros((1, 3, 48, 160), np.float32)},
        {"x": np.zeros((1, 3, 48, 320), np.float32)},
    ]
    assert group_by_shape(items) == [[0, 2], [1]]
    calls: list[int] = []

    results = infer_batched(doubled(calls), items, max_rows=None)

    assert sorted(calls) == [1, 2]
    assert [r["y"].shape[-1] for r in results] == [320, 160, 320]


def test_model_parameters_and_providers() -> None:
    config = {"parameters": {"intra_op_num_threads": {"string_value": "2"}}}
    assert model_parameters(config) == {"intra_op_num_threads": "2"}
    assert model_parameters({}) == {}
    assert session_providers("CPU", 0) == ["CPUExecutionProvider"]
    assert session_providers("GPU", 1)[0] == ("CUDAExecutionProvider", {"device_id": 1})
