"""Shared code of the python-backend models in ``model_repository/``.

Each ``model_repository/<name>/1/model.py`` only names one of the classes below as its
``TritonPythonModel``:

* :class:`OnnxPythonModel` runs ``1/model.onnx`` with onnxruntime, on CUDA when Triton places the instance
  on a GPU (``instance_group { kind: KIND_GPU }``), else on the CPU;
* :class:`AlprPythonModel` runs the per-frame pipeline (``services.inference.vision.pipeline``) with
  :class:`BlsRunner`, which sends every model call to the sub-models above as a BLS request, so that each
  sub-model's dynamic batcher groups the calls of concurrent frames.

The batching arithmetic (:func:`group_by_shape`, :func:`infer_batched`) is pure and unit-tested without
Triton; ``triton_python_backend_utils`` exists only inside Triton's python backend stub.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from services.inference.vision.pipeline import AlprPipeline, FrameDecodeError, decode_jpeg
from services.inference.vision.runner import model_file
from services.inference.vision.settings import VisionSettings

try:
    import triton_python_backend_utils as pb_utils
except ModuleNotFoundError:  # outside Triton only the pure helpers below are usable
    pb_utils = None

Tensors = dict[str, np.ndarray]

DEFAULT_MAX_PIXELS = 3840 * 2160
DEFAULT_JPEG_QUALITY = 85


def model_parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """The ``parameters { key: ... value: { string_value: ... } }`` of a model config, as a plain dict."""
    return {key: value["string_value"] for key, value in model_config.get("parameters", {}).items()}


def group_by_shape(items: Sequence[Tensors]) -> list[list[int]]:
    """Indices of requests that can be concatenated on axis 0: equal input names, dtypes and row shapes."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, tensors in enumerate(items):
        key = tuple(sorted((name, array.dtype.str, array.shape[1:]) for name, array in tensors.items()))
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def infer_batched(run: Callable[[Tensors], Tensors], items: Sequence[Tensors], max_rows: int | None) -> list[Tensors]:
    """Run ``run`` over the requests ``items`` with as few calls as possible; one output dict per request.

    Requests whose shapes agree are concatenated on axis 0, in calls of at most ``max_rows`` rows (``None``:
    no limit; 1 for ONNX files exported with a fixed batch of one), and the outputs are split back.
    """
    results: list[Tensors | None] = [None] * len(items)
    for group in group_by_shape(items):
        counts = [len(next(iter(items[i].values()))) for i in group]
        merged = {name: np.concatenate([items[i][name] for i in group]) for name in items[group[0]]}
        total = sum(counts)
        step = max_rows or total
        chunks = [
            run({name: array[start : start + step] for name, array in merged.items()})
            for start in range(0, total, step)
        ]
        outputs = {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}
        offsets = np.cumsum([0, *counts])
        for i, start, stop in zip(group, offsets[:-1], offsets[1:], strict=True):
            results[i] = {name: array[start:stop] for name, array in outputs.items()}
    return [result for result in results if result is not None]


def session_providers(instance_kind: str, device_id: int) -> list[Any]:
    """onnxruntime execution providers for a Triton instance of kind ``CPU`` or ``GPU``."""
    if instance_kind == "GPU":
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxPythonModel:
    """Triton python model that runs ``<version dir>/model.onnx`` (``model.int8.onnx`` where the config's
    parameter ``int8`` is ``true`` and the file exists) on the inputs and outputs of its config."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = model_parameters(config)
        self.name = args["model_name"]
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.output_names = [tensor["name"] for tensor in config["output"]]
        version_dir = Path(args["model_repository"]) / args["model_version"]
        path = model_file(version_dir, parameters.get("int8", "false") == "true")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("intra_op_num_threads", "0"))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Each model is its own process and they share the cores: threads that spin waiting for work after
        # a run take the CPU the other models' runs need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = session_providers(args["model_instance_kind"], int(args["model_instance_device_id"]))
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        onnx_inputs = {tensor.name: tensor.shape for tensor in self.session.get_inputs()}
        onnx_outputs = {tensor.name for tensor in self.session.get_outputs()}
        if set(self.input_names) != set(onnx_inputs) or not set(self.output_names) <= onnx_outputs:
            raise ValueError(
                f"{self.name}: config tensors {self.input_names} -> {self.output_names} do not match "
                f"{path.name}: {sorted(onnx_inputs)} -> {sorted(onnx_outputs)}"
            )
        # ONNX files exported with a fixed batch dimension of 1 run once per row.
        batch_dims = {shape[0] for shape in onnx_inputs.values()}
        self.max_rows = 1 if batch_dims == {1} else None
        pb_utils.Logger.log_info(
            f"{self.name}: {path} on {self.session.get_providers()[0]}, rows per run {self.max_rows or 'any'}"
        )

    def _run(self, inputs: Tensors) -> Tensors:
        return dict(zip(self.output_names, self.session.run(self.output_names, inputs), strict=True))

    def execute(self, requests: list[Any]) -> list[Any]:
        items = [
            {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
            for request in requests
        ]
        try:
            results = infer_batched(self._run, items, self.max_rows)
        except Exception as exc:  # one bad batch must not take the instance down; every caller is told
            error = pb_utils.TritonError(f"{self.name}: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(name, array) for name, array in result.items()])
            for result in results
        ]


class BlsRunner:
    """``ModelRunner`` that calls the repository's models through Triton (business logic scripting)."""

    def infer(self, model: str, inputs: Tensors) -> Tensors:
        request = pb_utils.InferenceRequest(
            model_name=model,
            inputs=[pb_utils.Tensor(name, np.ascontiguousarray(array)) for name, array in inputs.items()],
            requested_output_names=[],  # all outputs of the sub-model's config
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        return {tensor.name(): tensor.as_numpy() for tensor in response.output_tensors()}


def encode_jpeg(image_bgr: np.ndarray, quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buffer.tobytes()


class AlprPythonModel:
    """Triton python model: JPEG frame in, ``FrameResult`` JSON and the redacted frame (JPEG) out."""

    def initialize(self, args: dict[str, str]) -> None:
        parameters = model_parameters(json.loads(args["model_config"]))
        self.max_pixels = int(parameters.get("max_pixels", DEFAULT_MAX_PIXELS))
        self.jpeg_quality = int(parameters.get("jpeg_quality", DEFAULT_JPEG_QUALITY))
        # The rest of the pipeline's settings come from SIGHTLINE_VISION_* in tritonserver's environment.
        settings = VisionSettings(model_repository=Path(args["model_repository"]).parent, max_pixels=self.max_pixels)
        self.pipeline = AlprPipeline(runner=BlsRunner(), settings=settings)

    def _frame(self, request: Any) -> Any:
        data = pb_utils.get_input_tensor_by_name(request, "JPEG").as_numpy().reshape(-1)[0]
        try:
            image = decode_jpeg(bytes(data), self.max_pixels)
        except FrameDecodeError as exc:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"JPEG: {exc} ({exc.reason})", pb_utils.TritonError.INVALID_ARG)
            )
        result = self.pipeline.run(image)
        reads = json.dumps(result.to_dict(), separators=(",", ":")).encode()
        redacted = encode_jpeg(result.redacted, self.jpeg_quality)
        return pb_utils.InferenceResponse(
            [
                pb_utils.Tensor("READS_JSON", np.array([reads], dtype=np.object_)),
                pb_utils.Tensor("REDACTED_JPEG", np.array([redacted], dtype=np.object_)),
            ]
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                responses.append(self._frame(request))
            except Exception as exc:  # a failed frame must not fail the others in this call
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"alpr: {exc}")))
        return responses
