#!/usr/bin/env python3
"""Decode speed on CPU, ONNX Runtime with the NVFP4 op against transformers float32
(plugins/bench/ort_decode.py says what and how).

    python scripts/bench/bench_ort_decode.py SOURCE_HF_DIR [--threads 2] [--tokens 64] [--repeats 5]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the export/ and plugins/ packages

from plugins.bench.ort_decode import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
