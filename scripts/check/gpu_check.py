#!/usr/bin/env python3
"""Correctness of the NVFP4Linear CUDA kernels on a real GPU (builds nothing: uses the built
build/libnvfp4_kernels.so or $NVFP4_KERNELS_LIB).

Every case draws fresh random operands, poisons the output, runs each kernel family that can take
the problem (SIMT, GEMV, tiled, and the automatic dispatch) and compares with
  * export.reference.nvfp4_linear_exact     (exact products, float64 accumulation): the contract;
  * export.reference.nvfp4_linear_emulation (vLLM's emulation, 16-bit rounding of the operands);
plus the activation quantization alone, bit for bit, against export.nvfp4.quantize_activation.
Edge cases: M from 1 to 4097, N not a multiple of 64, K = 16*odd, the wgmma kernel's tile
heights and split K (w4a4: x-hat in its permuted K order), zero blocks, FP8 subnormal
block scales, +-6 saturation, E2M1 rounding ties, NaN/Inf activations, bias, per-channel global
scale, w4a4 and w4a16, float32/float16/bfloat16. Prints a table and a final PASS/FAIL line
(exit status 0/1; 2 when no GPU or library).

    python scripts/check/gpu_check.py [--quick] [--report FILE]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the export/ and plugins/ packages

import torch  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# ||y - ref|| / ||ref|| limits. Exact reference: fp32 output = float32 accumulation level; 16-bit
# outputs differ from the reference only where the float32 sums round differently to the dtype.
EXACT_TOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}
# Emulation: vLLM rounds x-hat/G and w-hat*g to the dtype and multiplies in the dtype.
EMUL_TOL = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


@dataclass
class Case:
    name: str
    M: int
    N: int
    K: int
    dtype: torch.dtype
    mode: str = "w4a4"
    per_channel: bool = False
    bias: bool = False
    edges: tuple[str, ...] = ()  # zero, ties, saturate, nan, inf, subnormal_scales


def build_cases(quick: bool) -> list[Case]:
    cases: list[Case] = []
    all_edges = ("zero", "nan", "inf", "subnormal_scales")
    if quick:
        for dt in DTYPES.values():
            cases += [
                Case("gemv", 5, 136, 192, dt, edges=all_edges, bias=True, per_channel=True),
                Case("tiled", 70, 136, 192, dt, edges=all_edges),
                Case("k16odd", 9, 40, 48, dt, edges=("zero",)),
                Case("w4a16", 20, 72, 128, dt, mode="w4a16", bias=True),
                Case("gemvk", 3, 72, 4224, dt, edges=all_edges, bias=True),
                Case("gemvk", 2, 40, 8192, dt, edges=("nan",)),
                # the wide GEMV's 2 / 4 K splits as one 8- / 16-warp CTA (H200: 132 SMs)
                Case("gemvw", 1, 4096, 4096, dt, edges=("zero", "nan"), bias=True),
                Case("gemvw", 2, 8192, 4096, dt, edges=("subnormal_scales",), per_channel=True),
                # four m16 weight tiles per warp (M = 17-32, >= 32 M weights), N not a multiple of 64
                Case("gemv4", 20, 4104, 8192, dt, edges=("zero", "nan"), bias=True),
                Case("splitk", 12, 40, 2048, dt, mode="w4a16" if dt != torch.float32 else "w4a4"),
                Case("wgmma", 70, 136, 256, dt, edges=all_edges, bias=True, per_channel=True),
                Case("wgmma", 40, 136, 512, dt, edges=("zero",)),  # split K
                Case("wgmma", 600, 3000, 256, dt, edges=("zero",), bias=True),  # BN 128, unsplit
                Case("wgmma", 64, 17000, 256, dt, edges=("zero",)),  # BN 64: two CTAs share SMs
                # w4a16 on wgmma: x moved into its K order (M <= 256), and kept in place (M > 256, N < 6144)
                Case("wgmma-16", 70, 136, 256, dt, mode="w4a16", bias=True),
                Case("wgmma-16", 300, 136, 256, dt, mode="w4a16", edges=("zero",)),
            ]
        return cases
    for dt in DTYPES.values():
        for M in (1, 2, 5, 8, 13, 16, 17, 31, 64, 65, 100, 128, 257, 1024, 4096):
            cases.append(Case("sweep", M, 328, 960, dt, edges=("zero", "subnormal_scales"),
                              per_channel=M % 2 == 1, bias=M % 3 == 0))
        cases += [
            Case("edges", 16, 200, 1024, dt, edges=all_edges, bias=True, per_channel=True),
            Case("edges", 96, 200, 1024, dt, edges=all_edges, bias=True, per_channel=True),
            Case("ties", 7, 136, 256, dt, edges=("ties",)),
            Case("ties", 300, 136, 256, dt, edges=("ties",)),
            Case("saturate", 3, 136, 512, dt, edges=("saturate", "inf")),
            Case("saturate", 200, 136, 512, dt, edges=("saturate", "inf")),
            Case("k16odd", 1, 203, 1008, dt, edges=("zero", "subnormal_scales"), bias=True),
            Case("k16odd", 33, 203, 1008, dt, edges=("zero", "nan"), per_channel=True),
            Case("splitk", 4, 64, 8192, dt, edges=("zero",)),
            Case("splitk", 48, 256, 8192, dt, edges=("zero",)),
            # dequantize-then-GEMM chosen automatically (M >= 2048), the decoded weight over one
            # slice (N * K * 2 > 64 MiB): a 4096-row slice and an 8-row last one
            Case("dequant", 2056, 4104, 8192, dt, edges=("zero",), bias=True),
            # per-channel global scales stay on the fused kernels at any M
            Case("dequant", 2048, 136, 256, dt, edges=("nan",), per_channel=True),
            Case("bigN", 2, 4104, 512, dt),
            Case("bigN", 512, 4104, 512, dt, bias=True),
            # GEMV (K % 128 == 0): split-K with an uneven last split (K = 128 * 33), N not a
            # multiple of 32, NaN/Inf rows, long per-warp streams (L2 prefetch hint: K/4 >= 2048).
            Case("gemvk", 1, 4104, 1024, dt, edges=("zero", "subnormal_scales"), bias=True),
            Case("gemvk", 3, 200, 4224, dt, edges=all_edges, per_channel=True),
            Case("gemvk", 8, 72, 8192, dt, edges=("nan", "inf", "zero"), bias=True),
            Case("gemvk", 12, 136, 2048, dt, edges=all_edges),
            Case("gemvk", 16, 328, 1152, dt, edges=("ties",)),
            Case("gemvk", 5, 13544, 8192, dt, edges=("nan", "zero"), per_channel=True),
            # two K splits as 8-warp CTAs at NT = 1, 3, 5 and 6 (the 48 KB of sums; 33 chunks)
            Case("gemvw", 1, 8192, 4096, dt, edges=("zero",), bias=True),
            Case("gemvw", 24, 4096, 4096, dt, edges=("nan",), per_channel=True),
            Case("gemvw", 40, 4096, 4096, dt, edges=("zero",), bias=True),
            Case("gemvw", 48, 4096, 4224, dt, edges=("subnormal_scales",)),
            # four m16 weight tiles per warp at NT = 3 and 4: one K split, N not a multiple of 64;
            # two K splits reduced by the reduction kernel
            Case("gemv4", 24, 4104, 8192, dt, edges=("zero", "subnormal_scales"), per_channel=True),
            Case("gemv4", 32, 8200, 4096, dt, edges=("nan", "inf"), bias=True),
            # the GEMV's largest M on Hopper (NT = 5) with x-hat from the one-thread-per-block
            # quantization (M * K / 16 above the small kernel's 8192 blocks)
            Case("gemvk", 40, 264, 4096, dt, edges=("zero", "nan"), bias=True),
            Case("splitk", 1, 40, 4224, dt, edges=("zero",), bias=True),
            Case("splitk", 16, 40, 4224, dt, edges=("nan",), per_channel=True),
            Case("splitk", 2, 100, 16384, dt, mode="w4a16", edges=("subnormal_scales",)),
        ]
        # wgmma (sm_90a, K % 256 == 0): each tile height (64/128/256, chosen from M and N), M not a
        # multiple of it, N not a multiple of 128, K = 256 * odd, split K (even and uneven splits).
        for M, N, K in ((17, 328, 768), (33, 1000, 768), (65, 2000, 1280), (129, 328, 768), (257, 1000, 768),
                        (1000, 2000, 768), (4097, 328, 768), (4000, 4200, 256)):
            cases.append(Case("wgmma", M, N, K, dt, edges=("zero", "subnormal_scales"),
                              per_channel=M % 2 == 1, bias=M % 3 == 0))
        cases += [
            # W4A4 x-hat reaches the wgmma kernel in its permuted K order (permutedKPos): NaN/Inf rows
            # and every tile height above; any mismatch of the two operands' K orders gives O(1) errors.
            Case("wgmma-nan", 48, 264, 1280, dt, edges=all_edges, bias=True, per_channel=True),
            Case("wgmma-sk", 65, 136, 8192, dt, edges=("zero",), bias=True),
            Case("wgmma-sk", 200, 256, 4096, dt, edges=("zero", "nan"), per_channel=True),
            Case("wgmma-sk", 130, 4104, 4096, dt, edges=("zero",), bias=True),  # BN 256, split, N tiles odd
            Case("wgmma-16", 129, 200, 1280, dt, mode="w4a16", edges=("subnormal_scales",), bias=True),
            Case("wgmma-16", 300, 4104, 1024, dt, mode="w4a16", per_channel=True),
            Case("wgmma-16", 300, 6144, 1024, dt, mode="w4a16", bias=True),  # x moved: N >= 6144
            # BN = 64, as planWgmma picks on 132 SMs (tests/test_wgmma_plan.py: the wgmma cases
            # reach every tile): 256 weight rows per CTA (4 consumer warpgroups), unsplit and split
            # K; two CTAs of 128 rows per SM (7 uneven K splits); one CTA of 128 rows.
            Case("wgmma-256", 64, 20000, 512, dt, edges=("zero", "nan"), bias=True, per_channel=True),
            Case("wgmma-256", 48, 20000, 4096, dt, edges=("zero",), bias=True),
            Case("wgmma-2cta", 40, 4616, 8192, dt, edges=("zero",)),
            # BN = 32 and 16 (256 weight rows), unsplit and split K (uneven: 5 splits of 64 chunks)
            Case("wgmma-n32", 25, 60000, 512, dt, edges=("zero", "nan"), bias=True, per_channel=True),
            Case("wgmma-n32", 20, 6000, 4096, dt, edges=("inf",)),
            Case("wgmma-n16", 9, 30000, 768, dt, edges=("zero", "subnormal_scales"), bias=True),
            Case("wgmma-n16", 5, 8200, 4096, dt, edges=("nan", "ties"), per_channel=True),
            # BN = 48 and 96 (256 weight rows), unsplit and split K
            Case("wgmma-n48", 40, 20000, 512, dt, edges=("zero", "subnormal_scales"), bias=True),
            Case("wgmma-n48", 45, 6000, 4096, dt, edges=("nan",), per_channel=True),
            Case("wgmma-n96", 70, 20000, 512, dt, edges=("zero", "inf"), per_channel=True),
            Case("wgmma-n96", 90, 6000, 4096, dt, edges=("ties",), bias=True),
            Case("wgmma-64", 24, 40000, 1024, dt, mode="w4a16" if dt != torch.float32 else "w4a4"),
        ]
        for M in (1, 16, 40, 300, 1024):
            cases.append(Case("w4a16", M, 328, 960, dt, mode="w4a16", edges=("subnormal_scales",),
                              bias=M % 2 == 0, per_channel=M % 2 == 1))
        cases.append(Case("w4a16", 24, 203, 1008, dt, mode="w4a16", edges=("nan", "inf")))
    return cases


def fp8_scales(shape, gen, device, subnormals: bool) -> torch.Tensor:
    """Random float8_e4m3fn block scales: normal values 2^-5..2^3, some zero, some subnormal."""
    vals = torch.exp2(torch.empty(shape, device=device).uniform_(-5.0, 3.0, generator=gen))
    bits = vals.to(torch.float8_e4m3fn).view(torch.uint8)
    r = torch.rand(shape, device=device, generator=gen)
    if subnormals:
        sub = torch.randint(1, 8, shape, device=device, generator=gen, dtype=torch.uint8)
        bits = torch.where(r < 0.15, sub, bits)
    bits = torch.where(r > 0.97, torch.zeros_like(bits), bits)
    return bits.view(torch.float8_e4m3fn)


def make_activation(case: Case, gen, device) -> tuple[torch.Tensor, float]:
    """x [M, K] in case.dtype and G (input_global_scale_inv)."""
    M, K = case.M, case.K
    x = torch.randn(M, K, device=device, generator=gen) * torch.exp2(
        torch.empty(M, K // 16, 1, device=device).uniform_(-3, 3, generator=gen)).expand(M, K // 16, 16).reshape(M, K)
    if "ties" in case.edges:
        # G = 1, block amax 6*2^e: s_B = 2^e exactly and x*o hits the E2M1 rounding ties exactly.
        e = torch.randint(-4, 5, (M, K // 16, 1), device=device, generator=gen).float()
        ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 0.5, 3.0], device=device)
        idx = torch.randint(0, len(ties), (M, K // 16, 16), device=device, generator=gen)
        sign = torch.where(torch.rand(M, K // 16, 16, device=device, generator=gen) < 0.5, -1.0, 1.0)
        blocks = ties[idx] * sign
        blocks[..., 0] = 6.0
        x = (blocks * torch.exp2(e)).reshape(M, K)
        return x.to(case.dtype), 1.0
    x = x.to(case.dtype)
    if "zero" in case.edges:
        nb = K // 16
        zero = torch.rand(M, nb, device=device, generator=gen) < 0.1
        x = x.reshape(M, nb, 16).masked_fill(zero.unsqueeze(-1), 0.0).reshape(M, K)
    amax = float(x.float().abs().amax())
    G = 448.0 * 6.0 / (amax if amax > 0 else 1.0)
    if "saturate" in case.edges:
        G *= 16.0  # most block scales clamp at 448: elements beyond 6*s_B saturate at +-6
    if "nan" in case.edges:
        x[M // 2, (3 * K) // 5] = float("nan")
    if "inf" in case.edges:
        x[0, K // 3] = float("inf")
        x[M - 1, K // 7] = float("-inf")
    return x, G


def make_layer(case: Case, G: float, gen, device):
    from export.layer import NVFP4LinearWeights

    N, K = case.N, case.K
    packed = torch.randint(0, 256, (N, K // 2), device=device, generator=gen, dtype=torch.uint8)
    scale = fp8_scales((N, K // 16), gen, device, "subnormal_scales" in case.edges)
    if case.per_channel:
        wgs = torch.exp2(torch.empty(N, device=device).uniform_(-9, -6, generator=gen))
    else:
        wgs = torch.tensor(1.0 / 2688.0, device=device)
    bias = torch.randn(N, device=device, generator=gen).to(case.dtype) if case.bias else None
    w4a4 = case.mode == "w4a4"
    g32 = torch.tensor(G, dtype=torch.float32, device=device)
    return NVFP4LinearWeights(
        name=f"gpu_check.{case.name}", weight_packed=packed, weight_scale=scale,
        weight_global_scale=wgs.float(),
        input_global_scale=(1.0 / g32) if w4a4 else None,
        input_global_scale_inv=g32 if w4a4 else None, bias=bias)


def compare(y: torch.Tensor, ref: torch.Tensor) -> tuple[float, str]:
    """(relative error over entries finite in both, '' or a description of a NaN/Inf mismatch)."""
    yf, rf = y.double(), ref.double()
    problems = []
    if not torch.equal(torch.isnan(yf), torch.isnan(rf)):
        problems.append(f"NaN mismatch ({int(torch.isnan(yf).sum())} vs {int(torch.isnan(rf).sum())})")
    fin_r = torch.isfinite(rf)
    inf_r = torch.isinf(rf)
    if not torch.equal(yf[inf_r], rf[inf_r]):
        problems.append("Inf mismatch")
    both = fin_r & torch.isfinite(yf)
    if not torch.equal(both, fin_r):
        problems.append(f"{int((fin_r & ~torch.isfinite(yf)).sum())} non-finite outputs where the reference is finite")
    d = (yf[both] - rf[both]).norm()
    n = rf[both].norm()
    rel = float(d / n) if n > 0 else float(d)
    return rel, "; ".join(problems)


def check_quantization(case: Case, x: torch.Tensor, G: float, kernels) -> tuple[bool, str]:
    from export.nvfp4 import quantize_activation

    q, s = quantize_activation(x, torch.tensor(G, dtype=torch.float32, device=x.device))
    xhat, s8 = kernels.quantize_activation(x, G)
    s_k = s8.float()
    ref_xhat = (q.reshape(case.M, -1, 16) * s.unsqueeze(-1)).reshape(case.M, case.K)
    ok_s = torch.equal(torch.isnan(s_k), torch.isnan(s)) and torch.equal(
        torch.nan_to_num(s_k, nan=0.0), torch.nan_to_num(s, nan=0.0))
    xk = xhat.float()
    ok_x = torch.equal(torch.isnan(xk), torch.isnan(ref_xhat)) and torch.equal(
        torch.nan_to_num(xk, nan=0.0), torch.nan_to_num(ref_xhat, nan=0.0))
    detail = "" if ok_s and ok_x else (
        f"scales differ at {int((s_k != s).sum())} blocks; x-hat differs at {int((xk != ref_xhat).sum())} elements")
    return ok_s and ok_x, detail


def dequant_gemm_takes(case: Case, sm: int) -> bool:
    """The dequantize-then-GEMM path's rules (one alpha: per-tensor weight global scale)."""
    return (sm >= 80 and (case.mode == "w4a4" or case.dtype != torch.float32) and case.N % 8 == 0
            and not case.per_channel)


