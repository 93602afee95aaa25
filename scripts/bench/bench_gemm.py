#!/usr/bin/env python3
"""Benchmark the NVFP4Linear CUDA kernels beside cuBLAS bf16, FP8 `_scaled_mm` and torch's int4
kernel on one GPU (plugins/bench/gemm.py says how it times).

    python scripts/bench/bench_gemm.py [--quick] [--out-dir docs/perf]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the export/ and plugins/ packages

from plugins.bench.gemm import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
