"""The integer side of the GPU kernels' 16-bit operands (trt_plugin_src/nvfp4Linear/kernels/nvfp4OperandBits.h):
the E2M1 bit decodes against the E2M1 table for every byte value in every byte position, and the wgmma
kernel's K order (the activation's permutation against the weight fragments' element order). The header
is compiled for the host with the system C++ compiler, so this runs without a GPU."""
from __future__ import annotations

import random
import subprocess

import pytest
import torch

from export.nvfp4 import E2M1_VALUES

PROGRAM = r"""
#include "nvfp4OperandBits.h"
#include <cstdio>
#include <cstdlib>
using namespace nvfp4::detail;
// stdin: words (decimal). stdout per word: the natural fp16 and bf16 pairs of bytes 0..3, then the
// strided decode's two high-byte words, its four fp16 pairs and the bf16 strided pairs (bytes 0, 1 and
// 2, 3; low, then high nibbles). Then the K order tables.
int main()
{
    unsigned long v;
    while (std::scanf("%lu", &v) == 1)
    {
        uint32_t const w = static_cast<uint32_t>(v);
        uint32_t const u = w << 1, u4 = w >> 3, w4 = w >> 4;
        uint32_t const l = fp4LowNibblesToHalfHighBytes(w), h = fp4HighNibblesToHalfHighBytes(w);
        std::printf("%u %u %u %u %u %u %u %u %u %u %u %u %u %u %u %u %u %u\n", fp4PairToHalfBits<0>(u, u4),
            fp4PairToHalfBits<1>(u, u4), fp4PairToHalfBits<2>(u, u4), fp4PairToHalfBits<3>(u, u4),
            fp4PairToBf16Bits<0>(w, w4), fp4PairToBf16Bits<1>(w, w4), fp4PairToBf16Bits<2>(w, w4),
            fp4PairToBf16Bits<3>(w, w4), l, h, fp16StridedPair<0, 1>(l), fp16StridedPair<2, 3>(l),
            fp16StridedPair<0, 1>(h), fp16StridedPair<2, 3>(h), bf16StridedPair<0, 1>(fp4LowNibblesToBf16Bytes(w)),
            bf16StridedPair<2, 3>(fp4LowNibblesToBf16Bytes(w)), bf16StridedPair<0, 1>(fp4HighNibblesToBf16Bytes(w)),
            bf16StridedPair<2, 3>(fp4HighNibblesToBf16Bytes(w)));
    }
    std::printf("perm");
    for (int p = 0; p < 64; ++p)
        std::printf(" %d", permutedKPos(p));
    std::printf("\ngemv");
    for (int p = 0; p < 16; ++p)
        std::printf(" %d", gemvPairPos(p));
    std::printf("\nelem");
    for (int s = 0; s < 4; ++s)
        for (int hh = 0; hh < 2; ++hh)
            for (int c = 0; c < 2; ++c)
                std::printf(" %d", wgmmaBlockElement(s, hh, c));
    std::printf("\n");
    return 0;
}
"""


@pytest.fixture(scope="module")
def bits_program(compile_header_program):
    return compile_header_program("bits", PROGRAM)


@pytest.fixture(scope="module")
def bits_output(bits_program):
    rng = random.Random(7)
    words = [rng.getrandbits(32) & ~(0xFF << (8 * pos)) | (b << (8 * pos)) for pos in range(4) for b in range(256)]
    out = subprocess.run([str(bits_program)], input="\n".join(map(str, words)) + "\n", check=True,
                         capture_output=True, text=True).stdout.splitlines()
    rows = [[int(x) for x in line.split()] for line in out[:len(words)]]
    tables = {line.split()[0]: [int(x) for x in line.split()[1:]] for line in out[len(words):]}
    return words, rows, tables


def _bits16(values: list[float], dtype: torch.dtype) -> list[int]:
    return [int(b) & 0xFFFF for b in torch.tensor(values, dtype=torch.float64).to(dtype).view(torch.int16)]


