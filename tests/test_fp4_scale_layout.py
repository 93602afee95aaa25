"""cuBLASLt's tiled block-scale layout (trt_plugin_src/nvfp4Linear/kernels/nvfp4ScaleLayout.h, used by
the native FP4 path's kernels) against the reshape/permute form of the cuBLAS documentation's
"1D block scaling factors layout" (plugins.kernels.tiled_scale_layout, also the GPU check's
reference). The header is compiled for the host with the system C++ compiler."""
from __future__ import annotations

import subprocess

import pytest
import torch

from plugins.kernels import tiled_scale_layout

PROGRAM = r"""
#include "nvfp4ScaleLayout.h"
#include <cstdio>
#include <cstdlib>
#include <vector>
// Prints the tiled buffer of the [rows, cols] matrix whose element (r, c) is (r * cols + c) % 251 + 1.
int main(int argc, char** argv)
{
    if (argc != 3)
        return 2;
    long rows = std::atol(argv[1]), cols = std::atol(argv[2]);
    std::vector<int> buf(nvfp4::layout::swizzledScaleBytes(rows, cols), 0);
    for (long r = 0; r < rows; ++r)
        for (long c = 0; c < cols; ++c)
            buf.at(nvfp4::layout::swizzledScaleOffset(r, c, cols)) = static_cast<int>((r * cols + c) % 251 + 1);
    for (int v : buf)
        std::printf("%d\n", v);
    return 0;
}
"""


@pytest.fixture(scope="module")
def layout_program(compile_header_program):
    return compile_header_program("layout", PROGRAM)


@pytest.mark.parametrize("rows,cols", [(1, 4), (1, 1), (32, 4), (127, 8), (128, 4), (129, 12), (300, 7), (513, 256)])
def test_header_matches_documented_layout(layout_program, rows, cols):
    out = subprocess.run([str(layout_program), str(rows), str(cols)], check=True, capture_output=True, text=True).stdout
    got = torch.tensor([int(v) for v in out.split()], dtype=torch.int64)
    values = ((torch.arange(rows * cols) % 251) + 1).reshape(rows, cols).to(torch.uint8)
    want = tiled_scale_layout(values).to(torch.int64)
    assert got.numel() == want.numel() == -(-rows // 128) * -(-cols // 4) * 512
    assert torch.equal(got, want)


def test_documented_layout_small_example():
    # Row r of a 128x4 tile sits at byte (r % 32) * 16 + (r // 32) * 4: rows 0, 32, 64, 96 share
    # one 16-byte line, each holding its 4 scales contiguously.
    s = torch.zeros(128, 4, dtype=torch.uint8)
    s[0] = torch.tensor([1, 2, 3, 4])
    s[32] = torch.tensor([5, 6, 7, 8])
    s[1, 0] = 9
    s[97, 3] = 10
    t = tiled_scale_layout(s)
    assert t[:8].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert t[16].item() == 9
    assert t[1 * 16 + 3 * 4 + 3].item() == 10
