"""Benchmark of the NVFP4Linear CUDA kernels (W4A4, W4A16) beside torch bf16 matmul (cuBLAS), FP8
`torch._scaled_mm`, torch's int4 weight-only kernel (`_weight_int4pack_mm`, group 128) and, when
asked for, the torch emulation reference, in one process on one GPU (scripts/bench/bench_gemm.py).

Writes OUT_DIR/gemm-<card>.json and .md (`-<path>` added with --kernel-path, `-quick` with --quick)
and prints the table.
Timing: CUDA graphs; one replay runs R calls over R copies of the weights (together ≥ 3× L2, so
weights come from HBM as in a real model), per-call time = median replay time / R. The
device-to-device copy bandwidth (the best of cudaMemcpy and a copy kernel, bytes read + written)
is measured at the start and at the end of the same run.
Every NVFP4 kernel row is also checked against `export.reference.nvfp4_linear_exact`.
Exit status: 0 all good; 1 results written but some row failed (errors listed in the report);
2 bad arguments or nothing to run (no CUDA GPU, kernel library missing).
"""
from __future__ import annotations

import argparse
import datetime
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from export.errors import Unavailable, first_line
from export.outputs import replace_file
from plugins.bench import gemm_report as report_lib
from plugins.bench.gemm_report import DEFAULT_KERNELS, KERNELS, M_VALUES, NVFP4_KERNELS, SHAPES
from plugins.bench.record import report_json
from plugins.library import REPO_ROOT

QUICK_SHAPES = ((4096, 14336), (8192, 57344))
QUICK_M_VALUES = (1, 8, 16, 64, 128, 1024)
DEFAULT_L2_BYTES = 50 * 2**20  # H100; used only when torch does not report the L2 size
DEVICE = "cuda"  # all buffers live on the current CUDA device
SPIN_CYCLES = 200_000  # ≈ 100 µs at 2 GHz: the GPU is busy while the CPU enqueues a replay
CHECK_TOLERANCE = 2.0**-6  # max |y − exact| / max |exact|; real bugs give O(1)
INT4_GROUP = 128  # torch's int4 kernel: bf16 scale and zero point per 128 weights along K
INT4_INNER_K_TILES = 8


# ---------------------------------------------------------------- pure helpers (tested on CPU)
def parse_shape(text: str) -> tuple[int, int]:
    """'4096->14336' or '4096→14336' (K→N, in_features→out_features) -> (K, N)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:->|→)\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"shape {text!r}: expected K->N, e.g. 4096->14336")
    K, N = int(match.group(1)), int(match.group(2))
    if K <= 0 or N <= 0 or K % 16 or N % 16:
        raise ValueError(f"shape {text!r}: K and N must be positive multiples of 16")
    return K, N


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what} {text!r}: expected comma-separated integers") from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"{what} {text!r}: expected positive integers")
    return tuple(sorted(set(values)))


def sanitize_card_name(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'NVIDIA-H100-80GB-HBM3' (safe in a file name)."""
    cleaned = re.sub(r"[^A-Za-z0-9._]+", "-", name).strip("-.")
    return cleaned or "unknown-gpu"


def weight_copy_bytes(kernel: str, N: int, K: int) -> int:
    """Bytes of one weight copy as the kernel stores it (scales included)."""
    if kernel in NVFP4_KERNELS or kernel == "emulation":
        return N * K // 2 + N * K // 16 + 4
    if kernel == "int4":
        return N * K // 2 + (K // INT4_GROUP) * N * 2 * 2
    return {"bf16": 2, "fp8": 1}[kernel] * N * K


def rotation_count(copy_bytes: int, l2_bytes: int, l2_factor: float, min_calls: int, max_calls: int = 64) -> int:
    """Weight copies (= calls per replay) so that the set is ≥ l2_factor × L2 and ≥ min_calls."""
    needed = math.ceil(l2_factor * l2_bytes / copy_bytes)
    return max(1, min(max_calls, max(min_calls, needed)))


