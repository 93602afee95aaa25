"""The Qwen3-MoE and Mixtral decoders of export.modeling against transformers' own models.

With the same (dequantized NVFP4, W4A16) experts and routers, the project's torch model must give
transformers' logits, and continue from its KV cache (float32, eager attention and eager experts; in float64
transformers' left-padded rows turn to NaN), for a prefill with left padding and for a decode
step from the cache; routing per transformers:
Qwen3-MoE with and without `norm_topk_prob`, dense layers from `mlp_only_layers` /
`decoder_sparse_step`, Mixtral's renormalised top-2.
"""
from __future__ import annotations

import pytest
import torch

from export.checkpoint import open_checkpoint
from export.modeling import build_model, decoder_config
from export.nvfp4 import dequantize_weight
from export.quantize import quantize_checkpoint
from tests.test_modeling_parity import _compare, _inputs

transformers = pytest.importorskip("transformers")
DTYPE = torch.float32


def _hf_with_checkpoint_weights(src, checkpoint):
    """transformers' model of `src` with the checkpoint's NVFP4 weights, dequantized, written into
    its linears and its fused 3-D experts."""
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        src, dtype=DTYPE, attn_implementation="eager", experts_implementation="eager").eval()
    modules = dict(hf.named_modules())
    cfg = decoder_config(checkpoint)

    def deq(name):
        layer = checkpoint.layer(name)
        return dequantize_weight(layer.weight_packed, layer.weight_scale, layer.weight_global_scale,
                                 dtype=DTYPE)

    from export.modeling import moe_blocks_by_layer

    blocks = moe_blocks_by_layer(checkpoint, cfg)
    with torch.no_grad():
        for name in checkpoint.quantized_names:
            if name in modules and isinstance(modules[name], torch.nn.Linear):
                modules[name].weight.copy_(deq(name))
        for i, block in blocks.items():
            experts = modules[f"model.layers.{i}.mlp.experts"]  # transformers 5 names it mlp for both
            for e in range(block.num_experts):
                experts.gate_up_proj[e].copy_(torch.cat([deq(block.linear_name(e, "gate")),
                                                         deq(block.linear_name(e, "up"))]))
                experts.down_proj[e].copy_(deq(block.linear_name(e, "down")))
    return hf


@pytest.mark.parametrize("family", ["qwen3_moe", "mixtral"])
def test_moe_parity_with_transformers(family, make_tiny_hf, make_tiny_checkpoint):
    src = make_tiny_hf(family)
    ckpt = open_checkpoint(make_tiny_checkpoint("modelopt", family=family, w4a16=True))
    ours = build_model(ckpt, DTYPE, reference="exact")
    assert ours.config.moe is not None and all(ours.config.moe.sparse_layers)
    _compare(_hf_with_checkpoint_weights(src, ckpt), ours, 256)


def _variant(tmp_path, **overrides):
    common = dict(hidden_size=64, intermediate_size=96, moe_intermediate_size=48, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=96, num_experts=6,
                  num_experts_per_tok=3, max_position_embeddings=128, tie_word_embeddings=False)
    cfg = transformers.Qwen3MoeConfig(**dict(common, **overrides))
    cfg.architectures = ["Qwen3MoeForCausalLM"]
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
            elif name.endswith("mlp.gate.weight"):
                p.normal_(0.0, 0.5)
    src = tmp_path / "hf"
    hf.save_pretrained(src)
    out = tmp_path / "ckpt"
    quantize_checkpoint(src, out, "compressed-tensors", w4a16=True)
    return src, open_checkpoint(out)


@pytest.mark.parametrize("variant", [
    {"norm_topk_prob": False},
    {"norm_topk_prob": True, "mlp_only_layers": [1]},
    {"norm_topk_prob": False, "decoder_sparse_step": 2, "attention_bias": True},
])
def test_qwen3_moe_routing_variants(variant, tmp_path):
    src, ckpt = _variant(tmp_path, **variant)
    ours = build_model(ckpt, DTYPE, reference="exact")
    moe = ours.config.moe
    step, dense = variant.get("decoder_sparse_step", 1), set(variant.get("mlp_only_layers", []))
    assert moe.sparse_layers == tuple(i not in dense and (i + 1) % step == 0 for i in range(3))
    assert moe.normalize_topk == variant["norm_topk_prob"] and moe.top_k == 3
    _compare(_hf_with_checkpoint_weights(src, ckpt), ours, 96)


def test_references_agree_and_onnx_op_is_exact(make_tiny_checkpoint):
    """reference="onnx" (the nvfp4::moe op on stacked tensors, eager) is the exact reference bit
    for bit; "emulation" agrees within float32 rounding noise (W4A4)."""
    ckpt = open_checkpoint(make_tiny_checkpoint("quark", family="mixtral"))
    ids, pos, mask = _inputs(256)
    outs = {}
    for ref in ("exact", "onnx", "emulation"):
        m = build_model(ckpt, torch.float32, reference=ref)
        with torch.no_grad():
            outs[ref] = m(ids, pos, mask, m.empty_cache(2))[0]
    assert torch.equal(outs["exact"], outs["onnx"])
    scale = outs["exact"].abs().max()
    assert (outs["emulation"] - outs["exact"]).abs().max() < 0.05 * scale


@pytest.mark.parametrize("edit,message", [
    ({"mlp_only_layers": [0]}, "config.json makes layer 0 dense"),
    ({"num_experts": 4, "num_local_experts": 4}, "has 8 experts, config.json says 4"),
    ({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}, "Qwen3ForCausalLM is a dense architecture"),
])
def test_config_and_experts_must_agree(edit, message, make_tiny_checkpoint, tmp_path):
    import json
    import shutil

    from export.errors import CheckpointError

    src = make_tiny_checkpoint("modelopt", family="qwen3_moe")
    ck_dir = tmp_path / "ck"
    shutil.copytree(src, ck_dir)
    cfg = json.loads((ck_dir / "config.json").read_text())
    cfg.update(edit)
    (ck_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=message):
        build_model(open_checkpoint(ck_dir), DTYPE)
