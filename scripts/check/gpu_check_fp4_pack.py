#!/usr/bin/env python3
"""GPU check of the native FP4 path's arch-independent parts (docs/kernels.md), on any GPU:

  1. activation packing (nvfp4_fp4_quantize_activation): packed E2M1 bytes and block scales in
     cuBLASLt's tiled 128x4 layout vs export.nvfp4.quantize_activation (CPU torch) and a layout
     written here from the cuBLAS documentation; random inputs with NaN/Inf/zero/tiny blocks,
     ragged M, float32/float16/bfloat16; padding bytes must be zero (the buffer is poisoned first);
  2. weight-scale re-layout and alpha (nvfp4_fp4_prepare_weight), ragged N, negative/-0/NaN scales;
  3. dispatch: forcing the native path on sm < 100 returns cudaErrorNotSupported, the automatic
     dispatch is unchanged; the cuBLASLt planning (dlopen, descriptors, heuristic) runs without
     crashing and its verdict is printed (on sm < 100 cuBLASLt is expected to offer no algorithm).

Prints one line per case and PASS/FAIL; exit status 0 / 1 (2: no GPU or library).
    python3 scripts/check/gpu_check_fp4_pack.py [--seed N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the export/ and plugins/ packages

import torch  # noqa: E402

from plugins.kernels import CUDA_ERROR_NOT_SUPPORTED, tiled_scale_layout  # noqa: E402


def make_activation(M: int, K: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    x = torch.randn(M, K, generator=gen) * torch.exp2(torch.randint(-6, 7, (M, 1), generator=gen).float())
    blocks = x.view(M, K // 16, 16)
    pick = torch.rand(M, K // 16, generator=gen)
    blocks[pick < 0.05] = 0.0                                         # zero blocks
    blocks[(pick >= 0.05) & (pick < 0.08)] *= 1e-30                   # scale underflows FP8 (o = 0)
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0, -0.25, -0.75, -1.25, -1.75, -2.5, -3.5, -5.0, -6.0])
    blocks[(pick >= 0.08) & (pick < 0.1)] = ties                      # E2M1 ties (amax 6 -> exact grid)
    flat = x.view(-1)
    n = flat.numel()
    idx = torch.randint(0, n, (max(1, n // 500),), generator=gen)
    flat[idx[: len(idx) // 2]] = float("nan")
    flat[idx[len(idx) // 2:]] = float("inf") * torch.sign(torch.randn(len(idx) - len(idx) // 2, generator=gen))
    return x.to(dtype)


def expected_activation(x: torch.Tensor, G: float):
    """(E2M1 codes uint8 [M, K] (0 in NaN blocks), FP8 scale bytes [M, K/16] (0x7F for NaN blocks))."""
    from export.nvfp4 import _magnitude_index, quantize_activation
    M, K = x.shape
    q, s = quantize_activation(x.float(), torch.tensor(G, dtype=torch.float32))
    nan_block = torch.isnan(s)
    mag = _magnitude_index(torch.nan_to_num(q, nan=0.0).abs())
    code = mag | (torch.signbit(q).to(torch.uint8) << 3)
    code = torch.where(nan_block.repeat_interleave(16, dim=1), torch.zeros_like(code), code)
    scale_bytes = s.to(torch.float8_e4m3fn).view(torch.uint8)
    scale_bytes = torch.where(nan_block, torch.full_like(scale_bytes, 0x7F), scale_bytes)
    return code, scale_bytes


def check_activation(M: int, K: int, dtype: torch.dtype, G: float, gen) -> tuple[bool, str]:
    from plugins.kernels import fp4_quantize_activation
    x = make_activation(M, K, dtype, gen)
    packed, scales = fp4_quantize_activation(x.cuda(), G)
    torch.cuda.synchronize()
    packed, scales = packed.cpu(), scales.cpu()
    code, scale_bytes = expected_activation(x, G)
    got = torch.stack((packed & 0xF, packed >> 4), dim=-1).reshape(M, K)
    # Magnitudes bit for bit; sign bits wherever the value is non-zero (a zero's sign is free:
    # the kernel keeps the sign of the scaled input, e.g. -0.1 -> code 8, as nvfp4Math.h documents).
    bad_mag = int(((got & 7) != (code & 7)).sum())
    nonzero = (code & 7) != 0
    bad_sign = int((((got >> 3) != (code >> 3)) & nonzero).sum())
    want_scales = tiled_scale_layout(scale_bytes)
    bad_scales = int((scales != want_scales).sum()) if scales.numel() == want_scales.numel() else -1
    ok = bad_mag == 0 and bad_sign == 0 and bad_scales == 0
    return ok, f"codes: {bad_mag} magnitude / {bad_sign} sign mismatches of {M * K}; scales: {bad_scales} of {want_scales.numel()} bytes differ"


def check_weight(N: int, K: int, per_channel: bool, gen) -> tuple[bool, str]:
    from plugins.kernels import fp4_prepare_weight
    raw = torch.randint(0, 0x7F, (N, K // 16), generator=gen, dtype=torch.int32).to(torch.uint8)  # 0..0x7E
    flat = raw.view(-1)
    idx = torch.randint(0, flat.numel(), (max(3, flat.numel() // 100),), generator=gen)
    flat[idx[0::3]] = 0x80                                   # -0 -> 0
    flat[idx[1::3]] = 0x80 | (flat[idx[1::3]] | 1)           # negative -> NaN pattern 0x7F
    flat[idx[2::3]] = 0xFF                                   # negative NaN -> 0x7F
    wgs = (torch.rand(N if per_channel else 1, generator=gen) * 1e-3 + 1e-5).float()
    igs = 0.0123
    out, alpha = fp4_prepare_weight(raw.cuda(), wgs.cuda(), igs)
    torch.cuda.synchronize()
    want = torch.where(raw < 0x80, raw, torch.where(raw == 0x80, torch.zeros_like(raw), torch.full_like(raw, 0x7F)))
    want_tiled = tiled_scale_layout(want)
    out = out.cpu()
    bad = int((out != want_tiled).sum()) if out.numel() == want_tiled.numel() else -1
    want_alpha = torch.cat([torch.tensor([igs], dtype=torch.float32) * wgs, torch.zeros(1)])
    bad_alpha = int((alpha.cpu().view(torch.int32) != want_alpha.view(torch.int32)).sum())
    return bad == 0 and bad_alpha == 0, f"scales: {bad} of {want_tiled.numel()} bytes differ; alpha: {bad_alpha} of {want_alpha.numel()} differ"


def check_dispatch(sm: int) -> list[tuple[str, bool, str]]:
    from export.nvfp4 import quantize_weight
    from plugins import kernels
    out = []
    M, N, K = 256, 256, 256
    w = torch.randn(N, K)
    wq, ws, wg = quantize_weight(w)
    x = torch.randn(M, K, dtype=torch.float16, device="cuda")
    args = (wq.cuda(), ws.cuda(), wg.reshape(1).cuda())
    kw = dict(mode="w4a4", input_global_scale=0.01, input_global_scale_inv=100.0)
    y_auto = kernels.nvfp4_linear(x, *args, **kw)  # on sm >= 100 this is the native path itself
    kernels.force_kernel("tiled")
    y_tiled = kernels.nvfp4_linear(x, *args, **kw)
    kernels.force_kernel("native_fp4")
    try:
        y = kernels.nvfp4_linear(x, *args, **kw)
        status = 0
    except RuntimeError as e:
        status = CUDA_ERROR_NOT_SUPPORTED if f"error {CUDA_ERROR_NOT_SUPPORTED}" in str(e) else -1
        y = None
    finally:
        kernels.force_kernel("auto")
    if sm < 100:
        out.append(("forced native_fp4 on sm_%d" % sm, status == CUDA_ERROR_NOT_SUPPORTED,
                    f"returned {status} (want {CUDA_ERROR_NOT_SUPPORTED} cudaErrorNotSupported)"))
    else:
        ok = status == 0 and y is not None and torch.allclose(y.float(), y_tiled.float(), rtol=1e-2, atol=1e-2)
        out.append(("forced native_fp4 on sm_%d" % sm, ok, f"returned {status}"))
    y_again = kernels.nvfp4_linear(x, *args, **kw)
    torch.cuda.synchronize()
    out.append(("auto dispatch after forcing", torch.equal(y_again, y_auto), "same output as before"))
    for wgs_len, bias in ((1, False), (N, True)):
        st, why = kernels.native_fp4_probe(4096, 4096, 4096, torch.float16, wgs_len, bias)
        # Only "it ran without crashing" is checked; the verdict is information (expected: no
        # algorithm below sm_100, or that libcublasLt cannot be loaded).
        out.append((f"cuBLASLt plan probe (alpha {'vector' if wgs_len > 1 else 'scalar'}, bias {bias})", True,
                    f"status {st}; {why or 'cuBLASLt offers an algorithm'}"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("FAIL: no CUDA device")
        return 2
    try:
        from plugins.kernels import library
        library()
    except Exception as e:  # noqa: BLE001
        print(f"FAIL: kernels library: {e}")
        return 2
    seed = args.seed if args.seed is not None else int(time.time()) % 100000
    gen = torch.Generator().manual_seed(seed)
    major, minor = torch.cuda.get_device_capability()
    sm = major * 10 + minor
    print(f"device: {torch.cuda.get_device_name()} (sm_{sm}), seed {seed}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    results = []
    for M, K in ((1, 64), (37, 192), (128, 256), (130, 1024), (257, 320), (600, 4096)):
        for name, dt in (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
            for G in (1.0, 1234.5):
                ok, msg = check_activation(M, K, dt, G, gen)
                results.append((f"activation M={M} K={K} {name} G={G}", ok, msg))
    for N, K in ((8, 64), (200, 192), (256, 4096), (1000, 320)):
        for per_channel in (False, True):
            ok, msg = check_weight(N, K, per_channel, gen)
            results.append((f"weight N={N} K={K} {'per-channel' if per_channel else 'scalar'}", ok, msg))
    results += check_dispatch(sm)
    for name, ok, msg in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {msg}")
    failed = sum(not ok for _, ok, _ in results)
    print(f"{'PASS' if failed == 0 else 'FAIL'}: {len(results) - failed}/{len(results)} checks")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
