#!/usr/bin/env python
"""Write the INT8 copy (``1/model.int8.onnx``) of the plate detector for CPUs with VNNI, and print how much
faster it is than its FP32 original.

    python scripts/quantize_models.py [--models plate_detector] [--calibration 96]

Static quantisation by onnxruntime (QDQ, signed per-channel weights, unsigned activations) with calibration
on frames rendered by ``services/simulator/render.py``, never on the evaluation photographs. The YOLO
head's last layers (box regression, DFL, class scores) stay in FP32, where 8 bits cost boxes and recall.
The text detector (opset 11, a few ms at 192 px) and the recogniser stay in FP32, and so does the
CenterNet vehicle detector: quantised the same way it found no vehicles at all and ran no faster.
Accuracy before and after is measured with ``scripts/eval_accuracy.py``; ``SIGHTLINE_VISION_INT8=true``
selects the INT8 files.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.inference.vision import detectors  # noqa: E402
from services.inference.vision.runner import INT8_FILE  # noqa: E402
from services.inference.vision.settings import VisionSettings  # noqa: E402
from services.simulator.render import SceneOptions, render_scene  # noqa: E402

Prepare = Callable[[np.ndarray], dict[str, np.ndarray]]


def _plate_detector(image: np.ndarray) -> dict[str, np.ndarray]:
    return {detectors.PLATE_INPUT: detectors.plate_input(image)[0]}


def _keep_float(model: onnx.ModelProto, name: str) -> list[str]:
    """Nodes left in FP32: the detection head."""
    nodes = [node.name for node in model.graph.node]
    if name == "plate_detector":
        # YOLOv8 head: everything after the first two convs of each box (cv2) and class (cv3) branch, that
        # is their last conv, the score sigmoid, DFL and the decoding to pixels.
        branch = re.compile(r"/model\.22/cv[23]\.\d/cv[23]\.\d\.[01]/")
        return [n for n in nodes if n.startswith(("/model.22/", "grid/")) and not branch.match(n)]
    return []


MODELS: dict[str, Prepare] = {
    "plate_detector": _plate_detector,
}


def calibration_image(seed: int) -> np.ndarray:
    """A rendered frame, or a third of the time its vehicle, or its plate with a margin, so plates of every
    size are seen (a camera close to the lane, or a plate crop, fills the frame with one plate)."""
    scene = render_scene(seed, SceneOptions(difficulty=(seed % 5) / 4))
    box = (None, scene.truth.vehicle_box, scene.truth.plate_box)[seed % 3]
    if box is None:
        return scene.image
    m = box.height // 2 if box is scene.truth.plate_box else 0
    return scene.image[max(0, box.y - m) : box.y + box.height + m, max(0, box.x - m) : box.x + box.width + m]


class Frames(CalibrationDataReader):
    def __init__(self, prepare: Prepare, count: int) -> None:
        self._items: Iterator[dict[str, np.ndarray]] = (prepare(calibration_image(seed)) for seed in range(count))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def seconds_per_call(path: Path, inputs: dict[str, np.ndarray], threads: int, repeats: int = 20) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, inputs)
    start = time.perf_counter()
    for _ in range(repeats):
        session.run(None, inputs)
    return (time.perf_counter() - start) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument("--calibration", type=int, default=96, help="rendered frames")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads for the timing")
    args = parser.parse_args()
    repository = VisionSettings().model_repository
    for name in tqdm(args.models, desc="models", unit="model"):
        source = repository / name / "1" / "model.onnx"
        target = source.with_name(INT8_FILE)
        with tempfile.TemporaryDirectory() as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            model = onnx.load(str(prepared))
            quantize_static(
                str(prepared),
                str(target),
                Frames(MODELS[name], args.calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                nodes_to_exclude=_keep_float(model, name),
            )
        sample = MODELS[name](render_scene(10_000).image)
        fp32, int8 = (seconds_per_call(path, sample, args.threads) for path in (source, target))
        speedup = fp32 / int8
        print(f"{name}: FP32 {1000 * fp32:.1f} ms, INT8 {1000 * int8:.1f} ms ({speedup:.2f}x), {args.threads} threads")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
