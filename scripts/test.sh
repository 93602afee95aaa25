#!/usr/bin/env bash
# The project's test command: set up (idempotent) and run the whole test suite with the project's
# interpreter (.venv, see scripts/setup.sh). pytest exits 5 when it collects no test, which counts
# as a failure here.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python3 -m pytest -q "$@"
