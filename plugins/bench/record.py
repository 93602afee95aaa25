"""The committed form of a benchmark's JSON result: one line per key, one line per row.

A full H200 run has ~400 rows of ~20 fields; one row per line keeps the file a few hundred lines
that diff row by row between runs, and `json.load` reads it like any other JSON.
"""

from __future__ import annotations

import json


def report_json(report: dict) -> str:
    """`report` as JSON text: lists of objects one element per line, every other value on its key's line."""
    parts = []
    for key, value in report.items():
        name = json.dumps(key, ensure_ascii=False)
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            items = ",\n".join("  " + json.dumps(item, ensure_ascii=False) for item in value)
            parts.append(f" {name}: [\n{items}\n ]")
        else:
            parts.append(f" {name}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"
