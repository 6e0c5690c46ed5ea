"""The recogniser fine-tune's pure parts (scripts/train_recogniser.py): the plate classifier's starting rows,
the padding rewrite that onnx2torch needs, batches shaped as the served reader shapes them. No torch."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from scripts import train_recogniser as tr
from services.inference.vision import ocr

pytestmark = pytest.mark.unit


def test_served_output_names_are_the_readers() -> None:
    assert (tr.TEXT_OUTPUT, tr.PLATE_OUTPUT) == (ocr.TEXT_OUTPUT, ocr.PLATE_OUTPUT)


def test_head_rows_pick_blank_upper_case_and_digits_then_space() -> None:
    charset = ["a", "B", "A", "1", "0", "b", "x"]  # classes: blank, then these, then space
    rows = tr.head_rows(charset, "AB01")
    assert rows == [0, 3, 2, 5, 4, 8]
    assert len(tr.head_rows([*ocr.PLATE_CHARS], ocr.PLATE_CHARS)) == ocr.OTHER + 1


def _model(op: str, auto_pad: str, strides: list[int]) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 7])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    attrs = {"kernel_shape": [2, 2], "strides": strides, "auto_pad": auto_pad}
    inits = []
    inputs = ["x"]
    if op == "Conv":
        weight = np.random.default_rng(0).normal(size=(3, 2, 2, 2)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, "w"))
        inputs.append("w")
    node = helper.make_node(op, inputs, ["y"], **attrs)
    graph = helper.make_graph([node], "g", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("op", ["Conv", "MaxPool"])
def test_same_upper_becomes_explicit_pads_with_the_same_output(op: str) -> None:
    x = np.random.default_rng(1).normal(size=(1, 2, 5, 7)).astype(np.float32)
    model = _model(op, "SAME_UPPER", [1, 1])
    expected = _run(model, x)
    assert tr.explicit_padding(model) == 1
    attrs = {a.name: a for a in model.graph.node[0].attribute}
    assert "auto_pad" not in attrs and list(attrs["pads"].ints) == [0, 0, 1, 1]
    assert np.array_equal(_run(model, x), expected)


def test_same_upper_with_a_stride_is_refused() -> None:
    with pytest.raises(ValueError):
        tr.explicit_padding(_model("Conv", "SAME_UPPER", [2, 2]))


def test_batches_are_padded_like_the_served_readers() -> None:
    narrow = np.full((20, 30, 3), 255, np.uint8)
    wide = np.full((10, 200, 3), 0, np.uint8)
    batch = tr.to_input([narrow])
    assert batch.shape == (1, 3, 48, 144)  # at least 144 wide
    assert np.allclose(batch[0, :, :, :72], 1.0) and np.allclose(batch[0, :, :, 72:], 0.0)
    assert np.allclose(batch, ocr.rec_input([narrow]))
    batch = tr.to_input([narrow, wide])
    assert batch.shape == (2, 3, 48, tr.MAX_WIDTH)  # 960 wide at height 48, cut to the widest allowed
    assert batch.shape[3] % 8 == 0


def test_stored_lines_round_trip_at_the_stored_height() -> None:
    line = np.random.default_rng(4).integers(0, 255, (60, 240, 3), dtype=np.uint8)
    data = np.frombuffer(tr.stored_line(line), np.uint8)
    import cv2

    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert image.shape == (tr.STORED_HEIGHT, 128, 3)


def test_greedy_decode_collapses_repeats_and_drops_blank_and_other() -> None:
    alphabet = "AB"
    steps = [1, 1, 0, 1, 3, 2, 2, 0]  # A A _ A other B B _
    probs = np.eye(4)[steps]
    assert tr.greedy(probs, alphabet) == "AAB"


def test_learning_rate_warms_up_then_decays() -> None:
    assert tr.learning_rate(0.0, 1e-3) == 0.0
    assert tr.learning_rate(0.05, 1e-3) == pytest.approx(1e-3)
    assert tr.learning_rate(0.5, 1e-3) < 1e-3
    assert tr.learning_rate(1.0, 1e-3) == pytest.approx(2e-5)


def test_the_starting_model_reads_a_plate_as_pp_ocr_does() -> None:
    """Before any training, the plate classifier (PP-OCR's rows for blank, A-Z, 0-9) reads a clean rendered
    plate's serial line as PP-OCR's own reading does, through explicit padding."""
    import cv2

    from services.simulator import plate_variants

    backbone, features, w, b = tr.source_parts()
    start = tr.start_model(backbone, features, w, b)
    assert [o.name for o in start.graph.output] == [tr.TEXT_OUTPUT, tr.PLATE_LOGITS]
    session = ort.InferenceSession(start.SerializeToString(), providers=["CPUExecutionProvider"])
    face = plate_variants.us_or_eu(np.random.default_rng(8), plate_variants.fonts()[0])
    h, w_ = face.image.shape[:2]
    serial_row = cv2.cvtColor(
        face.image[int(0.25 * h) : int(0.78 * h), int(0.04 * w_) : int(0.96 * w_)], cv2.COLOR_RGB2BGR
    )
    text, logits = session.run(None, {"x": tr.to_input([serial_row])})
    read = tr.greedy(logits[0], ocr.PLATE_CHARS)
    assert read == ocr.ctc_decode(text[0]).text
    assert read.replace("O", "0") == face.serial.replace("O", "0")  # this serial's O is as round as a zero
