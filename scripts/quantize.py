#!/usr/bin/env python3
"""Quantize a Hugging Face checkpoint to NVFP4: `python3 scripts/quantize.py --help` (logic in export/cli/quantize.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages first

from export.cli.quantize import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
