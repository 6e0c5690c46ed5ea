"""The real Triton (python backend) serving model_repository/: every sub-model, then the alpr pipeline."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from services.simulator.render import render_scene

pytestmark = pytest.mark.integration

# model -> (input name, one request's shape), {output name: expected shape}
SUB_MODELS = {
    "plate_detector": (("images", (1, 3, 384, 640)), {"output0": (1, 5, 5040)}),  # 16:9 frames
    "vehicle_detector": (("tower_0/images:0", (1, 288, 512, 3)), {"tower_0/detections:0": (1, 100, 6)}),
    "face_detector": (
        ("input:0", (1, 256, 256, 3)),
        {
            "Identity:0": (1, 512, 1),
            "Identity_1:0": (1, 384, 1),
            "Identity_2:0": (1, 512, 16),
            "Identity_3:0": (1, 384, 16),
        },
    ),
    "plate_text_detector": (("x", (1, 3, 96, 192)), {"fetch_name_0": (1, 1, 96, 192)}),
    "plate_reader": (("x", (2, 3, 48, 320)), {"text_probs": (2, 40, 38), "plate_probs": (2, 40, 38)}),
}


async def infer(client: grpcclient.InferenceServerClient, model: str, inputs: dict[str, np.ndarray]):
    tensors = []
    for name, array in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), "BYTES" if array.dtype == object else "FP32")
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return await client.infer(model, tensors)


@pytest.mark.parametrize("model", sorted(SUB_MODELS))
async def test_sub_model_answers_with_its_output_shapes(triton: grpcclient.InferenceServerClient, model: str) -> None:
    (input_name, shape), outputs = SUB_MODELS[model]
    rng = np.random.default_rng(0)
    # Concurrent requests, so the dynamic batcher hands the model several at once.
    results = await asyncio.gather(
        *(infer(triton, model, {input_name: rng.random(shape, np.float32)}) for _ in range(3))
    )
    for result in results:
        for name, expected in outputs.items():
            array = result.as_numpy(name)
            assert array.shape == expected, name
            assert np.isfinite(array).all(), name


async def test_alpr_reads_the_plate_of_a_synthetic_frame(triton: grpcclient.InferenceServerClient) -> None:
    scene = render_scene(seed=1)  # a 1280x720 rear view, difficulty 0
    result = await infer(triton, "alpr", {"JPEG": np.array([scene.jpeg], dtype=object)})

    reads = json.loads(result.as_numpy("READS_JSON")[0])
    assert scene.truth.plate_text in [plate["normalized"] for plate in reads["plates"]]
    redacted = result.as_numpy("REDACTED_JPEG")[0]
    assert redacted[:2] == b"\xff\xd8"  # a JPEG


async def test_alpr_rejects_a_corrupt_jpeg(triton: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as error:
        await infer(triton, "alpr", {"JPEG": np.array([b"\xff\xd8\xff\xe0 not really a jpeg"], dtype=object)})

    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "not a JPEG or PNG image" in error.value.message()
