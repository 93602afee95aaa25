"""Seeded random tiny Hugging Face models, for tests, fixtures and the example checkpoint.

Every linear dimension is a multiple of 16 so that every linear can be NVFP4-quantized:
hidden 64, intermediate 128, 2 layers, 4 query heads, 2 KV heads, head_dim 16, vocab 256.
Per family: llama uses Llama-3 rope scaling ("llama3"), qwen2 has q/k/v biases, qwen3 has
q/k RMSNorm and tied embeddings (as the small Qwen3 models do), mistral is plain GQA.
The Mixture-of-Experts families: qwen3_moe (Qwen3 attention, 8 experts of intermediate 32, top-2,
`norm_topk_prob` as the Qwen3-MoE releases) and mixtral (Mistral attention, 4 experts of
intermediate 32, top-2, renormalised). Their routers get a larger spread than transformers' init
so that the tokens of a short random sequence reach every expert.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

FAMILIES = ("llama", "mistral", "qwen2", "qwen3")  # dense
MOE_FAMILIES = ("qwen3_moe", "mixtral")
ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                 "qwen3": "Qwen3ForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM", "mixtral": "MixtralForCausalLM"}

_COMMON = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    bos_token_id=1,
    eos_token_id=2,
)

_LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64, "rope_theta": 500000.0}


def _config(family: str, tie_word_embeddings: bool | None):
    import transformers

    if family not in FAMILIES + MOE_FAMILIES:
        raise ValueError(f"unknown family {family!r} (expected one of {', '.join(FAMILIES + MOE_FAMILIES)})")
    tied = (family == "qwen3") if tie_word_embeddings is None else bool(tie_word_embeddings)
    kw = dict(_COMMON, tie_word_embeddings=tied)
    if family == "llama":
        return transformers.LlamaConfig(**kw, rope_parameters=dict(_LLAMA3_ROPE))
    if family == "mistral":
        return transformers.MistralConfig(**kw, sliding_window=None,
                                          rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    if family == "qwen2":  # Qwen2 always has q/k/v biases
        return transformers.Qwen2Config(**kw, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                                        use_sliding_window=False)
    if family == "qwen3_moe":
        return transformers.Qwen3MoeConfig(**kw, attention_bias=False, use_sliding_window=False, num_experts=8,
                                           num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True,
                                           decoder_sparse_step=1, mlp_only_layers=[],
                                           rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    if family == "mixtral":
        return transformers.MixtralConfig(**dict(kw, intermediate_size=32), num_local_experts=4,
                                          num_experts_per_tok=2, sliding_window=None,
                                          rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    return transformers.Qwen3Config(**kw, attention_bias=False, use_sliding_window=False,
                                    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})


def make_tiny_hf_model(family: str, out_dir, seed: int = 0, dtype: torch.dtype = torch.float32,
                       tie_word_embeddings: bool | None = None) -> Path:
    """Write a `save_pretrained` folder (config.json + model.safetensors) of a seeded random model."""
    import transformers

    config = _config(family, tie_word_embeddings)
    config.architectures = [ARCHITECTURES[family]]
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        # Norm weights start at 1 and biases at 0; randomize them so that tests see them.
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.02 * torch.randn_like(p))
            elif name.endswith(".gate.weight"):  # MoE router: spread the logits across experts
                p.copy_(0.5 * torch.randn_like(p))
    model = model.to(dtype).eval()
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    if family == "llama":
        # Real Llama-3.x config.json files spell the scaling as rope_scaling + rope_theta.
        path = out / "config.json"
        cfg = json.loads(path.read_text())
        rope = dict(cfg.get("rope_parameters") or _LLAMA3_ROPE)
        cfg["rope_theta"] = rope.pop("rope_theta", 500000.0)
        cfg["rope_scaling"] = rope
        path.write_text(json.dumps(cfg, indent=2) + "\n")
    return out
