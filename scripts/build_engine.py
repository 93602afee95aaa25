#!/usr/bin/env python3
"""Build a TensorRT engine from an exported ONNX: `python3 scripts/build_engine.py --help` (logic in plugins/cli/build_engine.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages first

from plugins.cli.build_engine import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
