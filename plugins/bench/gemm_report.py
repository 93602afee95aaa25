"""GEMM benchmark report: traffic and FLOP arithmetic, the targets, floors, and the markdown table.
Pure Python (no torch, no GPU), so that it is tested on CPU and can re-render a committed JSON
anywhere (scripts/bench/render_gemm_report.py); plugins.bench.gemm measures and then calls
`enrich_rows` and `render_markdown` from here.
Units: time in µs, bandwidth in TB/s (10^12 B/s), throughput in TFLOP/s (10^12 FLOP/s).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from export.errors import ReportError, UserError
from export.inputs import read_json_object
from export.outputs import replace_file

KERNELS = ("nvfp4_w4a4", "nvfp4_w4a16", "bf16", "fp8", "int4", "emulation")
NVFP4_KERNELS = ("nvfp4_w4a4", "nvfp4_w4a16")  # the plugin's kernels: the rows with targets
DEFAULT_KERNELS = KERNELS[:-1]  # the emulation (seconds per call) only when asked for

# (K, N) = (in_features, out_features) of real model linears, written K→N: Llama-3 8B's attention
# (4096→6144 fused QKV, 4096→4096 O) and MLP (4096→14336 up or gate, 14336→4096 down, 4096→28672
# fused gate+up), Llama-3 70B's MLP (8192→57344 fused gate+up, 28672→8192 down).
SHAPES = ((4096, 6144), (4096, 4096), (4096, 28672), (14336, 4096), (8192, 57344), (28672, 8192), (4096, 14336))
M_VALUES = (1, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

# Bytes one kernel must move at least: its weight format plus activation in and output out
# (bf16 out everywhere; FP8's input is already FP8, the others read bf16).
WEIGHT_BYTES_PER_ELEMENT = {
    "nvfp4_w4a4": 0.5625,  # 4-bit code + one FP8 scale per 16 (FP32 global scale negligible)
    "nvfp4_w4a16": 0.5625,
    "emulation": 0.5625,  # same stored weights; its real traffic is far larger
    "bf16": 2.0,
    "fp8": 1.0,
    "int4": 0.5 + 4.0 / 128,  # 4-bit code + a bf16 scale and zero point per 128
}
INPUT_BYTES_PER_ELEMENT = {"fp8": 1.0}  # default 2 (bf16)
OUTPUT_BYTES_PER_ELEMENT = 2.0

# Targets of the plugin's kernels, each against numbers measured in the same run (docs/kernels.md):
#   M ≤ 8        ≥ 85 % of the copy bandwidth on shapes with ≥ 30 MB of NVFP4 weight; on smaller
#                shapes faster than both FP8 and int4;
#   9 ≤ M ≤ 64   ≥ 2.5× bf16 where N·K ≥ 58 M, else ≥ 1.5×; and faster than FP8 up to M = 32;
#   65 ≤ M ≤ 128 ≥ 1.3× bf16;   129 ≤ M < 1024 ≥ 1.0× bf16;   M ≥ 1024 ≥ 0.9× bf16.
SMALL_M_MAX = 8
SMALL_M_COPY_FRACTION = 0.85
LARGE_WEIGHT_BYTES = 30e6
MID_M_MAX = 64
MID_M_LARGE_NK = 58e6
MID_M_LARGE_BF16 = 2.5
MID_M_SMALL_BF16 = 1.5
MID_M_FP8_MAX = 32
M128_BF16 = 1.3
LARGE_M_MIN = 1024
LARGE_M_BF16_FRACTION = 0.9
REGIMES = (("M ≤ 8", 1, SMALL_M_MAX), ("9–64", SMALL_M_MAX + 1, MID_M_MAX), ("65–128", MID_M_MAX + 1, 128),
           ("129–512", 129, LARGE_M_MIN - 1), ("≥ 1024", LARGE_M_MIN, 1 << 62))

# H100 SXM datasheet figures (dense tensor-core peaks), the floors table's defaults.
H100_HBM_TBPS = 3.35
H100_COPY_TBPS = 3.0
H100_BF16_TFLOPS = 989.0
H100_FP8_TFLOPS = 1979.0

REQUIRED_ROW_KEYS = {"M": int, "N": int, "K": int, "kernel": str, "us": float}


# ---------------------------------------------------------------- arithmetic
def traffic_bytes(kernel: str, M: int, N: int, K: int) -> float:
    """Minimum bytes `kernel` moves for y[M,N] = x[M,K] · W[N,K]ᵀ (each operand read once)."""
    if kernel not in WEIGHT_BYTES_PER_ELEMENT:
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {', '.join(KERNELS)}")
    weight = N * K * WEIGHT_BYTES_PER_ELEMENT[kernel]
    activation = M * K * INPUT_BYTES_PER_ELEMENT.get(kernel, 2.0) + M * N * OUTPUT_BYTES_PER_ELEMENT
    return weight + activation


def nvfp4_bytes(M: int, N: int, K: int) -> float:
    """N·K·0.5625 + M·K·2 + M·N·2: the bytes the NVFP4 bandwidth targets count."""
    return traffic_bytes("nvfp4_w4a4", M, N, K)


def gemm_flops(M: int, N: int, K: int) -> float:
    return 2.0 * M * N * K


def tbps(nbytes: float, us: float) -> float:
    return nbytes / us * 1e-6


def tflops(M: int, N: int, K: int, us: float) -> float:
    return gemm_flops(M, N, K) / us * 1e-6


def bytes_floor_us(nbytes: float, bandwidth_TBps: float) -> float:
    return nbytes / (bandwidth_TBps * 1e6)


def flop_floor_us(M: int, N: int, K: int, peak_TFLOPs: float) -> float:
    return gemm_flops(M, N, K) / (peak_TFLOPs * 1e6)


def crossover_m(N: int, K: int, bandwidth_TBps: float, peak_TFLOPs: float, kernel: str = "nvfp4_w4a16") -> float:
    """The M at which the bytes floor equals the FLOP floor (activation traffic included);
    math.inf when the FLOP floor never catches up."""
    weight = N * K * WEIGHT_BYTES_PER_ELEMENT[kernel]
    per_row = K * INPUT_BYTES_PER_ELEMENT.get(kernel, 2.0) + N * OUTPUT_BYTES_PER_ELEMENT
    # weight/BW + M·per_row/BW = 2·M·N·K/P  →  M = (weight/BW) / (2NK/P − per_row/BW)
    bw = bandwidth_TBps * 1e12
    peak = peak_TFLOPs * 1e12
    denominator = 2.0 * N * K / peak - per_row / bw
    return math.inf if denominator <= 0 else (weight / bw) / denominator


def targets_for(M: int, N: int, K: int) -> list[tuple[str, float]]:
    """The target of a plugin row as (measure, bound) conditions, all of which must hold:
    ("copy", f): TB/s on NVFP4 bytes ≥ f · copy bandwidth; (peer, f): speed ≥ f × that peer's."""
    if M <= SMALL_M_MAX:
        if N * K * WEIGHT_BYTES_PER_ELEMENT["nvfp4_w4a4"] >= LARGE_WEIGHT_BYTES:
            return [("copy", SMALL_M_COPY_FRACTION)]
        return [("fp8", 1.0), ("int4", 1.0)]
    if M <= MID_M_MAX:
        bf16 = [("bf16", MID_M_LARGE_BF16 if N * K >= MID_M_LARGE_NK else MID_M_SMALL_BF16)]
        return bf16 + ([("fp8", 1.0)] if M <= MID_M_FP8_MAX else [])
    if M <= 128:
        return [("bf16", M128_BF16)]
    if M < LARGE_M_MIN:
        return [("bf16", 1.0)]
    return [("bf16", LARGE_M_BF16_FRACTION)]


