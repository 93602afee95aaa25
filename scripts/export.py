#!/usr/bin/env python3
"""Export an NVFP4 checkpoint to ONNX: `python3 scripts/export.py --help` (logic in plugins/cli/export.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages first

from plugins.cli.export import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