def replay_count(replay_s: float, min_replays: int, max_replays: int, target_s: float = 0.05) -> int:
    """Replays to time: at least min_replays, more for short replays (≈ target_s of GPU time)."""
    if replay_s <= 0:
        return max_replays
    return max(min_replays, min(max_replays, math.ceil(target_s / replay_s)))


def round_up(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


def output_stem(card: str, quick: bool, name: str | None = None, kernel_path: str = "auto") -> str:
    """gemm-<card>, plus -<path> for a pinned kernel family and -quick, unless --name is given."""
    if name:
        return name
    return (f"gemm-{sanitize_card_name(card)}" + ("" if kernel_path == "auto" else f"-{kernel_path}")
            + ("-quick" if quick else ""))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help=f"shapes {', '.join(f'{k}->{n}' for k, n in QUICK_SHAPES)} and M in {QUICK_M_VALUES}")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "docs" / "perf", help="where the JSON and .md go")
    parser.add_argument("--name", help="file stem (default gemm-<card>[-<kernel path>][-quick])")
    parser.add_argument("--shapes", help="comma-separated K->N list (overrides the default shapes)")
    parser.add_argument("--m", dest="m_values", help="comma-separated M list (overrides the default M values)")
    parser.add_argument("--kernels", default=",".join(DEFAULT_KERNELS),
                        help=f"comma-separated subset of {','.join(KERNELS)} (default: all but the emulation)")
    parser.add_argument("--min-replays", type=int, default=20, help="timed graph replays per row, at least")
    parser.add_argument("--max-replays", type=int, default=200)
    parser.add_argument("--emulation-replays", type=int, default=10, help="timed eager calls per emulation row")
    parser.add_argument("--emulation-max-m", type=int, default=None, help="time the emulation only up to this M")
    parser.add_argument("--l2-factor", type=float, default=3.0, help="weight copies per replay cover this × L2")
    parser.add_argument("--min-calls", type=int, default=4, help="calls (weight copies) per replay, at least")
    parser.add_argument("--copy-gib", type=float, default=1.0, help="size of each copy-bandwidth buffer")
    parser.add_argument("--fp8-fast-accum", action="store_true", help="FP8 baseline with use_fast_accum=True")
    parser.add_argument("--kernel-path", default="auto", choices=("auto", "simt", "gemv", "tiled", "wgmma"),
                        help="pin one kernel family of the plugin (plugins.kernels.force_kernel; gemv only "
                             "runs M ≤ 64 (≤ 16 unless K %% 128 == 0), tiled and gemv need K %% 64 == 0, wgmma sm_90 and "
                             "K %% 256 == 0); "
                             "default: the plugin's choice by M")
    parser.add_argument("--no-check", action="store_true", help="skip the check against the exact reference")
    parser.add_argument("--max-gpu-gib", type=float, default=60.0, help="refuse shapes whose buffers need more")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args.shape_list = (tuple(parse_shape(s) for s in args.shapes.split(",") if s.strip()) if args.shapes
                           else (QUICK_SHAPES if args.quick else SHAPES))
        if not args.shape_list:
            raise ValueError("--shapes: empty")
        args.m_list = (parse_int_list(args.m_values, "--m") if args.m_values
                       else (QUICK_M_VALUES if args.quick else M_VALUES))
        args.kernel_list = tuple(k.strip() for k in args.kernels.split(",") if k.strip())
        unknown = [k for k in args.kernel_list if k not in KERNELS]
        if unknown or not args.kernel_list:
            raise ValueError(f"--kernels: unknown {unknown or 'empty list'}; choose from {','.join(KERNELS)}")
        if args.min_replays < 20:
            raise ValueError("--min-replays must be ≥ 20 (medians of at least 20 replays)")
        if args.max_replays < args.min_replays:
            raise ValueError("--max-replays must be ≥ --min-replays")
        if (args.emulation_replays < 1 or args.min_calls < 1 or args.l2_factor <= 0 or args.copy_gib <= 0
                or args.max_gpu_gib <= 0 or (args.emulation_max_m is not None and args.emulation_max_m < 1)):
            raise ValueError("--emulation-replays, --emulation-max-m, --min-calls, --l2-factor, --copy-gib and "
                             "--max-gpu-gib must be positive")
    except ValueError as e:
        parser.error(str(e))
    return args


