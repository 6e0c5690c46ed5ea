#!/usr/bin/env python
"""Write the INT8 copies (``1/model.int8.onnx``) of the plate detector and the plate text detector for CPUs
with VNNI, and print how much faster each is than its FP32 original.

    python scripts/quantize_models.py [--models plate_detector plate_text_detector] [--calibration 96]

Static quantisation by onnxruntime (QDQ, signed per-channel weights, unsigned activations) with calibration
on frames rendered by ``services/simulator/render.py``, never on the evaluation photographs. The YOLO
head's last layers (box regression, DFL, class scores) stay in FP32, where 8 bits cost boxes and recall.
The text detector is calibrated on rendered plates cropped as the pipeline crops them. The recogniser stays
in FP32 (with its convolutional backbone alone quantised it ran 1.6x faster but read 6.7 points fewer
held-out US plates exactly), and so does the CenterNet vehicle detector: quantised whole it found no
vehicles at all; with its head after the feature pyramid kept in FP32 it ran 1.2x faster but found the car
carrying the plate in 95 of the 108 openalpr-eu photos, against 108 in FP32.
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
import onnx.version_converter
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.inference.vision import detectors, ocr  # noqa: E402
from services.inference.vision.imaging import clip_box, expand_box  # noqa: E402
from services.inference.vision.runner import INT8_FILE  # noqa: E402
from services.inference.vision.settings import VisionSettings  # noqa: E402
from services.simulator.render import SceneOptions, render_scene  # noqa: E402

Prepare = Callable[[np.ndarray], dict[str, np.ndarray]]
SETTINGS = VisionSettings()  # the deployment's: model repository, text detector side, plate crop margins


def _plate_detector(image: np.ndarray) -> dict[str, np.ndarray]:
    return {
        detectors.PLATE_INPUT: detectors.plate_input(
            image, SETTINGS.plate_detector_side, SETTINGS.plate_detector_max_upscale
        )[0]
    }


def _plate_text_detector(image: np.ndarray) -> dict[str, np.ndarray]:
    return {ocr.TEXT_DET_INPUT: ocr.text_det_input(image, SETTINGS.text_detector_side)}


PER_CHANNEL_OPSET = 13


def _opset(model: onnx.ModelProto) -> int:
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def _keep_float(model: onnx.ModelProto, name: str) -> list[str]:
    """Nodes left in FP32: the detection head."""
    nodes = [node.name for node in model.graph.node]
    if name == "plate_detector":
        # YOLOv8 head: everything after the first two convs of each box (cv2) and class (cv3) branch, that
        # is their last conv, the score sigmoid, DFL and the decoding to pixels.
        branch = re.compile(r"/model\.22/cv[23]\.\d/cv[23]\.\d\.[01]/")
        return [n for n in nodes if n.startswith(("/model.22/", "grid/")) and not branch.match(n)]
    return []


def calibration_image(seed: int) -> np.ndarray:
    """A rendered frame, or a third of the time its vehicle, or its plate with a margin, so plates of every
    size are seen (a camera close to the lane, or a plate crop, fills the frame with one plate)."""
    scene = render_scene(seed, SceneOptions(difficulty=(seed % 5) / 4))
    box = (None, scene.truth.vehicle_box, scene.truth.plate_box)[seed % 3]
    if box is None:
        return scene.image
    m = box.height // 2 if box is scene.truth.plate_box else 0
    return scene.image[max(0, box.y - m) : box.y + box.height + m, max(0, box.x - m) : box.x + box.width + m]


def plate_crop(seed: int) -> np.ndarray:
    """A rendered plate cut out with the pipeline's margins, as the text detector gets it (whole frame when
    the plate is out of view)."""
    scene = render_scene(seed, SceneOptions(difficulty=(seed % 5) / 4))
    box = scene.truth.plate_box
    if box is None:
        return scene.image
    height, width = scene.image.shape[:2]
    corners = np.array([box.x, box.y, box.x + box.width, box.y + box.height], np.float32)
    x1, y1, x2, y2 = clip_box(expand_box(corners, SETTINGS.plate_margin_x, SETTINGS.plate_margin_y), width, height)
    return scene.image[y1:y2, x1:x2]


# model -> (its input from an image, the image for a seed)
MODELS: dict[str, tuple[Prepare, Callable[[int], np.ndarray]]] = {
    "plate_detector": (_plate_detector, calibration_image),
    "plate_text_detector": (_plate_text_detector, plate_crop),
}


class Frames(CalibrationDataReader):
    def __init__(self, name: str, count: int) -> None:
        prepare, image = MODELS[name]
        self._items: Iterator[dict[str, np.ndarray]] = (prepare(image(seed)) for seed in range(count))

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
    repository = SETTINGS.model_repository
    for name in tqdm(args.models, desc="models", unit="model"):
        source = repository / name / "1" / "model.onnx"
        target = source.with_name(INT8_FILE)
        with tempfile.TemporaryDirectory() as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            model = onnx.load(str(prepared))
            if _opset(model) < PER_CHANNEL_OPSET:  # PP-OCR's opset 11 has no per-channel DequantizeLinear
                model = onnx.version_converter.convert_version(model, PER_CHANNEL_OPSET)
                onnx.save(model, str(prepared))
            quantize_static(
                str(prepared),
                str(target),
                Frames(name, args.calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                nodes_to_exclude=_keep_float(model, name),
            )
        prepare, image = MODELS[name]
        sample = prepare(image(10_000))
        fp32, int8 = (seconds_per_call(path, sample, args.threads) for path in (source, target))
        speedup = fp32 / int8
        print(f"{name}: FP32 {1000 * fp32:.1f} ms, INT8 {1000 * int8:.1f} ms ({speedup:.2f}x), {args.threads} threads")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
