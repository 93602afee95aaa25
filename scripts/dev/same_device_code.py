#!/usr/bin/env python3
"""Whether two cubins hold the same device code: compares every .text section (one per kernel)
byte for byte, with the per-file hash of anonymous-namespace names taken out. Shows that a
refactor of host code or headers left the kernels' SASS unchanged, without cuobjdump.

    nvcc ... -gencode=arch=compute_90a,code=sm_90a -cubin nvfp4Gemv.cu -o new/nvfp4Gemv.cubin
    python3 scripts/dev/same_device_code.py old/nvfp4Gemv.cubin new/nvfp4Gemv.cubin
Exit status 0 when every kernel is identical, 1 otherwise.
"""
from __future__ import annotations

import re
import struct
import sys
from pathlib import Path

ANON = re.compile(r"\d+_GLOBAL__N__[0-9a-f]+_\d+_[A-Za-z0-9]+_cu_[0-9a-f]+")


def text_sections(path: str) -> dict[str, bytes]:
    """ELF64 section name -> bytes, for the .text sections (the kernels' machine code)."""
    data = Path(path).read_bytes()
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    sections = {}
    for name, kind, _flags, _addr, offset, size in headers:
        raw = data[names_at + name: data.index(b"\0", names_at + name)].decode()
        if raw.startswith(".text"):
            sections[ANON.sub("ANON", raw)] = b"" if kind == 8 else data[offset: offset + size]
    return sections


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    old, new = (text_sections(p) for p in argv)
    differ = sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
    print(f"{Path(argv[1]).name}: {len(new)} kernels, {len(differ)} differ" + "".join(f"\n  {n}" for n in differ))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