def target_text(M: int, N: int, K: int, copy_TBps: float) -> str:
    parts = []
    for measure, bound in targets_for(M, N, K):
        if measure == "copy":
            parts.append(f"≥{bound:.0%} copy ({bound * copy_TBps:.2f} TB/s)")
        elif bound == 1.0 and measure != "bf16":
            parts.append(f"faster than {measure.upper() if measure == 'fp8' else measure}")
        else:
            parts.append(f"≥{bound:.1f}× {measure}")
    return ", ".join(parts)


def verdict(kernel: str, M: int, N: int, K: int, us: float, copy_TBps: float,
            peer_us: dict[str, float | None]) -> bool | None:
    """True/False for the plugin's kernels; None where no target applies or a baseline is missing."""
    if kernel not in NVFP4_KERNELS:
        return None
    for measure, bound in targets_for(M, N, K):
        if measure == "copy":
            if tbps(nvfp4_bytes(M, N, K), us) < bound * copy_TBps:
                return False
            continue
        base = peer_us.get(measure)
        if base is None:
            return None
        if base / us < bound:
            return False
    return True


# ---------------------------------------------------------------- report
def validate_report(report: dict) -> None:
    """Checks the keys readers rely on; raises ReportError with a one-line message."""
    if not isinstance(report, dict):
        raise ReportError("report: expected a JSON object")
    for key, kind in (("device", str), ("date", str), ("copy_TBps", float), ("rows", list)):
        if key not in report:
            raise ReportError(f"report: missing key {key!r}")
        value = report[key]
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ReportError(f"report: {key!r} must be a positive finite number, got {value!r}")
        elif not isinstance(value, kind):
            raise ReportError(f"report: {key!r} must be {kind.__name__}, got {type(value).__name__}")
    for i, row in enumerate(report["rows"]):
        if not isinstance(row, dict):
            raise ReportError(f"report: rows[{i}] must be an object")
        for key, kind in REQUIRED_ROW_KEYS.items():
            if key not in row:
                raise ReportError(f"report: rows[{i}] misses key {key!r}")
            value = row[key]
            if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ReportError(f"report: rows[{i}].{key} must be a positive integer, got {value!r}")
            if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value <= 0):
                raise ReportError(f"report: rows[{i}].{key} must be a positive finite number, got {value!r}")
        if row["kernel"] not in KERNELS:
            raise ReportError(f"report: rows[{i}].kernel is {row['kernel']!r}; expected one of {', '.join(KERNELS)}")


