"""plugins.bench.moe (scripts/bench/bench_moe.py) on the CPU: its bf16 peers compute the MoE block,
its check of the NVFP4 output reads the random layer as the op does, and its arguments; the timing
itself needs a GPU."""
from __future__ import annotations

import pytest
import torch

from export.moe import unstack_moe
from export.reference import nvfp4_moe_exact
from plugins.bench import moe as bench_moe

E, H, I, K, M = 8, 64, 32, 2, 5  # noqa: E741


@pytest.fixture(scope="module")
def layer():
    return bench_moe.Layer(E, H, I, torch.Generator().manual_seed(0), device="cpu")


def bf16_block_f64(layer, x, logits):
    experts, weights = bench_moe.route(logits, K)
    y = torch.zeros(x.shape[0], H, dtype=torch.float64)
    for m in range(x.shape[0]):
        for j in range(K):
            e = experts[m, j]
            gu = x[m].double() @ layer.bf16_w13[e].double().t()
            y[m] += weights[m, j].double() * ((torch.nn.functional.silu(gu[:I]) * gu[I:]) @ layer.bf16_w2[e].double().t())
    return y


def test_bf16_peers_compute_the_block(layer):
    g = torch.Generator().manual_seed(1)
    x, logits = torch.randn(M, H, generator=g).to(torch.bfloat16), torch.randn(M, E, generator=g).to(torch.bfloat16)
    ref = bf16_block_f64(layer, x, logits)
    loop_out = torch.empty(M, H, dtype=torch.bfloat16)
    bench_moe.bf16_loop(layer, x, logits, K, loop_out)()
    assert (loop_out.double() - ref).abs().max() <= 0.02 * ref.abs().max()
    grouped_out = torch.empty(M, H, dtype=torch.bfloat16)
    try:
        bench_moe.bf16_grouped(layer, x, logits, K, grouped_out)
    except (RuntimeError, NotImplementedError) as e:  # torch._grouped_mm is not on every CPU build
        pytest.skip(f"torch._grouped_mm on CPU: {e}")
    assert (grouped_out.double() - ref).abs().max() <= 0.02 * ref.abs().max()


@pytest.mark.parametrize("mode", ["w4a4", "w4a16"])
def test_nvfp4_check_reads_the_layer_as_the_op(layer, mode):
    g = torch.Generator().manual_seed(2)
    x, logits = torch.randn(M, H, generator=g).to(torch.bfloat16), torch.randn(M, E, generator=g).to(torch.bfloat16)
    attrs = layer.attributes(K, mode)
    exact = nvfp4_moe_exact(x, logits, unstack_moe(list(layer.tensors.values()), **attrs))
    assert exact.abs().max() > 0.1  # outputs of order 1, as the layer's scales intend
    assert bench_moe.check_nvfp4(layer, x, logits, attrs, exact) == 0.0
    assert bench_moe.check_nvfp4(layer, x, logits, attrs, exact.flip(0)) > bench_moe.CHECK_TOLERANCE


def test_arguments():
    assert bench_moe.parse_args(["--quick"]).tokens == bench_moe.QUICK_TOKENS
    args = bench_moe.parse_args(["--tokens", "1,3", "--replays", "7"])
    assert (args.tokens, args.replays, args.experts, args.top_k) == ((1, 3), 7, 128, 8)
    assert bench_moe.Layer(2, 32, 16, torch.Generator(), "cpu").expert_bytes(True) == 3 * 32 * 16 * 0.5625 + 64 * 4
