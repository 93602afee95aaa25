"""The `nvfp4::linear` and `nvfp4::moe` torch custom ops, the torch modules that call them, and
their ONNX translations.

Eager, the op is the `exact` reference (export.reference.nvfp4_linear_exact). Under the
TorchScript ONNX exporter (`torch.onnx.export(..., dynamo=False)` after `register_onnx_symbolic()`;
docs/export.md says why not the dynamo exporter) it becomes ONE `trt.plugins::NVFP4Linear` node
whose inputs, types and attributes are built from the op contract's YAML
(trt_plugin_src/nvfp4Linear/NVFP4Linear_PluginConfig.yaml), the single source of truth.

The op takes the weight bytes as int8 views of the checkpoint's tensors (no copy): the contract
types them INT8 because TensorRT rejects UINT8 plugin inputs.

`nvfp4::moe` likewise becomes ONE `trt.plugins::NVFP4MoE` node per Mixture-of-Experts block
(trt_plugin_src/nvfp4MoE/NVFP4MoE_PluginConfig.yaml), its eager form the `exact` MoE reference.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import replace
from typing import Any

import torch

from export.contract import CONTRACT_YAML, CONTRACT_YAMLS, op_contract
from export.layer import GROUP_SIZE, NVFP4LinearWeights, NVFP4MoEWeights
from export.moe import StackedMoE, stack_moe, unstack_moe
from export.reference import nvfp4_linear_emulation, nvfp4_linear_exact, nvfp4_moe_emulation, nvfp4_moe_exact

REFERENCES = ("exact", "emulation", "onnx")

for _op in CONTRACT_YAMLS:
    if op_contract(_op).get("group_size") != GROUP_SIZE:
        raise RuntimeError(f"{CONTRACT_YAMLS[_op]}: group_size {op_contract(_op).get('group_size')} != {GROUP_SIZE}")


def node_attributes(
    *, in_features: int, out_features: int, mode: str, input_global_scale: float,
    input_global_scale_inv: float, has_bias: bool,
) -> dict[str, Any]:
    """The attributes of one NVFP4Linear node, in the contract's field order, plus the parser's
    `plugin_version` / `plugin_namespace`. W4A16 writes 1.0 for the ignored activation scales."""
    contract = op_contract()
    if mode not in contract["modes"]:
        raise ValueError(f"NVFP4Linear: mode {mode!r} is not one of {contract['modes']}")
    if mode == "w4a16":
        input_global_scale = input_global_scale_inv = 1.0
    values = {
        "in_features": int(in_features),
        "out_features": int(out_features),
        "group_size": int(contract["group_size"]),
        "mode": mode,
        "input_global_scale": float(input_global_scale),
        "input_global_scale_inv": float(input_global_scale_inv),
        "has_bias": int(bool(has_bias)),
    }
    if list(values) != list(contract["attributes"]):
        raise RuntimeError(f"{CONTRACT_YAML}: attributes {list(contract['attributes'])} differ from the exporter's {list(values)}")
    values["plugin_version"] = str(contract["plugin_version"])
    values["plugin_namespace"] = str(contract["plugin_namespace"])
    return values


def moe_node_attributes(
    *, num_experts: int, top_k: int, hidden_size: int, intermediate_size: int, mode: str, normalize_topk,
    w13_input_global_scale, w13_input_global_scale_inv, w2_input_global_scale, w2_input_global_scale_inv,
) -> dict[str, Any]:
    """The attributes of one NVFP4MoE node, in the contract's field order, plus `plugin_version` /
    `plugin_namespace`. W4A16 writes 1.0 for every ignored activation scale."""
    contract = op_contract("NVFP4MoE")
    e = int(num_experts)
    if mode not in contract["modes"]:
        raise ValueError(f"NVFP4MoE: mode {mode!r} is not one of {contract['modes']}")
    scales = [w13_input_global_scale, w13_input_global_scale_inv, w2_input_global_scale, w2_input_global_scale_inv]
    if mode == "w4a16":
        scales = [[1.0] * e] * 4
    if any(len(v) != e for v in scales):
        raise ValueError(f"NVFP4MoE: every activation-scale list must have num_experts={e} values")
    values = {
        "num_experts": e,
        "top_k": int(top_k),
        "hidden_size": int(hidden_size),
        "intermediate_size": int(intermediate_size),
        "group_size": int(contract["group_size"]),
        "mode": mode,
        "activation": contract["activations"][0],
        "normalize_topk": int(bool(normalize_topk)),
        "w13_input_global_scale": [float(v) for v in scales[0]],
        "w13_input_global_scale_inv": [float(v) for v in scales[1]],
        "w2_input_global_scale": [float(v) for v in scales[2]],
        "w2_input_global_scale_inv": [float(v) for v in scales[3]],
    }
    if list(values) != list(contract["attributes"]):
        raise RuntimeError(f"{CONTRACT_YAMLS['NVFP4MoE']}: attributes {list(contract['attributes'])} differ from "
                           f"the exporter's {list(values)}")
    values["plugin_version"] = str(contract["plugin_version"])
    values["plugin_namespace"] = str(contract["plugin_namespace"])
    return values


class _ShapeOnly(threading.local):
    active = False


_SHAPE_ONLY = _ShapeOnly()


@contextlib.contextmanager
def shape_only_tracing():
    """Within this context `nvfp4::linear` returns zeros of the right shape (tracing for export)."""
    previous, _SHAPE_ONLY.active = _SHAPE_ONLY.active, True
    try:
        yield
    finally:
        _SHAPE_ONLY.active = previous


# --- the custom op ---------------------------------------------------------------------------

def _layer_from_args(x, weight, weight_scale, weight_global_scale, bias, in_features, out_features,
                     mode, input_global_scale, input_global_scale_inv) -> NVFP4LinearWeights:
    g = weight_global_scale.to(torch.float32)
    w4a4 = mode == "w4a4"
    return NVFP4LinearWeights(
        name="nvfp4::linear",
        weight_packed=weight.view(torch.uint8),
        weight_scale=weight_scale.view(torch.float8_e4m3fn),
        weight_global_scale=g.reshape(()) if g.numel() == 1 else g.reshape(out_features),
        input_global_scale=torch.tensor(input_global_scale, dtype=torch.float32) if w4a4 else None,
        input_global_scale_inv=torch.tensor(input_global_scale_inv, dtype=torch.float32) if w4a4 else None,
        bias=bias,
    )


@torch.library.custom_op("nvfp4::linear", mutates_args=())
def nvfp4_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    weight_global_scale: torch.Tensor,
    bias: torch.Tensor | None,
    in_features: int,
    out_features: int,
    mode: str,
    input_global_scale: float,
    input_global_scale_inv: float,
) -> torch.Tensor:
    """y = NVFP4Linear(x, ...) as the op contract defines it (the `exact` reference)."""
    if _SHAPE_ONLY.active:
        # Graph tracing for export: the values are discarded, only the shape matters, and the
        # reference would dequantize every weight of the model.
        return x.new_zeros(*x.shape[:-1], out_features)
    layer = _layer_from_args(x, weight, weight_scale, weight_global_scale, bias, in_features,
                             out_features, mode, input_global_scale, input_global_scale_inv)
    return nvfp4_linear_exact(x, layer)


@nvfp4_linear.register_fake
def _nvfp4_linear_fake(x, weight, weight_scale, weight_global_scale, bias, in_features, out_features,
                       mode, input_global_scale, input_global_scale_inv):
    torch._check(x.shape[-1] == in_features)
    return x.new_empty(*x.shape[:-1], out_features)


# --- unquantized linear (embeddings-sized lm_head, excluded layers) ------------------------------

@torch.library.custom_op("nvfp4::dense_linear", mutates_args=())
def dense_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """y = x @ weight^T + bias for x [M, K]. A custom op only so that export (a) writes one
    Gemm(transB=1) reading the [N, K] weight as stored, where F.linear would give a Transpose of
    the weight, and (b) skips the product while tracing: on CPU a bfloat16/float16 lm_head
    product converts the whole (vocab x hidden) weight to float32 first."""
    if _SHAPE_ONLY.active:
        return x.new_zeros(x.shape[0], weight.shape[0])
    return torch.nn.functional.linear(x, weight, bias)


@dense_linear.register_fake
def _dense_linear_fake(x, weight, bias):
    return x.new_empty(x.shape[0], weight.shape[0])


def _symbolic_dense_linear(g, x, weight, bias):
    from torch.onnx import symbolic_helper as sh

    inputs = [x, weight] + ([] if sh._is_none(bias) else [bias])
    y = g.op("Gemm", *inputs, transB_i=1)
    x_type = x.type()
    sizes = x_type.varyingSizes()
    out = weight.type().varyingSizes()
    if sizes is not None and out is not None:
        y.setType(x_type.with_sizes([sizes[0], out[0]]))
    else:
        y.setType(x_type)
    return y


# --- Mixture of Experts ----------------------------------------------------------------------------

@torch.library.custom_op("nvfp4::moe", mutates_args=())
def nvfp4_moe(
    x: torch.Tensor,
    router_logits: torch.Tensor,
    w13_weight: torch.Tensor,
    w13_weight_scale: torch.Tensor,
    w13_weight_global_scale: torch.Tensor,
    w2_weight: torch.Tensor,
    w2_weight_scale: torch.Tensor,
    w2_weight_global_scale: torch.Tensor,
    num_experts: int,
    top_k: int,
    hidden_size: int,
    intermediate_size: int,
    mode: str,
    normalize_topk: int,
    w13_input_global_scale: list[float],
    w13_input_global_scale_inv: list[float],
    w2_input_global_scale: list[float],
    w2_input_global_scale_inv: list[float],
) -> torch.Tensor:
    """y = NVFP4MoE(x, router_logits, ...) as docs/op-contract-moe.md defines it (`exact` reference)."""
    if _SHAPE_ONLY.active:
        return torch.zeros_like(x)
    moe = unstack_moe(
        (w13_weight, w13_weight_scale, w13_weight_global_scale, w2_weight, w2_weight_scale, w2_weight_global_scale),
        num_experts=num_experts, top_k=top_k, hidden_size=hidden_size, intermediate_size=intermediate_size,
        mode=mode, normalize_topk=normalize_topk, w13_input_global_scale=w13_input_global_scale,
        w13_input_global_scale_inv=w13_input_global_scale_inv, w2_input_global_scale=w2_input_global_scale,
        w2_input_global_scale_inv=w2_input_global_scale_inv, name="nvfp4::moe")
    return nvfp4_moe_exact(x, router_logits, moe)


@nvfp4_moe.register_fake
def _nvfp4_moe_fake(x, router_logits, *args):
    return torch.empty_like(x)


# --- ONNX translation (TorchScript exporter) ----------------------------------------------------

def _symbolic_nvfp4_linear(g, x, weight, weight_scale, weight_global_scale, bias, in_features,
                           out_features, mode, input_global_scale, input_global_scale_inv):
    """`nvfp4::linear` -> one trt.plugins::NVFP4Linear node, attributes per the contract YAML."""
    from torch.onnx import symbolic_helper as sh

    has_bias = not sh._is_none(bias)
    attrs = node_attributes(
        in_features=sh._parse_arg(in_features, "i"), out_features=sh._parse_arg(out_features, "i"),
        mode=sh._parse_arg(mode, "s"), input_global_scale=sh._parse_arg(input_global_scale, "f"),
        input_global_scale_inv=sh._parse_arg(input_global_scale_inv, "f"), has_bias=has_bias)
    inputs = [x, weight, weight_scale, weight_global_scale] + ([bias] if has_bias else [])
    return _contract_node(g, "NVFP4Linear", inputs, attrs, x, attrs["out_features"])


def _contract_node(g, op: str, inputs, attrs: dict[str, Any], x, out_features: int):
    """One node of the contract `op` (attribute kinds from its YAML), typed like x with the last
    dimension out_features."""
    c = op_contract(op)
    onnx_type = {"INT": "i", "FLOAT": "f", "FLOATS": "f", "STRING": "s"}  # a list value makes "f" FLOATS
    spec = dict(c["attributes"], plugin_version={"onnx": "STRING"}, plugin_namespace={"onnx": "STRING"})
    kwargs = {f"{name}_{onnx_type[spec[name]['onnx']]}": value for name, value in attrs.items()}
    y = g.op(f"{c['domain']}::{c['name']}", *inputs, **kwargs)
    x_type = x.type()
    sizes = x_type.varyingSizes()
    if sizes is not None:
        y.setType(x_type.with_sizes(list(sizes[:-1]) + [out_features]))
    else:
        y.setType(x_type)
    return y


def _symbolic_nvfp4_moe(g, x, router_logits, w13_weight, w13_weight_scale, w13_weight_global_scale,
                        w2_weight, w2_weight_scale, w2_weight_global_scale, num_experts, top_k, hidden_size,
                        intermediate_size, mode, normalize_topk, w13_input_global_scale,
                        w13_input_global_scale_inv, w2_input_global_scale, w2_input_global_scale_inv):
    """`nvfp4::moe` -> one trt.plugins::NVFP4MoE node, attributes per the contract YAML."""
    from torch.onnx import symbolic_helper as sh

    attrs = moe_node_attributes(
        num_experts=sh._parse_arg(num_experts, "i"), top_k=sh._parse_arg(top_k, "i"),
        hidden_size=sh._parse_arg(hidden_size, "i"), intermediate_size=sh._parse_arg(intermediate_size, "i"),
        mode=sh._parse_arg(mode, "s"), normalize_topk=sh._parse_arg(normalize_topk, "i"),
        w13_input_global_scale=sh._parse_arg(w13_input_global_scale, "fs"),
        w13_input_global_scale_inv=sh._parse_arg(w13_input_global_scale_inv, "fs"),
        w2_input_global_scale=sh._parse_arg(w2_input_global_scale, "fs"),
        w2_input_global_scale_inv=sh._parse_arg(w2_input_global_scale_inv, "fs"))
    inputs = [x, router_logits, w13_weight, w13_weight_scale, w13_weight_global_scale,
              w2_weight, w2_weight_scale, w2_weight_global_scale]
    return _contract_node(g, "NVFP4MoE", inputs, attrs, x, attrs["hidden_size"])


def register_onnx_symbolic() -> None:
    """Teach torch.onnx.export(..., dynamo=False) the `nvfp4::*` ops (idempotent)."""
    torch.onnx.register_custom_op_symbolic("nvfp4::linear", _symbolic_nvfp4_linear, 1)
    torch.onnx.register_custom_op_symbolic("nvfp4::moe", _symbolic_nvfp4_moe, 1)
    torch.onnx.register_custom_op_symbolic("nvfp4::dense_linear", _symbolic_dense_linear, 1)


# --- torch module --------------------------------------------------------------------------------

class NVFP4Linear(torch.nn.Module):
    """One NVFP4 linear layer. `reference` picks the forward: "exact" or "emulation" call the
    torch references directly; "onnx" calls the `nvfp4::linear` custom op (eager = exact), which
    the ONNX export turns into one NVFP4Linear node.

    Buffers hold views of the checkpoint's tensors (int8 bit patterns, no copy); only the bias is
    converted to the activation dtype."""

    def __init__(self, layer: NVFP4LinearWeights, *, reference: str = "exact", dtype: torch.dtype = torch.float32):
        super().__init__()
        if reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
        self.reference = reference
        self.in_features = layer.in_features
        self.out_features = layer.out_features
        self.mode = layer.mode
        self.input_global_scale = float(layer.input_global_scale) if layer.w4a4 else 1.0
        self.input_global_scale_inv = float(layer.input_global_scale_inv) if layer.w4a4 else 1.0
        self.register_buffer("weight", layer.weight_packed.view(torch.int8))
        self.register_buffer("weight_scale", layer.weight_scale.view(torch.int8))
        g = layer.weight_global_scale.to(torch.float32)
        self.register_buffer("weight_global_scale", g.reshape(1) if g.numel() == 1 else g.reshape(-1))
        self.register_buffer("bias", None if layer.bias is None else layer.bias.to(dtype))
        # The canonical description (with the bias in dtype), for the eager references.
        self._layer = replace(layer, bias=self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, mode={self.mode}, reference={self.reference}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reference == "onnx":
            return torch.ops.nvfp4.linear(
                x, self.weight, self.weight_scale, self.weight_global_scale, self.bias,
                self.in_features, self.out_features, self.mode,
                self.input_global_scale, self.input_global_scale_inv)
        fn = nvfp4_linear_exact if self.reference == "exact" else nvfp4_linear_emulation
        return fn(x, self._layer)


class NVFP4MoE(torch.nn.Module):
    """The experts of one Mixture-of-Experts block: forward(x, router_logits) -> y. `reference`
    picks the forward like NVFP4Linear's: "exact" / "emulation" run the torch references on the
    checkpoint's per-expert tensors; "onnx" holds the op's stacked tensors (a copy, made once) and
    calls `nvfp4::moe`, which the ONNX export turns into one NVFP4MoE node.

    `stacked` (onnx only) may be given to reuse tensors already stacked, or stand-ins of the right
    shape while tracing for export."""

    def __init__(self, moe: NVFP4MoEWeights, *, reference: str = "exact", stacked: StackedMoE | None = None):
        super().__init__()
        if reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
        self.reference = reference
        self.num_experts, self.top_k = moe.num_experts, moe.top_k
        self.hidden_size, self.intermediate_size = moe.hidden_size, moe.intermediate_size
        self.mode, self.normalize_topk = moe.mode, bool(moe.normalize_topk)
        self._moe = moe
        if reference == "onnx":
            stacked = stacked if stacked is not None else stack_moe(moe)
            for name, t in zip(StackedMoE.TENSORS, stacked.tensors()):
                self.register_buffer(name, t)
            self._scales = (list(stacked.w13_input_global_scale), list(stacked.w13_input_global_scale_inv),
                            list(stacked.w2_input_global_scale), list(stacked.w2_input_global_scale_inv))

    def extra_repr(self) -> str:
        return (f"num_experts={self.num_experts}, top_k={self.top_k}, hidden_size={self.hidden_size}, "
                f"intermediate_size={self.intermediate_size}, mode={self.mode}, reference={self.reference}")

    def forward(self, x: torch.Tensor, router_logits: torch.Tensor) -> torch.Tensor:
        if self.reference == "onnx":
            return torch.ops.nvfp4.moe(
                x, router_logits, *(getattr(self, n) for n in StackedMoE.TENSORS),
                self.num_experts, self.top_k, self.hidden_size, self.intermediate_size, self.mode,
                int(self.normalize_topk), *self._scales)
        fn = nvfp4_moe_exact if self.reference == "exact" else nvfp4_moe_emulation
        return fn(x, router_logits, self._moe)
