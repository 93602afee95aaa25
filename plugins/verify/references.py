"""Per-op references for the layer-by-layer check: `REFERENCES[op_type](node, inputs)`.

`node` is the `onnx.NodeProto` being checked (attributes read with `onnx.helper`), `inputs` its
input arrays in their ONNX types (the activation as the runtime produced it, bfloat16 as
`ml_dtypes.bfloat16`; initializers as stored, FP4/FP8 bytes as uint8). A reference returns the
node's expected output, either as an array (then `tolerance.default_bound` applies) or as
`Checked(output, bound)` with a per-element bound derived from the op's formula.

Another op registers with one line, e.g. `REFERENCES["NVFP4MoE"] = moe_reference`. Decoding a node
into the canonical weights is export.onnx_reference's (one home for what a node means).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
import torch

from export.dtypes import name_of_numpy, to_numpy, to_torch
from export.layer import NVFP4LinearWeights, NVFP4MoEWeights
from export.onnx_reference import linear_from_node, nvfp4_moe_node_reference
from export.qdq import qdq_linear_operands
from export.reference import exact_operands, nvfp4_linear_exact
from plugins.verify import tolerance

# The rewritten linears of a qdq graph are checked as one virtual node of this type (graph.py makes
# it from the metadata export.qdq leaves), with NVFP4Linear's inputs and attributes.
QDQ_LINEAR = "NVFP4Linear(qdq)"


@dataclass
class Checked:
    output: np.ndarray  # the expected output, in the node's output type
    bound: np.ndarray  # allowed |runtime - output| per element (broadcastable), float64


Reference = Callable[[onnx.NodeProto, list], "np.ndarray | Checked"]
REFERENCES: dict[str, Reference] = {}


def register(op_type: str):
    def add(fn: Reference) -> Reference:
        REFERENCES[op_type] = fn
        return fn
    return add


def dtype_name(array: np.ndarray) -> str:
    return name_of_numpy(np.asarray(array).dtype)


def node_from_layer(layer: NVFP4LinearWeights, op_type: str, x_name: str, dtype: torch.dtype) -> tuple[onnx.NodeProto, list]:
    """The node and initializer arrays (all inputs but x) the exporter writes for `layer` (from a
    checkpoint), so that a check can take its reference from the checkpoint instead of the graph."""
    from export.torch_ops import node_attributes

    attrs = node_attributes(
        in_features=layer.in_features, out_features=layer.out_features, mode=layer.mode,
        input_global_scale=float(layer.input_global_scale) if layer.w4a4 else 1.0,
        input_global_scale_inv=float(layer.input_global_scale_inv) if layer.w4a4 else 1.0,
        has_bias=layer.bias is not None)
    g = layer.weight_global_scale.to(torch.float32).reshape(-1)
    arrays = [layer.weight_packed.numpy(), layer.weight_scale.view(torch.uint8).numpy(), g.numpy()]
    if layer.bias is not None:
        arrays.append(to_numpy(layer.bias.to(dtype)))
    names = [x_name] + [f"{layer.name}.{n}" for n in ("weight", "weight_scale", "weight_global_scale", "bias")][: len(arrays)]
    return onnx.helper.make_node(op_type, names, [f"{layer.name}.y"], name=layer.name, **attrs), arrays


def node_from_moe_block(moe: NVFP4MoEWeights, op_type: str, x_name: str, logits_name: str) -> tuple[onnx.NodeProto, list]:
    """The NVFP4MoE node and stacked initializer arrays (inputs 2-7) the exporter writes for a
    checkpoint's MoE block, as `node_from_layer` does for a linear."""
    from export.moe import stack_moe

    stacked = stack_moe(moe)
    attrs = stacked.node_attributes()
    arrays = [t.view(torch.uint8).numpy() if t.dtype == torch.int8 else t.numpy() for t in stacked.tensors()]
    names = [x_name, logits_name] + [f"{moe.name}.experts.{n}" for n in stacked.TENSORS]
    return onnx.helper.make_node(op_type, names, [f"{moe.name}.y"], name=moe.name, **attrs), arrays


def _abs_sum(a: torch.Tensor, w: torch.Tensor, alpha: torch.Tensor | None, out_shape) -> np.ndarray:
    s = torch.matmul(a.abs(), w.abs().t())
    if alpha is not None:
        s = s * alpha.double().abs()
    return s.reshape(out_shape).numpy()


@register("NVFP4Linear")
def nvfp4_linear(node: onnx.NodeProto, inputs: list) -> Checked:
    """The op contract's exact formula (export.reference.nvfp4_linear_exact)."""
    layer = linear_from_node(node, inputs)
    x = to_torch(inputs[0])
    y = nvfp4_linear_exact(x, layer)
    a, w, alpha = exact_operands(x, layer)
    out = to_numpy(y)
    bound = tolerance.linear_bound(out, _abs_sum(a, w, alpha, out.shape), layer.in_features, dtype_name(inputs[0]))
    return Checked(out, bound)


@register(QDQ_LINEAR)
def qdq_linear(node: onnx.NodeProto, inputs: list) -> Checked:
    """What export.qdq's subgraph computes: DequantizeLinear's float32 products, both operands cast
    to T, a MatMul rounding its sum to T, then a bias Add in T."""
    layer = linear_from_node(node, inputs)
    x = to_torch(inputs[0])
    a, w = qdq_linear_operands(x, layer, x.dtype)
    y = torch.matmul(a, w.t()).to(torch.float32).to(x.dtype)
    if layer.bias is not None:
        y = (y.to(torch.float32) + layer.bias.to(torch.float32)).to(x.dtype)
    out = to_numpy(y.reshape(*x.shape[:-1], layer.out_features))
    roundings = 2 if layer.bias is not None else 1
    bound = tolerance.linear_bound(out, _abs_sum(a, w, None, out.shape), layer.in_features,
                                   dtype_name(inputs[0]), roundings)
    return Checked(out, bound)


# The op's formula gives no bound in closed form through the routing and the two rounded activations:
# the default bound applies (an implementation that rounds like the reference, the ORT op, is at 0).
REFERENCES["NVFP4MoE"] = nvfp4_moe_node_reference


def check(node: onnx.NodeProto, inputs: list) -> Checked:
    """The registered reference of `node.op_type`, with the default bound where it gives none."""
    result = REFERENCES[node.op_type](node, inputs)
    if isinstance(result, Checked):
        return result
    out = np.asarray(result)
    return Checked(out, tolerance.default_bound(out, dtype_name(inputs[0])))
