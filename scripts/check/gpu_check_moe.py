#!/usr/bin/env python3
"""Correctness of the NVFP4MoE CUDA kernels on a real GPU (builds nothing: uses the built
build/libnvfp4_kernels.so or $NVFP4_KERNELS_LIB).

Every case draws fresh random experts (random E2M1 codes, FP8 block scales with subnormals and
zeros, per-projection weight global scales, per-expert activation scales) and inputs, poisons the
output, runs plugins.moe_kernels.nvfp4_moe and compares with export.reference.nvfp4_moe_exact
(the op contract, computed in float64 on the CPU). Cases: E up to 128 and top-k 1-8, experts that
receive no token, all tokens to one expert, ties and NaN/+-Inf in the logits, zero / NaN / Inf /
saturating / tiny activation blocks, M = 0, 1, odd and several hundred, H and I multiples of 128
(mma.sync path) and odd multiples of 16 (SIMT), every rows-per-item tile, both groupings, the
SIMT path forced, w4a4 and w4a16 x float32/float16/bfloat16, CUDA-graph replay, and a chain of
exact experts that must equal the reference bit for bit (both activation quantizations).

Tolerance (docs in trt_plugin_src/nvfp4MoE/README.md): NaN exactly where the reference has NaN;
each row within max(4 eps_T, 2^-16) of its largest magnitude (float32 accumulation order, exp's
last ulp); in w4a4 a row may differ by up to 1/8 of it where an FP4 code of h lay within that
rounding of a boundary (the contract allows it): at most max(1, M/100) rows per case and 0.5 % of
all w4a4 rows. Prints a table and a final PASS/FAIL line (exit 0/1; 2 without GPU or library).

    python3 scripts/check/gpu_check_moe.py [--quick] [--report FILE]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from export.layer import NVFP4LinearWeights, NVFP4MoEWeights  # noqa: E402
from export.reference import nvfp4_moe_exact  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
X_EDGES = ("zero", "nan", "inf", "saturate", "tiny")
LOGIT_EDGES = ("ties", "nan_logit", "inf_logit", "one_expert")


@dataclass
class Case:
    name: str
    M: int
    E: int
    k: int
    H: int
    I: int  # noqa: E741
    dtype: torch.dtype
    mode: str = "w4a4"
    normalize: bool = True
    edges: tuple[str, ...] = ()
    gemm: str = "auto"
    rows: int = 0
    grouping: str = "auto"
    graph: bool = False


def build_cases(quick: bool) -> list[Case]:
    cases: list[Case] = []
    if quick:  # a few of each path, small: for compute-sanitizer
        for dt in DTYPES.values():
            cases += [Case("mma", 5, 8, 2, 256, 128, dt, edges=X_EDGES),
                      Case("simt-odd", 7, 6, 2, 80, 48, dt, mode="w4a16", normalize=False)]
        cases += [Case("split", 70, 8, 2, 256, 128, torch.float16, edges=("one_expert",), grouping="split", rows=16),
                  Case("rows64", 40, 4, 2, 128, 128, torch.bfloat16, mode="w4a16", rows=64),
                  Case("simt", 9, 8, 3, 256, 128, torch.float32, gemm="simt", edges=("nan_logit",))]
        return cases
    for dt in DTYPES.values():
        for mode in ("w4a4", "w4a16"):
            cases += [
                Case("qwen3-decode", 1 if dt == torch.float32 else 4, 128, 8, 2048, 768, dt, mode,
                     graph=dt != torch.float32),
                Case("small", 1, 8, 2, 256, 128, dt, mode),
                Case("small", 3, 8, 2, 256, 128, dt, mode, normalize=False),
                Case("small", 16, 8, 2, 256, 128, dt, mode, edges=("ties",)),
                Case("small", 33, 8, 1, 256, 128, dt, mode, normalize=False),
                Case("top8-E128", 64, 128, 8, 256, 128, dt, mode),  # most experts get nothing
                Case("top8-E128", 65, 128, 8, 256, 256, dt, mode, normalize=False),  # three-kernel grouping
                Case("prefill", 300, 16, 4, 256, 128, dt, mode),  # about 75 rows per expert: 64-row items
                Case("one-expert", 100, 8, 1, 256, 128, dt, mode, edges=("one_expert",)),
                Case("edges", 40, 8, 3, 256, 128, dt, mode, edges=X_EDGES + LOGIT_EDGES[:3]),
                Case("odd", 17, 6, 2, 80, 48, dt, mode, edges=("zero", "nan")),  # K % 128 != 0: SIMT
                Case("odd", 5, 4, 4, 208, 144, dt, mode, normalize=False),
                Case("empty", 0, 8, 2, 256, 128, dt, mode),
                Case("forced-simt", 20, 8, 2, 256, 128, dt, mode, gemm="simt", edges=("tiny",)),
                Case("graph", 24, 16, 4, 256, 128, dt, mode, graph=True),
            ]
            for rows in (8, 16, 32, 64):
                cases.append(Case(f"rows{rows}", 90, 8, 2, 256, 128, dt, mode, rows=rows, edges=("one_expert",)))
            for grouping in ("single", "split"):
                cases.append(Case(f"group-{grouping}", 50, 32, 6, 128, 128, dt, mode, grouping=grouping,
                                  normalize=grouping == "single"))
    return cases


# ---------------------------------------------------------------------------------------------- operands

def fp8_scales(shape, gen, device) -> torch.Tensor:
    """Random float8_e4m3fn block scales: 2^-5..2^3, 15 % subnormal, 3 % zero."""
    vals = torch.exp2(torch.empty(shape, device=device).uniform_(-5.0, 3.0, generator=gen))
    bits = vals.to(torch.float8_e4m3fn).view(torch.uint8)
    r = torch.rand(shape, device=device, generator=gen)
    sub = torch.randint(1, 8, shape, device=device, generator=gen, dtype=torch.uint8)
    bits = torch.where(r < 0.15, sub, bits)
    return torch.where(r > 0.97, torch.zeros_like(bits), bits).view(torch.float8_e4m3fn)


def random_moe(case: Case, gen, device) -> NVFP4MoEWeights:
    """Random experts on `device` whose linears give outputs of order 1."""
    E, H, I = case.E, case.H, case.I

    def linears(name, n, k, s_in):
        w = torch.randint(0, 256, (E, n, k // 2), device=device, generator=gen, dtype=torch.uint8)
        s = fp8_scales((E, n, k // 16), gen, device)
        g = torch.empty(E, device=device).uniform_(0.5, 2.0, generator=gen) / (5.0 * math.sqrt(k))
        out = []
        for e in range(E):
            si = torch.tensor(float(s_in[e]), dtype=torch.float32) if s_in is not None else None
            out.append(NVFP4LinearWeights(name=f"{name}{e}", weight_packed=w[e], weight_scale=s[e],
                                          weight_global_scale=g[e].clone(), input_global_scale=si,
                                          input_global_scale_inv=(1.0 / si) if si is not None else None))
        return out

    w4a4 = case.mode == "w4a4"
    s13 = (torch.rand(E, generator=torch.Generator().manual_seed(case.E)) + 0.5) * 4.0 / 2688 if w4a4 else None
    s2 = (torch.rand(E, generator=torch.Generator().manual_seed(case.I)) + 0.5) * 2.0 / 2688 if w4a4 else None
    return NVFP4MoEWeights(name=case.name, router_weight=torch.zeros(E, H), gate=tuple(linears("gate", I, H, s13)),
                           up=tuple(linears("up", I, H, s13)), down=tuple(linears("down", H, I, s2)),
                           top_k=case.k, normalize_topk=case.normalize)


def to_cpu(moe: NVFP4MoEWeights) -> NVFP4MoEWeights:
    def cpu(lin):
        return NVFP4LinearWeights(**{f: (getattr(lin, f).cpu() if isinstance(getattr(lin, f), torch.Tensor)
                                         else getattr(lin, f)) for f in lin.__dataclass_fields__})
    return NVFP4MoEWeights(name=moe.name, router_weight=moe.router_weight, gate=tuple(map(cpu, moe.gate)),
                           up=tuple(map(cpu, moe.up)), down=tuple(map(cpu, moe.down)), top_k=moe.top_k,
                           normalize_topk=moe.normalize_topk)


def make_inputs(case: Case, gen, device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(case.M, case.H, device=device, generator=gen) * 1.5
    logits = torch.randn(case.M, case.E, device=device, generator=gen) * 2.0
    edges, M = case.edges, case.M
    if "zero" in edges and M > 1:
        x[1, :16] = 0.0
    if "nan" in edges and M > 2:
        x[2, 5] = float("nan")
    if "inf" in edges and M > 3:
        x[3, 9] = float("inf")
    if "saturate" in edges and M > 4:
        x[4] *= 1e4
    if "tiny" in edges and M > 0:
        x[0] *= 1e-6
    if "ties" in edges and M > 6:
        logits[5:7] = torch.round(logits[5:7] / 2)  # many equal values: lower index first
        logits[6] = 1.0
    if "nan_logit" in edges and M > 7:
        logits[7, case.E // 2] = float("nan")
    if "inf_logit" in edges and M > 9:
        logits[8, 0] = float("inf")
        logits[9, :] = -float("inf")
    if "one_expert" in edges:
        logits[:, case.E // 2] += 40.0
    return x.to(case.dtype), logits.to(case.dtype)


# ---------------------------------------------------------------------------------------------- comparison

def compare(y: torch.Tensor, ref: torch.Tensor, case: Case) -> tuple[bool, dict]:
    y, ref = y.float().cpu().reshape(-1, case.H), ref.float().reshape(-1, case.H)
    stats = dict(rows=int(ref.shape[0]), nan_mismatch=0, flipped=0, worst=0.0, exact=1.0)
    if ref.numel() == 0:
        return y.numel() == 0, stats
    nan_y, nan_r = torch.isnan(y), torch.isnan(ref)
    stats["nan_mismatch"] = int((nan_y != nan_r).sum())
    finite = ~nan_r & ~nan_y
    row_max = torch.where(finite, ref.abs(), torch.zeros_like(ref)).amax(dim=1, keepdim=True).clamp(min=1e-30)
    err = torch.where(finite, (y - ref).abs() / row_max, torch.zeros_like(ref)).amax(dim=1)
    eps = torch.finfo(case.dtype).eps
    tight = max(4 * eps, 2.0 ** -16)
    stats["flipped"] = int((err > tight).sum())
    stats["worst"] = float(err.max())
    stats["exact"] = float(((y == ref) | (nan_y & nan_r)).float().mean())
    if case.mode == "w4a16":
        ok = stats["flipped"] == 0
    else:
        ok = stats["flipped"] <= max(1, case.M // 100) and stats["worst"] <= 0.125
    return ok and stats["nan_mismatch"] == 0, stats


def run_case(case: Case, seed: int, device) -> tuple[bool, dict]:
    from plugins import moe_kernels

    gen = torch.Generator(device=device).manual_seed(seed)
    moe = random_moe(case, gen, device)
    x, logits = make_inputs(case, gen, device)
    tensors, attrs = moe_kernels.stacked_operands(moe, device)
    moe_kernels.set_options(case.gemm, case.rows, case.grouping)
    try:
        out = torch.full_like(x, float("nan"))
        workspace = torch.empty(max(256, moe_kernels.workspace_size(case.M, case.E, case.k, case.H, case.I,
                                                                     case.mode, case.dtype)),
                                dtype=torch.uint8, device=device)
        moe_kernels.nvfp4_moe(x, logits, **tensors, **attrs, out=out, workspace=workspace)
        if case.graph:
            # Captured once, replayed on fresh inputs written into the captured buffers.
            eager = out.clone()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                moe_kernels.nvfp4_moe(x, logits, **tensors, **attrs, out=out, workspace=workspace)
            x2, logits2 = make_inputs(case, gen, device)
            x.copy_(x2)
            logits.copy_(logits2)
            out.fill_(float("nan"))
            graph.replay()
            torch.cuda.synchronize()
            eager_again = moe_kernels.nvfp4_moe(x, logits, **tensors, **attrs)
            if not torch.equal(out.nan_to_num(7.0), eager_again.nan_to_num(7.0)):
                return False, dict(rows=case.M, note="graph replay differs from the eager launch")
            del eager
        torch.cuda.synchronize()
    finally:
        moe_kernels.set_options()
    ref = nvfp4_moe_exact(x.cpu(), logits.cpu(), to_cpu(moe))
    return compare(out, ref, case)


# ---------------------------------------------------------------------------------------------- exact chain

def exact_chain_case(dtype: torch.dtype, g_inv: float, device) -> tuple[bool, dict]:
    """Experts whose every step is exact (identity up/down, a gate that saturates silu, top-1 weight
    1): the kernels must equal the reference bit for bit, which pins both activation quantizations
    (x with the expert's G1, h with its G2) over zero, subnormal, normal and saturated FP8 scales."""
    from plugins import moe_kernels

    E, H, I, M = 3, 256, 128, 96
    v = 6.0 / g_inv

    def unit(n, k, cols, gscale, s_in):
        codes = torch.zeros(n, k, dtype=torch.uint8)
        codes[torch.arange(len(cols)), torch.tensor(cols)] = 2  # E2M1 1.0
        s = torch.tensor(s_in, dtype=torch.float32)
        return NVFP4LinearWeights(name="unit", weight_packed=codes[:, 0::2] | (codes[:, 1::2] << 4),
                                  weight_scale=torch.ones(n, k // 16).to(torch.float8_e4m3fn),
                                  weight_global_scale=torch.tensor(gscale, dtype=torch.float32),
                                  input_global_scale=s, input_global_scale_inv=1.0 / s)

    gate, up, down = [], [], []
    for e in range(E):
        s13, s2 = 1.0 / (g_inv * (1 + e)), 1.0 / (g_inv * (3 - e))
        gate.append(unit(I, H, [I + j for j in range(I)], 20.0 / v / 6.0, s13))
        up.append(unit(I, H, list(range(I)), 1.0, s13))
        down.append(unit(H, I, list(range(I)), 1.0, s2))
    moe = NVFP4MoEWeights(name="exact", router_weight=torch.zeros(E, H), gate=tuple(gate), up=tuple(up),
                          down=tuple(down), top_k=1, normalize_topk=True)
    g = torch.Generator().manual_seed(int(g_inv * 10))
    x = torch.randn(M, H, generator=g) * torch.logspace(-7, 5, M).unsqueeze(1) / g_inv
    x[:, I:] = v
    x[0, :16] = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0] * 2) / g_inv
    logits = torch.full((M, E), -1.0)
    logits[torch.arange(M), torch.arange(M) % E] = 1.0
    x, logits = x.to(dtype), logits.to(dtype)
    tensors, attrs = moe_kernels.stacked_operands(moe, device)
    y = moe_kernels.nvfp4_moe(x.to(device), logits.to(device), **tensors, **attrs).cpu()
    ref = nvfp4_moe_exact(x, logits, moe)
    return bool(torch.equal(y, ref)) and bool((ref[:, :I] != 0).any()), dict(rows=M, exact=float((y == ref).float().mean()))


