#!/usr/bin/env python3
"""Describe an NVFP4 checkpoint: `python3 scripts/inspect_checkpoint.py --help` (logic in export/cli/inspect_checkpoint.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages first

from export.cli.inspect_checkpoint import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
