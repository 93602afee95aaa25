#!/usr/bin/env python3
"""Times several builds of libnvfp4_kernels.so (kernel variants, old vs new) and forced kernel
families on the same problems in one process, the way plugins.bench.gemm times one: CUDA graphs of
R calls over R weight copies (together >= 3x L2). Also checks every build's output against the
first build's (relative error; the first build is expected to be the checked reference build).

    python3 scripts/dev/bench_libs.py --libs old=build/gpu-old/libnvfp4_kernels.so,new=build/gpu/libnvfp4_kernels.so,\
        newgemv=build/gpu/libnvfp4_kernels.so@gemv --shapes 4096->4096,8192->28672 --m 1,4,16 --modes w4a4,w4a16 \
        [--bf16] [--out FILE]
`NAME=PATH@FAMILY` forces a kernel family (plugins.kernels.KERNEL_PATHS) for that entry.
"""
from __future__ import annotations

import argparse
import ctypes
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the plugins/ package

import torch  # noqa: E402

from export.outputs import replace_file  # noqa: E402
from plugins.bench import gemm as bench  # noqa: E402
from plugins.kernels import _SIGNATURES, KERNEL_PATHS, declare  # noqa: E402
from plugins.library import find_kernels_library  # noqa: E402


def load_build(path: str) -> ctypes.CDLL:
    """One build of the library, with the entry points it has declared: an older build may lack
    a newer entry point that this comparison does not call."""
    lib = ctypes.CDLL(str(find_kernels_library(path)))
    return declare(lib, {name: sig for name, sig in _SIGNATURES.items() if hasattr(lib, name)})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--libs", required=True, help="name=path,... (the first is the reference)")
    ap.add_argument("--shapes", default="4096->4096,4096->14336,8192->28672")
    ap.add_argument("--m", default="1,4,16")
    ap.add_argument("--modes", default="w4a4,w4a16")
    ap.add_argument("--bf16", action="store_true", help="also time torch bf16 matmul")
    ap.add_argument("--min-replays", type=int, default=20)
    ap.add_argument("--max-replays", type=int, default=40)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    libs = []
    for item in args.libs.split(","):
        name, spec = item.split("=", 1)
        path, _, family = spec.partition("@")
        libs.append((name, load_build(path), KERNEL_PATHS[family or "auto"]))
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    l2 = getattr(props, "L2_cache_size", 50 * 2**20)
    lines = [f"bench_libs: {props.name}, {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, "
             f"libs {', '.join(n for n, _, _ in libs)}"]
    bench.warm_up_clocks()
    bw = bench.measure_bandwidth(1 << 30)
    lines.append(f"copy bandwidth {bw}")
    header = f"{'K->N':>12} {'M':>4} {'mode':<6} " + " ".join(f"{n:>9}" for n, _, _ in libs) + "  (us; TB/s of NVFP4 bytes for the last) rel.err vs first"
    lines.append(header)
    print("\n".join(lines), flush=True)
    gen = torch.Generator(device=dev)
    gen.manual_seed(1234)
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("->"))
        wbytes = N * K // 2 + N * K // 16
        copies = max(1, min(64, math.ceil(3 * l2 / wbytes)))
        packed = torch.randint(0, 256, (N, K // 2), dtype=torch.uint8, device=dev, generator=gen)
        scale = torch.empty(N, K // 16, device=dev).uniform_(1.0, 448.0, generator=gen).to(torch.float8_e4m3fn).view(torch.uint8)
        gscale = torch.full((1,), 1.0 / 2688.0, dtype=torch.float32, device=dev)
        weights = [(packed, scale)] + [(packed.clone(), scale.clone()) for _ in range(copies - 1)]
        mmax = max(int(m) for m in args.m.split(","))
        x_all = torch.randn(mmax, K, dtype=torch.bfloat16, device=dev, generator=gen)
        G = 448.0 * 6.0 / float(x_all.abs().amax())
        for M in (int(m) for m in args.m.split(",")):
            x = x_all[:M].contiguous()
            for mode in args.modes.split(","):
                w4a4 = mode == "w4a4"
                times, outs = [], []
                for name, lib, family in libs:
                    lib.nvfp4_force_kernel(family)
                    ws_bytes = max(256, int(lib.nvfp4_workspace_size(M, N, K, int(w4a4), 2)))
                    ws = torch.empty(ws_bytes, dtype=torch.uint8, device=dev)
                    y = torch.empty(M, N, dtype=torch.bfloat16, device=dev)

                    def call(w, s, lib=lib, y=y, ws=ws):
                        st = lib.nvfp4_linear_launch(
                            x.data_ptr(), w.data_ptr(), s.data_ptr(), gscale.data_ptr(), 1, None, y.data_ptr(),
                            M, N, K, int(w4a4), 1.0 / G if w4a4 else 1.0, G if w4a4 else 1.0, 2, ws.data_ptr(),
                            ws_bytes, ctypes.c_void_p(torch.cuda.current_stream().cuda_stream))
                        if st != 0:
                            raise RuntimeError(f"{name}: launch status {st}")

                    try:
                        call(*weights[0])
                        torch.cuda.synchronize()
                        outs.append(y.float().clone())
                        t = bench.time_graph([lambda w=w, s=s: call(w, s) for w, s in weights], args.min_replays,
                                             args.max_replays)
                        times.append(t.us)
                    except RuntimeError:  # a forced family that cannot run this problem
                        outs.append(None)
                        times.append(math.nan)
                    lib.nvfp4_force_kernel(0)
                ref = outs[0]
                errs = [math.nan if o is None or ref is None else float((o - ref).norm() / ref.norm())
                        for o in outs[1:]]
                tb = wbytes / (times[-1] * 1e-6) / 1e12
                line = (f"{shape:>12} {M:>4} {mode:<6} " + " ".join(f"{t:>9.2f}" for t in times)
                        + f"  {tb:.2f} TB/s  " + " ".join(f"{e:.1e}" for e in errs))
                print(line, flush=True)
                lines.append(line)
            if args.bf16:
                wb = [torch.randn(N, K, dtype=torch.bfloat16, device=dev)]
                wb += [wb[0].clone() for _ in range(max(1, min(64, math.ceil(3 * l2 / (N * K * 2)))) - 1)]
                yb = torch.empty(M, N, dtype=torch.bfloat16, device=dev)
                t = bench.time_graph([lambda w=w: torch.mm(x, w.t(), out=yb) for w in wb], args.min_replays, args.max_replays)
                line = f"{shape:>12} {M:>4} {'bf16':<6} {t.us:>9.2f}"
                print(line, flush=True)
                lines.append(line)
                del wb
        del weights
        torch.cuda.empty_cache()
    if args.out:
        replace_file(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
