"""Quantize a Hugging Face checkpoint folder to NVFP4 in the Quark, ModelOpt or compressed-tensors layout.

    python scripts/quantize.py SRC_DIR OUT_DIR --format quark|modelopt|compressed-tensors
        [--w4a16] [--calib-batches N] [--calib-text FILE] [--seed S] [--exclude PATTERN ...] [--force]

Weights use ModelOpt's NVFP4 math; for W4A4 each linear's input global scale comes from "max"
calibration on N seeded random token batches, or on a text (--calib-text, tokenized with SRC_DIR's
tokenizer). `lm_head` is excluded unless --exclude is given
(patterns: shell wildcards, or `re:REGEX`). OUT_DIR appears complete or not at all; an existing
OUT_DIR is replaced only with --force, and never when it is, holds or lies inside SRC_DIR.
Exit status: 0 done, 2 bad input (one line on stderr).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from export.cli.runner import ArgumentParser, run_command


def build_parser() -> argparse.ArgumentParser:
    from export.checkpoint import FORMATS
    from export.quantize import DEFAULT_EXCLUDE

    ap = ArgumentParser(prog="quantize.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="Hugging Face model folder (config.json + *.safetensors)")
    ap.add_argument("out", type=Path, help="output checkpoint folder (must not exist, unless --force)")
    ap.add_argument("--format", required=True, choices=FORMATS)
    ap.add_argument("--w4a16", action="store_true", help="weight-only: no activation quantization")
    ap.add_argument("--calib-batches", type=int, default=4, help="random token batches for calibration")
    ap.add_argument("--calib-text", type=Path, default=None, metavar="FILE",
                    help="calibrate on this text (tokenized with SRC_DIR's tokenizer) instead of random tokens")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exclude", nargs="+", default=None, metavar="PATTERN",
                    help=f"modules left unquantized (default: {' '.join(DEFAULT_EXCLUDE)})")
    ap.add_argument("--force", action="store_true", help="replace an existing OUT_DIR")
    return ap


# A calibration text is read whole; a few MB already give far more tokens than calibration uses.
MAX_CALIBRATION_TEXT_BYTES = 64 * 1024**2


def calibration_batches(args: argparse.Namespace):
    """Token batches of --calib-text for W4A4 (None: random tokens, or W4A16, which calibrates nothing)."""
    from export.errors import UserError
    from export.inputs import regular_file
    from export.quantize import text_calibration_batches

    if args.calib_text is None or args.w4a16:
        return None
    path = regular_file(args.calib_text, "calibration text", max_bytes=MAX_CALIBRATION_TEXT_BYTES)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: is not UTF-8 text (calibration text)") from None
    return text_calibration_batches(args.src, text)


def run(args: argparse.Namespace) -> int:
    from export.quantize import DEFAULT_EXCLUDE, quantize_checkpoint

    result = quantize_checkpoint(
        args.src, args.out, args.format, w4a16=args.w4a16, calib_batches=args.calib_batches, seed=args.seed,
        exclude=tuple(args.exclude) if args.exclude is not None else DEFAULT_EXCLUDE, force=args.force,
        calib_input_ids=calibration_batches(args),
    )
    mode = "W4A16" if args.w4a16 else "W4A4"
    print(f"wrote {result.out_dir} ({result.format}, {mode}): {len(result.layers)} NVFP4 linears, "
          f"{len(result.excluded)} excluded ({', '.join(result.excluded) or 'none'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
