"""NVFP4Linear's workspace size without a GPU (plugins.kernels.workspace_size; no device, so none of
the cuBLASLt paths): it covers every smaller M, and the activation region is reserved only where a
kernel writes one: x-hat for w4a4, and for fp16/bf16 w4a16 x moved into the wgmma kernel's K order
(K % 256 == 0; every M when N >= 6144, else M <= 256). The kernels' use of it is checked on a GPU
by scripts/check/gpu_check.py, which poisons the workspace and sizes it with this function."""
from __future__ import annotations

import pytest
import torch

from plugins.library import find_kernels_library

try:
    find_kernels_library()
except FileNotFoundError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"kernels library not built: {e}", allow_module_level=True)

from plugins import kernels  # noqa: E402

MS = (1, 7, 16, 64, 255, 256, 257, 1024, 4096)


def size(M, N, K, mode="w4a16", dtype=torch.bfloat16):
    return kernels.workspace_size(M, N, K, mode, dtype)


@pytest.mark.parametrize("mode,dtype", [("w4a4", torch.bfloat16), ("w4a4", torch.float32),
                                        ("w4a16", torch.float16), ("w4a16", torch.float32)])
@pytest.mark.parametrize("N,K", [(4096, 4096), (6144, 1024), (136, 1088), (57344, 8192)])
def test_covers_every_smaller_m(mode, dtype, N, K):
    sizes = [size(M, N, K, mode, dtype) for M in MS]
    assert sizes == sorted(sizes)


def test_w4a4_reserves_x_hat_for_every_row():
    # Past M = 256 the split-K partials stop growing; the rest is M x K fp16.
    assert size(4096, 4096, 4096, "w4a4") - size(1024, 4096, 4096, "w4a4") == (4096 - 1024) * 4096 * 2


def test_w4a16_reserves_moved_x_only_under_the_wgmma_rule():
    K = 4096
    # N >= 6144: x is moved at every M.
    assert size(4096, 6144, K) - size(1024, 6144, K) == (4096 - 1024) * K * 2
    # N < 6144: only up to M = 256, so nothing more past it.
    assert size(4096, 4096, K) == size(1024, 4096, K) == size(257, 4096, K)
    assert size(256, 4096, K) - size(256, 4096, K, "w4a16", torch.float32) == 256 * K * 2
    # K % 256 != 0 (no wgmma kernel) and fp32 x (SIMT, straight from x): nothing.
    assert size(4096, 6144, 1088) == size(4096, 6144, 1088, "w4a16", torch.float32)
    assert size(4096, 6144, K, "w4a16", torch.float32) == size(1024, 6144, K, "w4a16", torch.float32)
