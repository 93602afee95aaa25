"""Graph surgery for verification (onnx_ir, in memory; the exported file is never changed):

- `checked_nodes`: the nodes the layer-by-layer check judges: every node whose op_type has a
  registered reference (NVFP4Linear, and whatever else registers), and in a qdq graph each
  rewritten linear, found by the metadata export.qdq leaves on its last node;
- `mark_outputs`: their inputs and outputs become graph outputs, as Polygraphy's
  `--onnx-outputs mark all` does, so that a runtime returns them;
- `emulate_16bit_in_float32`: a float32 copy of a float16/bfloat16 graph in which every 16-bit
  result is rounded to its type (Cast there and back), for runtimes that lack 16-bit kernels
  (ONNX Runtime's CPU provider has no bfloat16 Mul/MatMul; numpy has no fast 16-bit matmul). Each
  op then computes in float32 and rounds its output to T, as GPU runtimes do; for NVFP4Linear this
  is exactly the op's 16-bit kernel (the contract computes in float32 and rounds once to T).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

from export.dtypes import DTYPES
from export.qdq import LINEAR_METADATA_KEY
from plugins.verify.references import QDQ_LINEAR, REFERENCES


@dataclass
class CheckedNode:
    name: str  # the layer (node name = module path)
    node: onnx.NodeProto  # what the reference gets; op_type keys REFERENCES
    inputs: list[str]  # the node's input tensors, activation first; "" where an optional one is absent
    output: str


def checked_nodes(model: ir.Model) -> list[CheckedNode]:
    found = []
    for node in model.graph:
        if node.domain not in ("", "ai.onnx") and node.op_type in REFERENCES:
            proto = ir.serde.serialize_node(node)
            found.append(CheckedNode(node.name or node.outputs[0].name, proto, list(proto.input), proto.output[0]))
        elif LINEAR_METADATA_KEY in node.metadata_props:
            meta = json.loads(node.metadata_props[LINEAR_METADATA_KEY])
            inputs = [meta["x"], meta["weight"], meta["weight_scale"], meta["weight_global_scale"]]
            if meta["bias"]:
                inputs.append(meta["bias"])
            proto = onnx.helper.make_node(
                QDQ_LINEAR, inputs, [node.outputs[0].name], name=meta["name"],
                in_features=meta["in_features"], out_features=meta["out_features"], group_size=16,
                mode=meta["mode"], input_global_scale=meta["input_global_scale"],
                input_global_scale_inv=meta["input_global_scale_inv"], has_bias=int(bool(meta["bias"])))
            found.append(CheckedNode(meta["name"], proto, inputs, node.outputs[0].name))
    return found


def values_by_name(model: ir.Model) -> dict[str, ir.Value]:
    values = {v.name: v for v in model.graph.inputs}
    values.update(model.graph.initializers)
    for node in model.graph:
        values.update({v.name: v for v in node.outputs if v.name})
    return values


def initializer_array(value: ir.Value) -> np.ndarray:
    """An initializer as numpy: FP4/FP8 as their bytes (uint8, FP4 packed two per byte, element 2j
    in the low nibble, the NVFP4Linear layout), everything else in its own type."""
    tensor = value.const_value
    if tensor.dtype == ir.DataType.FLOAT4E2M1:
        shape = list(tensor.shape)
        return np.frombuffer(tensor.tobytes(), dtype=np.uint8).reshape(*shape[:-1], shape[-1] // 2)
    if tensor.dtype == ir.DataType.FLOAT8E4M3FN:
        return np.frombuffer(tensor.tobytes(), dtype=np.uint8).reshape(list(tensor.shape))
    return tensor.numpy()


def mark_outputs(model: ir.Model, names) -> list[str]:
    """Make each named tensor a graph output (graph inputs and initializers excepted); returns the
    names that were added."""
    values = values_by_name(model)
    present = {v.name for v in model.graph.outputs}
    fixed = {v.name for v in model.graph.inputs} | set(model.graph.initializers)
    added = []
    for name in names:
        if name and name not in present and name not in fixed:
            model.graph.outputs.append(values[name])
            present.add(name)
            added.append(name)
    return added


# --- float32 emulation of a 16-bit graph ----------------------------------------------------------

_BOOL_OPS = {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "Not", "IsNaN", "IsInf"}
_INT64_OPS = {"Shape", "Size", "NonZero", "ArgMax", "ArgMin"}


def _tensor_attr_type(node: ir.Node, name: str, default):
    attr = node.attributes.get(name)
    return attr.value.dtype if attr is not None else default


def _output_types(node: ir.Node, known: dict[str, ir.DataType]) -> list:
    """Element types of a node's outputs, from its inputs' (the ops exported graphs use)."""
    def of(i):
        v = node.inputs[i] if i < len(node.inputs) else None
        return known.get(v.name) if v is not None else None

    op = node.op_type
    if op == "Cast":
        return [ir.DataType(node.attributes["to"].value)]
    if op == "CastLike":
        return [of(1)]
    if op in _BOOL_OPS:
        return [ir.DataType.BOOL]
    if op in _INT64_OPS:
        return [ir.DataType.INT64]
    if op == "Constant":
        return [_tensor_attr_type(node, "value", None)]
    if op == "ConstantOfShape":
        return [_tensor_attr_type(node, "value", ir.DataType.FLOAT)]
    if op == "DequantizeLinear":
        return [of(1)]
    if op == "TRT_FP4DynamicQuantize":
        return [ir.DataType.FLOAT4E2M1, ir.DataType.FLOAT8E4M3FN]
    if op == "Where":
        return [of(1)] * len(node.outputs)
    first = next((known[v.name] for v in node.inputs if v is not None and v.name in known), None)
    return [first] * len(node.outputs)


def _as_float32(tensor, name: str):
    return ir.Tensor(np.asarray(tensor.numpy(), dtype=np.float32), name=name)


def emulate_16bit_in_float32(model: ir.Model, dtype: str) -> None:
    """Rewrite `model` (in place) into its float32 emulation (module docstring). Graph inputs and
    outputs of the 16-bit type become float32 carrying 16-bit values."""
    if dtype not in ("float16", "bfloat16"):
        raise ValueError(f"dtype {dtype!r}: only float16 and bfloat16 graphs are emulated in float32")
    t16 = ir.DataType(DTYPES[dtype].onnx)
    graph = model.graph
    known: dict[str, ir.DataType] = {}
    for v in graph.inputs:
        known[v.name] = v.dtype
        if v.dtype == t16:
            v.type = ir.TensorType(ir.DataType.FLOAT)
    for name, v in graph.initializers.items():
        known[name] = v.const_value.dtype
        if v.const_value.dtype == t16:
            src = v.const_value
            v.const_value = ir.LazyTensor(lambda src=src, name=name: _as_float32(src, name),
                                          dtype=ir.DataType.FLOAT, shape=src.shape, name=name)
            v.type = ir.TensorType(ir.DataType.FLOAT)
    for node in list(graph):
        types = _output_types(node, known)
        for v, t in zip(node.outputs, types):
            if t is not None:
                known[v.name] = t
        if node.op_type in ("Constant", "ConstantOfShape"):
            attr = node.attributes.get("value")
            if attr is not None and attr.value.dtype == t16:
                node.attributes["value"] = ir.AttrTensor("value", _as_float32(attr.value, attr.value.name or "value"))
        for v, t in zip(node.outputs, types):
            if t != t16:
                continue
            # v: the node's result (float32 now, unless the node is the Cast to T itself); every
            # user of v reads `back` instead: v cast to T and back to float32.
            name = v.name
            users = list(v.uses())
            after = []
            rounded = v
            if node.op_type != "Cast":
                v.type = ir.TensorType(ir.DataType.FLOAT)
                after.append(ir.node("Cast", [v], {"to": t16}, name=f"{name}/round_{dtype}"))
                rounded = after[-1].outputs[0]
                rounded.name = f"{name}/{dtype}"
            back = ir.node("Cast", [rounded], {"to": ir.DataType.FLOAT}, name=f"{name}/as_float32")
            after.append(back)
            graph.insert_after(node, after)
            for user, index in users:
                user.replace_input_with(index, back.outputs[0])
            for i, out in enumerate(graph.outputs):
                if out is v:
                    graph.outputs[i] = back.outputs[0]
            v.name = f"{name}/float32" if node.op_type != "Cast" else f"{name}/{dtype}"
            back.outputs[0].name = name
            back.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
