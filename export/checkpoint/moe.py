"""Mixture-of-Experts blocks of an NVFP4 checkpoint, read into `NVFP4MoEWeights`.

Every NVFP4 tool writes each expert as three separate 2-D linears (docs/export.md, "Mixture of
Experts"), under one of these names (`<block>` is the MoE module, e.g. `model.layers.0.mlp`):

    <block>.experts.<e>.gate_proj / up_proj / down_proj   Qwen3-MoE; Quark's and llm-compressor's Mixtral
    <block>.experts.<e>.w1 / w3 / w2                      Mixtral's own names (ModelOpt keeps them)

and keeps the router `<block>.gate` in high precision. Fused 3-D expert tensors (transformers 5's
in-memory `experts.gate_up_proj`) are refused: no supported tool writes them quantized for these
architectures, so there is no layout to follow.

A block is accepted only when it is one NVFP4 MoE: every expert has all three projections, all of
them quantized in one mode, with one shape; in W4A4 each expert's gate and up carry the same input
scale (they quantize the same activation). Every expert keeps its own scales: nothing is merged.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from export.errors import CheckpointError
from export.layer import NVFP4MoEWeights

# Per-expert projection names -> role, per naming convention.
NAMINGS = {
    "gate_proj": {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"},
    "w1": {"gate": "w1", "up": "w3", "down": "w2"},
}
_EXPERT_LINEAR = re.compile(r"^(?P<block>.+)\.experts\.(?P<e>\d+)\.(?P<proj>gate_proj|up_proj|down_proj|w1|w2|w3)$")
_WEIGHT_SUFFIXES = ("weight", "weight_packed")


@dataclass(frozen=True)
class ExpertBlock:
    """Where one MoE block's tensors are, before any is read."""
    name: str  # the block's module path, e.g. "model.layers.0.mlp"
    num_experts: int
    naming: str  # a key of NAMINGS
    quantized: tuple[bool, ...]  # per expert: are its projections NVFP4?

    def linear_name(self, expert: int, role: str) -> str:
        """Module path of one expert's "gate", "up" or "down" projection."""
        return f"{self.name}.experts.{expert}.{NAMINGS[self.naming][role]}"

    @property
    def router_name(self) -> str:
        return f"{self.name}.gate"


def routing_from_config(config: dict) -> tuple[int, bool]:
    """(top_k, normalize_topk) of an MoE config.json, as transformers routes: Mixtral always
    renormalises its top-k probabilities, Qwen3-MoE when `norm_topk_prob` is set."""
    top_k = config.get("num_experts_per_tok")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"num_experts_per_tok must be a positive integer, got {top_k!r}")
    if config.get("model_type") == "mixtral" or "MixtralForCausalLM" in (config.get("architectures") or []):
        return top_k, True
    return top_k, bool(config.get("norm_topk_prob", False))


def find_expert_blocks(checkpoint) -> dict[str, ExpertBlock]:
    """Every block that has per-expert linears, by block name (natural order of the checkpoint)."""
    quantized = set(checkpoint.quantized_names)
    found: dict[str, dict[int, set[str]]] = {}
    first_tensor: dict[str, str] = {}
    for tensor in checkpoint.tensor_names():
        module, _, suffix = tensor.rpartition(".")
        m = _EXPERT_LINEAR.match(module)
        if m is None:
            if ".experts." in tensor and _fused_expert_tensor(tensor):
                raise CheckpointError("fused 3-D expert tensors are not supported (the readers take one "
                                      "linear per expert, as ModelOpt, Quark and llm-compressor write them)",
                                      file=str(checkpoint.directory), tensor=tensor)
            continue
        if suffix not in _WEIGHT_SUFFIXES:
            continue
        block = m["block"]
        found.setdefault(block, {}).setdefault(int(m["e"]), set()).add(m["proj"])
        first_tensor.setdefault(block, tensor)
    blocks = {}
    for block, experts in found.items():
        blocks[block] = _describe(checkpoint, block, experts, quantized, first_tensor[block])
    return blocks