def applicable_paths(case: Case, sm: int) -> list[str]:
    paths = ["auto", "simt"]
    mma = sm >= 80 and case.K % 64 == 0 and (case.mode == "w4a4" or case.dtype != torch.float32)
    if mma and case.M <= 16:
        paths.append("gemv")
    if mma:
        paths.append("tiled")
    if mma and sm == 90 and case.K % 256 == 0:
        paths.append("wgmma")
    if sm >= 100 and case.mode == "w4a4" and case.K % 64 == 0 and case.N % 8 == 0:
        paths.append("native_fp4")  # cuBLASLt block-scaled FP4 (docs/kernels.md)
    if dequant_gemm_takes(case, sm):
        paths.append("dequant_gemm")  # 16-bit weights per call + cuBLASLt (docs/kernels.md)
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few small cases (for compute-sanitizer)")
    ap.add_argument("--report", type=Path, help="also write the table to this file")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: time-based, printed)")
    ap.add_argument("--skip-paths", default="", help="comma-separated kernel families not to force (e.g. wgmma)")
    ap.add_argument("--dtypes", default=",".join(DTYPES), help=f"comma-separated activation dtypes ({', '.join(DTYPES)})")
    args = ap.parse_args()
    names = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not names or any(d not in DTYPES for d in names):
        ap.error(f"--dtypes {args.dtypes!r}: expected names among {', '.join(DTYPES)}")
    dtypes = {DTYPES[d] for d in names}

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch", file=sys.stderr)
        return 2
    try:
        from plugins import kernels
        from plugins.library import find_kernels_library

        lib_path = find_kernels_library()
        kernels.library()
    except (ImportError, FileNotFoundError, OSError) as e:
        print(f"gpu_check: kernels library unavailable: {e}", file=sys.stderr)
        return 2
    from export.reference import nvfp4_linear_emulation, nvfp4_linear_exact

    device = torch.device("cuda")
    props = torch.cuda.get_device_properties(device)
    sm = props.major * 10 + props.minor
    seed = args.seed if args.seed is not None else int(time.time()) % 100000
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    lines = [f"gpu_check: {props.name} (sm_{sm}, {props.multi_processor_count} SMs), torch {torch.__version__}, "
             f"library {lib_path}, seed {seed}"]
    header = f"{'case':<9} {'mode':<5} {'dtype':<5} {'M':>5} {'N':>5} {'K':>5} {'path':<5} {'rel_exact':>10} {'rel_emul':>10}  result"
    lines.append(header)
    print("\n".join(lines), flush=True)
    failures = 0
    for case in [c for c in build_cases(args.quick) if c.dtype in dtypes]:
        x, G = make_activation(case, gen, device)
        layer = make_layer(case, G, gen, device)
        dname = {v: k for k, v in DTYPES.items()}[case.dtype]
        if case.mode == "w4a4":
            ok, detail = check_quantization(case, x, G, kernels)
            line = (f"{case.name:<9} {'quant':<5} {dname:<5} {case.M:>5} {'-':>5} {case.K:>5} {'-':<5} "
                    f"{'bitexact' if ok else 'DIFFER':>10} {'':>10}  {'ok' if ok else 'FAIL ' + detail}")
            failures += not ok
            print(line, flush=True)
            lines.append(line)
        ref = nvfp4_linear_exact(x, layer)
        emu = nvfp4_linear_emulation(x, layer)
        scale = layer.weight_scale.view(torch.uint8).view(torch.int8)
        skip = {p.strip() for p in args.skip_paths.split(",") if p.strip()}
        for path in [p for p in applicable_paths(case, sm) if p not in skip]:
            kernels.force_kernel(path)
            ws_bytes = max(kernels.workspace_size(case.M, case.N, case.K, case.mode, case.dtype), 256)
            out = torch.full((case.M, case.N), float("nan"), dtype=case.dtype, device=device)  # poison
            # Poisoned workspace (0xFF bytes: fp16/fp32 NaN), so that reading the quantized
            # activation or partial sums before they are written shows up as NaN.
            workspace = torch.full((ws_bytes,), 255, dtype=torch.uint8, device=device)
            try:
                y = kernels.nvfp4_linear(
                    x, layer.weight_packed.view(torch.int8), scale, layer.weight_global_scale, layer.bias,
                    mode=case.mode,
                    input_global_scale=float(layer.input_global_scale) if layer.w4a4 else 1.0,
                    input_global_scale_inv=G if layer.w4a4 else 1.0, out=out, workspace=workspace)
                torch.cuda.synchronize()
            except RuntimeError as e:
                why = kernels.dequant_gemm_status() if path == "dequant_gemm" else None
                e = f"{e} ({why})" if why else e
                line = f"{case.name:<9} {case.mode:<5} {dname:<5} {case.M:>5} {case.N:>5} {case.K:>5} {path:<5} FAIL {e}"
                failures += 1
                print(line, flush=True)
                lines.append(line)
                continue
            rel_e, prob_e = compare(y, ref)
            rel_m, prob_m = compare(y, emu)
            problems = [p for p in (prob_e, prob_m and "emulation: " + prob_m) if p]
            ok = rel_e < EXACT_TOL[case.dtype] and rel_m < EMUL_TOL[case.dtype] and not problems
            if ok and path == "auto":
                # Run twice: a result that moves between identical runs is a race.
                out2 = torch.full_like(out, float("nan"))
                workspace.fill_(255)
                y2 = kernels.nvfp4_linear(
                    x, layer.weight_packed.view(torch.int8), scale, layer.weight_global_scale, layer.bias,
                    mode=case.mode, input_global_scale=float(layer.input_global_scale) if layer.w4a4 else 1.0,
                    input_global_scale_inv=G if layer.w4a4 else 1.0, out=out2, workspace=workspace)
                if not torch.equal(torch.nan_to_num(y.float(), nan=7.0), torch.nan_to_num(y2.float(), nan=7.0)):
                    ok, problems = False, problems + ["two identical runs differ"]
            failures += not ok
            line = (f"{case.name:<9} {case.mode:<5} {dname:<5} {case.M:>5} {case.N:>5} {case.K:>5} {path:<5} "
                    f"{rel_e:>10.2e} {rel_m:>10.2e}  {'ok' if ok else 'FAIL ' + '; '.join(problems)}")
            print(line, flush=True)
            lines.append(line)
    kernels.force_kernel("auto")
    verdict = "PASS" if failures == 0 else f"FAIL ({failures} failing rows)"
    lines.append(f"gpu_check: {verdict}")
    print(lines[-1], flush=True)
    if args.report:
        from export.outputs import replace_file

        replace_file(args.report, "\n".join(lines) + "\n")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
