#!/usr/bin/env python
"""Let the YOLOv8 plate detector take any input size that is a multiple of 32, so a 16:9 frame is letterboxed
to 640x384 instead of 640x640 (40 % fewer pixels, none of them padding) and a 4:3 frame to 640x480.

The Ultralytics export bakes the 640x640 grid into the detection head: the anchor points and strides of its
8400 cells are constants, and the DFL reshapes name 8400. This rewrites those reshapes to ``-1`` and computes
the anchors and strides in the graph from the shapes of the three feature maps, as Ultralytics' own
``make_anchors`` does (cell centres, row-major, strides 8, 16, 32). It then checks that the computed
anchors equal the baked ones at 640x640 and that the rewritten model gives the original's outputs there,
and runs it at 384x640.

    python scripts/dynamic_input_size.py model_repository/plate_detector/1/model.onnx [--write]
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


def rewrite(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
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


def check(original: Path, rewritten: onnx.ModelProto, replaced: dict[str, np.ndarray]) -> None:
    session = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = ort.InferenceSession(str(original), providers=["CPUExecutionProvider"])
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
    np.testing.assert_allclose(session.run(None, {"images": x})[0], reference.run(None, {"images": x})[0], atol=1e-3)
    wide = session.run(None, {"images": x[:, :, :384, :]})[0]
    assert wide.shape == (2, 5, (48 * 80 + 24 * 40 + 12 * 20)), wide.shape
    print(f"anchors and outputs agree at 640x640; 384x640 gives {wide.shape[2]} cells")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--write", action="store_true", help="replace the model file once the checks pass")
    args = parser.parse_args()
    model, replaced = rewrite(onnx.load(str(args.model)))
    check(args.model, model, replaced)
    if args.write:
        onnx.save(model, str(args.model))
        print(f"wrote {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
