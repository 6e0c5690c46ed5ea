"""Sightline vision: licence-plate detection and reading, vehicle attributes and redaction.

Pure pre/post-processing over a :class:`~services.inference.vision.runner.ModelRunner` port, so the
same orchestration runs in-process (onnxruntime) and inside Triton (BLS).
"""
