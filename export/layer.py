"""The canonical description of one NVFP4 linear layer, whatever checkpoint layout it came from.

Every reader (`export.checkpoint`) produces these; every consumer (references, torch modules,
ONNX export, inspection) takes them. All scales are in the *dequant* direction
(real value = code · scale), except `input_global_scale_inv`, which is the quant-direction
activation scale `G` exactly as vLLM computes it for the source format (see docs/op-contract.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

GROUP_SIZE = 16


@dataclass(frozen=True)
class NVFP4LinearWeights:
    name: str  # module path, e.g. "model.layers.0.self_attn.q_proj"
    weight_packed: torch.Tensor  # uint8 [N, K/2], element 2j in the low nibble
    weight_scale: torch.Tensor  # float8_e4m3fn [N, K/16], dequant direction
    weight_global_scale: torch.Tensor  # float32 [] (or [N] for a fused node), dequant direction
    input_global_scale: torch.Tensor | None  # float32 [], dequant direction; None = W4A16
    input_global_scale_inv: torch.Tensor | None  # float32 [], G used to quantize activations
    bias: torch.Tensor | None = None  # [N], unquantized

    @property
    def out_features(self) -> int:
        return int(self.weight_packed.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.weight_packed.shape[1]) * 2

    @property
    def w4a4(self) -> bool:
        return self.input_global_scale is not None

    @property
    def mode(self) -> str:
        return "w4a4" if self.w4a4 else "w4a16"


@dataclass(frozen=True)
class NVFP4MoEWeights:
    """One Mixture-of-Experts block (docs/op-contract-moe.md): a dense router and E SiLU-gated
    experts whose gate, up and down projections are NVFP4 linears, each with its own scales.

    Within an expert, gate and up quantize the same activation, so in W4A4 they must carry the
    same input global scale (every NVFP4 tool writes them so); readers refuse a checkpoint where
    they differ."""
    name: str  # module path of the block, e.g. "model.layers.0.mlp"
    # [E, H], high precision (the tools never quantize it); None where only its logits are known
    # (an NVFP4MoE node's inputs)
    router_weight: torch.Tensor | None
    gate: tuple[NVFP4LinearWeights, ...]  # E linears [I, H]
    up: tuple[NVFP4LinearWeights, ...]  # E linears [I, H]
    down: tuple[NVFP4LinearWeights, ...]  # E linears [H, I]
    top_k: int
    normalize_topk: bool  # renormalise the k selected probabilities to sum to 1

    @property
    def num_experts(self) -> int:
        return len(self.gate)

    @property
    def hidden_size(self) -> int:
        return self.gate[0].in_features

    @property
    def intermediate_size(self) -> int:
        return self.gate[0].out_features

    @property
    def w4a4(self) -> bool:
        return self.gate[0].w4a4

    @property
    def mode(self) -> str:
        return self.gate[0].mode
