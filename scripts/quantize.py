#!/usr/bin/env python3
"""Quantize a Hugging Face checkpoint folder to NVFP4 in the Quark, ModelOpt or compressed-tensors layout.

    python scripts/quantize.py SRC_DIR OUT_DIR --format quark|modelopt|compressed-tensors
        [--w4a16] [--calib-batches N] [--calib-text FILE] [--seed S] [--exclude PATTERN ...]

Weights use ModelOpt's NVFP4 math; for W4A4 each linear's input global scale comes from "max"
calibration on N seeded random token batches, or on a text (--calib-text). `lm_head` is excluded unless --exclude is given
(patterns: shell wildcards, or `re:REGEX`). The output is written to a temporary folder next to
OUT_DIR and renamed into place, so a failure leaves nothing half-written.
Exit status: 0 done, 2 bad input (one line on stderr).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.checkpoint import FORMATS, CheckpointError  # noqa: E402
from export.quantize import DEFAULT_EXCLUDE, quantize_checkpoint, text_calibration_batches  # noqa: E402


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="Hugging Face model folder (config.json + *.safetensors)")
    ap.add_argument("out", type=Path, help="output checkpoint folder (replaced if it exists)")
    ap.add_argument("--format", required=True, choices=FORMATS)
    ap.add_argument("--w4a16", action="store_true", help="weight-only: no activation quantization")
    ap.add_argument("--calib-batches", type=int, default=4, help="random token batches for calibration")
    ap.add_argument("--calib-text", type=Path, default=None, metavar="FILE",
                    help="calibrate on this text (tokenized with SRC_DIR's tokenizer) instead of random tokens")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exclude", nargs="+", default=None, metavar="PATTERN",
                    help=f"modules left unquantized (default: {' '.join(DEFAULT_EXCLUDE)})")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.calib_batches < 1:
        print("--calib-batches must be >= 1", file=sys.stderr)
        return 2
    try:
        calib = None
        if args.calib_text is not None and not args.w4a16:
            calib = text_calibration_batches(args.src, args.calib_text.read_text(encoding="utf-8"))
        result = quantize_checkpoint(
            args.src, args.out, args.format, w4a16=args.w4a16, calib_batches=args.calib_batches,
            seed=args.seed, exclude=tuple(args.exclude) if args.exclude is not None else DEFAULT_EXCLUDE,
            calib_input_ids=calib,
        )
    except (CheckpointError, ValueError, OSError, UnicodeDecodeError) as e:
        print(str(e).splitlines()[0] if str(e) else type(e).__name__, file=sys.stderr)
        return 2
    mode = "W4A16" if args.w4a16 else "W4A4"
    print(f"wrote {result.out_dir} ({result.format}, {mode}): {len(result.layers)} NVFP4 linears, "
          f"{len(result.excluded)} excluded ({', '.join(result.excluded) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
