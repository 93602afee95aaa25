#!/usr/bin/env python3
"""Benchmark one NVFP4MoE block (a Qwen3-30B-A3B-shaped one by default, M = 1 ... 256 tokens)
beside bf16 (torch._grouped_mm and a cuBLAS loop) on one GPU (plugins/bench/moe.py says how it
times and what the floors are).

    python scripts/bench/bench_moe.py [--quick] [--tokens 1,2,4] [--out-dir docs/perf]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the export/ and plugins/ packages

from plugins.bench.moe import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