def enrich_rows(rows: list[dict], copy_TBps: float) -> list[dict]:
    """Copies of `rows` with the derived keys: bytes, TBps, pct_copy, TFLOPs, x_bf16, x_fp8, x_int4
    (speed-ups: baseline µs / this µs, same M, N, K), target and met (plugin kernels only)."""
    us_of = {(r["M"], r["N"], r["K"], r["kernel"]): float(r["us"]) for r in rows}
    out = []
    for row in rows:
        M, N, K, kernel, us = row["M"], row["N"], row["K"], row["kernel"], float(row["us"])
        nbytes = traffic_bytes(kernel, M, N, K)
        peers = {peer: us_of.get((M, N, K, peer)) for peer in ("bf16", "fp8", "int4")}
        derived = {
            "bytes": nbytes,
            "TBps": tbps(nbytes, us),
            "pct_copy": 100.0 * tbps(nbytes, us) / copy_TBps,
            "TFLOPs": tflops(M, N, K, us),
            **{f"x_{peer}": None if base is None else base / us for peer, base in peers.items()},
            "target": target_text(M, N, K, copy_TBps) if kernel in NVFP4_KERNELS else None,
            # A wrong result meets no target, however fast.
            "met": (False if row.get("check_ok") is False and kernel in NVFP4_KERNELS
                    else verdict(kernel, M, N, K, us, copy_TBps, peers)),
        }
        out.append({**row, **derived})
    return out


def _fmt_us(us: float) -> str:
    if us < 10:
        return f"{us:.2f}"
    if us < 1000:
        return f"{us:.1f}"
    return f"{us:.0f}"


def _fmt_ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def _fmt_tflops(x: float) -> str:
    return f"{x:.2f}" if x < 10 else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def _verdict_text(met: bool | None, kernel: str) -> str:
    if kernel not in NVFP4_KERNELS:
        return ""
    return {True: "met", False: "**missed**", None: "n/a (a peer row is missing)"}[met]


def shape_label(K: int, N: int) -> str:
    return f"K={K} → N={N}"


def _kernel_order(kernel: str) -> int:
    return KERNELS.index(kernel) if kernel in KERNELS else len(KERNELS)


