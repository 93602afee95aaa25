"""export.checkpoint.moe on hand-written MoE checkpoints: every expert naming, every layout's
scale conventions, lossless per-expert scales, the router as stored, and the one-line refusals."""
from __future__ import annotations

import json

import pytest
import torch

from export.checkpoint import CheckpointError, make_scheme, open_checkpoint, write_checkpoint
from export.checkpoint.moe import find_expert_blocks, read_moe_block, routing_from_config
from export.checkpoint.writer import layer_tensors
from export.layer import NVFP4LinearWeights
from export.moe import stack_moe, unstack_moe
from export.nvfp4 import pack_fp4

E, H, I = 3, 32, 16
NAMES = {  # naming -> (block, {role: projection})
    "qwen3": ("model.layers.0.mlp", {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}),
    "mixtral": ("model.layers.0.block_sparse_moe", {"gate": "w1", "up": "w3", "down": "w2"}),
    "llmc-mixtral": ("model.layers.0.block_sparse_moe", {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}),
}


def _linear(name, n, k, seed, w_global, s_in):
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (n, k), generator=gen, dtype=torch.uint8)
    scale = (torch.rand(n, k // 16, generator=gen) * 8 + 0.01).to(torch.float8_e4m3fn)
    s = None if s_in is None else torch.tensor(s_in, dtype=torch.float32)
    return NVFP4LinearWeights(name, pack_fp4(codes), scale, torch.tensor(w_global, dtype=torch.float32),
                              s, None if s is None else 1.0 / s)


def write_moe(path, fmt, naming="qwen3", *, w4a16=False, edit=None, router_dtype=torch.bfloat16):
    """A one-layer MoE block with E experts whose every scale differs (expert e, role r: weight
    global 2^-(e+r+4), input 2^-(e+r+8), gate and up sharing the expert's input scale). `edit`
    changes the tensor dict before writing."""
    block, projs = NAMES[naming]
    scheme = make_scheme(fmt, exclude=["lm_head", f"{block}.gate"], w4a16=w4a16)
    tensors, layers = {}, {}
    for e in range(E):
        for r, role in enumerate(("gate", "up", "down")):
            n, k = (H, I) if role == "down" else (I, H)
            s_in = None if w4a16 else 2.0 ** -(e + (8 if role != "down" else 11))
            lin = _linear(f"{block}.experts.{e}.{projs[role]}", n, k, 10 * e + r, 2.0 ** -(e + r + 4), s_in)
            layers[(e, role)] = lin
            tensors.update(layer_tensors(scheme, lin))
    router = torch.randn(E, H, generator=torch.Generator().manual_seed(99)).to(router_dtype)
    tensors[f"{block}.gate.weight"] = router
    if edit:
        edit(tensors)
    config = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "num_experts": E,
              "num_experts_per_tok": 2, "norm_topk_prob": True}
    write_checkpoint(path, scheme, config, tensors)
    return block, layers, router


@pytest.mark.parametrize("fmt", ["modelopt", "quark", "compressed-tensors"])
@pytest.mark.parametrize("naming", list(NAMES))
def test_reads_every_naming_losslessly(tmp_path, fmt, naming):
    block, layers, router = write_moe(tmp_path / "ck", fmt, naming)
    ck = open_checkpoint(tmp_path / "ck")
    blocks = find_expert_blocks(ck)
    assert list(blocks) == [block] and blocks[block].num_experts == E and all(blocks[block].quantized)
    moe = read_moe_block(ck, blocks[block], top_k=2, normalize_topk=True)
    assert moe.num_experts == E and (moe.hidden_size, moe.intermediate_size) == (H, I) and moe.w4a4
    assert moe.router_weight.dtype == torch.bfloat16 and torch.equal(moe.router_weight, router)
    for e in range(E):
        for role, got in (("gate", moe.gate[e]), ("up", moe.up[e]), ("down", moe.down[e])):
            want = layers[(e, role)]
            assert torch.equal(got.weight_packed, want.weight_packed)
            assert torch.equal(got.weight_scale.view(torch.uint8), want.weight_scale.view(torch.uint8))
            # Powers of two: exact in either direction, so every layout must give them back bit for bit.
            assert got.weight_global_scale.item() == want.weight_global_scale.item()
            assert got.input_global_scale.item() == want.input_global_scale.item()
    # The op's stacked form keeps every expert's scales (nothing merged) and unstacks back.
    st = stack_moe(moe)
    assert st.w13_input_global_scale == tuple(2.0 ** -(e + 8) for e in range(E))
    assert st.w2_input_global_scale == tuple(2.0 ** -(e + 11) for e in range(E))
    for e in range(E):
        assert torch.equal(st.w13_weight_global_scale[e], torch.tensor([2.0 ** -(e + 4)] * I + [2.0 ** -(e + 5)] * I))
        assert torch.equal(st.w2_weight_global_scale[e], torch.full((H,), 2.0 ** -(e + 6)))
    back = unstack_moe(st.tensors(), num_experts=E, top_k=2, hidden_size=H, intermediate_size=I, mode="w4a4",
                       normalize_topk=1, w13_input_global_scale=st.w13_input_global_scale,
                       w13_input_global_scale_inv=st.w13_input_global_scale_inv,
                       w2_input_global_scale=st.w2_input_global_scale,
                       w2_input_global_scale_inv=st.w2_input_global_scale_inv)
    for a, b in zip(moe.gate + moe.up + moe.down, back.gate + back.up + back.down):
        assert torch.equal(a.weight_packed, b.weight_packed)
        assert torch.equal(a.weight_global_scale, b.weight_global_scale)
        assert torch.equal(a.input_global_scale_inv, b.input_global_scale_inv)


def test_w4a16_block(tmp_path):
    block, _, _ = write_moe(tmp_path / "ck", "modelopt", w4a16=True)
    ck = open_checkpoint(tmp_path / "ck")
    moe = read_moe_block(ck, find_expert_blocks(ck)[block], top_k=1, normalize_topk=False)
    assert moe.mode == "w4a16" and stack_moe(moe).w13_input_global_scale == (1.0,) * E


def test_routing_from_config():
    assert routing_from_config({"model_type": "mixtral", "num_experts_per_tok": 2}) == (2, True)
    assert routing_from_config({"model_type": "qwen3_moe", "num_experts_per_tok": 8, "norm_topk_prob": False}) == (8, False)
    assert routing_from_config({"model_type": "qwen3_moe", "num_experts_per_tok": 8, "norm_topk_prob": True}) == (8, True)
    with pytest.raises(ValueError, match="num_experts_per_tok"):
        routing_from_config({"model_type": "qwen3_moe"})


def _drop(*parts):
    """Remove every tensor whose name contains one of `parts`."""
    def edit(t):
        for name in [n for n in t if any(p in n for p in parts)]:
            del t[name]
    return edit


def _set(name, value):
    def edit(t):
        t[name] = value
    return edit


def _unquantize(*experts):
    """Store these experts' projections as plain bf16 weights (ModelOpt names)."""
    def edit(t):
        for e in experts:
            for proj in ("gate_proj", "up_proj", "down_proj"):
                p = f"model.layers.0.mlp.experts.{e}.{proj}."
                shape = (H, I) if proj == "down_proj" else (I, H)
                for name in [n for n in t if n.startswith(p)]:
                    del t[name]
                t[p + "weight"] = torch.randn(shape).to(torch.bfloat16)
    return edit


def _reshape_down(e):
    """Expert e's down projection with in_features 2I instead of I (a well-formed NVFP4 linear)."""
    def edit(t):
        p = f"model.layers.0.mlp.experts.{e}.down_proj."
        t[p + "weight"] = torch.zeros(H, I, dtype=torch.uint8)
        t[p + "weight_scale"] = torch.ones(H, 2 * I // 16).to(torch.float8_e4m3fn)
    return edit


P = "model.layers.0.mlp"
REFUSALS = {
    "gate and up input scales differ": (_set(f"{P}.experts.1.up_proj.input_scale", torch.tensor(0.5)),
                                        "expert 1: gate and up have different input scales"),
    "some experts unquantized": (_unquantize(2), "experts 2 are not NVFP4 while the others are"),
    "no expert quantized": (_unquantize(0, 1, 2), "declares NVFP4 but no tensor is NVFP4"),  # nothing else is either
    "down has the wrong shape": (_reshape_down(2), "expert 2 down is [out=32, in=32]"),
    "an expert is missing": (_drop("experts.1."), "has no expert 1"),
    "a projection is missing": (_drop("experts.0.up_proj."), "expert 0 lacks up_proj"),
    "fused 3-D experts": (_set(f"{P}.experts.gate_up_proj", torch.zeros(E, 2 * I, H // 2, dtype=torch.uint8)),
                          "fused 3-D expert tensors are not supported"),
    "router missing": (_drop("mlp.gate.weight"), "missing the router"),
    "router wrong shape": (_set(f"{P}.gate.weight", torch.zeros(E + 1, H)), "router"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_are_one_line(tmp_path, case):
    edit, message = REFUSALS[case]
    write_moe(tmp_path / "ck", "modelopt", edit=edit)
    with pytest.raises(CheckpointError) as info:
        ck = open_checkpoint(tmp_path / "ck")
        for desc in find_expert_blocks(ck).values():
            read_moe_block(ck, desc, top_k=2, normalize_topk=True)
    text = str(info.value)
    assert message in text and "\n" not in text and str(tmp_path / "ck") in text, text


def test_top_k_beyond_the_experts_is_refused(tmp_path):
    block, _, _ = write_moe(tmp_path / "ck", "quark")
    ck = open_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="num_experts_per_tok=4 must be in 1..3"):
        read_moe_block(ck, find_expert_blocks(ck)[block], top_k=4, normalize_topk=True)


def test_config_written(tmp_path):
    """The fixture helper writes what the reader expects (guards the other tests' premise)."""
    write_moe(tmp_path / "ck", "compressed-tensors")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert cfg["quantization_config"]["quant_method"] == "compressed-tensors"
