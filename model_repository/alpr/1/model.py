"""alpr: the per-frame pipeline over BLS calls (see config.pbtxt and services/inference/triton_backend.py)."""

from services.inference.triton_backend import AlprPythonModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
