#!/usr/bin/env python3
"""Export speed and memory on a synthetic ~1 B-parameter NVFP4 Llama (plugins/bench/export_speed.py
says what and how).

    python scripts/bench/bench_export.py [--dtype bfloat16] [--format plugin] [--keep DIR]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the export/ and plugins/ packages

from plugins.bench.export_speed import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
