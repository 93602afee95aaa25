"""Two torch references for one NVFP4 linear layer (docs/op-contract.md, "Formula") and for one
NVFP4 Mixture-of-Experts block built from them (docs/op-contract-moe.md).

- `nvfp4_linear_emulation`: bit-faithful to vLLM's `EmulationNvFp4LinearKernel`: the weight is
  dequantized as (e2m1 * (fp32(scale) * global)).to(dtype), the activation fake-quantized as
  (q * (s / G)).to(dtype), the matmul runs in x.dtype and bias is added after.
- `nvfp4_linear_exact`: what FP4 tensor-core hardware computes: exact products of the FP4*FP8
  operands, float64 accumulation, alpha = input_global_scale * weight_global_scale applied last,
  bias added in float32, one rounding to x.dtype.

W4A16 (layer.input_global_scale is None): the activation is used as is.
Both accept x of shape [..., K] and return [..., N] in x.dtype.

`nvfp4_moe_exact` / `nvfp4_moe_emulation` route each token (`route_topk`) and run the selected
experts with the matching linear reference.
"""
from __future__ import annotations

import torch

from export.layer import GROUP_SIZE, NVFP4LinearWeights, NVFP4MoEWeights
from export.nvfp4 import (
    dequantize_weight,
    e2m1_decode,
    fake_quantize_activation,
    quantize_activation,
    unpack_fp4,
)


def _check_input(x: torch.Tensor, layer: NVFP4LinearWeights) -> None:
    if x.shape[-1] != layer.in_features:
        raise ValueError(
            f"{layer.name}: x has last dimension {x.shape[-1]}, expected in_features={layer.in_features}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{layer.name}: x must be a floating-point tensor, got {x.dtype}")


def nvfp4_linear_emulation(x: torch.Tensor, layer: NVFP4LinearWeights) -> torch.Tensor:
    _check_input(x, layer)
    dtype = x.dtype
    x2 = x.reshape(-1, layer.in_features)
    if layer.w4a4:
        x2 = fake_quantize_activation(x2, layer.input_global_scale_inv)
    w = dequantize_weight(layer.weight_packed, layer.weight_scale, layer.weight_global_scale, dtype=dtype)
    out = torch.matmul(x2, w.t())
    if layer.bias is not None:
        out = out + layer.bias.to(dtype)
    return out.reshape(*x.shape[:-1], layer.out_features)


