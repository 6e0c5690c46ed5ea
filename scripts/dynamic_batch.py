"""Give an ONNX model of model_repository/ a dynamic batch axis, so Triton's dynamic batcher (and the face
tiles of one frame) run as one batched call, and check that the outputs are unchanged.

The exports in model_repository/ fix the batch at 1. This renames axis 0 of every graph input and output to
the symbol N, drops the stored intermediate shapes (they say 1), writes the batch entry of constant Reshape
targets as 0 ("copy the input's"), and turns a Concat with a constant zero block of batch 1 (BlazeFace pads
channels that way) into a Pad. Then it runs a batch of 3 random inputs through the original (one at a time)
and the rewritten model and fails unless every output agrees to 1e-4.

    python scripts/dynamic_batch.py model_repository/face_detector/1/model.onnx [--write]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

BATCH = "N"


def constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """The value of every initializer and Constant node output, by tensor name."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def make_batch_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    for value in [*graph.input, *graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = BATCH
    del graph.value_info[:]
    values = constants(graph)
    added: set[str] = set()
    for node in graph.node:
        if node.op_type == "Reshape" and node.input[1] in values:
            shape = values[node.input[1]].copy()
            if shape.size and shape[0] == 1:
                shape[0] = 0
                name = f"{node.input[1]}__batch"
                if name not in added:
                    graph.initializer.append(numpy_helper.from_array(shape, name))
                    added.add(name)
                node.input[1] = name
    _concat_zeros_to_pad(graph, values)
    onnx.checker.check_model(model)
    return model


def _concat_zeros_to_pad(graph: onnx.GraphProto, constants: dict[str, np.ndarray]) -> None:
    """Concat(x, zeros of batch 1) on the last axis -> Pad(x) with zeros at the end of that axis."""
    zero_blocks = {}
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in constants:
            value = next((numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"), np.zeros(1))
            if not value.any():
                zero_blocks[node.output[0]] = (node, constants[node.input[0]])
    for node in list(graph.node):
        if node.op_type != "Concat" or len(node.input) != 2 or node.input[1] not in zero_blocks:
            continue
        _, shape = zero_blocks[node.input[1]]
        axis = next(a.i for a in node.attribute if a.name == "axis")
        rank = len(shape)
        axis %= rank
        pads = np.zeros(2 * rank, np.int64)
        pads[rank + axis] = shape[axis]
        pads_name = f"{node.output[0]}__pads"
        graph.initializer.append(numpy_helper.from_array(pads, pads_name))
        pad = helper.make_node("Pad", [node.input[0], pads_name], list(node.output), name=f"{node.output[0]}__pad")
        position = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(position, pad)
    used = {name for node in graph.node for name in node.input}
    for name, (node, _) in zero_blocks.items():
        if name not in used:
            graph.node.remove(node)


def verify(original: Path, rewritten: bytes, rows: int = 3) -> float:
    """Largest absolute difference between the original run row by row and the rewritten run on all rows."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    before = ort.InferenceSession(str(original), options, providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(rewritten, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    inputs = {}
    for tensor in before.get_inputs():
        shape = [rows, *tensor.shape[1:]]
        inputs[tensor.name] = (rng.random(shape, np.float32) * (255 if shape[-1] == 3 and len(shape) == 4 and
                                                                  shape[1] != 3 else 1)).astype(np.float32)
    batched = after.run(None, inputs)
    worst = 0.0
    for row in range(rows):
        single = before.run(None, {name: array[row : row + 1] for name, array in inputs.items()})
        for a, b in zip(single, batched, strict=True):
            worst = max(worst, float(np.abs(a[0].astype(np.float64) - b[row].astype(np.float64)).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--write", action="store_true", help="replace each file once it verifies")
    args = parser.parse_args()
    failed = False
    for path in args.models:
        try:
            rewritten = make_batch_dynamic(onnx.load(str(path))).SerializeToString()
            worst = verify(path, rewritten)
        except Exception as exc:  # noqa: BLE001 - report every model, then fail
            print(f"{path}: cannot be made dynamic: {exc!r}"[:400])
            failed = True
            continue
        ok = worst <= 1e-4
        print(f"{path}: batch of 3 vs one at a time, largest difference {worst:.2e} {'ok' if ok else 'MISMATCH'}")
        failed |= not ok
        if ok and args.write:
            path.chmod(0o644)
            path.write_bytes(rewritten)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
