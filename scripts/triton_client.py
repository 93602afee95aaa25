#!/usr/bin/env python3
"""Greedy generation against a Triton server: `python3 scripts/triton_client.py --help` (logic in plugins/cli/triton_client.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages first

from plugins.cli.triton_client import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