def _weight_operand_f64(layer: NVFP4LinearWeights) -> torch.Tensor:
    """e2m1(code) * fp8val(block scale), exact, without the global scale: [N, K] float64."""
    codes = unpack_fp4(layer.weight_packed)
    n, k = codes.shape
    vals = e2m1_decode(codes).double().reshape(n, k // GROUP_SIZE, GROUP_SIZE)
    return (vals * layer.weight_scale.double().unsqueeze(-1)).reshape(n, k)


def exact_operands(x: torch.Tensor, layer: NVFP4LinearWeights) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The exact formula's operands for x [..., K]: (a [M, K] float64, ŵ [N, K] float64, alpha float32)
    with y = fp32(alpha · a @ ŵᵀ). a is x̂ = q·s (w4a4) or x (w4a16); every product a·ŵ is exact."""
    _check_input(x, layer)
    x2 = x.reshape(-1, layer.in_features)
    w_g = layer.weight_global_scale.to(torch.float32)
    if layer.w4a4:
        q, s = quantize_activation(x2, layer.input_global_scale_inv)
        m, k = q.shape
        # q * s is exact (2 + 4 significant bits), so float64 loses nothing.
        a = (q.double().reshape(m, k // GROUP_SIZE, GROUP_SIZE) * s.double().unsqueeze(-1)).reshape(m, k)
        alpha = layer.input_global_scale.to(torch.float32) * w_g  # float32, as the contract says
    else:
        a = x2.double()  # x * w-hat is exact in float64 (24 + 6 significant bits)
        alpha = w_g
    return a, _weight_operand_f64(layer), alpha


def nvfp4_linear_exact(x: torch.Tensor, layer: NVFP4LinearWeights) -> torch.Tensor:
    a, w, alpha = exact_operands(x, layer)
    y = (torch.matmul(a, w.t()) * alpha.double()).to(torch.float32)
    if layer.bias is not None:
        y = y + layer.bias.to(torch.float32)
    return y.to(x.dtype).reshape(*x.shape[:-1], layer.out_features)


# --- Mixture of Experts -----------------------------------------------------------------------------

def route_topk(router_logits: torch.Tensor, top_k: int, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(experts [M, k] int64, weights [M, k] float32) of docs/op-contract-moe.md steps 1-2.

    Selection on the logits (ties to the lower index: a stable descending sort); weights from
    exp(l - l_max) in float64, rounded once to float32. Rows with a NaN logit are the caller's
    to turn into NaN outputs (their selection is meaningless)."""
    logits = router_logits.reshape(-1, router_logits.shape[-1]).to(torch.float64)
    order = torch.sort(torch.nan_to_num(logits, nan=0.0), dim=-1, descending=True, stable=True).indices
    experts = order[:, :top_k]
    l_max = logits.max(dim=-1, keepdim=True).values
    selected = torch.exp(logits.gather(-1, experts) - l_max)
    total = selected.sum(-1, keepdim=True) if normalize else torch.exp(logits - l_max).sum(-1, keepdim=True)
    return experts, (selected / total).to(torch.float32)


def _round_to(v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return v.to(dtype).to(torch.float32)


def _nvfp4_moe(x: torch.Tensor, router_logits: torch.Tensor, moe: NVFP4MoEWeights, linear) -> torch.Tensor:
    h_size = moe.hidden_size
    if x.shape[-1] != h_size or router_logits.shape[-1] != moe.num_experts \
            or x.shape[:-1] != router_logits.shape[:-1]:
        raise ValueError(f"{moe.name}: x {tuple(x.shape)} and router_logits {tuple(router_logits.shape)} do not "
                         f"match hidden_size={h_size}, num_experts={moe.num_experts}")
    dtype = x.dtype
    x2 = x.reshape(-1, h_size)
    experts, weights = route_topk(router_logits, moe.top_k, moe.normalize_topk)
    acc = torch.zeros(x2.shape[0], h_size, dtype=torch.float64)
    for e in experts.unique().tolist():
        rows, slot = torch.nonzero(experts == e, as_tuple=True)
        xe = x2[rows]
        g = linear(xe, moe.gate[e]).float()
        u = linear(xe, moe.up[e]).float()
        a = _round_to(torch.nn.functional.silu(g), dtype)
        h = (a * u).to(dtype)
        d = linear(h, moe.down[e]).float()
        acc.index_add_(0, rows, weights[rows, slot].double().unsqueeze(-1) * d.double())
    nan_rows = torch.isnan(router_logits.reshape(-1, moe.num_experts)).any(-1)
    acc[nan_rows] = float("nan")
    return acc.to(torch.float32).to(dtype).reshape(x.shape)


def nvfp4_moe_exact(x: torch.Tensor, router_logits: torch.Tensor, moe: NVFP4MoEWeights) -> torch.Tensor:
    """The NVFP4MoE contract with `nvfp4_linear_exact` experts (float64 combine, one rounding)."""
    return _nvfp4_moe(x, router_logits, moe, nvfp4_linear_exact)


def nvfp4_moe_emulation(x: torch.Tensor, router_logits: torch.Tensor, moe: NVFP4MoEWeights) -> torch.Tensor:
    """The same routing and combine with vLLM-emulation experts (`nvfp4_linear_emulation`)."""
    return _nvfp4_moe(x, router_logits, moe, nvfp4_linear_emulation)