def _fused_expert_tensor(tensor: str) -> bool:
    """`<block>.experts.gate_up_proj`-style names: a tensor directly under `experts`."""
    head, _, _ = tensor.partition(".experts.")
    rest = tensor[len(head) + len(".experts."):]
    return not rest.split(".")[0].isdigit()


def _describe(checkpoint, block: str, experts: dict[int, set[str]], quantized: set[str], where: str) -> ExpertBlock:
    directory = str(checkpoint.directory)
    count = len(experts)
    if sorted(experts) != list(range(count)):
        missing = sorted(set(range(max(experts) + 1)) - set(experts))
        raise CheckpointError(f"MoE block '{block}' has no expert {missing[0]} (experts must be numbered "
                              f"0..{max(experts)})", file=directory, tensor=where)
    names = set().union(*experts.values())
    naming = "w1" if names & {"w1", "w2", "w3"} else "gate_proj"
    if names & set(NAMINGS["gate_proj"].values()) and names & set(NAMINGS["w1"].values()):
        raise CheckpointError(f"MoE block '{block}' mixes the w1/w2/w3 and gate_proj/up_proj/down_proj "
                              "expert names", file=directory, tensor=where)
    wanted = set(NAMINGS[naming].values())
    for e, projs in sorted(experts.items()):
        if projs != wanted:
            raise CheckpointError(f"MoE block '{block}' expert {e} lacks "
                                  f"{', '.join(sorted(wanted - projs))}", file=directory, tensor=where)
    desc = ExpertBlock(block, count, naming, ())
    flags = []
    for e in range(count):
        q = [desc.linear_name(e, r) in quantized for r in ("gate", "up", "down")]
        if len(set(q)) != 1:
            raise CheckpointError(f"MoE block '{block}' expert {e} has some projections NVFP4 and others "
                                  "not; the NVFP4MoE op needs all three quantized", file=directory,
                                  tensor=desc.linear_name(e, "gate"))
        flags.append(q[0])
    return ExpertBlock(block, count, naming, tuple(flags))


def _refuse_unless_all_quantized(checkpoint, desc: ExpertBlock) -> None:
    if all(desc.quantized):
        return
    plain = [e for e, q in enumerate(desc.quantized) if not q]
    what = (f"none of its {desc.num_experts} experts is NVFP4 (for Quark, quantize after "
            "preprocess_for_quantization, or experts stay bf16)") if len(plain) == desc.num_experts else \
        (f"experts {_ranges(plain)} are not NVFP4 while the others are; the NVFP4MoE op needs every "
         "expert of a block quantized")
    raise CheckpointError(f"MoE block '{desc.name}': {what}", file=str(checkpoint.directory),
                          tensor=desc.linear_name(plain[0], "gate"))


def _ranges(values: list[int]) -> str:
    parts, start = [], values[0]
    for a, b in zip(values, values[1:] + [None]):
        if b != a + 1:
            parts.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ", ".join(parts)


