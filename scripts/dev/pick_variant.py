#!/usr/bin/env python3
"""Picks a kernel build from a scripts/dev/bench_libs.py log (first library = the baseline):
the variant with the highest geometric-mean speed-up over the baseline across all NVFP4 rows,
adopted only if that mean is >= MIN_GAIN, no row is slower than MIN_ROW x the baseline and every
output matches the baseline's (relative error <= MAX_ERR). Prints the table and, last, the name.

    python3 scripts/dev/pick_variant.py LOG [--min-gain 1.03] [--min-row 0.90] [--max-err 1e-3]
"""
from __future__ import annotations

import argparse
import math
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log")
    ap.add_argument("--min-gain", type=float, default=1.03)
    ap.add_argument("--min-row", type=float, default=0.90)
    ap.add_argument("--max-err", type=float, default=1e-3)
    args = ap.parse_args()
    names: list[str] = []
    rows = []
    for line in open(args.log):
        if line.startswith("bench_libs:"):
            names = [n.strip() for n in line.split(", libs ", 1)[1].split(",")]
            continue
        f = line.split()
        if len(f) < 4 or "->" not in f[0] or not f[1].isdigit() or f[2] == "bf16" or "TB/s" not in f:
            continue
        k = f.index("TB/s")
        times = [float(v) for v in f[3:k - 1]]
        errs = [float(v) for v in f[k + 1:]]
        rows.append((f"{f[0]} M={f[1]} {f[2]}", times, errs))
    if not names or not rows:
        print("no rows\nbase")
        return 1
    verdicts = []
    for i, name in enumerate(names[1:], start=1):
        ratios = [r[1][0] / r[1][i] for r in rows]
        gain = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        worst = min(ratios)
        err = max(r[2][i - 1] for r in rows)
        ok = gain >= args.min_gain and worst >= args.min_row and err <= args.max_err
        verdicts.append((gain, ok, name))
        print(f"{name:>8}: geomean x{gain:.3f}, worst row x{worst:.3f}, best row x{max(ratios):.3f}, "
              f"max rel.err {err:.1e} -> {'eligible' if ok else 'not eligible'}")
    eligible = sorted((v for v in verdicts if v[1]), reverse=True)
    print(eligible[0][2] if eligible else names[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
