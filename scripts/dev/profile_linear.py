#!/usr/bin/env python3
"""One NVFP4Linear call per (M, K->N) on random operands, for a profiler run (ncu / nsys):
    ncu --kernel-name regex:wgmma python3 scripts/dev/profile_linear.py --shape 4096->14336 --m 1024
Each shape runs twice (the first call warms up the library); --path pins a kernel family."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from plugins import kernels  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", action="append", required=True, help="K->N (repeatable)")
    ap.add_argument("--m", type=int, action="append", required=True, help="M (repeatable)")
    ap.add_argument("--mode", default="w4a16", choices=("w4a4", "w4a16"))
    ap.add_argument("--dtype", default="bf16", choices=("fp16", "bf16"))
    ap.add_argument("--path", default="auto")
    args = ap.parse_args()
    dtype = torch.float16 if args.dtype == "fp16" else torch.bfloat16
    kernels.force_kernel(args.path)
    for shape in args.shape:
        K, N = (int(v) for v in shape.split("->"))
        w = torch.randint(-128, 127, (N, K // 2), dtype=torch.int8, device="cuda")
        s = torch.full((N, K // 16), 0x38, dtype=torch.uint8, device="cuda").view(torch.int8)  # 1.0
        g = torch.ones(1, dtype=torch.float32, device="cuda")
        for M in args.m:
            x = torch.randn(M, K, dtype=dtype, device="cuda")
            for _ in range(2):
                kernels.nvfp4_linear(x, w, s, g, None, mode=args.mode, input_global_scale=1.0,
                                     input_global_scale_inv=1.0)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
