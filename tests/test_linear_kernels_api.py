"""The NVFP4Linear kernels' C API without a GPU: the split-K counters' size and the argument checks
of nvfp4_linear_launch that run before anything reaches CUDA (the kernels themselves, and the
one-launch split-K against the two-launch reduction bit for bit, are checked on a GPU by
scripts/check/gpu_check.py)."""
from __future__ import annotations

import pytest
import torch

from plugins.library import find_kernels_library

try:
    find_kernels_library()
except FileNotFoundError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"kernels library not built: {e}", allow_module_level=True)

from plugins import kernels  # noqa: E402

INVALID_VALUE = 1  # cudaErrorInvalidValue


@pytest.mark.parametrize("N, count", [(0, 0), (-5, 0), (1, 1), (32, 1), (33, 2), (4096, 128), (57344, 1792)])
def test_split_counters_bytes_is_one_uint32_per_32_outputs(N, count):
    assert kernels.library().nvfp4_split_counters_bytes(N) == 4 * count


# Fake device addresses: every call below must be refused by the argument checks before any CUDA call.
FAKE = 1 << 40


def launch(counters, counters_bytes, N=4096, K=4096, M=1):
    lib = kernels.library()
    ws_bytes = int(lib.nvfp4_workspace_size(M, N, K, 1, 1))
    return lib.nvfp4_linear_launch(FAKE, FAKE, FAKE, FAKE, 1, None, FAKE, M, N, K, 1, 1.0, 1.0, 1, FAKE, ws_bytes,
                                   counters, counters_bytes, None)


@pytest.mark.parametrize("counters, counters_bytes, why", [
    (FAKE, 4 * 127, "one counter short for N = 4096"),
    (FAKE, 0, "a buffer of 0 bytes"),
    (FAKE + 2, 4 * 128, "not 4-byte aligned"),
])
def test_launch_rejects_bad_split_counters(counters, counters_bytes, why):
    assert launch(counters, counters_bytes) == INVALID_VALUE, why


@pytest.mark.skipif(torch.cuda.is_available(), reason="would launch on the fake addresses")
@pytest.mark.parametrize("counters, counters_bytes", [(None, 0), (FAKE, 4 * 128), (FAKE, 4 * 1000)])
def test_launch_accepts_no_or_enough_split_counters(counters, counters_bytes):
    # Past the argument checks, the launch asks for the device: any error but "invalid value".
    assert launch(counters, counters_bytes) not in (0, INVALID_VALUE)

