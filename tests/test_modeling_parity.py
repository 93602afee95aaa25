"""Parity of export.modeling's decoder with transformers' own models.

With the same (dequantized NVFP4, W4A16) weights, the project's torch model must give the logits
and KV cache of transformers' eager implementation, for a prefill with left padding and for a
decode step that continues from the cache.
"""
from __future__ import annotations

import pytest
import torch

from export.layer import NVFP4LinearWeights
from export.modeling import build_model
from export.nvfp4 import dequantize_weight, quantize_weight
from export.tiny_models import FAMILIES

transformers = pytest.importorskip("transformers")


def _load_hf(folder):
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    return model.eval()


def _dequantize_into(hf_model, checkpoint):
    """Give transformers' model the checkpoint's NVFP4 weights, dequantized (exactly, in float32)."""
    modules = dict(hf_model.named_modules())
    with torch.no_grad():
        for name in checkpoint.quantized_names:
            layer = checkpoint.layer(name)
            modules[name].weight.copy_(dequantize_weight(layer.weight_packed, layer.weight_scale,
                                                         layer.weight_global_scale))
            if layer.bias is not None:
                modules[name].bias.copy_(layer.bias)


def _inputs(vocab, batch=2, seq=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, :3] = 0  # left padding
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, pos, mask


def _compare(hf, ours, vocab, atol=2e-5):
    ids, pos, mask = _inputs(vocab)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        logits, presents = ours(ids, pos, mask, ours.empty_cache(ids.shape[0]))
        valid = mask.bool()  # padded query rows are undefined in transformers
        torch.testing.assert_close(logits[valid], ref.logits[valid], atol=atol, rtol=1e-4)
        # One decode step from each side's own cache.
        ids2 = torch.randint(0, vocab, (ids.shape[0], 1), generator=torch.Generator().manual_seed(1))
        mask2 = torch.cat([mask, torch.ones(ids.shape[0], 1, dtype=torch.long)], 1)
        pos2 = pos[:, -1:] + 1
        ref2 = hf(input_ids=ids2, attention_mask=mask2, position_ids=pos2, past_key_values=ref.past_key_values,
                  use_cache=True)
        logits2, presents2 = ours(ids2, pos2, mask2, presents)
        torch.testing.assert_close(logits2, ref2.logits, atol=atol, rtol=1e-4)
        assert presents2[0][0].shape[2] == ids.shape[1] + 1


@pytest.mark.parametrize("family", FAMILIES)
def test_parity_with_transformers(family, make_tiny_hf, make_tiny_checkpoint):
    from export.checkpoint import open_checkpoint

    ckpt = open_checkpoint(make_tiny_checkpoint("modelopt", family=family, w4a16=True))
    hf = _load_hf(make_tiny_hf(family))
    _dequantize_into(hf, ckpt)
    ours = build_model(ckpt, torch.float32, reference="exact")
    _compare(hf, ours, hf.config.vocab_size)


class _MemoryCheckpoint:
    """A Checkpoint-like view of an in-memory transformers model with every linear but lm_head
    quantized to NVFP4 W4A16 (for configurations the tiny fixtures do not cover)."""

    format = "memory"
    directory = "<memory>"
    excluded = ["lm_head"]

    def __init__(self, hf_model):
        self.config = hf_model.config.to_dict()
        self._layers = {}
        for name, mod in hf_model.named_modules():
            if isinstance(mod, torch.nn.Linear) and name != "lm_head":
                packed, scale, g = quantize_weight(mod.weight.detach())
                with torch.no_grad():
                    mod.weight.copy_(dequantize_weight(packed, scale, g))
                bias = None if mod.bias is None else mod.bias.detach().clone()
                self._layers[name] = NVFP4LinearWeights(name, packed, scale, g, None, None, bias)
        self._tensors = {k: v.detach().clone() for k, v in hf_model.state_dict().items()}
        self.quantized_names = list(self._layers)

    def layer(self, name):
        return self._layers[name]

    def tensor(self, name):
        return self._tensors[name]

    def tensor_names(self):
        return list(self._tensors)


@pytest.mark.parametrize("variant", ["mistral-sliding-window", "qwen3-attention-bias-untied", "llama-bias-mha"])
def test_parity_config_variants(variant):
    common = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=96, max_position_embeddings=128)
    if variant == "mistral-sliding-window":
        cfg = transformers.MistralConfig(**common, sliding_window=3)
        cfg.architectures = ["MistralForCausalLM"]
    elif variant == "qwen3-attention-bias-untied":
        cfg = transformers.Qwen3Config(**common, head_dim=32, attention_bias=True, tie_word_embeddings=False)
        cfg.architectures = ["Qwen3ForCausalLM"]
    else:
        cfg = transformers.LlamaConfig(**dict(common, num_key_value_heads=4), attention_bias=True, mlp_bias=True)
        cfg.architectures = ["LlamaForCausalLM"]
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    ckpt = _MemoryCheckpoint(hf)
    _compare(hf, build_model(ckpt, torch.float32), cfg.vocab_size)
