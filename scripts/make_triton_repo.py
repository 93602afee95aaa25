#!/usr/bin/env python3
"""Write a Triton model repository: `python3 scripts/make_triton_repo.py --help` (logic in plugins/cli/make_triton_repo.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages first

from plugins.cli.make_triton_repo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
