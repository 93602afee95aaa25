#!/usr/bin/env python3
"""Verify an exported NVFP4 ONNX against its checkpoint (plugins/cli/verify.py; docs/verify.md)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plugins.cli.verify import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
