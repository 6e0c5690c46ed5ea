"""vehicle_detector: serves 1/model.onnx through services.inference.triton_backend.OnnxPythonModel."""

from services.inference.triton_backend import OnnxPythonModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
