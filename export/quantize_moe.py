"""The Mixture-of-Experts part of `export.quantize`: which stored tensors are expert linears, and
the input amax of each expert's projections.

transformers 5 holds a block's experts as fused 3-D parameters (`experts.gate_up_proj`,
`experts.down_proj`), not as nn.Linear modules, and saves them as one 2-D tensor per expert and
projection; the quantizer works on those stored tensors, so its output has the per-expert layout
every NVFP4 tool writes (export/checkpoint/moe.py).

Calibration sends every calibration token through every expert (llm-compressor's default), not
only the tokens the router picks: each expert then gets an input scale even when the calibration
data never routes to it, and that scale covers what it may see when deployed. Gate and up of an
expert see the same input, so they get the same input scale (the NVFP4MoE op requires it); down's
is each expert's own.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from export.checkpoint.moe import NAMINGS

_EXPERT_WEIGHT = re.compile(
    r"^(?P<block>model\.layers\.(?P<layer>\d+)\.[^.]+)\.experts\.(?P<e>\d+)\.(?P<proj>gate_proj|up_proj|down_proj|w1|w2|w3)\.weight$")
_ROLE = {proj: role for naming in NAMINGS.values() for role, proj in naming.items()}


@dataclass(frozen=True)
class ExpertLinear:
    layer: int
    block: str  # e.g. "model.layers.0.mlp" or "model.layers.0.block_sparse_moe"
    expert: int
    role: str  # "gate" | "up" | "down"


def expert_linears(tensor_names) -> dict[str, ExpertLinear]:
    """{module name: ExpertLinear} for every stored per-expert 2-D weight `<block>.experts.<e>.<proj>.weight`."""
    out = {}
    for name in tensor_names:
        m = _EXPERT_WEIGHT.match(name)
        if m:
            out[name[: -len(".weight")]] = ExpertLinear(int(m["layer"]), m["block"], int(m["e"]), _ROLE[m["proj"]])
    return out


def router_names(experts: dict[str, ExpertLinear]) -> list[str]:
    """The router module of every block that has experts (kept unquantized, listed as excluded as
    ModelOpt and llm-compressor list them)."""
    return sorted({f"{x.block}.gate" for x in experts.values()}, key=lambda n: int(n.split(".")[2]))


def _fused_experts_modules(model) -> dict[int, torch.nn.Module]:
    """{layer index: transformers' fused experts module} (3-D gate_up_proj and down_proj)."""
    found = {}
    for path, module in model.named_modules():
        m = re.match(r"^model\.layers\.(\d+)\.", path + ".")
        gate_up, down = getattr(module, "gate_up_proj", None), getattr(module, "down_proj", None)
        if m and isinstance(gate_up, torch.Tensor) and isinstance(down, torch.Tensor) and gate_up.ndim == 3:
            found[int(m[1])] = module
    return found


def expert_amax_hooks(model, experts: dict[str, ExpertLinear], amax: dict[str, float]) -> list:
    """Forward pre-hooks on the model's fused experts modules that raise amax[name] to the max |input|
    of each named expert linear, every token through every expert. Returns the hook handles."""
    by_layer: dict[int, dict[tuple[int, str], str]] = {}
    for name, x in experts.items():
        by_layer.setdefault(x.layer, {})[(x.expert, x.role)] = name
    modules = _fused_experts_modules(model)
    missing = sorted(set(by_layer) - set(modules))
    if missing:
        raise ValueError(f"the transformers model has no fused experts module in layer {missing[0]}")

    def hook_for(module, names):
        inter = module.gate_up_proj.shape[1] // 2

        def hook(_module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            x_amax = float(x.abs().amax())
            for (e, role), name in names.items():
                if role in ("gate", "up"):
                    a = x_amax
                else:
                    gate_up = torch.nn.functional.linear(x, module.gate_up_proj[e].detach().float())
                    h = module.act_fn(gate_up[:, :inter]) * gate_up[:, inter:]
                    a = float(h.abs().amax())
                amax[name] = a if math.isnan(a) else max(amax.get(name, 0.0), a)
        return hook

    return [modules[layer].register_forward_pre_hook(hook_for(modules[layer], names))
            for layer, names in by_layer.items()]
