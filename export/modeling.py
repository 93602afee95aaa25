"""A torch Llama-family decoder (Llama, Mistral, Qwen2, Qwen3, and the Mixture-of-Experts
Qwen3-MoE and Mixtral) with an explicit KV cache, built from an NVFP4 `Checkpoint`.

One forward serves prefill and decode:
    model(input_ids [B,S], position_ids [B,S], attention_mask [B,P+S], past_key_values)
        -> (logits [B,S,V], presents)
where past_key_values / presents are lists of (key, value) [B, kv_heads, P(+S), head_dim] and
P = 0 means an empty cache. It follows transformers' eager implementation (RMSNorm in float32,
RoPE cos/sin from float32 positions, softmax in float32, GQA by repeating K/V) so the parity
tests can compare with transformers' own models.

NVFP4 linears are `export.torch_ops.NVFP4Linear` (reference "exact", "emulation" or "onnx");
every other weight (embeddings, norms, lm_head, excluded linears, MoE routers) is kept in `dtype`.
Module names equal the checkpoint's, so the ONNX initializers keep the checkpoint's tensor names.
An MoE block (`mlp`, or Mixtral's `block_sparse_moe` where the checkpoint keeps that name) is a
router `gate` (a dense linear giving the logits) and `experts` (`export.torch_ops.NVFP4MoE`, whose
"onnx" form holds the op's stacked tensors, named `<block>.experts.w13_weight` etc.). Routing
follows transformers: softmax over all experts, top-k, renormalised for Mixtral and for Qwen3-MoE
with `norm_topk_prob`; Qwen3-MoE layers are sparse per `decoder_sparse_step` / `mlp_only_layers`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from export.checkpoint.hf_config import check_model_config
from export.checkpoint.moe import find_expert_blocks, read_moe_block, routing_from_config
from export.errors import CheckpointError, quote
from export.moe import stack_moe_deferred
from export.torch_ops import REFERENCES, NVFP4Linear, NVFP4MoE

# Architecture -> (attention bias on q/k/v, on o, per-head q/k RMSNorm) defaults. Where the
# config has `attention_bias` / `mlp_bias` (Llama, Qwen3), the config decides.
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                           "Qwen3MoeForCausalLM", "MixtralForCausalLM")
_MODEL_TYPE = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral",
               "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3",
               "Qwen3MoeForCausalLM": "qwen3_moe", "MixtralForCausalLM": "mixtral"}
MOE_ARCHITECTURES = ("Qwen3MoeForCausalLM", "MixtralForCausalLM")
# RoPE variants whose inverse frequencies do not depend on the sequence length.
_STATIC_ROPE_TYPES = ("default", "linear", "llama3", "yarn")


@dataclass(frozen=True)
class MoEConfig:
    """The Mixture-of-Experts part of config.json."""
    num_experts: int
    top_k: int
    normalize_topk: bool
    intermediate_size: int  # of one expert
    sparse_layers: tuple[bool, ...]  # per layer: MoE block (True) or dense MLP


@dataclass(frozen=True)
class DecoderConfig:
    """What the graph needs from config.json, validated and normalized."""
    architecture: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    rms_norm_eps: float
    max_position_embeddings: int
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    qk_norm: bool
    tie_word_embeddings: bool
    sliding_windows: tuple[int | None, ...]  # per layer, None = full attention
    inv_freq: torch.Tensor  # float32 [head_dim/2]
    attention_scaling: float  # multiplies cos/sin (1.0 except yarn)
    moe: MoEConfig | None = None  # Qwen3-MoE, Mixtral


def _config_error(checkpoint, message: str) -> CheckpointError:
    return CheckpointError(message, file=f"{checkpoint.directory}/config.json")


def decoder_config(checkpoint) -> DecoderConfig:
    """Validate `checkpoint.config` and derive what the decoder needs. Raises CheckpointError."""
    cfg = dict(checkpoint.config)
    archs = cfg.get("architectures")
    if not archs or not isinstance(archs, list):
        raise _config_error(checkpoint, f"'architectures' must name one of {', '.join(SUPPORTED_ARCHITECTURES)}, "
                                        f"got {quote(archs)}")
    arch = archs[0]
    if arch not in SUPPORTED_ARCHITECTURES:
        raise _config_error(checkpoint, f"architecture {quote(arch)} is not supported; supported: "
                                        f"{', '.join(SUPPORTED_ARCHITECTURES)}")
    # Types, ranges and agreement with the stored tensors before transformers sizes anything by them.
    check_model_config(cfg, f"{checkpoint.directory}/config.json", checkpoint.tensor_names(),
                       getattr(checkpoint, "shape", None))
    model_type = cfg.get("model_type", _MODEL_TYPE[arch])
    if model_type != _MODEL_TYPE[arch]:
        raise _config_error(checkpoint, f"model_type {model_type!r} does not match architecture {arch} (expected {_MODEL_TYPE[arch]!r})")
    try:
        import transformers

        # transformers normalizes defaults, rope_parameters, layer_types and sliding windows.
        hf = transformers.AutoConfig.for_model(model_type, **{k: v for k, v in cfg.items() if k != "model_type"})
    except Exception as e:  # noqa: BLE001 - any config rejection becomes one line
        raise _config_error(checkpoint, f"transformers rejects the config: {e}") from None

    heads, layers, hidden = hf.num_attention_heads, hf.num_hidden_layers, hf.hidden_size
    kv_heads = getattr(hf, "num_key_value_heads", None) or heads
    head_dim = getattr(hf, "head_dim", None)
    if head_dim is None:
        if hidden % heads:
            raise _config_error(checkpoint, f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
        head_dim = hidden // heads
    if heads % kv_heads:
        raise _config_error(checkpoint, f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")
    if head_dim % 2:
        raise _config_error(checkpoint, f"head_dim {head_dim} must be even for RoPE")
    act = getattr(hf, "hidden_act", "silu")
    if act != "silu":
        raise _config_error(checkpoint, f"hidden_act {act!r} is not supported (only 'silu')")

    rope = dict(getattr(hf, "rope_parameters", None) or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in _STATIC_ROPE_TYPES:
        raise _config_error(checkpoint, f"rope_type {rope_type!r} is not supported; supported: {', '.join(_STATIC_ROPE_TYPES)}")
    if float(rope.get("partial_rotary_factor", 1.0)) != 1.0:
        raise _config_error(checkpoint, "partial_rotary_factor != 1 is not supported")
    if rope_type == "default":
        base = float(rope["rope_theta"])
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        attention_scaling = 1.0
    else:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        inv_freq, attention_scaling = ROPE_INIT_FUNCTIONS[rope_type](hf)
        inv_freq = inv_freq.float()

    if arch in ("MistralForCausalLM",) + MOE_ARCHITECTURES:  # one window (or none) for every layer
        windows = (getattr(hf, "sliding_window", None),) * layers
    else:
        types = getattr(hf, "layer_types", None) or ["full_attention"] * layers
        sw = getattr(hf, "sliding_window", None)
        windows = tuple(sw if t == "sliding_attention" else None for t in types)
    if len(windows) != layers:
        raise _config_error(checkpoint, f"layer_types has {len(windows)} entries, expected num_hidden_layers={layers}")

    attention_bias = bool(getattr(hf, "attention_bias", False))
    qkv_bias, o_bias = {
        "LlamaForCausalLM": (attention_bias, attention_bias),
        "MistralForCausalLM": (False, False),
        "Qwen2ForCausalLM": (True, False),
        "Qwen3ForCausalLM": (attention_bias, attention_bias),
        "Qwen3MoeForCausalLM": (attention_bias, attention_bias),
        "MixtralForCausalLM": (False, False),
    }[arch]
    return DecoderConfig(
        architecture=arch, hidden_size=hidden, num_layers=layers, num_heads=heads, num_kv_heads=kv_heads,
        head_dim=head_dim, intermediate_size=hf.intermediate_size, vocab_size=hf.vocab_size,
        rms_norm_eps=float(getattr(hf, "rms_norm_eps", 1e-6)),
        max_position_embeddings=int(getattr(hf, "max_position_embeddings", 4096) or 4096),
        qkv_bias=qkv_bias, o_bias=o_bias,
        mlp_bias=bool(getattr(hf, "mlp_bias", False)) if arch == "LlamaForCausalLM" else False,
        qk_norm=arch in ("Qwen3ForCausalLM", "Qwen3MoeForCausalLM"),
        tie_word_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
        sliding_windows=windows, inv_freq=inv_freq, attention_scaling=float(attention_scaling),
        moe=_moe_config(checkpoint, arch, hf) if arch in MOE_ARCHITECTURES else None,
    )


def _moe_config(checkpoint, arch: str, hf) -> MoEConfig:
    layers, experts = hf.num_hidden_layers, getattr(hf, "num_experts", None)
    if not isinstance(experts, int) or experts < 1:
        raise _config_error(checkpoint, f"num_experts / num_local_experts must be a positive integer, got {experts!r}")
    try:
        # transformers' values (its defaults where config.json is silent)
        top_k, normalize = routing_from_config({"model_type": _MODEL_TYPE[arch],
                                                "num_experts_per_tok": getattr(hf, "num_experts_per_tok", None),
                                                "norm_topk_prob": getattr(hf, "norm_topk_prob", False)})
    except ValueError as e:
        raise _config_error(checkpoint, str(e)) from None
    if top_k > experts:
        raise _config_error(checkpoint, f"num_experts_per_tok={top_k} exceeds the {experts} experts")
    if arch == "MixtralForCausalLM":
        return MoEConfig(experts, top_k, normalize, hf.intermediate_size, (True,) * layers)
    # transformers' Qwen3MoeDecoderLayer: sparse unless listed in mlp_only_layers, every
    # decoder_sparse_step-th layer.
    step, dense_only = int(getattr(hf, "decoder_sparse_step", 1) or 1), set(getattr(hf, "mlp_only_layers", []) or [])
    sparse = tuple(i not in dense_only and (i + 1) % step == 0 for i in range(layers))
    return MoEConfig(experts, top_k, normalize, hf.moe_intermediate_size, sparse)


# --- building blocks -----------------------------------------------------------------------------

class DenseLinear(nn.Module):
    """An unquantized linear kept in the activation dtype."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    def forward(self, x):
        return linear_2d(x, self.weight, self.bias)


