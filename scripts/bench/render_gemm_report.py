#!/usr/bin/env python3
"""Re-render a GEMM benchmark JSON as markdown, or print the floor tables.

    python scripts/bench/render_gemm_report.py docs/perf/gemm-NVIDIA-H200.json [-o OUT.md]
    python scripts/bench/render_gemm_report.py --floors [--hbm-TBps 4.8 --copy-TBps 4.25 --bf16-TFLOPs 989]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the plugins/ package

from plugins.bench.gemm_report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