def read_moe_block(checkpoint, desc: ExpertBlock, *, top_k: int, normalize_topk: bool) -> NVFP4MoEWeights:
    """The block's `NVFP4MoEWeights`: router bit-equal to the stored tensor, every expert's
    scales as stored. Raises CheckpointError (one line) when the block is not one NVFP4 MoE."""
    directory = str(checkpoint.directory)
    _refuse_unless_all_quantized(checkpoint, desc)
    roles = {r: tuple(checkpoint.layer(desc.linear_name(e, r)) for e in range(desc.num_experts))
             for r in ("gate", "up", "down")}
    gate0 = roles["gate"][0]
    i_size, h_size = gate0.out_features, gate0.in_features
    expected = {"gate": (i_size, h_size), "up": (i_size, h_size), "down": (h_size, i_size)}
    for role, layers in roles.items():
        for e, layer in enumerate(layers):
            got = (layer.out_features, layer.in_features)
            if got != expected[role]:
                raise CheckpointError(f"expert {e} {role} is [out={got[0]}, in={got[1]}] but expert 0 implies "
                                      f"[out={expected[role][0]}, in={expected[role][1]}]", file=directory,
                                      tensor=layer.name)
            if layer.bias is not None:
                raise CheckpointError("expert projections have no bias in the NVFP4MoE op", file=directory,
                                      tensor=f"{layer.name}.bias")
            if layer.w4a4 != gate0.w4a4:
                raise CheckpointError(f"is {layer.mode} while {gate0.name} is {gate0.mode}; one MoE block has "
                                      "one mode", file=directory, tensor=layer.name)
            if layer.weight_global_scale.numel() != 1:
                raise CheckpointError("expected one weight global scale per expert projection",
                                      file=directory, tensor=layer.name)
    if gate0.w4a4:
        for e, (g, u) in enumerate(zip(roles["gate"], roles["up"])):
            if not (_same(g.input_global_scale, u.input_global_scale)
                    and _same(g.input_global_scale_inv, u.input_global_scale_inv)):
                raise CheckpointError(
                    f"expert {e}: gate and up have different input scales ({float(g.input_global_scale):.9g} vs "
                    f"{float(u.input_global_scale):.9g}) but quantize the same activation; the NVFP4MoE op "
                    "takes one per expert", file=directory, tensor=u.name)
    router = _router(checkpoint, desc, h_size)
    if not 1 <= top_k <= desc.num_experts:
        raise CheckpointError(f"num_experts_per_tok={top_k} must be in 1..{desc.num_experts} (the experts of "
                              f"'{desc.name}')", file=f"{directory}/config.json")
    return NVFP4MoEWeights(name=desc.name, router_weight=router, gate=roles["gate"], up=roles["up"],
                           down=roles["down"], top_k=top_k, normalize_topk=normalize_topk)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.to(torch.float32).view(torch.int32).item() == b.to(torch.float32).view(torch.int32).item()


def _router(checkpoint, desc: ExpertBlock, hidden_size: int) -> torch.Tensor:
    name = f"{desc.router_name}.weight"
    if name not in set(checkpoint.tensor_names()):
        raise CheckpointError(f"missing the router of MoE block '{desc.name}'", file=str(checkpoint.directory),
                              tensor=name)
    if desc.router_name in set(checkpoint.quantized_names):
        raise CheckpointError("the router is quantized; the NVFP4MoE op takes router logits from a "
                              "high-precision router", file=str(checkpoint.directory), tensor=name)
    w = checkpoint.tensor(name)
    if not w.is_floating_point() or tuple(w.shape) != (desc.num_experts, hidden_size):
        raise CheckpointError(f"expected a float [{desc.num_experts}, {hidden_size}] router, got {w.dtype} "
                              f"{list(w.shape)}", file=str(checkpoint.directory), tensor=name)
    return w


def describe_expert_blocks(checkpoint) -> list[dict]:
    """One entry per MoE block, for listings: {"name", "num_experts", "projections" (the expert
    linears' names), "top_k", "normalize_topk" (None where config.json gives no routing),
    "quantized_experts" (indices of the NVFP4 experts)}."""
    try:
        top_k, normalize = routing_from_config(checkpoint.config)
    except ValueError:
        top_k = normalize = None
    return [{"name": b.name, "num_experts": b.num_experts, "projections": list(NAMINGS[b.naming].values()),
             "top_k": top_k, "normalize_topk": normalize,
             "quantized_experts": [e for e, q in enumerate(b.quantized) if q]}
            for b in find_expert_blocks(checkpoint).values()]


def expert_ranges(indices: list[int]) -> str:
    """"0-3, 5" for [0, 1, 2, 3, 5]; "none" for []."""
    return _ranges(indices) if indices else "none"
