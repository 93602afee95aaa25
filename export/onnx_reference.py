"""The project's custom ONNX nodes (`trt.plugins::NVFP4Linear`, `trt.plugins::NVFP4MoE`) evaluated
with the torch `exact` references, on numpy arrays.

- `linear_from_node` / `moe_from_node`: the canonical weights (export.layer) of one node from its
  input arrays and attributes (node: an `onnx.NodeProto` or an `onnx_ir.Node`);
- `NODE_REFERENCES[op_type](node, inputs) -> output`: one node given its input arrays (the
  layer-by-layer verifier, plugins/verify, builds its per-op references on these);
- `reference_ops()`: the same as `onnx.reference` ops, so that `ReferenceEvaluator(model,
  new_ops=reference_ops())` runs a small plugin-format graph end to end on CPU without the ONNX
  Runtime custom-op library (also `export.qdq`'s TRT_FP4DynamicQuantize).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from export.dtypes import to_numpy, to_torch
from export.layer import NVFP4LinearWeights, NVFP4MoEWeights
from export.moe import unstack_moe
from export.reference import nvfp4_linear_exact, nvfp4_moe_exact


def attributes_of(node) -> dict[str, Any]:
    """{name: value} of an onnx.NodeProto's or onnx_ir.Node's attributes (strings decoded)."""
    if hasattr(node, "attribute"):  # onnx.NodeProto
        import onnx

        values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    else:
        values = {name: attr.value for name, attr in node.attributes.items()}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def linear_from_node(node, inputs: Sequence[np.ndarray]) -> NVFP4LinearWeights:
    """An NVFP4Linear node's inputs 1-4 and attributes (docs/op-contract.md) as the canonical layer."""
    attrs = attributes_of(node)
    weight, scale, global_scale = (to_torch(a) for a in inputs[1:4])
    bias = to_torch(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else None
    w4a4 = attrs["mode"] == "w4a4"
    g = global_scale.to(torch.float32).reshape(-1)
    return NVFP4LinearWeights(
        name=getattr(node, "name", "") or "NVFP4Linear", weight_packed=weight.view(torch.uint8),
        weight_scale=scale.view(torch.float8_e4m3fn), weight_global_scale=g.reshape(()) if g.numel() == 1 else g,
        input_global_scale=torch.tensor(attrs["input_global_scale"], dtype=torch.float32) if w4a4 else None,
        input_global_scale_inv=torch.tensor(attrs["input_global_scale_inv"], dtype=torch.float32) if w4a4 else None,
        bias=bias)


def moe_from_node(node, inputs: Sequence[np.ndarray]) -> NVFP4MoEWeights:
    """An NVFP4MoE node's inputs 2-7 and attributes (docs/op-contract-moe.md) as the canonical block
    (export.moe.unstack_moe; the router is not part of the node: None)."""
    attrs = attributes_of(node)
    if attrs.get("activation", "silu") != "silu":
        raise ValueError(f"{getattr(node, 'name', '')}: activation {attrs['activation']!r} is not 'silu'")
    keys = ("num_experts", "top_k", "hidden_size", "intermediate_size", "mode", "normalize_topk",
            "w13_input_global_scale", "w13_input_global_scale_inv", "w2_input_global_scale",
            "w2_input_global_scale_inv")
    return unstack_moe([to_torch(a) for a in inputs[2:8]], name=getattr(node, "name", "") or "NVFP4MoE",
                       **{k: attrs[k] for k in keys})


def nvfp4_linear_node_reference(node, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """One NVFP4Linear node (docs/op-contract.md) through `nvfp4_linear_exact`."""
    return to_numpy(nvfp4_linear_exact(to_torch(inputs[0]), linear_from_node(node, inputs)))


def nvfp4_moe_node_reference(node, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """One NVFP4MoE node (docs/op-contract-moe.md) through `nvfp4_moe_exact` on its x and router logits."""
    return to_numpy(nvfp4_moe_exact(to_torch(inputs[0]), to_torch(inputs[1]), moe_from_node(node, inputs)))


NODE_REFERENCES = {"NVFP4Linear": nvfp4_linear_node_reference, "NVFP4MoE": nvfp4_moe_node_reference}


def reference_ops() -> list:
    """onnx.reference ops for the plugin nodes and for export.qdq's TRT_FP4DynamicQuantize."""
    from onnx.reference.op_run import OpRun

    from export.contract import op_contract
    from export.qdq import reference_ops as qdq_reference_ops

    def op(op_type: str):
        reference = NODE_REFERENCES[op_type]

        def _run(self, *inputs, **_attributes):
            return (reference(self.onnx_node, inputs),)

        return type(op_type, (OpRun,), {"op_domain": op_contract(op_type)["domain"], "_run": _run})

    return [op(t) for t in NODE_REFERENCES] + qdq_reference_ops()
