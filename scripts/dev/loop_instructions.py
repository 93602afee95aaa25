#!/usr/bin/env python3
"""Static instruction counts of the kernels' main loops: for each kernel of a cubin, the innermost
loop that issues tensor-core instructions (HGMMA or HMMA), its length in SASS instructions and the
opcodes it holds most. The wgmma kernel's loop holds two 64-deep stages, so per stage is half of it.
A prediction to write down before a GPU run: on the decode-bound rows time follows these counts
(docs/kernels.md).

    nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Itrt_plugin_src/nvfp4Linear/kernels \\
        -cubin trt_plugin_src/nvfp4Linear/kernels/nvfp4Wgmma.cu -o wgmma.cubin
    python3 scripts/dev/loop_instructions.py wgmma.cubin --kernel 'Li64ELi1'

Needs cuobjdump (the CUDA toolkit's, or $CUOBJDUMP).
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys

INSTR = re.compile(r"\s*/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)(.*)")


def kernels(sass: str) -> dict[str, list[tuple[int, str, str]]]:
    """Kernel name -> [(address, opcode, operands)]."""
    out = {}
    for part in re.split(r"\n\s*Function : ", sass)[1:]:
        name, body = part.split("\n", 1)
        out[name.strip()] = [(int(m[1], 16), m[2], m[3]) for m in map(INSTR.match, body.splitlines()) if m]
    return out


def mma_loop(instrs: list[tuple[int, str, str]]) -> list[str] | None:
    """Opcodes of the shortest backward-branch range holding at least 4 tensor-core instructions."""
    best = None
    for addr, op, rest in instrs:
        target = re.search(r"0x([0-9a-f]+)", rest) if op.startswith("BRA") else None
        if target is None or int(target[1], 16) >= addr:
            continue
        body = [o for a, o, _ in instrs if int(target[1], 16) <= a <= addr]
        if sum(o.startswith(("HGMMA", "HMMA")) for o in body) >= 4 and (best is None or len(body) < len(best)):
            best = body
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cubin")
    ap.add_argument("--kernel", default="", help="regular expression the (mangled) kernel name must match")
    ap.add_argument("--top", type=int, default=12, help="opcodes listed per loop")
    args = ap.parse_args()
    tool = os.environ.get("CUOBJDUMP") or shutil.which("cuobjdump")
    if tool is None:
        print("loop_instructions.py: no cuobjdump (set CUOBJDUMP)", file=sys.stderr)
        return 2
    sass = subprocess.run([tool, "-sass", args.cubin], check=True, capture_output=True, text=True).stdout
    for name, instrs in kernels(sass).items():
        if not re.search(args.kernel, name):
            continue
        body = mma_loop(instrs)
        if body is None:
            continue
        mma = sum(o.startswith(("HGMMA", "HMMA")) for o in body)
        ops = collections.Counter(o.split(".")[0] for o in body).most_common(args.top)
        print(f"{name}\n  loop: {len(body)} instructions, {mma} MMA; " + " ".join(f"{k} {v}" for k, v in ops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
