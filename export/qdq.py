"""`--format qdq`: rewrite each NVFP4Linear node into the standard ONNX Q/DQ form that TensorRT
(>= 10.8, FP4 on Blackwell) compiles natively, as NVIDIA ModelOpt emits it:

    weight:      DQ(weight_scale FP8 [N,K/16], weight_global_scale FP32)            -> s_w  FP32
                 DQ(weight FP4 [N,K], s_w, axis=1, block_size=16)                   -> W    FP32
                 Transpose -> (Cast to T)                                           -> W^T  [K,N]
    activation:  trt::TRT_FP4DynamicQuantize(x, input_global_scale; axis=-1,
                                             block_size=16, scale_type=FLOAT8E4M3FN) -> x_f4, s_x_f8
    (w4a4)       DQ(s_x_f8, input_global_scale) -> s_x FP32;  DQ(x_f4, s_x, axis=-1, block_size=16)
                 -> (Cast to T)                                                     -> x^
    y = MatMul(x^, W^T) (+ bias)

DQ cannot take an FP8 x_scale at any opset (its T2 is float/float16/bfloat16, plus float8e8m0
from DQ-24; onnx.checker refuses float8e4m3fn), hence the two DQ nodes per operand, the pattern
ModelOpt's ONNX exporter also emits. FLOAT4E2M1 needs opset >= 23 (IR 11). The FP4 initializer holds the
checkpoint's packed bytes unchanged (ONNX also stores element 2j in the low nibble).

An NVFP4MoE node (one Mixture-of-Experts block) is first expanded into standard routing ops and
one NVFP4Linear per expert projection (`expand_moe_node`), which then take the form above:

    l = Cast(router_logits, FLOAT);  values, experts = TopK(l, k)          (ties: lower index)
    R = ReduceSum(OneHot(experts, E) * Softmax(values), over k)            (normalize_topk)
      = ReduceSum(OneHot(experts, E), over k) * Softmax(l)                 (otherwise) [..., E]
    per expert e: g, u = Split(NVFP4Linear_e(x; gate rows then up rows))
                  h = Cast_T(g·Sigmoid(g) in FLOAT) · u;  d = NVFP4Linear_e(h; down)
    y = Cast_T(Σ_e Cast(d, FLOAT) · R[..., e])

Every expert runs on every token (ONNX has no data-dependent dispatch that TensorRT compiles into
grouped GEMMs): E/k times the expert arithmetic of the plugin, and an expert's Inf/NaN output
on a token that did not select it still poisons that token (0 · Inf). docs/export.md says more.

Also here: `qdq_linear_operands`, the exact values the rewritten subgraph feeds its MatMul (what
the layer-by-layer verification recomputes), and `TRT_FP4DynamicQuantize`, an `onnx.reference`
implementation of TensorRT's DynamicQuantize for running the rewritten graph on CPU. TensorRT gets only the dequant-direction
double-quant scale d; the block scales follow the op contract's activation math with
G = fp32(1/d). For ModelOpt and Quark checkpoints that is exactly the G vLLM uses (G = 1/d);
for compressed-tensors (G stored, d = fp32(1/G)) fp32(1/d) can differ from G by one ulp.
"""
from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import onnx_ir as ir
import torch

from export.layer import GROUP_SIZE
from export.torch_ops import node_attributes, op_contract

QDQ_MIN_OPSET = 23  # FLOAT4E2M1 in DequantizeLinear
# Node metadata key on the last node of each rewritten linear (JSON: its tensors and attributes).
LINEAR_METADATA_KEY = "nvfp4.linear"
QDQ_IR_VERSION = 11
TRT_DOMAIN = "trt"


def _as_numpy(tensor) -> np.ndarray:
    """The initializer's bytes as a numpy array, without a copy where possible."""
    return tensor.numpy()


def _attr(node: ir.Node, name: str):
    return node.attributes[name].value