# The 16 codes: magnitudes 0..7, then their negatives (-0 included); fp16 bits of e2m1 * 2^-14 and
# bf16 bits of e2m1 * 2^-126 per code (both exact).
CODES = [float(v) for v in E2M1_VALUES] + [-float(v) for v in E2M1_VALUES]
HALF = _bits16([v * 2.0 ** -14 for v in CODES], torch.float16)
BF16 = _bits16([v * 2.0 ** -126 for v in CODES], torch.bfloat16)


def _nibble(w: int, i: int) -> int:
    return (w >> (4 * i)) & 0xF


def _pair(table: list[int], w: int, lo: int, hi: int) -> int:
    return table[_nibble(w, lo)] | table[_nibble(w, hi)] << 16


def test_e2m1_tables_are_exact():
    assert HALF[0] == 0 and HALF[8] == 0x8000 and BF16[8] == 0x8000
    back = torch.tensor([b - (1 << 16) if b >= 1 << 15 else b for b in HALF], dtype=torch.int16).view(torch.float16)
    assert (back.double() * 2.0 ** 14).tolist() == CODES


def test_natural_pair_decodes(bits_output):
    words, rows, _ = bits_output
    for w, row in zip(words, rows):
        for byte in range(4):
            assert row[byte] == _pair(HALF, w, 2 * byte, 2 * byte + 1), (hex(w), byte)
            assert row[4 + byte] == _pair(BF16, w, 2 * byte, 2 * byte + 1), (hex(w), byte)


def test_strided_pair_decode(bits_output):
    words, rows, _ = bits_output
    for w, row in zip(words, rows):
        low_bytes, high_bytes = row[8], row[9]
        for j in range(4):
            assert (low_bytes >> (8 * j)) & 0xFF == HALF[_nibble(w, 2 * j)] >> 8
            assert (high_bytes >> (8 * j)) & 0xFF == HALF[_nibble(w, 2 * j + 1)] >> 8
        # pairs (e0, e2), (e4, e6), (e1, e3), (e5, e7), as nvfp4MmaChunk.cuh's decodeWordStrided uses them
        assert row[10:14] == [_pair(HALF, w, 0, 2), _pair(HALF, w, 4, 6), _pair(HALF, w, 1, 3), _pair(HALF, w, 5, 7)]
        assert row[14:18] == [_pair(BF16, w, 0, 2), _pair(BF16, w, 4, 6), _pair(BF16, w, 1, 3), _pair(BF16, w, 5, 7)]


def test_wgmma_k_order(bits_output):
    _, _, tables = bits_output
    perm, elem = tables["perm"], tables["elem"]
    assert sorted(perm) == list(range(64))
    for s in range(4):
        for h in range(2):
            e0, e1 = elem[(s * 2 + h) * 2], elem[(s * 2 + h) * 2 + 1]
            # a pair the strided decode builds: the low (even step) or high (odd step) nibbles of
            # bytes 2h, 2h + 1 of word s / 2
            assert (e0 // 8, e0 % 8, e1 - e0) == (s // 2, 4 * h + s % 2, 2)
            for t in range(4):
                for c, e in enumerate((e0, e1)):
                    # the weight of lane t's fragment (s, h), half c, meets the activation column it multiplies
                    assert perm[16 * t + e] == 16 * s + 2 * t + 8 * h + c


def test_gemv_pair_order(bits_output):
    _, _, tables = bits_output
    pos = tables["gemv"]
    assert sorted(pos[:4]) == [0, 1, 2, 3] and pos[4:8] == [p + 4 for p in pos[:4]]
    # nvfp4MmaChunk.cuh, strided decode: MMA step e of a weight word multiplies its elements (4e, 4e + 2)
    # at k = 2t, 2t + 1 and (4e + 1, 4e + 3) at k = 2t + 8, 2t + 9 with activation words 2e and 2e + 1
    # of the 8 elements, i.e. stored positions (4e, 4e + 1) and (4e + 2, 4e + 3).
    for e in range(2):
        assert [pos[4 * e], pos[4 * e + 2], pos[4 * e + 1], pos[4 * e + 3]] == [4 * e, 4 * e + 1, 4 * e + 2, 4 * e + 3]
