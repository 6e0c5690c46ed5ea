#!/usr/bin/env python
"""Let the detectors take any input size that is a multiple of 32, so a 16:9 frame goes in at its own shape
instead of a square: the YOLOv8 plate detector at 640x384 (letterboxed; 40 % fewer pixels than 640x640,
none of them padding), the CenterNet vehicle detector at 512x288 (44 % fewer than 512x512, and no longer
squashed vertically).

Plate detector: the Ultralytics export bakes the 640x640 grid into the detection head: the anchor points
and strides of its 8400 cells are constants, and the DFL reshapes name 8400. This rewrites those reshapes
to ``-1`` and computes the anchors and strides in the graph from the shapes of the three feature maps, as
Ultralytics' own ``make_anchors`` does (cell centres, row-major, strides 8, 16, 32). It then checks that the computed
anchors equal the baked ones at 640x640 and that the rewritten model gives the original's outputs there,
and runs it at 384x640.

Vehicle detector: the TF.js CenterNet's decoding (top 100 peaks of the 128x128 heatmap, gathered box sizes)
names the heatmap's width, 128, to split a peak's index into row and column, and its 16,384 cells to gather
the box sizes. The width is read from the heatmap's shape instead and the gather reshape becomes ``-1``;
the check is the same (512x512 equal to the original, 288x512 runs).

Face detector: the BlazeFace (back model) regression and score reshapes name the 512 and 384 anchors of a
256x256 input; they become ``[0, -1, k]``, so one pass over a whole 16:9 frame at 512x288 (1152 + 864
anchors) replaces the 256x256 tiles that found small faces. The check: 256x256 equal to the original, 288x512
gives 2016 anchors.

    python scripts/dynamic_input_size.py model_repository/plate_detector/1/model.onnx [--write]
    python scripts/dynamic_input_size.py model_repository/vehicle_detector/1/model.onnx [--write]
    python scripts/dynamic_input_size.py model_repository/face_detector/1/model.onnx [--write]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.dynamic_batch import constants  # noqa: E402


def same_outputs(original: Path, rewritten: onnx.ModelProto, inputs: dict[str, np.ndarray],
                 atol: float) -> ort.InferenceSession:
    """Assert that the rewritten model gives the original's outputs on ``inputs``; the rewritten session."""
    session = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = ort.InferenceSession(str(original), providers=["CPUExecutionProvider"])
    for got, want in zip(session.run(None, inputs), reference.run(None, inputs), strict=True):
        np.testing.assert_allclose(got, want, atol=atol)
    return session


# --- YOLOv8 (plate detector) ----------------------------------------------------------------------------

HEAD = "/model.22"
STRIDES = (8, 16, 32)


def _level_maps(graph: onnx.GraphProto) -> list[str]:
    """The box-branch output of each detection level (``cv2.<i>``), whose height and width set the grid."""
    names = []
    for level in range(len(STRIDES)):
        node = next(n for n in graph.node if n.name == f"{HEAD}/cv2.{level}/cv2.{level}.2/Conv")
        names.append(node.output[0])
    return names


