"""The model-runner port and its onnxruntime adapter."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import onnxruntime as ort

if TYPE_CHECKING:
    from .settings import VisionSettings

MODEL_FILE, INT8_FILE = "model.onnx", "model.int8.onnx"


def model_file(version_dir: Path, int8: bool) -> Path:
    """A model version's ONNX file: its INT8 copy (scripts/quantize_models.py) where one exists and INT8 is
    wanted, else the FP32 original."""
    quantised = version_dir / INT8_FILE
    return quantised if int8 and quantised.is_file() else version_dir / MODEL_FILE


class ModelRunner(Protocol):
    """Runs one named model of the model repository on a batch (axis 0) of named input tensors."""

    def infer(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class OnnxRunner:
    """In-process runner over ``<model_repository>/<model>/1/model.onnx`` (one lazy session per model), or
    its INT8 copy with ``int8``."""

    def __init__(
        self,
        model_repository: Path,
        providers: list[str] | None = None,
        intra_op_threads: int | None = None,
        int8: bool = False,
    ) -> None:
        self._repository = Path(model_repository)
        self._int8 = int8
        self._providers = providers or ["CPUExecutionProvider"]
        self._threads = intra_op_threads or min(4, os.cpu_count() or 1)
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: VisionSettings, intra_op_threads: int | None = None) -> OnnxRunner:
        """The runner the settings describe: their model repository, INT8 copies where ``settings.int8``."""
        return cls(settings.model_repository, intra_op_threads=intra_op_threads, int8=settings.int8)

    def session(self, model: str) -> ort.InferenceSession:
        with self._lock:
            if model not in self._sessions:
                path = model_file(self._repository / model / "1", self._int8)
                if not path.is_file():
                    raise FileNotFoundError(f"model {model!r} not found at {path}")
                options = ort.SessionOptions()
                options.intra_op_num_threads = self._threads
                options.inter_op_num_threads = 1
                options.log_severity_level = 3
                self._sessions[model] = ort.InferenceSession(str(path), sess_options=options, providers=self._providers)
            return self._sessions[model]

    def infer(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.session(model)
        names = [output.name for output in session.get_outputs()]
        return dict(zip(names, session.run(names, inputs), strict=True))