def linear_2d(x, weight, bias=None):
    """F.linear on x flattened to 2-D, through `nvfp4::dense_linear`, which exports as one
    Gemm(transB=1) reading the [N, K] weight as stored (no Transpose, no copy of the weight)."""
    y = torch.ops.nvfp4.dense_linear(x.reshape(-1, x.shape[-1]), weight, bias)
    return y.reshape(*x.shape[:-1], weight.shape[0])


class RMSNorm(nn.Module):
    """transformers' LlamaRMSNorm: normalize in float32, scale in the input dtype."""

    def __init__(self, weight: torch.Tensor, eps: float):
        super().__init__()
        self.register_buffer("weight", weight)
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: DecoderConfig, linear: Callable, norm: Callable, prefix: str, layer_idx: int):
        super().__init__()
        h, d, kv = cfg.num_heads, cfg.head_dim, cfg.num_kv_heads
        self.num_heads, self.num_kv_heads, self.head_dim = h, kv, d
        self.scaling = d ** -0.5
        self.sliding_window = cfg.sliding_windows[layer_idx]
        self.q_proj = linear(f"{prefix}.q_proj", cfg.hidden_size, h * d, cfg.qkv_bias)
        self.k_proj = linear(f"{prefix}.k_proj", cfg.hidden_size, kv * d, cfg.qkv_bias)
        self.v_proj = linear(f"{prefix}.v_proj", cfg.hidden_size, kv * d, cfg.qkv_bias)
        self.o_proj = linear(f"{prefix}.o_proj", h * d, cfg.hidden_size, cfg.o_bias)
        self.q_norm = norm(f"{prefix}.q_norm", d) if cfg.qk_norm else None
        self.k_norm = norm(f"{prefix}.k_norm", d) if cfg.qk_norm else None

    def forward(self, x, cos, sin, masks, past_k, past_v):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(b, s, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(b, s, self.num_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        present = (k, v)

        groups = self.num_heads // self.num_kv_heads
        if groups > 1:  # GQA: each K/V head serves `groups` query heads
            t = k.shape[2]
            k = k[:, :, None].expand(b, self.num_kv_heads, groups, t, self.head_dim).reshape(b, self.num_heads, t, self.head_dim)
            v = v[:, :, None].expand(b, self.num_kv_heads, groups, t, self.head_dim).reshape(b, self.num_heads, t, self.head_dim)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        allowed = masks[self.sliding_window]
        scores = scores.to(torch.float32).masked_fill(~allowed, torch.finfo(torch.float32).min)
        probs = torch.softmax(scores, dim=-1).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, self.num_heads * self.head_dim)
        return self.o_proj(out), present


class MLP(nn.Module):
    def __init__(self, cfg: DecoderConfig, linear: Callable, prefix: str):
        super().__init__()
        i, hs = cfg.intermediate_size, cfg.hidden_size
        self.gate_proj = linear(f"{prefix}.gate_proj", hs, i, cfg.mlp_bias)
        self.up_proj = linear(f"{prefix}.up_proj", hs, i, cfg.mlp_bias)
        self.down_proj = linear(f"{prefix}.down_proj", i, hs, cfg.mlp_bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class SparseMoeBlock(nn.Module):
    """An MoE block: the router `gate` (dense, gives the logits) and the NVFP4 `experts`."""

    def __init__(self, gate: nn.Module, experts: NVFP4MoE):
        super().__init__()
        self.gate = gate
        self.experts = experts

    def forward(self, x):
        return self.experts(x, self.gate(x))


class DecoderLayer(nn.Module):
    """`mlp_name` is where the feed-forward block lives: "mlp", or Mixtral's "block_sparse_moe"
    where the checkpoint names it so (module paths stay the checkpoint's)."""

    def __init__(self, cfg: DecoderConfig, linear: Callable, norm: Callable, idx: int,
                 moe_block: Callable | None = None, mlp_name: str = "mlp"):
        super().__init__()
        prefix = f"model.layers.{idx}"
        self.input_layernorm = norm(f"{prefix}.input_layernorm", cfg.hidden_size)
        self.self_attn = Attention(cfg, linear, norm, f"{prefix}.self_attn", idx)
        self.post_attention_layernorm = norm(f"{prefix}.post_attention_layernorm", cfg.hidden_size)
        self.mlp_name = mlp_name
        block = moe_block(f"{prefix}.{mlp_name}") if moe_block is not None else MLP(cfg, linear, f"{prefix}.{mlp_name}")
        self.add_module(mlp_name, block)

    def forward(self, x, cos, sin, masks, past_k, past_v):
        a, present = self.self_attn(self.input_layernorm(x), cos, sin, masks, past_k, past_v)
        x = x + a
        x = x + getattr(self, self.mlp_name)(self.post_attention_layernorm(x))
        return x, present


class _Body(nn.Module):
    """Holds `embed_tokens`, `layers`, `norm` under the name `model`, as transformers does."""

    def __init__(self, embed: torch.Tensor, layers: list[DecoderLayer], norm: RMSNorm):
        super().__init__()
        self.embed_tokens = nn.Module()
        self.embed_tokens.register_buffer("weight", embed)
        self.layers = nn.ModuleList(layers)
        self.norm = norm


class NVFP4CausalLM(nn.Module):
    def __init__(self, cfg: DecoderConfig, body: _Body, lm_head: nn.Module | None, dtype: torch.dtype):
        super().__init__()
        self.config = cfg
        self.dtype = dtype
        self.model = body
        self.lm_head = lm_head  # None: tied to the embedding
        self.register_buffer("inv_freq", cfg.inv_freq.to(torch.float32), persistent=False)

    def empty_cache(self, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        c = self.config
        z = torch.zeros(batch, c.num_kv_heads, 0, c.head_dim, dtype=self.dtype)
        return [(z, z) for _ in range(c.num_layers)]

    def _masks(self, attention_mask, seq: int, past: int) -> dict:
        """Boolean [B,1,S,P+S] masks: causal over cache positions, padding from attention_mask,
        and one per distinct sliding window (key j visible iff q - window < j <= q)."""
        total = attention_mask.shape[1]
        q_pos = torch.arange(seq, device=attention_mask.device) + past
        k_pos = torch.arange(total, device=attention_mask.device)
        causal = k_pos[None, :] <= q_pos[:, None]
        pad = attention_mask[:, None, None, :].to(torch.bool)
        masks = {}
        for w in set(self.config.sliding_windows):
            allowed = causal if w is None else causal & (k_pos[None, :] > q_pos[:, None] - w)
            masks[w] = allowed[None, None] & pad
        return masks

    def forward(self, input_ids, position_ids, attention_mask, past_key_values):
        seq = input_ids.shape[1]
        past = past_key_values[0][0].shape[2]
        emb = self.model.embed_tokens.weight
        x = F.embedding(input_ids, emb)
        freqs = position_ids[..., None].to(torch.float32) * self.inv_freq
        angles = torch.cat((freqs, freqs), dim=-1)
        cos = (angles.cos() * self.config.attention_scaling).to(self.dtype)
        sin = (angles.sin() * self.config.attention_scaling).to(self.dtype)
        masks = self._masks(attention_mask, seq, past)
        presents = []
        for layer, (pk, pv) in zip(self.model.layers, past_key_values):
            x, present = layer(x, cos, sin, masks, pk, pv)
            presents.append(present)
        x = self.model.norm(x)
        logits = self.lm_head(x) if self.lm_head is not None else linear_2d(x, emb)
        return logits, presents


# --- construction from a checkpoint ---------------------------------------------------------------

def _module_names(cfg: DecoderConfig, moe_blocks: dict) -> list[str]:
    names = []
    for i in range(cfg.num_layers):
        names += [f"model.layers.{i}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
        block = moe_blocks.get(i)
        if block is None:
            names += [f"model.layers.{i}.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")]
        else:
            names += [block.linear_name(e, r) for e in range(block.num_experts) for r in ("gate", "up", "down")]
    return names + ["lm_head"]


_BLOCK_NAME = re.compile(r"model\.layers\.(\d+)\.(mlp|block_sparse_moe)")


def moe_blocks_by_layer(checkpoint, cfg: DecoderConfig) -> dict:
    """{layer index: ExpertBlock} of the checkpoint's MoE blocks, checked against config.json
    (which layers are sparse, how many experts). Raises CheckpointError."""
    found = find_expert_blocks(checkpoint)
    directory = str(checkpoint.directory)
    if cfg.moe is None:
        if found:
            raise CheckpointError(f"has Mixture-of-Experts experts under '{next(iter(found))}' but "
                                  f"{cfg.architecture} is a dense architecture", file=directory)
        return {}
    by_layer = {}
    for name, block in found.items():
        m = _BLOCK_NAME.fullmatch(name)
        mixtral = cfg.architecture == "MixtralForCausalLM"
        if m is None or int(m[1]) >= cfg.num_layers or (m[2] == "block_sparse_moe" and not mixtral):
            raise CheckpointError(f"experts under '{name}' are not in an MoE block of a {cfg.architecture} with "
                                  f"{cfg.num_layers} layers", file=directory)
        i = int(m[1])
        if i in by_layer:
            raise CheckpointError(f"layer {i} has experts under both '{by_layer[i].name}' and '{name}'", file=directory)
        by_layer[i] = block
    for i, sparse in enumerate(cfg.moe.sparse_layers):
        if sparse and i not in by_layer:
            raise CheckpointError(f"config.json makes layer {i} a Mixture-of-Experts layer but the checkpoint has "
                                  f"no experts under model.layers.{i}", file=directory)
        if not sparse and i in by_layer:
            raise CheckpointError(f"config.json makes layer {i} dense (decoder_sparse_step / mlp_only_layers) but "
                                  f"the checkpoint has experts under '{by_layer[i].name}'", file=directory)
        if sparse and by_layer[i].num_experts != cfg.moe.num_experts:
            raise CheckpointError(f"'{by_layer[i].name}' has {by_layer[i].num_experts} experts, config.json says "
                                  f"{cfg.moe.num_experts}", file=directory)
    return by_layer


# Dense weights at least this large are converted lazily when `defer_casts` is set.
_DEFER_MIN_NUMEL = 1 << 20


def build_model(checkpoint, dtype: torch.dtype = torch.float32, reference: str = "exact",
                progress: Callable[[int], None] | None = None, defer_casts: bool = False) -> NVFP4CausalLM:
    """The decoder of `checkpoint` with activations in `dtype`. NVFP4 weights stay packed
    (views of the checkpoint's tensors); other weights are converted to `dtype`. `progress(i)`
    is called after each decoder layer is built (a progress bar hook).
    MoE blocks with reference "onnx" hold the op's stacked copies of their experts (see defer_casts).

    defer_casts (export only): a large dense weight whose stored dtype differs from `dtype` is
    not converted; the model holds a zero-stride stand-in of the right shape and dtype (its values
    are wrong) and `model.deferred_casts[name]` the stored tensor, which the exporter converts
    while writing it, so the converted copy never coexists with the other weights in memory.
    The stacked expert tensors of MoE blocks are deferred the same way, as functions making them."""
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    cfg = decoder_config(checkpoint)
    quantized = set(checkpoint.quantized_names)
    moe_blocks = moe_blocks_by_layer(checkpoint, cfg)
    unknown = sorted(quantized - set(_module_names(cfg, moe_blocks)))
    if unknown:
        raise CheckpointError(f"quantized layer {unknown[0]!r} is not a linear of a {cfg.architecture} "
                              f"with {cfg.num_layers} layers", file=str(checkpoint.directory))

    deferred: dict[str, torch.Tensor] = {}

    def tensor(name, shape):
        t = checkpoint.tensor(name)
        if tuple(t.shape) != tuple(shape):
            raise CheckpointError(f"shape {list(t.shape)} disagrees with config.json, expected {list(shape)}",
                                  file=str(checkpoint.directory), tensor=name)
        if defer_casts and t.dtype != dtype and t.numel() >= _DEFER_MIN_NUMEL:
            deferred[name] = t
            return torch.zeros((), dtype=dtype).expand(*shape)
        return t.to(dtype)

    def linear(name, in_features, out_features, bias):
        if name in quantized:
            layer = checkpoint.layer(name)
            got = (layer.out_features, layer.in_features)
            if got != (out_features, in_features):
                raise CheckpointError(f"NVFP4 layer is [out={got[0]}, in={got[1]}] but config.json implies "
                                      f"[out={out_features}, in={in_features}]", file=str(checkpoint.directory),
                                      tensor=f"{name}.weight")
            if bias and layer.bias is None:
                raise CheckpointError(f"{cfg.architecture} expects a bias", file=str(checkpoint.directory), tensor=f"{name}.bias")
            if layer.bias is not None and tuple(layer.bias.shape) != (out_features,):
                raise CheckpointError(f"bias shape {list(layer.bias.shape)}, expected [{out_features}]",
                                      file=str(checkpoint.directory), tensor=f"{name}.bias")
            return NVFP4Linear(layer, reference=reference, dtype=dtype)
        scheme = getattr(checkpoint, "scheme", None)  # None: an in-memory checkpoint without a config
        if scheme is not None and scheme.expects_quantized(name):
            wname = f"{name}.weight"
            stored = checkpoint.tensor(wname).dtype if wname in checkpoint.tensor_names() else "absent"
            raise CheckpointError(f"is stored unquantized ({stored}) but the quantization config "
                                  f"({scheme.config_file}) quantizes it (it is not excluded): the config "
                                  "and the tensors disagree", file=str(checkpoint.directory), tensor=wname)
        b = tensor(f"{name}.bias", (out_features,)) if bias else None
        return DenseLinear(tensor(f"{name}.weight", (out_features, in_features)), b)

    def norm(name, size):
        return RMSNorm(tensor(f"{name}.weight", (size,)), cfg.rms_norm_eps)

    def moe_block(block):
        def make(prefix):
            moe = read_moe_block(checkpoint, block, top_k=cfg.moe.top_k, normalize_topk=cfg.moe.normalize_topk)
            if (moe.hidden_size, moe.intermediate_size) != (cfg.hidden_size, cfg.moe.intermediate_size):
                raise CheckpointError(
                    f"experts are [hidden={moe.hidden_size}, intermediate={moe.intermediate_size}] but config.json "
                    f"implies [hidden={cfg.hidden_size}, intermediate={cfg.moe.intermediate_size}]",
                    file=str(checkpoint.directory), tensor=f"{block.linear_name(0, 'gate')}.weight")
            router = DenseLinear(tensor(f"{block.router_name}.weight", (cfg.moe.num_experts, cfg.hidden_size)), None)
            stacked = None
            if reference == "onnx" and defer_casts:
                stacked, makers = stack_moe_deferred(moe)
                deferred.update({f"{prefix}.experts.{n}": make for n, make in makers.items()})
            return SparseMoeBlock(router, NVFP4MoE(moe, reference=reference, stacked=stacked))
        return make

    embed = tensor("model.embed_tokens.weight", (cfg.vocab_size, cfg.hidden_size))
    layers = []
    for i in range(cfg.num_layers):
        block = moe_blocks.get(i)
        layers.append(DecoderLayer(cfg, linear, norm, i, moe_block=moe_block(block) if block else None,
                                   mlp_name=block.name.rpartition(".")[2] if block else "mlp"))
        if progress is not None:
            progress(i)
    body = _Body(embed, layers, norm("model.norm", cfg.hidden_size))
    # Tied: the logits reuse the embedding (one initializer), as transformers does.
    tied = cfg.tie_word_embeddings and "lm_head" not in quantized
    lm_head = None if tied else linear("lm_head", cfg.hidden_size, cfg.vocab_size, False)
    model = NVFP4CausalLM(cfg, body, lm_head, dtype).eval()
    model.deferred_casts = deferred  # names are the buffers' (= the checkpoint's tensor names)
    return model