def render_markdown(report: dict) -> str:
    """The markdown page for one benchmark run (validates `report` first)."""
    validate_report(report)
    copy_TBps = float(report["copy_TBps"])
    rows = enrich_rows(report["rows"], copy_TBps)
    lines = [f"# NVFP4 GEMM benchmark: {report['device']}", ""]
    meta = [f"- date: {report['date']}", f"- device-to-device copy bandwidth (read + write, same run): "
            f"**{copy_TBps:.2f} TB/s**" + _copy_detail(report)]
    for key, label in (("torch", "torch"), ("cuda", "CUDA"), ("l2_bytes", "L2 bytes"),
                       ("kernel_path", "plugin kernel path"), ("command", "command")):
        if key in report:
            meta.append(f"- {label}: `{report[key]}`")
    lines += meta
    if report.get("method"):
        lines += ["", f"Timing: {report['method']}"]
    lines += ["", "Columns: µs per call (median); TB/s on the kernel's own minimum bytes (NVFP4 rows: "
              "N·K·0.5625 + M·K·2 + M·N·2; bf16: N·K·2 + …; FP8: N·K + M·K + M·N·2; int4: N·K·0.53125 + …); "
              "% of the copy bandwidth; TFLOP/s = 2·M·N·K / time; ×bf16, ×FP8, ×int4 = that peer's time / "
              "this time (> 1 is faster). Targets (plugin kernels): M ≤ 8 ≥ 85 % of copy bandwidth where the "
              "NVFP4 weight is ≥ 30 MB, else faster than FP8 and int4; M = 9–64 ≥ 2.5× bf16 where N·K ≥ 58 M, "
              "else ≥ 1.5×, and faster than FP8 up to M = 32; M = 65–128 ≥ 1.3× bf16; M = 129–1023 ≥ 1.0× "
              "bf16; M ≥ 1024 ≥ 0.9× bf16.", ""]
    lines += _summary(rows)
    lines += ["Why the missed rows miss (profiles, experiments, what would move them): "
              "[docs/kernels.md](../kernels.md), \"Where it stands\" and \"What was tried\".", ""]
    for note in report.get("notes", []):
        lines.append(f"- note: {note}")
    for problem in report.get("errors", []):
        lines.append(f"- **error**: {problem}")
    for check in report.get("checks", []):
        lines.append(f"- correctness check: {check}")
    shapes = sorted({(r["K"], r["N"]) for r in rows}, key=lambda s: (s[0] * s[1], s))
    for K, N in shapes:
        lines += ["", f"## {shape_label(K, N)}", "",
                  "| M | kernel | µs | TB/s | % copy | TFLOP/s | ×bf16 | ×FP8 | ×int4 | target | verdict |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        shape_rows = sorted((r for r in rows if (r["K"], r["N"]) == (K, N)),
                            key=lambda r: (r["M"], _kernel_order(r["kernel"])))
        for r in shape_rows:
            mark = "" if r.get("timing", "cuda_graph") == "cuda_graph" else " †"
            verdict_cell = "**wrong output**" if r.get("check_ok") is False else _verdict_text(r["met"], r["kernel"])
            lines.append(
                f"| {r['M']} | {r['kernel']} | {_fmt_us(r['us'])}{mark} | {r['TBps']:.2f} | {r['pct_copy']:.0f} | "
                f"{_fmt_tflops(r['TFLOPs'])} | {_fmt_ratio(r['x_bf16'])} | {_fmt_ratio(r['x_fp8'])} | "
                f"{_fmt_ratio(r.get('x_int4'))} | "
                f"{r['target'] or ''} | {verdict_cell} |")
    if any(r.get("timing", "cuda_graph") != "cuda_graph" for r in rows):
        lines += ["", "† timed eagerly with CUDA events: the emulation always (see the notes), a plugin kernel only "
                  "where CUDA-graph capture failed (listed under errors)."]
    return "\n".join(lines) + "\n"


def _copy_detail(report: dict) -> str:
    parts = []
    if "copy_TBps_start" in report and "copy_TBps_end" in report:
        parts.append(f"start {report['copy_TBps_start']:.2f}, end {report['copy_TBps_end']:.2f}")
    if "copy_TBps_memcpy" in report and "copy_TBps_kernel" in report:
        parts.append(f"cudaMemcpy {report['copy_TBps_memcpy']:.2f}, copy kernel {report['copy_TBps_kernel']:.2f}")
    if "copy_bytes" in report:
        parts.append(f"{report['copy_bytes'] / 2**30:.1f} GiB buffers")
    text = f" ({'; '.join(parts)})" if parts else ""
    if "read_TBps" in report:
        text += f"; read-only pass: {report['read_TBps']:.2f} TB/s"
    return text


def _summary(rows: list[dict]) -> list[str]:
    """Targets met per kernel and regime."""
    lines = ["| kernel | targets met | " + " | ".join(f"M {name}" if name[0].isdigit() else name
                                                     for name, _, _ in REGIMES) + " |",
             "|---|---:|" + "---:|" * len(REGIMES)]
    for kernel in NVFP4_KERNELS:
        mine = [r for r in rows if r["kernel"] == kernel and r["met"] is not None]
        if not mine:
            continue

        def count(low: int, high: int) -> str:
            part = [r for r in mine if low <= r["M"] <= high]
            return f"{sum(r['met'] for r in part)}/{len(part)}" if part else "—"

        lines.append(f"| {kernel} | {count(1, 1 << 62)} | "
                     + " | ".join(count(low, high) for _, low, high in REGIMES) + " |")
    return lines + [""] if len(lines) > 2 else []