def _anchor_nodes(level_maps: list[str]) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes computing ``anchors`` [1, 2, A] and ``strides`` [1, A] from the level maps' shapes."""
    nodes: list[onnx.NodeProto] = []
    consts = [
        numpy_helper.from_array(np.array(0, np.int64), "grid/zero"),
        numpy_helper.from_array(np.array(1, np.int64), "grid/one"),
        numpy_helper.from_array(np.array(0.5, np.float32), "grid/half"),
        numpy_helper.from_array(np.array([0], np.int64), "grid/axis0"),
        numpy_helper.from_array(np.array([-1], np.int64), "grid/flat"),
        numpy_helper.from_array(np.array(2, np.int64), "grid/h_index"),
        numpy_helper.from_array(np.array(3, np.int64), "grid/w_index"),
    ]
    anchors, strides = [], []
    for level, (name, stride) in enumerate(zip(level_maps, STRIDES, strict=True)):
        p = f"grid/{level}/"
        consts.append(numpy_helper.from_array(np.array([stride], np.float32), p + "stride"))
        nodes += [
            helper.make_node("Shape", [name], [p + "shape"]),
            helper.make_node("Gather", [p + "shape", "grid/h_index"], [p + "h"], axis=0),
            helper.make_node("Gather", [p + "shape", "grid/w_index"], [p + "w"], axis=0),
            helper.make_node("Range", ["grid/zero", p + "h", "grid/one"], [p + "ys_i"]),
            helper.make_node("Range", ["grid/zero", p + "w", "grid/one"], [p + "xs_i"]),
            helper.make_node("Cast", [p + "ys_i"], [p + "ys_f"], to=TensorProto.FLOAT),
            helper.make_node("Cast", [p + "xs_i"], [p + "xs_f"], to=TensorProto.FLOAT),
            helper.make_node("Add", [p + "ys_f", "grid/half"], [p + "ys"]),
            helper.make_node("Add", [p + "xs_f", "grid/half"], [p + "xs"]),
            helper.make_node("Unsqueeze", [p + "h", "grid/axis0"], [p + "h1"]),
            helper.make_node("Unsqueeze", [p + "w", "grid/axis0"], [p + "w1"]),
            helper.make_node("Concat", [p + "h1", p + "w1"], [p + "hw"], axis=0),
            # x varies fastest: xs repeated h times; ys each repeated w times.
            helper.make_node("Expand", [p + "xs", p + "hw"], [p + "grid_x"]),
            helper.make_node("Unsqueeze", [p + "ys", "grid/one_axis"], [p + "ys_col"]),
            helper.make_node("Expand", [p + "ys_col", p + "hw"], [p + "grid_y"]),
            helper.make_node("Reshape", [p + "grid_x", "grid/flat"], [p + "ax"]),
            helper.make_node("Reshape", [p + "grid_y", "grid/flat"], [p + "ay"]),
            helper.make_node("Unsqueeze", [p + "ax", "grid/axis0"], [p + "ax0"]),
            helper.make_node("Unsqueeze", [p + "ay", "grid/axis0"], [p + "ay0"]),
            helper.make_node("Concat", [p + "ax0", p + "ay0"], [p + "anchors"], axis=0),
            helper.make_node("Shape", [p + "ax"], [p + "cells"]),
            helper.make_node("Expand", [p + "stride", p + "cells"], [p + "strides"]),
        ]
        anchors.append(p + "anchors")
        strides.append(p + "strides")
    consts.append(numpy_helper.from_array(np.array([1], np.int64), "grid/one_axis"))
    nodes += [
        helper.make_node("Concat", anchors, ["grid/anchors_2a"], axis=1),
        helper.make_node("Unsqueeze", ["grid/anchors_2a", "grid/axis0"], ["grid/anchors"]),
        helper.make_node("Concat", strides, ["grid/strides_a"], axis=0),
        helper.make_node("Unsqueeze", ["grid/strides_a", "grid/axis0"], ["grid/strides"]),
    ]
    return nodes, consts