def recorded_argv(argv: list[str]) -> list[str]:
    """The arguments as the report records them: without --out-dir, a path of the machine that ran it."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out-dir":
            skip = True
        elif not arg.startswith("--out-dir="):
            out.append(arg)
    return out


# ---------------------------------------------------------------- GPU side
@dataclass
class Timing:
    us: float  # per call, median
    us_min: float
    replays: int
    calls_per_replay: int
    timing: str  # "cuda_graph" or "eager"


def _torch():
    import torch

    return torch


def _spin(torch) -> None:
    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is not None:
        sleep(SPIN_CYCLES)


def time_graph(calls: list[Callable[[], object]], min_replays: int, max_replays: int) -> Timing:
    """Captures all `calls` in one CUDA graph, replays it, returns the median time per call."""
    torch = _torch()
    for _ in range(2):  # eager warm-up: lazy initialisation (cuBLAS handles, library loading)
        for call in calls:
            call()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    try:
        estimate = []
        for _ in range(3):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            _spin(torch)
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            estimate.append(start.elapsed_time(end) * 1e-3)
        replays = replay_count(min(estimate), min_replays, max_replays)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(replays)]
        for start, end in events:
            _spin(torch)
            start.record()
            graph.replay()
            end.record()
        torch.cuda.synchronize()
        times_us = [start.elapsed_time(end) * 1e3 / len(calls) for start, end in events]
    finally:
        del graph
    return Timing(statistics.median(times_us), min(times_us), replays, len(calls), "cuda_graph")


def time_eager(call: Callable[[], object], replays: int) -> Timing:
    """CUDA events around each eager call (for work whose launch overhead is part of its cost)."""
    torch = _torch()
    call()
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(replays)]
    for start, end in events:
        start.record()
        call()
        end.record()
    torch.cuda.synchronize()
    times_us = [start.elapsed_time(end) * 1e3 for start, end in events]
    return Timing(statistics.median(times_us), min(times_us), replays, 1, "eager")


def warm_up_clocks(seconds: float = 1.0) -> None:
    """Large bf16 matmuls for a second, so that the first rows run at steady clocks."""
    torch = _torch()
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device=DEVICE)
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        torch.mm(a, a)
        torch.cuda.synchronize()


def measure_bandwidth(nbytes: int) -> dict[str, float]:
    """TB/s of two device-to-device copies of `nbytes` (bytes read + written): "memcpy"
    (`Tensor.copy_`, cudaMemcpyAsync) and "kernel" (an elementwise torch kernel with vectorized
    loads, whichever is faster differs by card and driver); and "read", a read-only pass (sum).
    CUDA-graph timed medians."""
    torch = _torch()
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=DEVICE).uniform_()
    dst = torch.empty_like(src)
    size = src.numel() * 4
    memcpy = time_graph([lambda: dst.copy_(src)], 20, 20)
    kernel = time_graph([lambda: torch.neg(src, out=dst)], 20, 20)
    read = time_graph([lambda: torch.sum(src)], 20, 20)  # float32: torch's vectorized reduction
    del src, dst
    torch.cuda.empty_cache()
    return {"memcpy": 2 * size / (memcpy.us * 1e6), "kernel": 2 * size / (kernel.us * 1e6),
            "read": size / (read.us * 1e6)}


def load_kernels():
    """plugins.kernels, or Unavailable naming what is missing."""
    try:
        from plugins import kernels
        from plugins.library import find_kernels_library

        find_kernels_library()
    except (ImportError, FileNotFoundError, OSError) as e:
        raise Unavailable(f"NVFP4 kernels unavailable ({e}); build them (cmake --build build) "
                         f"or leave them out: --kernels bf16,fp8,emulation") from None
    return kernels


class ShapeOperands:
    """Random operands for one (K, N): bf16 activation, and per kernel R rotating weight copies."""

    def __init__(self, torch, K: int, N: int, m_max: int, kernels: tuple[str, ...], copies: dict[str, int]):
        self.K, self.N = K, N
        dev = DEVICE
        self.x = torch.randn(m_max, K, dtype=torch.bfloat16, device=dev)
        self.y = torch.empty(m_max, N, dtype=torch.bfloat16, device=dev)
        amax = float(self.x.abs().amax())
        self.input_global_scale_inv = 448.0 * 6.0 / amax  # G, quant direction (ModelOpt calibration)
        self.input_global_scale = 1.0 / self.input_global_scale_inv
        self.nvfp4 = []
        if any(k in NVFP4_KERNELS or k == "emulation" for k in kernels):
            packed = torch.randint(0, 256, (N, K // 2), dtype=torch.uint8, device=dev).view(torch.int8)
            scale = torch.empty(N, K // 16, device=dev).uniform_(1.0, 448.0).to(torch.float8_e4m3fn).view(torch.int8)
            global_scale = torch.full((1,), 1.0 / 2688.0, dtype=torch.float32, device=dev)
            count = max(copies.get(k, 1) for k in kernels if k in NVFP4_KERNELS or k == "emulation")
            self.nvfp4 = [(packed, scale, global_scale)] + [
                (packed.clone(), scale.clone(), global_scale.clone()) for _ in range(count - 1)]
        self.bf16 = []
        if "bf16" in kernels:
            w = torch.randn(N, K, dtype=torch.bfloat16, device=dev)
            self.bf16 = [w] + [w.clone() for _ in range(copies["bf16"] - 1)]
        self.fp8 = []
        if "fp8" in kernels:
            w = torch.randn(N, K, dtype=torch.bfloat16, device=dev)
            w_scale = float(w.abs().amax()) / 448.0
            w8 = (w / w_scale).to(torch.float8_e4m3fn)
            del w
            self.fp8 = [w8] + [w8.clone() for _ in range(copies["fp8"] - 1)]
            self.scale_b = torch.tensor(w_scale, dtype=torch.float32, device=dev)
            self.scale_a = torch.tensor(amax / 448.0, dtype=torch.float32, device=dev)
            x8 = (self.x.float() / self.scale_a).to(torch.float8_e4m3fn)
            # Room to pad M to a multiple of 16 (some torch versions require it of _scaled_mm).
            self.x8 = torch.zeros(round_up(m_max, 16), K, dtype=torch.float8_e4m3fn, device=dev)
            self.x8[:m_max] = x8
            del x8
        self.int4 = []
        if "int4" in kernels:
            packed = torch.ops.aten._convert_weight_to_int4pack(
                torch.randint(0, 256, (N, K // 2), dtype=torch.uint8, device=dev), INT4_INNER_K_TILES)
            groups = K // INT4_GROUP
            scales_zeros = torch.stack([torch.empty(groups, N, device=dev).uniform_(0.5, 2.0) / 64,
                                        torch.empty(groups, N, device=dev).uniform_(-0.1, 0.1)], dim=-1)
            scales_zeros = scales_zeros.to(torch.bfloat16).contiguous()
            self.int4 = [(packed, scales_zeros)] + [(packed.clone(), scales_zeros.clone())
                                                    for _ in range(copies["int4"] - 1)]

    def layer(self, index: int, mode: str):
        """The NVFP4LinearWeights of weight copy `index` (references take this form)."""
        from export.layer import NVFP4LinearWeights

        torch = _torch()
        packed, scale, global_scale = self.nvfp4[index]
        w4a4 = mode == "nvfp4_w4a4" or mode == "emulation"

        def scalar(value: float):
            return torch.tensor(value, dtype=torch.float32, device=DEVICE) if w4a4 else None

        return NVFP4LinearWeights(
            name=f"bench.{self.K}x{self.N}",
            weight_packed=packed.view(torch.uint8),
            weight_scale=scale.view(torch.float8_e4m3fn),
            weight_global_scale=global_scale.reshape(()),
            input_global_scale=scalar(self.input_global_scale),
            input_global_scale_inv=scalar(self.input_global_scale_inv),
        )


def shape_gpu_bytes(K: int, N: int, m_max: int, kernels: tuple[str, ...], copies: dict[str, int]) -> int:
    """Rough upper bound of the buffers ShapeOperands allocates plus the largest temporaries."""
    total = m_max * K * 2 + m_max * N * 2  # x, y
    nv = [k for k in kernels if k in NVFP4_KERNELS or k == "emulation"]
    if nv:
        total += max(copies.get(k, 1) for k in nv) * weight_copy_bytes("nvfp4_w4a4", N, K)
    if "bf16" in kernels:
        total += copies["bf16"] * weight_copy_bytes("bf16", N, K)
    if "fp8" in kernels:
        total += copies["fp8"] * weight_copy_bytes("fp8", N, K) + round_up(m_max, 16) * K + m_max * N * 2
    if "int4" in kernels:
        total += copies["int4"] * weight_copy_bytes("int4", N, K) + N * K  # + the unpacked bytes
    if nv:
        total += 6 * max(N * K, m_max * K, m_max * N) * 8  # float64/int64 temporaries of the references
    return total


class Bench:
    def __init__(self, args, torch, kernels_module):
        self.args, self.torch, self.k = args, torch, kernels_module
        self.rows: list[dict] = []
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.checks: list[str] = []
        self.fp8_padded: set[int] = set()
        self.workspaces: dict[str, object] = {}
        self.emulation_too_slow: set[tuple[int, int]] = set()
        props = torch.cuda.get_device_properties(0)
        self.l2_bytes = int(getattr(props, "L2_cache_size", 0) or 0)
        if self.l2_bytes <= 0:
            self.l2_bytes = DEFAULT_L2_BYTES
            self.notes.append(f"torch did not report the L2 size; assumed {DEFAULT_L2_BYTES} bytes")
        self.reference = None
        if not args.no_check and any(k in NVFP4_KERNELS for k in args.kernel_list):
            try:
                from export.reference import nvfp4_linear_exact

                self.reference = nvfp4_linear_exact
            except ImportError as e:
                self.checks.append(f"skipped: export.reference unavailable ({e})")

    def copies(self, K: int, N: int) -> dict[str, int]:
        a = self.args
        return {k: (1 if k == "emulation" else
                    rotation_count(weight_copy_bytes(k, N, K), self.l2_bytes, a.l2_factor, a.min_calls))
                for k in self.args.kernel_list}

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def run_shape(self, K: int, N: int) -> None:
        torch, args = self.torch, self.args
        m_max = max(args.m_list)
        copies = self.copies(K, N)
        need = shape_gpu_bytes(K, N, m_max, args.kernel_list, copies)
        if need > args.max_gpu_gib * 2**30:
            self.errors.append(f"K={K} N={N}: needs ≈{need / 2**30:.1f} GiB > --max-gpu-gib "
                               f"{args.max_gpu_gib}; skipped")
            return
        self.log(f"== K={K} -> N={N}: weight copies per replay {copies}")
        ops = ShapeOperands(torch, K, N, m_max, args.kernel_list, copies)
        try:
            for kernel in NVFP4_KERNELS:
                if kernel in args.kernel_list:
                    size = int(self.k.workspace_size(m_max, N, K, kernel.split("_")[1], torch.bfloat16))
                    self.workspaces[kernel] = torch.empty(max(size, 256), dtype=torch.uint8, device=DEVICE)
            for M in args.m_list:
                for kernel in args.kernel_list:
                    self.run_row(ops, kernel, M, copies[kernel])
        finally:
            self.workspaces.clear()
            del ops
            torch.cuda.empty_cache()

    def run_row(self, ops: ShapeOperands, kernel: str, M: int, calls: int) -> None:
        torch, args = self.torch, self.args
        K, N = ops.K, ops.N
        where = f"M={M} K={K} N={N} {kernel}"
        extra: dict = {}
        try:
            if kernel == "emulation":
                if args.emulation_max_m is not None and M > args.emulation_max_m:
                    return
                if (K, N) in self.emulation_too_slow:
                    return
                layer = ops.layer(0, "emulation")
                from export.reference import nvfp4_linear_emulation

                x = ops.x[:M]
                t0 = time.perf_counter()
                nvfp4_linear_emulation(x, layer)
                torch.cuda.synchronize()
                first_s = time.perf_counter() - t0
                replays = args.emulation_replays if first_s < 1.0 else 3
                timing = time_eager(lambda: nvfp4_linear_emulation(x, layer), replays)
                if timing.us > 2e6:
                    self.emulation_too_slow.add((K, N))
                    self.notes.append(f"emulation K={K} N={N}: {timing.us / 1e6:.1f} s per call at M={M}; "
                                      "larger M skipped")
            elif kernel == "bf16":
                x, y = ops.x[:M], ops.y[:M]
                timing = time_graph([lambda w=w: torch.mm(x, w.t(), out=y) for w in ops.bf16[:calls]],
                                    args.min_replays, args.max_replays)
            elif kernel == "fp8":
                timing, m_run = self.time_fp8(ops, M, calls)
                if m_run != M:
                    extra["M_run"] = m_run
            elif kernel == "int4":
                x = ops.x[:M]
                timing = time_graph([lambda w=w, sz=sz: torch.ops.aten._weight_int4pack_mm(x, w, INT4_GROUP, sz)
                                     for w, sz in ops.int4[:calls]], args.min_replays, args.max_replays)
            else:
                mode = kernel.split("_")[1]
                x, y, ws = ops.x[:M], ops.y[:M], self.workspaces[kernel]

                def make_call(w, s, g):
                    return lambda: self.k.nvfp4_linear(
                        x, w, s, g, mode=mode, input_global_scale=ops.input_global_scale,
                        input_global_scale_inv=ops.input_global_scale_inv, out=y, workspace=ws)

                fns = [make_call(*c) for c in ops.nvfp4[:calls]]
                if self.reference is not None:
                    err = self.check(ops, kernel, M, fns[0], y)
                    if err is not None:
                        extra["check_rel_err"] = err if math.isfinite(err) else None  # JSON has no NaN
                        extra["check_ok"] = math.isfinite(err) and err <= CHECK_TOLERANCE
                try:
                    timing = time_graph(fns, args.min_replays, args.max_replays)
                except RuntimeError as e:  # the interface promises capturable calls: report, then time eagerly
                    torch.cuda.synchronize()
                    self.errors.append(f"{where}: CUDA-graph capture failed ({first_line(e)}); timed eagerly instead")
                    self.log(f"   {where}: CUDA-graph capture failed: {first_line(e)}")
                    timing = time_eager(lambda: [f() for f in fns], args.min_replays)
                    timing = Timing(timing.us / len(fns), timing.us_min / len(fns), timing.replays, len(fns), "eager")
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            self.errors.append(f"{where}: out of GPU memory; row skipped")
            self.log(f"   {where}: out of memory")
            return
        except (RuntimeError, ValueError, TypeError) as e:
            self.errors.append(f"{where}: {type(e).__name__}: {first_line(e)}")
            self.log(f"   {where}: FAILED {type(e).__name__}: {first_line(e)}")
            torch.cuda.synchronize()  # a sticky CUDA error surfaces here and stops the run
            return
        row = {"M": M, "N": N, "K": K, "kernel": kernel, "us": timing.us, "us_min": timing.us_min,
               "replays": timing.replays, "calls_per_replay": timing.calls_per_replay, "timing": timing.timing, **extra}
        self.rows.append(row)
        derived = report_lib.enrich_rows([row], 1.0)[0]
        self.log(f"   M={M:5d} {kernel:12s} {timing.us:10.2f} us  {derived['TFLOPs']:7.1f} TFLOP/s  "
                 f"{derived['TBps']:5.2f} TB/s  ({timing.calls_per_replay} calls × {timing.replays} {timing.timing})")

    def time_fp8(self, ops: ShapeOperands, M: int, calls: int) -> tuple[Timing, int]:
        torch = self.torch
        fast = self.args.fp8_fast_accum

        def run(m):
            x8 = ops.x8[:m]
            return [lambda w=w: torch._scaled_mm(x8, w.t(), scale_a=ops.scale_a, scale_b=ops.scale_b,
                                                 out_dtype=torch.bfloat16, use_fast_accum=fast)
                    for w in ops.fp8[:calls]]

        m_run = M
        try:
            run(M)[0]()
        except RuntimeError as e:
            if M % 16 == 0 or "16" not in str(e):
                raise
            m_run = round_up(M, 16)  # this torch wants M % 16 == 0: time the padded problem
            self.fp8_padded.add(M)
        return time_graph(run(m_run), self.args.min_replays, self.args.max_replays), m_run

    def check(self, ops: ShapeOperands, kernel: str, M: int, call, y) -> float | None:
        """Runs `call` once and compares y with the exact reference; records failures."""
        torch = self.torch
        call()  # a kernel error propagates: the row fails
        torch.cuda.synchronize()
        got = y.float()
        try:
            ref = self.reference(ops.x[:M], ops.layer(0, kernel)).float()
        except (RuntimeError, ValueError) as e:  # the reference's problem, not the kernel's: time anyway
            torch.cuda.empty_cache()
            self.errors.append(f"M={M} K={ops.K} N={ops.N} {kernel}: reference failed, not checked: {first_line(e)}")
            return None
        scale = float(ref.abs().amax())
        err = float((got - ref).abs().amax()) / (scale if scale > 0 else 1.0)
        ok = math.isfinite(err) and err <= CHECK_TOLERANCE
        if not ok:
            self.errors.append(f"M={M} K={ops.K} N={ops.N} {kernel}: output differs from the exact reference: "
                               f"max|y−ref|/max|ref| = {err:.3g} > {CHECK_TOLERANCE:.3g}")
            self.log(f"   CHECK FAILED {kernel} M={M}: rel err {err:.3g}")
        return err


def _bw_text(bw: dict[str, float]) -> str:
    return (f"copy {max(bw['memcpy'], bw['kernel']):.3f} TB/s (memcpy {bw['memcpy']:.3f}, "
            f"kernel {bw['kernel']:.3f}), read {bw['read']:.3f} TB/s")


def build_report(bench: Bench, args, device: str, capability: str, bw_start: dict[str, float],
                 bw_end: dict[str, float], copy_bytes: int, started: datetime.datetime) -> dict:
    torch = bench.torch
    copy_start = max(bw_start["memcpy"], bw_start["kernel"])
    copy_end = max(bw_end["memcpy"], bw_end["kernel"])
    notes = list(bench.notes)
    if "fp8" in args.kernel_list:
        notes.append("fp8 = torch._scaled_mm with per-tensor scales, bf16 out, activation already FP8 "
                     f"(its quantization is not timed), use_fast_accum={args.fp8_fast_accum}")
    if "int4" in args.kernel_list:
        notes.append(f"int4 = torch.ops.aten._weight_int4pack_mm (W4A16, bf16 activation and out, group "
                     f"{INT4_GROUP}, bf16 scale and zero point per group; weights packed by "
                     f"_convert_weight_to_int4pack with inner_k_tiles={INT4_INNER_K_TILES})")
    if bench.fp8_padded:
        notes.append(f"fp8: this torch requires M % 16 == 0; M in {sorted(bench.fp8_padded)} timed padded "
                     "to the next multiple of 16 (M_run in the JSON)")
    if "emulation" in args.kernel_list:
        limit = f" up to M={args.emulation_max_m}" if args.emulation_max_m else ""
        notes.append(f"emulation = export.reference.nvfp4_linear_emulation{limit}, timed eagerly "
                     f"({args.emulation_replays} calls, 1 weight copy): it copies host tables to the GPU, "
                     "which CUDA-graph capture forbids, and its launch overhead is part of its cost")
    if bench.k is not None and any(k in NVFP4_KERNELS for k in args.kernel_list):
        # A path that could not run leaves its rows to the fused kernels: say so beside the numbers.
        for name in ("native_fp4_status", "dequant_gemm_status"):
            status = getattr(bench.k, name, None)
            why = status() if callable(status) else None
            if why:
                notes.append(f"{why}: those rows ran on the fused-decode kernels")
    checked = [r for r in bench.rows if "check_ok" in r]
    checks = list(bench.checks)
    if checked:
        errs = [r["check_rel_err"] for r in checked]
        worst = math.nan if None in errs else max(errs)
        checks.append(f"{len(checked)} NVFP4 rows checked against export.reference.nvfp4_linear_exact, "
                      f"worst max|y−ref|/max|ref| = {worst:.2g} (tolerance {CHECK_TOLERANCE:.2g})")
    return {
        "device": device,
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "copy_TBps": max(copy_start, copy_end),
        "copy_TBps_start": copy_start,
        "copy_TBps_end": copy_end,
        "copy_TBps_memcpy": max(bw_start["memcpy"], bw_end["memcpy"]),
        "copy_TBps_kernel": max(bw_start["kernel"], bw_end["kernel"]),
        "read_TBps": max(bw_start["read"], bw_end["read"]),
        "copy_bytes": copy_bytes,
        "l2_bytes": bench.l2_bytes,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "capability": capability,
        "command": " ".join(["python", "scripts/bench/bench_gemm.py", *recorded_argv(args.argv)]),
        "quick": bool(args.quick),
        "kernel_path": args.kernel_path,
        "method": (f"CUDA graphs; each replay runs R calls over R weight copies (together ≥ {args.l2_factor}× "
                   f"L2 = {bench.l2_bytes / 2**20:.0f} MiB, R ≥ {args.min_calls}); per-call time = median over "
                   f"≥ {args.min_replays} replays / R; a spin kernel before each replay hides the launch "
                   "latency; the same bf16 activation for all R calls; copy_TBps = the best device-to-device "
                   "copy (cudaMemcpyAsync or an elementwise kernel, bytes read + written) at the start "
                   "or the end of the run; read_TBps = a read-only pass (sum) for comparison."),
        "notes": notes,
        "checks": checks,
        "errors": bench.errors,
        "rows": report_lib.enrich_rows(bench.rows, max(copy_start, copy_end)),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        torch = _torch()
        if not torch.cuda.is_available():
            raise Unavailable("needs a CUDA GPU (torch.cuda.is_available() is False)")
        kernels_module = load_kernels() if any(k in NVFP4_KERNELS for k in args.kernel_list) else None
        if kernels_module is not None and args.kernel_path != "auto":
            kernels_module.force_kernel(args.kernel_path)
    except (Unavailable, RuntimeError) as e:  # RuntimeError: no CUDA device usable, force_kernel refused
        print(f"bench_gemm.py: {e}", file=sys.stderr)
        return 2
    started = datetime.datetime.now(datetime.timezone.utc)
    device = torch.cuda.get_device_name(0)
    capability = ".".join(map(str, torch.cuda.get_device_capability(0)))
    bench = Bench(args, torch, kernels_module)
    bench.log(f"{device}, torch {torch.__version__}, L2 {bench.l2_bytes / 2**20:.0f} MiB")

    warm_up_clocks()
    copy_bytes = int(args.copy_gib * 2**30)
    bw_start = measure_bandwidth(copy_bytes)
    bench.log(f"bandwidth (start): {_bw_text(bw_start)}")
    try:
        for K, N in args.shape_list:
            bench.run_shape(K, N)
    except Exception as e:  # a sticky CUDA error: keep what was measured, say where it stopped
        bench.errors.append(f"run aborted: {type(e).__name__}: {first_line(e)}")
        bench.log(f"run aborted: {e}")
        bw_end = bw_start
    else:
        bw_end = measure_bandwidth(copy_bytes)
        bench.log(f"bandwidth (end): {_bw_text(bw_end)}")
    if not bench.rows:
        print("bench_gemm.py: no row was measured: " + "; ".join(bench.errors[:3]), file=sys.stderr)
        return 1

    report = build_report(bench, args, device, capability, bw_start, bw_end, copy_bytes, started)
    report_lib.validate_report(report)
    markdown = report_lib.render_markdown(report)

    stem = output_stem(device, args.quick, args.name, args.kernel_path)
    json_path = args.out_dir / f"{stem}.json"
    md_path = args.out_dir / f"{stem}.md"
    replace_file(json_path, report_json(report))
    replace_file(md_path, markdown)
    print(markdown)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    if bench.errors:
        print(f"bench_gemm.py: {len(bench.errors)} problem(s), first: {bench.errors[0]}", file=sys.stderr)
        return 1
    return 0