# ---------------------------------------------------------------- floors
def render_floors_markdown(hbm_TBps: float = H100_HBM_TBPS, copy_TBps: float = H100_COPY_TBPS,
                           bf16_TFLOPs: float = H100_BF16_TFLOPS, fp8_TFLOPs: float = H100_FP8_TFLOPS,
                           shapes=SHAPES, m_values=M_VALUES) -> str:
    """Per shape and M: NVFP4 bytes, the bytes floor (datasheet HBM and measured copy), the FLOP
    floor on bf16 tensor cores, the bound, the bf16 cuBLAS floor and the best possible ×bf16;
    plus the target time each target implies."""
    lines = []
    for K, N in shapes:
        cross_hbm = crossover_m(N, K, hbm_TBps, bf16_TFLOPs)
        cross_copy = crossover_m(N, K, copy_TBps, bf16_TFLOPs)
        cross_bf16 = crossover_m(N, K, copy_TBps, bf16_TFLOPs, kernel="bf16")
        lines += [f"### {shape_label(K, N)} — weights {N * K / 1e6:.1f} M: NVFP4 {N * K * 0.5625 / 1e6:.1f} MB, "
                  f"bf16 {N * K * 2 / 1e6:.1f} MB", "",
                  f"Crossover M (bytes floor = FLOP floor on bf16 tensor cores): NVFP4 {cross_hbm:.0f} at "
                  f"{hbm_TBps} TB/s, {cross_copy:.0f} at {copy_TBps} TB/s; bf16 weights {cross_bf16:.0f} at "
                  f"{copy_TBps} TB/s.", "",
                  f"| M | NVFP4 MB | bytes floor µs @{hbm_TBps} | bytes floor µs @{copy_TBps} | "
                  f"FLOP floor µs @{bf16_TFLOPs:.0f} bf16 | @{fp8_TFLOPs:.0f} FP8 | NVFP4 floor µs | "
                  f"bf16 floor µs | best ×bf16 | target µs |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for M in m_values:
            nbytes = nvfp4_bytes(M, N, K)
            b_hbm = bytes_floor_us(nbytes, hbm_TBps)
            b_copy = bytes_floor_us(nbytes, copy_TBps)
            f_bf16 = flop_floor_us(M, N, K, bf16_TFLOPs)
            f_fp8 = flop_floor_us(M, N, K, fp8_TFLOPs)
            floor = max(b_copy, f_bf16)
            bf16_floor = max(bytes_floor_us(traffic_bytes("bf16", M, N, K), copy_TBps), f_bf16)
            measure, bound = targets_for(M, N, K)[0]
            if measure == "copy":
                target = f"{_fmt_us(nbytes / (bound * copy_TBps * 1e6))} (≥{bound:.0%} copy)"
            elif measure == "bf16":
                target = f"≤ bf16/{bound:.1f} ({_fmt_us(bf16_floor / bound)} at bf16's floor)"
            else:
                target = target_text(M, N, K, copy_TBps)
            lines.append(f"| {M} | {nbytes / 1e6:.1f} | {_fmt_us(b_hbm)} | {_fmt_us(b_copy)} | {_fmt_us(f_bf16)} | "
                         f"{_fmt_us(f_fp8)} | {_fmt_us(floor)} | {_fmt_us(bf16_floor)} | {bf16_floor / floor:.2f}× | "
                         f"{target} |")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", nargs="?", type=Path, help="a bench_gemm.py JSON report")
    parser.add_argument("-o", "--output", type=Path, help="write the markdown here (default: stdout)")
    parser.add_argument("--floors", action="store_true", help="print the floor tables instead of a report")
    parser.add_argument("--hbm-TBps", type=float, default=H100_HBM_TBPS)
    parser.add_argument("--copy-TBps", type=float, default=H100_COPY_TBPS)
    parser.add_argument("--bf16-TFLOPs", type=float, default=H100_BF16_TFLOPS)
    parser.add_argument("--fp8-TFLOPs", type=float, default=H100_FP8_TFLOPS)
    args = parser.parse_args(argv)
    if args.floors == (args.json is not None):
        parser.error("give either a JSON report or --floors")
    for name in ("hbm_TBps", "copy_TBps", "bf16_TFLOPs", "fp8_TFLOPs"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.floors:
            text = render_floors_markdown(args.hbm_TBps, args.copy_TBps, args.bf16_TFLOPs, args.fp8_TFLOPs)
        else:
            report = read_json_object(args.json, "benchmark report", error=ReportError)
            try:
                text = render_markdown(report)
            except ReportError as e:
                raise ReportError(f"{args.json}: {e}") from None
        if args.output:
            replace_file(args.output, text, inputs=[args.json] if args.json else [])
        else:
            sys.stdout.write(text)
    except UserError as e:
        print(f"render_gemm_report.py: {e}", file=sys.stderr)
        return 2
    return 0
