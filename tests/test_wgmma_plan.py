"""The Hopper wgmma kernel's planner (plugins.kernels.wgmma_plan: computed on the host, no GPU): the
tiles it takes where they were measured (docs/kernels.md, "What was tried"), and that the wgmma
cases of scripts/check/gpu_check.py reach every tile of the tuning table on a 132-SM H100/H200."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from plugins.library import find_kernels_library

try:
    find_kernels_library()
except FileNotFoundError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"kernels library not built: {e}", allow_module_level=True)

from plugins import kernels  # noqa: E402

SMS = 132  # H100 SXM and H200


def test_no_plan_where_the_kernel_cannot_run():
    assert kernels.wgmma_plan(64, 4096, 4096 + 128, SMS) is None  # K % 256 != 0
    with pytest.raises(RuntimeError):
        kernels.wgmma_plan(64, 4096, 4096, 0)


@pytest.mark.parametrize("M", [9, 16, 17, 24, 32])
def test_small_activation_tiles_unsplit_on_the_largest_weight(M):
    # 8192->57344, 256 rows at BN = 16 / 32, unsplit: H100 128-135 us at M = 16-32; the BN = 64
    # tile split 4 ways ran 158 us at M = 16 (unsplit 147 us at M = 24)
    plan = kernels.wgmma_plan(M, 57344, 8192, SMS)
    assert (plan.bn, plan.weight_rows, plan.splits) == (16 if M <= 16 else 32, 256, 1)


@pytest.mark.parametrize("K,N", [(8192, 57344), (28672, 8192), (4096, 28672)])
@pytest.mark.parametrize("M,bn", [(33, 48), (41, 48), (48, 48), (64, 64), (65, 96), (96, 96), (128, 128)])
def test_tile_where_measured_faster(K, N, M, bn):
    # H100: one CTA of 256 weight rows: BN = 64 at M = 41-64 -5...-13 % against 128 rows; BN = 48 at
    # M = 33-48 -2...-6 % against BN = 64; BN = 96 at M = 65-96 -11...-31 % against BN = 128 of
    # 128 rows, which stays at M = 128
    plan = kernels.wgmma_plan(M, N, K, SMS)
    assert (plan.bn, plan.ctas_per_sm, plan.weight_rows) == (bn, 1, 256 if bn < 128 else 128)


def test_split_k_only_below_one_wave():
    for M, N, K in ((16, 57344, 8192), (65, 57344, 8192), (80, 18944, 3584), (16, 8192, 28672)):
        plan = kernels.wgmma_plan(M, N, K, SMS)
        tiles = -(-N // plan.weight_rows) * -(-M // plan.bn)
        assert plan.splits == 1 or tiles < plan.ctas_per_sm * SMS, (M, N, K, plan)


def test_gpu_check_reaches_every_tile():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "check"))
    import gpu_check

    plans = [kernels.wgmma_plan(c.M, c.N, c.K, SMS) for c in gpu_check.build_cases(quick=False)
             if c.name.startswith("wgmma")]
    tiles = {(p.bn, p.ctas_per_sm, p.weight_rows) for p in plans if p is not None}
    assert tiles == {(256, 1, 128), (128, 1, 128), (64, 1, 128), (64, 2, 128), (96, 1, 256), (64, 1, 256),
                     (48, 1, 256), (32, 1, 256), (16, 1, 256)}
    # each 256-row tile both whole and split along K
    for bn in (16, 32, 48, 64, 96):
        assert {p.splits > 1 for p in plans if p is not None and (p.bn, p.weight_rows) == (bn, 256)} == {False, True}
