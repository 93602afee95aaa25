#!/usr/bin/env python3
"""Run one NVFP4Linear problem a few times (for ncu / compute-sanitizer on a single shape).

    ncu --kernel-name regex:gemv --launch-skip 2 --launch-count 1 python3 scripts/dev/profile_once.py 1 14336 4096 w4a16
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import torch  # noqa: E402

from plugins import kernels  # noqa: E402

M, N, K = (int(v) for v in sys.argv[1:4])
mode = sys.argv[4] if len(sys.argv) > 4 else "w4a4"
dev = "cuda"
x = torch.randn(M, K, dtype=torch.bfloat16, device=dev)
w = torch.randint(-128, 128, (N, K // 2), dtype=torch.int8, device=dev)
s = torch.empty(N, K // 16, device=dev).uniform_(1.0, 448.0).to(torch.float8_e4m3fn).view(torch.int8)
g = torch.full((1,), 1.0 / 2688.0, device=dev)
out = torch.empty(M, N, dtype=torch.bfloat16, device=dev)
ws = torch.empty(max(kernels.workspace_size(M, N, K, mode, torch.bfloat16), 256), dtype=torch.uint8, device=dev)
G = 2688.0 / float(x.abs().amax())
for _ in range(4):
    kernels.nvfp4_linear(x, w, s, g, mode=mode, input_global_scale=1.0 / G, input_global_scale_inv=G, out=out, workspace=ws)
torch.cuda.synchronize()
print("ok", M, N, K, mode)