# ---------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few small cases (for compute-sanitizer)")
    parser.add_argument("--report", type=Path, help="also write the table to this file")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check_moe: no CUDA device")
        return 2
    try:
        from plugins import moe_kernels
        moe_kernels.library()
    except (OSError, FileNotFoundError, AttributeError) as e:
        print(f"gpu_check_moe: kernels library not usable: {e}")
        return 2
    device = torch.device("cuda")
    card = torch.cuda.get_device_name(device)
    lines = [f"NVFP4MoE kernels on {card}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"torch {torch.__version__}, seed {args.seed}",
             f"{'case':<14} {'M':>4} {'E':>4} {'k':>2} {'H':>5} {'I':>5} {'dtype':<9} {'mode':<6} {'path':<18} "
             f"{'rows>tight':>10} {'worst/rowmax':>12} {'exact':>7}  result"]
    print("\n".join(lines), flush=True)
    failures = 0
    total_rows = total_flipped = 0
    started = time.time()
    cases = build_cases(args.quick)
    for i, case in enumerate(cases):
        try:
            ok, s = run_case(case, args.seed + i, device)
        except Exception as e:  # noqa: BLE001 - a failing case is reported, the others still run
            ok, s = False, dict(rows=case.M, note=f"{type(e).__name__}: {e}")
        failures += 0 if ok else 1
        if case.mode == "w4a4":
            total_rows += s.get("rows", 0)
            total_flipped += s.get("flipped", 0)
        path = f"{case.gemm}/r{case.rows or 'auto'}/{case.grouping}" + ("/graph" if case.graph else "")
        line = (f"{case.name:<14} {case.M:>4} {case.E:>4} {case.k:>2} {case.H:>5} {case.I:>5} "
                f"{str(case.dtype).split('.')[-1]:<9} {case.mode:<6} {path:<18} {s.get('flipped', '-'):>10} "
                f"{s.get('worst', float('nan')):>12.3g} {s.get('exact', float('nan')):>7.4f}  "
                f"{'ok' if ok else 'FAIL'} {s.get('note', '')}")
        lines.append(line)
        print(line, flush=True)
    for dtype in DTYPES.values():
        for g_inv in ((1344.0,) if args.quick else (1.0, 81.3, 1344.0, 2.5e5)):
            ok, s = exact_chain_case(dtype, g_inv, device)
            failures += 0 if ok else 1
            line = (f"{'exact-chain':<14} {s['rows']:>4} {3:>4} {1:>2} {256:>5} {128:>5} "
                    f"{str(dtype).split('.')[-1]:<9} {'w4a4':<6} {'G=' + format(g_inv, 'g'):<18} {'-':>10} {'-':>12} "
                    f"{s['exact']:>7.4f}  {'ok (bit-exact)' if ok else 'FAIL (not bit-exact)'}")
            lines.append(line)
            print(line, flush=True)
    flip_ok = total_flipped <= 0.005 * max(total_rows, 1) or total_flipped <= 1
    failures += 0 if flip_ok else 1
    n = len(cases) + len(DTYPES) * (1 if args.quick else 4)
    verdict = "PASS" if failures == 0 else "FAIL"
    summary = (f"gpu_check_moe: {verdict}: {n - failures}/{n} cases ok; w4a4 rows beyond the tight bound "
               f"{total_flipped}/{total_rows}; {time.time() - started:.0f} s on {card}")
    lines.append(summary)
    print(summary, flush=True)
    if args.report:
        from export.outputs import replace_file

        replace_file(args.report, "\n".join(lines) + "\n")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
