"""A torch Llama-family decoder (Llama, Mistral, Qwen2, Qwen3) with an explicit KV cache, built
from an NVFP4 `Checkpoint`.

One forward serves prefill and decode:
    model(input_ids [B,S], position_ids [B,S], attention_mask [B,P+S], past_key_values)
        -> (logits [B,S,V], presents)
where past_key_values / presents are lists of (key, value) [B, kv_heads, P(+S), head_dim] and
P = 0 means an empty cache. It follows transformers' eager implementation (RMSNorm in float32,
RoPE cos/sin from float32 positions, softmax in float32, GQA by repeating K/V) so the parity
tests can compare with transformers' own models.

NVFP4 linears are `export.torch_ops.NVFP4Linear` (reference "exact", "emulation" or "onnx");
every other weight (embeddings, norms, lm_head, excluded linears) is kept in `dtype`. Module
names equal the checkpoint's, so the ONNX initializers keep the checkpoint's tensor names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from export.checkpoint.hf_config import check_model_config
from export.errors import CheckpointError, quote
from export.torch_ops import REFERENCES, NVFP4Linear

# Architecture -> (attention bias on q/k/v, on o, per-head q/k RMSNorm) defaults. Where the
# config has `attention_bias` / `mlp_bias` (Llama, Qwen3), the config decides.
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")
_MODEL_TYPE = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral",
               "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}
# RoPE variants whose inverse frequencies do not depend on the sequence length.
_STATIC_ROPE_TYPES = ("default", "linear", "llama3", "yarn")


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

    if arch == "MistralForCausalLM":
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
    }[arch]
    return DecoderConfig(
        architecture=arch, hidden_size=hidden, num_layers=layers, num_heads=heads, num_kv_heads=kv_heads,
        head_dim=head_dim, intermediate_size=hf.intermediate_size, vocab_size=hf.vocab_size,
        rms_norm_eps=float(getattr(hf, "rms_norm_eps", 1e-6)),
        max_position_embeddings=int(getattr(hf, "max_position_embeddings", 4096) or 4096),
        qkv_bias=qkv_bias, o_bias=o_bias,
        mlp_bias=bool(getattr(hf, "mlp_bias", False)) if arch == "LlamaForCausalLM" else False,
        qk_norm=arch == "Qwen3ForCausalLM",
        tie_word_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
        sliding_windows=windows, inv_freq=inv_freq, attention_scaling=float(attention_scaling),
    )


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


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig, linear: Callable, norm: Callable, idx: int):
        super().__init__()
        prefix = f"model.layers.{idx}"
        self.input_layernorm = norm(f"{prefix}.input_layernorm", cfg.hidden_size)
        self.self_attn = Attention(cfg, linear, norm, f"{prefix}.self_attn", idx)
        self.post_attention_layernorm = norm(f"{prefix}.post_attention_layernorm", cfg.hidden_size)
        self.mlp = MLP(cfg, linear, f"{prefix}.mlp")

    def forward(self, x, cos, sin, masks, past_k, past_v):
        a, present = self.self_attn(self.input_layernorm(x), cos, sin, masks, past_k, past_v)
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x))
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

def _module_names(cfg: DecoderConfig) -> list[str]:
    names = []
    for i in range(cfg.num_layers):
        names += [f"model.layers.{i}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
        names += [f"model.layers.{i}.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")]
    return names + ["lm_head"]


# Dense weights at least this large are converted lazily when `defer_casts` is set.
_DEFER_MIN_NUMEL = 1 << 20


def build_model(checkpoint, dtype: torch.dtype = torch.float32, reference: str = "exact",
                progress: Callable[[int], None] | None = None, defer_casts: bool = False) -> NVFP4CausalLM:
    """The decoder of `checkpoint` with activations in `dtype`. NVFP4 weights stay packed
    (views of the checkpoint's tensors); other weights are converted to `dtype`. `progress(i)`
    is called after each decoder layer is built (a progress bar hook).

    defer_casts (export only): a large dense weight whose stored dtype differs from `dtype` is
    not converted; the model holds a zero-stride stand-in of the right shape and dtype (its values
    are wrong) and `model.deferred_casts[name]` the stored tensor, which the exporter converts
    while writing it, so the converted copy never coexists with the other weights in memory."""
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    cfg = decoder_config(checkpoint)
    quantized = set(checkpoint.quantized_names)
    unknown = sorted(quantized - set(_module_names(cfg)))
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

    embed = tensor("model.embed_tokens.weight", (cfg.vocab_size, cfg.hidden_size))
    layers = []
    for i in range(cfg.num_layers):
        layers.append(DecoderLayer(cfg, linear, norm, i))
        if progress is not None:
            progress(i)
    body = _Body(embed, layers, norm("model.norm", cfg.hidden_size))
    # Tied: the logits reuse the embedding (one initializer), as transformers does.
    tied = cfg.tie_word_embeddings and "lm_head" not in quantized
    lm_head = None if tied else linear("lm_head", cfg.hidden_size, cfg.vocab_size, False)
    model = NVFP4CausalLM(cfg, body, lm_head, dtype).eval()
    model.deferred_casts = deferred  # names are the buffers' (= the checkpoint's tensor names)
    return model
