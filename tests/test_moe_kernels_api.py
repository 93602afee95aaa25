"""plugins/moe_kernels.py without a GPU: the stacked operands it builds from an NVFP4MoEWeights
(the op's inputs 2-7 and attributes), the workspace size and option entry points of the kernels
library, and the argument checks that run before anything reaches CUDA. (The kernels themselves
are checked on a GPU by scripts/check/gpu_check_moe.py.)"""
from __future__ import annotations

import pytest
import torch

from export.contract import op_contract
from export.layer import NVFP4LinearWeights, NVFP4MoEWeights
from export.nvfp4 import quantize_weight
from plugins.library import find_kernels_library

try:
    find_kernels_library()
except FileNotFoundError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"kernels library not built: {e}", allow_module_level=True)

from plugins import moe_kernels  # noqa: E402


def make_moe(E=3, H=32, I=16, w4a4=True):  # noqa: E741
    g = torch.Generator().manual_seed(0)

    def lin(n, k, s):
        packed, scale, gs = quantize_weight(torch.randn(n, k, generator=g))
        si = torch.tensor(s) if w4a4 else None
        return NVFP4LinearWeights(name="l", weight_packed=packed, weight_scale=scale, weight_global_scale=gs,
                                  input_global_scale=si, input_global_scale_inv=(1 / si) if w4a4 else None)
    experts = [(lin(I, H, 0.01 * (e + 1)), lin(I, H, 0.01 * (e + 1)), lin(H, I, 0.02 * (e + 1))) for e in range(E)]
    return NVFP4MoEWeights(name="mlp", router_weight=torch.zeros(E, H), gate=tuple(x[0] for x in experts),
                           up=tuple(x[1] for x in experts), down=tuple(x[2] for x in experts), top_k=2,
                           normalize_topk=False)


@pytest.mark.parametrize("w4a4", [True, False])
def test_stacked_operands_are_the_contract_inputs(w4a4):
    moe = make_moe(w4a4=w4a4)
    tensors, attrs = moe_kernels.stacked_operands(moe)
    contract = op_contract("NVFP4MoE")
    assert list(tensors) == [spec["name"] for spec in contract["inputs"][2:]]
    assert list(attrs) == list(contract["attributes"])
    E, H, I = 3, 32, 16
    assert {k: tuple(t.shape) for k, t in tensors.items()} == {
        "w13_weight": (E, 2 * I, H // 2), "w13_weight_scale": (E, 2 * I, H // 16), "w13_weight_global_scale": (E, 2 * I),
        "w2_weight": (E, H, I // 2), "w2_weight_scale": (E, H, I // 16), "w2_weight_global_scale": (E, H)}
    for e in range(E):  # gate rows, then up rows, bytes unchanged; every row its own global scale
        assert torch.equal(tensors["w13_weight"][e, :I].view(torch.uint8), moe.gate[e].weight_packed)
        assert torch.equal(tensors["w13_weight"][e, I:].view(torch.uint8), moe.up[e].weight_packed)
        assert torch.equal(tensors["w13_weight_scale"][e, I:], moe.up[e].weight_scale.view(torch.int8))
        assert torch.equal(tensors["w2_weight_scale"][e], moe.down[e].weight_scale.view(torch.int8))
        assert (tensors["w13_weight_global_scale"][e, :I] == moe.gate[e].weight_global_scale).all()
        assert (tensors["w13_weight_global_scale"][e, I:] == moe.up[e].weight_global_scale).all()
        assert (tensors["w2_weight_global_scale"][e] == moe.down[e].weight_global_scale).all()
    expected = [0.01 * (e + 1) for e in range(E)] if w4a4 else [1.0] * E
    assert attrs["w13_input_global_scale"] == pytest.approx(expected)
    assert attrs["w2_input_global_scale_inv"] == pytest.approx(
        [1 / (0.02 * (e + 1)) for e in range(E)] if w4a4 else [1.0] * E, rel=1e-6)
    assert (attrs["mode"], attrs["top_k"], attrs["normalize_topk"]) == ("w4a4" if w4a4 else "w4a16", 2, 0)


def test_workspace_size_grows_with_tokens_and_covers_nothing_for_none():
    sizes = [moe_kernels.workspace_size(M, 128, 8, 2048, 768, "w4a4", torch.bfloat16) for M in (0, 1, 16, 256)]
    assert sizes[0] == 0 and sizes[1] > 0 and sizes[1] < sizes[2] < sizes[3]
    # At least the experts' activations: x-hat [P, H] fp16, h [P, I] fp16, d [P, H] bf16 for P = 256 * 8.
    assert sizes[3] >= 2048 * (2048 * 2 + 768 * 2 + 2048 * 2)
    w4a16 = moe_kernels.workspace_size(256, 128, 8, 2048, 768, "w4a16", torch.float32)
    assert w4a16 >= 2048 * (768 + 2048) * 4


def test_set_options_checks_its_values():
    moe_kernels.set_options("simt", 32, "split")
    moe_kernels.set_options()
    with pytest.raises(ValueError, match="gemm 'wgmma'"):
        moe_kernels.set_options("wgmma")
    with pytest.raises(RuntimeError, match="rows_per_item=12"):
        moe_kernels.set_options("auto", 12)


def test_arguments_are_checked_before_cuda():
    moe = make_moe()
    tensors, attrs = moe_kernels.stacked_operands(moe)
    x, logits = torch.zeros(2, 32), torch.zeros(2, 3)
    with pytest.raises(ValueError, match="x: expected a CUDA tensor"):
        moe_kernels.nvfp4_moe(x, logits, **tensors, **attrs)
    with pytest.raises(ValueError, match=r"router_logits .*expected \[\.\.\., 32\] and \[\.\.\., 3\]"):
        moe_kernels.nvfp4_moe(x, torch.zeros(2, 4), **tensors, **attrs)
    with pytest.raises(ValueError, match="activation 'gelu'"):
        moe_kernels.nvfp4_moe(x, logits, **tensors, **dict(attrs, activation="gelu"))
    with pytest.raises(ValueError, match="activation dtype torch.float64"):
        moe_kernels.nvfp4_moe(x.double(), logits.double(), **tensors, **attrs)