def _retype_initializer(value: ir.Value, array: np.ndarray, dtype: ir.DataType, shape) -> None:
    if dtype in (ir.DataType.FLOAT4E2M1,):
        tensor = ir.PackedTensor(array, dtype, shape=shape, name=value.name)
    else:
        tensor = ir.Tensor(array, dtype=dtype, shape=ir.Shape(shape), name=value.name)
    value.const_value = tensor
    value.type = ir.TensorType(dtype)
    value.shape = ir.Shape(shape)


def _scalar_initializer(graph: ir.Graph, name: str, x: float) -> ir.Value:
    value = ir.Value(name=name, const_value=ir.tensor(np.array(x, dtype=np.float32), name=name),
                     type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([]))
    graph.register_initializer(value)
    return value


class _NewNodes(list):
    """Nodes made to replace one node, in order; node `<prefix>/<suffix>`, outputs `..._out<i>`."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def add(self, op_type, inputs, attributes=None, domain="", num_outputs=1, suffix=""):
        label = f"{self.prefix}/{suffix or op_type}"
        nd = ir.node(op_type, inputs, attributes or {}, domain=domain, num_outputs=num_outputs, name=label)
        for i, o in enumerate(nd.outputs):
            o.name = f"{label}_out{i}"
        self.append(nd)
        return nd.outputs if num_outputs > 1 else nd.outputs[0]


def _replace(graph: ir.Graph, node: ir.Node, nodes: list, y: ir.Value) -> None:
    """Put `nodes` where `node` is, y standing for its (single) output, and remove it."""
    out = node.outputs[0]
    graph.insert_before(node, nodes)
    y.type, y.shape = out.type, out.shape  # same tensor as the node's output
    if out.is_graph_output():  # keep the graph's output name
        name = out.name
        out.name = f"{name}/replaced"
        y.name = name
    out.replace_all_uses_with(y, replace_graph_outputs=True)
    graph.remove(node, safe=True)


def _rewrite_node(graph: ir.Graph, node: ir.Node, counter: int) -> None:
    x, weight, weight_scale, global_scale = node.inputs[:4]
    bias = node.inputs[4] if len(node.inputs) > 4 else None
    n, k = _attr(node, "out_features"), _attr(node, "in_features")
    mode = _attr(node, "mode")
    name = node.name or f"nvfp4_linear_{counter}"
    out = node.outputs[0]
    act_type = x.type.dtype if x.type is not None else out.type.dtype
    for v, what in ((weight, "weight"), (weight_scale, "weight_scale"), (global_scale, "weight_global_scale")):
        if v is None or v.const_value is None:
            raise ValueError(f"{name}: input {what} is not an initializer; the qdq rewrite needs constant weights")

    _retype_initializer(weight, _as_numpy(weight.const_value).view(np.uint8), ir.DataType.FLOAT4E2M1, [n, k])
    _retype_initializer(weight_scale, _as_numpy(weight_scale.const_value).view(ml_dtypes.float8_e4m3fn),
                        ir.DataType.FLOAT8E4M3FN, [n, k // GROUP_SIZE])
    g = _as_numpy(global_scale.const_value).astype(np.float32).reshape(-1)
    per_channel = g.size > 1
    _retype_initializer(global_scale, g if per_channel else g.reshape(()), ir.DataType.FLOAT,
                        [n] if per_channel else [])

    nodes = _NewNodes(name)
    add = nodes.add

    s_w = add("DequantizeLinear", [weight_scale, global_scale], {"axis": 0} if per_channel else {},
              suffix="weight_scale_dq")
    w = add("DequantizeLinear", [weight, s_w], {"axis": 1, "block_size": GROUP_SIZE}, suffix="weight_dq")
    wt = add("Transpose", [w], {"perm": [1, 0]}, suffix="weight_t")
    if act_type != ir.DataType.FLOAT:
        wt = add("Cast", [wt], {"to": act_type}, suffix="weight_cast")
    a = x
    if mode == "w4a4":
        d = _scalar_initializer(graph, f"{name}.input_global_scale", _attr(node, "input_global_scale"))
        x_f4, s_x8 = add("TRT_FP4DynamicQuantize", [x, d],
                         {"axis": -1, "block_size": GROUP_SIZE, "scale_type": int(ir.DataType.FLOAT8E4M3FN)},
                         domain=TRT_DOMAIN, num_outputs=2, suffix="input_quantize")
        s_x = add("DequantizeLinear", [s_x8, d], suffix="input_scale_dq")
        a = add("DequantizeLinear", [x_f4, s_x], {"axis": -1, "block_size": GROUP_SIZE}, suffix="input_dq")
        if act_type != ir.DataType.FLOAT:
            a = add("Cast", [a], {"to": act_type}, suffix="input_cast")
    y = add("MatMul", [a, wt], suffix="matmul")
    if bias is not None:
        y = add("Add", [y, bias], suffix="bias")
    # What the linear was, on the node that yields its output: the layer-by-layer check finds each
    # rewritten linear by it and recomputes the subgraph from the runtime's own input x.
    nodes[-1].metadata_props[LINEAR_METADATA_KEY] = json.dumps({
        "name": name, "mode": mode, "in_features": k, "out_features": n, "x": x.name,
        "weight": weight.name, "weight_scale": weight_scale.name, "weight_global_scale": global_scale.name,
        "bias": bias.name if bias is not None else None,
        "input_global_scale": _attr(node, "input_global_scale"),
        "input_global_scale_inv": _attr(node, "input_global_scale_inv")})
    _replace(graph, node, nodes, y)


def _int64(graph: ir.Graph, name: str, values) -> ir.Value:
    value = ir.Value(name=name, const_value=ir.tensor(np.array(values, dtype=np.int64), name=name))
    graph.register_initializer(value)
    return value


def expand_moe_node(graph: ir.Graph, node: ir.Node) -> None:
    """Replace one NVFP4MoE node (in place) by standard routing ops and 2·E NVFP4Linear nodes (each
    expert's gate+up rows, then its down), per docs/op-contract-moe.md; the per-expert weights are
    views of the stacked initializers' experts."""
    x, logits = node.inputs[:2]
    stacked = node.inputs[2:8]
    name = node.name or "nvfp4_moe"
    for v in stacked:
        if v is None or v.const_value is None:
            raise ValueError(f"{name}: the stacked expert inputs must be initializers for the qdq rewrite")
    e_count, top_k = _attr(node, "num_experts"), _attr(node, "top_k")
    inter, mode = _attr(node, "intermediate_size"), _attr(node, "mode")
    out = node.outputs[0]
    act_type = x.type.dtype if x.type is not None else out.type.dtype
    arrays = [_as_numpy(v.const_value) for v in stacked]
    scales = {k: _attr(node, k) for k in ("w13_input_global_scale", "w13_input_global_scale_inv",
                                          "w2_input_global_scale", "w2_input_global_scale_inv")}
    nodes = _NewNodes(name)
    add = nodes.add

    def initializer(label, array):
        value = ir.Value(name=f"{name}.{label}", const_value=ir.Tensor(array, name=f"{name}.{label}"))
        graph.register_initializer(value)
        return value

    l32 = add("Cast", [logits], {"to": ir.DataType.FLOAT}, suffix="logits_float")
    values, experts = add("TopK", [l32, _int64(graph, f"{name}.top_k", [top_k])], {"axis": -1},
                          num_outputs=2, suffix="topk")
    one_hot = add("OneHot", [experts, _int64(graph, f"{name}.num_experts", e_count),
                             initializer("one_hot_values", np.array([0.0, 1.0], dtype=np.float32))],
                  {"axis": -1}, suffix="one_hot")  # [..., k, E]
    over_k = _int64(graph, f"{name}.axis_m2", [-2])
    if _attr(node, "normalize_topk"):  # softmax over the k selected logits
        weights = add("Softmax", [values], {"axis": -1}, suffix="topk_softmax")
        weighted = add("Mul", [one_hot, add("Unsqueeze", [weights, _int64(graph, f"{name}.axis_m1", [-1])],
                                            suffix="weights_unsqueeze")], suffix="routing_weighted")
        routing = add("ReduceSum", [weighted, over_k], {"keepdims": 0}, suffix="routing")
    else:  # the selected experts' softmax over all E
        selected = add("ReduceSum", [one_hot, over_k], {"keepdims": 0}, suffix="selected")
        routing = add("Mul", [selected, add("Softmax", [l32], {"axis": -1}, suffix="softmax")], suffix="routing")
    split = _int64(graph, f"{name}.split", [inter, inter])
    acc = None
    for e in range(e_count):
        def linear(label, inp, packed, scale, glob, s_in, s_in_inv):
            n_out = packed.shape[0]
            attrs = node_attributes(in_features=packed.shape[1] * 2, out_features=n_out, mode=mode,
                                    input_global_scale=s_in, input_global_scale_inv=s_in_inv, has_bias=False)
            lin = ir.node(op_contract()["name"], [inp, initializer(f"{e}.{label}.weight", packed),
                                                  initializer(f"{e}.{label}.weight_scale", scale),
                                                  initializer(f"{e}.{label}.weight_global_scale", glob)],
                          attrs, domain=op_contract()["domain"], name=f"{name}.{e}.{label}")
            lin.outputs[0].name = f"{name}.{e}.{label}_out"
            lin.outputs[0].type = ir.TensorType(act_type)
            nodes.append(lin)
            return lin.outputs[0]

        s13 = (scales["w13_input_global_scale"][e], scales["w13_input_global_scale_inv"][e])
        s2 = (scales["w2_input_global_scale"][e], scales["w2_input_global_scale_inv"][e])
        gate_up = linear("gate_up", x, arrays[0][e], arrays[1][e], arrays[2][e], *s13)
        g, u = add("Split", [gate_up, split], {"axis": -1}, num_outputs=2, suffix=f"{e}/split")
        g32 = add("Cast", [g], {"to": ir.DataType.FLOAT}, suffix=f"{e}/gate_float")
        silu = add("Mul", [g32, add("Sigmoid", [g32], suffix=f"{e}/sigmoid")], suffix=f"{e}/silu")
        if act_type != ir.DataType.FLOAT:
            silu = add("Cast", [silu], {"to": act_type}, suffix=f"{e}/silu_cast")
        h = add("Mul", [silu, u], suffix=f"{e}/h")
        d = linear("down", h, arrays[3][e], arrays[4][e], arrays[5][e], *s2)
        if act_type != ir.DataType.FLOAT:
            d = add("Cast", [d], {"to": ir.DataType.FLOAT}, suffix=f"{e}/down_float")
        r = add("Gather", [routing, _int64(graph, f"{name}.expert_{e}", [e])], {"axis": -1}, suffix=f"{e}/weight")
        term = add("Mul", [d, r], suffix=f"{e}/weighted")
        acc = term if acc is None else add("Add", [acc, term], suffix=f"{e}/sum")
    y = acc if act_type == ir.DataType.FLOAT else add("Cast", [acc], {"to": act_type}, suffix="output")
    _replace(graph, node, nodes, y)
    for v in stacked:
        if not v.uses() and v.name in graph.initializers:
            del graph.initializers[v.name]


def rewrite_to_qdq(model: ir.Model) -> int:
    """Replace every NVFP4Linear node of `model` (in place) by its Q/DQ form, after expanding every
    NVFP4MoE node into NVFP4Linear nodes; returns how many NVFP4Linear nodes were rewritten.
    Sets the opset to at least 23 and the IR version to 11."""
    contract = op_contract()
    graph = model.graph
    moe = op_contract("NVFP4MoE")
    for nd in [nd for nd in graph if nd.domain == moe["domain"] and nd.op_type == moe["name"]]:
        expand_moe_node(graph, nd)
    targets = [nd for nd in graph if nd.domain == contract["domain"] and nd.op_type == contract["name"]]
    for i, nd in enumerate(targets):
        _rewrite_node(graph, nd, i)
    model.opset_imports.pop(contract["domain"], None)
    if any(nd.domain == TRT_DOMAIN for nd in graph):
        model.opset_imports[TRT_DOMAIN] = 1
    if model.opset_imports.get("", 0) < QDQ_MIN_OPSET:
        raise ValueError(f"--format qdq needs opset >= {QDQ_MIN_OPSET} (FLOAT4E2M1), got {model.opset_imports.get('')}")
    model.ir_version = QDQ_IR_VERSION
    return len(targets)


# --- onnx.reference implementation of trt::TRT_FP4DynamicQuantize ---------------------------------

def fp4_dynamic_quantize(x: np.ndarray, double_quant_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """x [..., K] -> (FP4 values as ml_dtypes.float4_e2m1fn [..., K], FP8 block scales as
    ml_dtypes.float8_e4m3fn [..., K/16]), blocks of 16 along the last axis, per the op contract
    with G = fp32(1/double_quant_scale)."""
    from export.nvfp4 import quantize_activation

    k = x.shape[-1]
    d = np.float32(double_quant_scale)
    g = torch.tensor(np.float32(1.0) / d, dtype=torch.float32)
    x2 = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32).reshape(-1, k))
    q, s = quantize_activation(x2, g)
    q_np = q.numpy().reshape(x.shape).astype(ml_dtypes.float4_e2m1fn)
    s_np = s.numpy().reshape(*x.shape[:-1], k // GROUP_SIZE).astype(ml_dtypes.float8_e4m3fn)
    return q_np, s_np


def reference_ops() -> list:
    """Custom ops for `onnx.reference.ReferenceEvaluator(model, new_ops=reference_ops())`."""
    from onnx.reference.op_run import OpRun

    class TRT_FP4DynamicQuantize(OpRun):  # noqa: N801 - the ONNX op's name
        op_domain = TRT_DOMAIN

        def _run(self, x, scale, axis=-1, block_size=GROUP_SIZE, scale_type=None):
            if block_size != GROUP_SIZE or axis not in (-1, x.ndim - 1):
                raise ValueError(f"TRT_FP4DynamicQuantize: only block_size={GROUP_SIZE} along the last axis is implemented")
            return fp4_dynamic_quantize(x, float(np.asarray(scale).reshape(())))

    return [TRT_FP4DynamicQuantize]


# --- the rewritten subgraph's arithmetic, for verification ----------------------------------------

def qdq_linear_operands(x: torch.Tensor, layer, act_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(a [M, K], w [N, K]) as float64 holding exactly what the subgraph of `layer` (an
    NVFP4LinearWeights; G is taken as fp32(1/input_global_scale), as TensorRT does) feeds its MatMul
    for the activation x [..., K]: each DequantizeLinear rounds its product to float32, then both
    operands are cast to the activation dtype. The MatMul then rounds its sum to that dtype."""
    from export.nvfp4 import e2m1_decode, unpack_fp4

    n, k = layer.out_features, layer.in_features
    g = layer.weight_global_scale.to(torch.float32).reshape(-1, 1)  # [1, 1] or [N, 1]
    s_w = layer.weight_scale.to(torch.float32) * g  # DQ(weight_scale FP8, global) in float32
    w = e2m1_decode(unpack_fp4(layer.weight_packed)).to(torch.float32) * s_w.repeat_interleave(GROUP_SIZE, dim=1)
    a = x.reshape(-1, k).to(torch.float32)
    if layer.w4a4:
        from export.nvfp4 import quantize_activation

        d = layer.input_global_scale.to(torch.float32)
        q, s = quantize_activation(a, torch.tensor(1.0, dtype=torch.float32) / d)
        a = q * (s * d).repeat_interleave(GROUP_SIZE, dim=1)  # DQ(s FP8, d) then DQ(q FP4, s_x), float32
    assert w.shape == (n, k)
    return a.to(act_dtype).double(), w.to(act_dtype).double()
