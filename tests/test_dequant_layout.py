"""The dequantize-then-GEMM path's workspace layout (trt_plugin_src/nvfp4Linear/kernels/nvfp4DequantLayout.h):
slice heights and region offsets for shapes around the slice budget. The header is compiled for the
host with the system C++ compiler."""
from __future__ import annotations

import subprocess

import pytest

PROGRAM = r"""
#include "nvfp4DequantLayout.h"
#include <cstdio>
#include <cstdlib>
int main(int argc, char** argv)
{
    if (argc != 6)
        return 2;
    auto const w = nvfp4::layout::dequantWorkspace(std::atoll(argv[1]), std::atoll(argv[2]),
        std::strtoull(argv[3], nullptr, 10), std::strtoull(argv[4], nullptr, 10), std::strtoull(argv[5], nullptr, 10));
    std::printf("%lld %zu %zu %zu %zu\n", static_cast<long long>(w.sliceRows), w.slice, w.alpha, w.lt, w.total);
    return 0;
}
"""

MIB = 1 << 20
LT = 32 * MIB


@pytest.fixture(scope="module")
def layout(compile_header_program):
    exe = compile_header_program("dequant_layout", PROGRAM)

    def run(N, K, act, budget=64 * MIB, lt=LT):
        out = subprocess.run([str(exe), str(N), str(K), str(act), str(budget), str(lt)], check=True,
                             capture_output=True, text=True).stdout.split()
        rows, *offsets = (int(v) for v in out)
        return rows, dict(zip(("slice", "alpha", "lt", "total"), offsets))

    return run


def up256(v):
    return -(-v // 256) * 256


@pytest.mark.parametrize("N,K,rows", [
    (4096, 4096, 4096),      # 32 MiB: the whole weight in one slice
    (8192, 4096, 8192),      # exactly the budget
    (8200, 4096, 8192),      # just over: 64 groups of 128 rows, then an 8-row slice
    (57344, 8192, 4096),     # Llama-3 70B up/gate projection: 14 slices
    (8192, 28672, 1152),     # the down projection: 9 groups per slice
    (40, 16, 40),            # tiny
    (1000, 600000, 128),     # one 128-row group is over the budget: still one group
    (100, 600000, 100),      # ... unless N itself is smaller
])
def test_slice_rows(layout, N, K, rows):
    got, _ = layout(N, K, 0)
    assert got == rows
    if rows != N:
        assert rows % 128 == 0 and rows < N
        assert rows * K * 2 <= 64 * MIB or rows == 128
        assert (rows + 128) * K * 2 > 64 * MIB  # the most groups that fit


@pytest.mark.parametrize("N,K,act", [(4096, 4096, 0), (4104, 8192, 2056 * 8192 * 2), (72, 48, 300), (8200, 4096, 1)])
def test_regions_are_aligned_ordered_and_disjoint(layout, N, K, act):
    rows, off = layout(N, K, act)
    assert all(v % 256 == 0 for k, v in off.items() if k != "total")
    assert off["slice"] == up256(act)
    assert off["alpha"] == off["slice"] + up256(rows * K * 2)
    assert off["lt"] == off["alpha"] + up256(2 * 4)  # the scalar alpha and beta
    assert off["total"] == off["lt"] + LT


def test_total_grows_with_the_activation_region(layout):
    # workspaceSize must cover every smaller M: the layout may only grow with M's x-hat region.
    totals = [layout(8192, 8192, M * 8192 * 2)[1]["total"] for M in (0, 1, 7, 2048, 2049, 8192)]
    assert totals == sorted(totals)