def rewrite_yolo(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The rewritten model and the baked constants it replaced (anchors, strides), for the check."""
    graph = model.graph
    values = constants(graph)
    replaced: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.name in (f"{HEAD}/Sub", f"{HEAD}/Add_1"):
            replaced["anchors"] = values[node.input[0]]
            node.input[0] = "grid/anchors"
        elif node.name == f"{HEAD}/Mul_2":
            replaced["strides"] = values[node.input[1]]
            node.input[1] = "grid/strides"
    for init in graph.initializer:
        if init.name.startswith(f"{HEAD}/dfl/Constant"):
            shape = numpy_helper.to_array(init).copy()
            shape[-1] = -1
            init.CopyFrom(numpy_helper.from_array(shape, init.name))
    nodes, consts = _anchor_nodes(_level_maps(graph))
    # The grid nodes go right after the last level map is computed, before the head's decoding.
    last = max(i for i, n in enumerate(graph.node) if n.name.startswith(f"{HEAD}/cv2.2/cv2.2.2/Conv"))
    for offset, node in enumerate(nodes):
        graph.node.insert(last + 1 + offset, node)
    graph.initializer.extend(consts)
    used = {name for node in graph.node for name in node.input}
    for init in [init for init in graph.initializer if init.name not in used]:
        graph.initializer.remove(init)
    for dim, symbol in ((2, "H"), (3, "W")):
        graph.input[0].type.tensor_type.shape.dim[dim].dim_param = symbol
    graph.output[0].type.tensor_type.shape.dim[2].dim_param = "A"
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model, replaced


def check_yolo(original: Path, rewritten: onnx.ModelProto, replaced: dict[str, np.ndarray]) -> None:
    probe = onnx.ModelProto()
    probe.CopyFrom(rewritten)
    probe.graph.output.extend(
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("grid/anchors", "grid/strides")]
    )
    probing = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2, 3, 640, 640), np.float32)
    _, anchors, strides = probing.run(None, {"images": x})
    np.testing.assert_array_equal(anchors, replaced["anchors"])
    np.testing.assert_array_equal(strides, replaced["strides"])
    session = same_outputs(original, rewritten, {"images": x}, 1e-3)
    wide = session.run(None, {"images": x[:, :, :384, :]})[0]
    assert wide.shape == (2, 5, (48 * 80 + 24 * 40 + 12 * 20)), wide.shape
    print(f"anchors and outputs agree at 640x640; 384x640 gives {wide.shape[2]} cells")


# --- CenterNet (vehicle detector) ----------------------------------------------------------------------

CENTERNET_INPUT = "tower_0/images:0"
CENTERNET_HEATMAP = "tower_0/keypoints:0"  # [1, H/4, W/4, 80]
CENTERNET_WIDTH = "tower_0/strided_slice_6:0"  # int32 128: the heatmap's width, baked
CENTERNET_CELLS = "const_fold_opt__788"  # int64 [16384, 4]: the box-size map flattened for the gather


def rewrite_centernet(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    values = constants(graph)
    if values[CENTERNET_WIDTH].tolist() != 128 or values[CENTERNET_CELLS].tolist() != [16384, 4]:
        raise ValueError("not the 512x512 TF.js CenterNet this rewrite knows")
    cells = next(init for init in graph.initializer if init.name == CENTERNET_CELLS)
    cells.CopyFrom(numpy_helper.from_array(np.array([-1, 4], np.int64), CENTERNET_CELLS))
    graph.initializer.remove(next(init for init in graph.initializer if init.name == CENTERNET_WIDTH))
    graph.initializer.append(numpy_helper.from_array(np.array(2, np.int64), "heatmap/w_index"))
    width_nodes = [
        helper.make_node("Shape", [CENTERNET_HEATMAP], ["heatmap/shape"]),
        helper.make_node("Gather", ["heatmap/shape", "heatmap/w_index"], ["heatmap/w"], axis=0),
        helper.make_node("Cast", ["heatmap/w"], [CENTERNET_WIDTH], to=TensorProto.INT32),
    ]
    first_use = min(i for i, node in enumerate(graph.node) if CENTERNET_WIDTH in node.input)
    for offset, node in enumerate(width_nodes):
        graph.node.insert(first_use + offset, node)
    for dim, symbol in ((1, "H"), (2, "W")):
        graph.input[0].type.tensor_type.shape.dim[dim].dim_param = symbol
    for output in graph.output:
        if output.name != "tower_0/detections:0":
            for dim, symbol in ((1, "h"), (2, "w")):
                output.type.tensor_type.shape.dim[dim].dim_param = symbol
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def check_centernet(original: Path, rewritten: onnx.ModelProto) -> None:
    x = np.random.default_rng(0).random((1, 512, 512, 3), np.float32) * 255
    session = same_outputs(original, rewritten, {CENTERNET_INPUT: x}, 1e-3)
    heatmap, detections = session.run([CENTERNET_HEATMAP, "tower_0/detections:0"], {CENTERNET_INPUT: x[:, :288]})
    assert heatmap.shape[1:3] == (72, 128) and detections.shape == (1, 100, 6), (heatmap.shape, detections.shape)
    columns, rows = detections[:, :, [0, 2]], detections[:, :, [1, 3]]
    assert np.all(columns.mean(axis=2) <= 512 + 64) and np.all(rows.mean(axis=2) <= 288 + 64), "boxes off the map"
    print("outputs agree at 512x512; 288x512 gives a 72x128 heatmap")


# --- BlazeFace (face detector) -------------------------------------------------------------------------

BLAZEFACE_INPUT = "input:0"
BLAZEFACE_RESHAPES = {"const_fold_opt__354__batch": (512, 1), "const_fold_opt__355__batch": (512, 16),
                      "const_fold_opt__358__batch": (384, 1), "const_fold_opt__356__batch": (384, 16)}


def rewrite_blazeface(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    values = constants(graph)
    for name, (anchors, width) in BLAZEFACE_RESHAPES.items():
        if values[name].tolist() != [0, anchors, width]:
            raise ValueError("not the 256x256 BlazeFace this rewrite knows")
        shape = next(init for init in graph.initializer if init.name == name)
        shape.CopyFrom(numpy_helper.from_array(np.array([0, -1, width], np.int64), name))
    for dim, symbol in ((1, "H"), (2, "W")):
        graph.input[0].type.tensor_type.shape.dim[dim].dim_param = symbol
    for output in graph.output:
        output.type.tensor_type.shape.dim[1].dim_param = "anchors"
    used = {name for node in graph.node for name in node.input}
    for unused in [init for init in graph.initializer if init.name not in used]:
        graph.initializer.remove(unused)
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def check_blazeface(original: Path, rewritten: onnx.ModelProto) -> None:
    x = np.random.default_rng(0).random((2, 256, 256, 3), np.float32) * 2 - 1
    session = same_outputs(original, rewritten, {BLAZEFACE_INPUT: x}, 1e-4)
    wide = session.run(None, {BLAZEFACE_INPUT: np.zeros((1, 288, 512, 3), np.float32)})
    assert [o.shape for o in wide] == [(1, 1152, 1), (1, 864, 1), (1, 1152, 16), (1, 864, 16)], wide
    print("outputs agree at 256x256; 288x512 gives 1152 + 864 anchors")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--write", action="store_true", help="replace the model file once the checks pass")
    args = parser.parse_args()
    model = onnx.load(str(args.model))
    if model.graph.input[0].name == CENTERNET_INPUT:
        model = rewrite_centernet(model)
        check_centernet(args.model, model)
    elif model.graph.input[0].name == BLAZEFACE_INPUT:
        model = rewrite_blazeface(model)
        check_blazeface(args.model, model)
    else:
        model, replaced = rewrite_yolo(model)
        check_yolo(args.model, model, replaced)
    if args.write:
        onnx.save(model, str(args.model))
        print(f"wrote {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
