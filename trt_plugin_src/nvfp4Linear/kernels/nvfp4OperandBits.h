// The integer side of the 16-bit tensor-core operands: E2M1 nibbles turned into fp16/bf16 bit
// patterns, and the K orders in which the wgmma kernel pairs weights with activations. Plain
// integer code shared by the device kernels (nvfp4Numerics.cuh, nvfp4MmaChunk.cuh, nvfp4Wgmma.cu,
// nvfp4Quantize.cu) and a host test (tests/test_operand_bits.py), which checks every byte value
// against the E2M1 table and that the wgmma kernel's two operands meet in the same K order.
//
// Decoded values: the nibble's 3 magnitude bits land in the low exponent bits and the top mantissa
// bit of the 16-bit float (subnormal for code 1 = 0.5, as it must), its sign in bit 15, which gives
// e2m1 * 2^-14 in fp16 and e2m1 * 2^-126 in bf16 exactly; the block scale is applied afterwards.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define NVFP4_BITS_HD __host__ __device__ __forceinline__
#define NVFP4_BITS_CONSTEXPR __host__ __device__ constexpr
#else
#define NVFP4_BITS_HD inline
#define NVFP4_BITS_CONSTEXPR constexpr
#endif

namespace nvfp4
{
namespace detail
{

// __byte_perm (PTX prmt, default mode): byte n of the result is byte (s >> 4n) & 7 of {b, a}.
NVFP4_BITS_HD uint32_t bytePerm(uint32_t a, uint32_t b, uint32_t s)
{
#if defined(__CUDA_ARCH__)
    return __byte_perm(a, b, s);
#else
    uint64_t const src = (static_cast<uint64_t>(b) << 32) | a;
    uint32_t r = 0;
    for (int n = 0; n < 4; ++n)
    {
        r |= static_cast<uint32_t>((src >> (8 * ((s >> (4 * n)) & 7u))) & 0xFFu) << (8 * n);
    }
    return r;
#endif
}

// One byte (two nibbles, low = even element) into an fp16 pair {e2m1 * 2^-14 of the low nibble,
// of the high nibble}. `u` = w << 1 and `u4` = w >> 3 of the word w holding the byte, computed once
// per word: the permute puts byte ByteIdx of u (low nibble at bits 1..4) into bits 8..15 and of u4
// (high nibble at bits 1..4) into bits 24..31, so the magnitudes already sit at bits 9..11 / 25..27
// and the signs at 12 / 28 (moved to 15 / 31).
template <int ByteIdx>
NVFP4_BITS_HD uint32_t fp4PairToHalfBits(uint32_t u, uint32_t u4)
{
    uint32_t const v = bytePerm(u, u4, (ByteIdx << 4) | ((ByteIdx + 4) << 12));
    return (v & 0x0E000E00u) | ((v << 3) & 0x80008000u);
}

// The same as a bf16 pair {e2m1 * 2^-126, ...}; `w4` = w >> 4.
template <int ByteIdx>
NVFP4_BITS_HD uint32_t fp4PairToBf16Bits(uint32_t w, uint32_t w4)
{
    uint32_t const v = bytePerm(w, w4, ByteIdx | ((ByteIdx + 4) << 8));
    return ((v << 6) & 0x01C001C0u) | ((v << 12) & 0x80008000u);
}

// The strided fp16 decode's first step: every nibble of the word formatted as the high byte of its
// fp16 (sign -> bit 7, magnitude -> bits 1..3), the low nibbles' bytes in one word, the high
// nibbles' in another: byte j of the first holds element 2j, of the second element 2j + 1. One
// byte permute with a zero word then builds any pair of them (fp16StridedPair).
NVFP4_BITS_HD uint32_t fp4LowNibblesToHalfHighBytes(uint32_t w)
{
    return ((w << 1) & 0x0E0E0E0Eu) | ((w << 4) & 0x80808080u);
}

NVFP4_BITS_HD uint32_t fp4HighNibblesToHalfHighBytes(uint32_t w)
{
    return ((w >> 3) & 0x0E0E0E0Eu) | (w & 0x80808080u);
}

// fp16 pair {byte Lo, byte Hi} of `bytes` (one of the two words above) as the high bytes, zero low bytes.
template <int Lo, int Hi>
NVFP4_BITS_HD uint32_t fp16StridedPair(uint32_t bytes)
{
    return bytePerm(bytes, 0u, 0x0404 | (Lo << 4) | (Hi << 12));
}

// The strided bf16 decode (e2m1 * 2^-126: sign -> bit 15, magnitude -> bits 6..8, so each element
// spans both bytes of its bf16): every nibble's high byte (sign -> bit 7, e1 -> bit 0) in one word
// and its low byte (e0 -> bit 7, m -> bit 6) in another, for the low nibbles (byte j: element 2j)
// or the high ones (2j + 1). One byte permute of the two then builds any pair (bf16StridedPair).
struct Bf16Bytes
{
    uint32_t hi;
    uint32_t lo;
};

NVFP4_BITS_HD Bf16Bytes fp4LowNibblesToBf16Bytes(uint32_t w)
{
    return {((w << 4) & 0x80808080u) | ((w >> 2) & 0x01010101u), (w << 6) & 0xC0C0C0C0u};
}

NVFP4_BITS_HD Bf16Bytes fp4HighNibblesToBf16Bytes(uint32_t w)
{
    return {(w & 0x80808080u) | ((w >> 6) & 0x01010101u), (w << 2) & 0xC0C0C0C0u};
}

// bf16 pair {element of byte Lo, element of byte Hi} from the two byte words above.
template <int Lo, int Hi>
NVFP4_BITS_HD uint32_t bf16StridedPair(Bf16Bytes b)
{
    return bytePerm(b.hi, b.lo, (4 + Lo) | (Lo << 4) | ((4 + Hi) << 8) | (Hi << 12));
}

// The wide GEMV's activation order at w4a4 (x-hat written so by the quantization): elements 1 and
// 2 of every 4 swapped, so that its strided weight pairs (e, e + 2) of each 4 (nvfp4MmaChunk.cuh)
// meet activation pairs that are whole 32-bit words, with no byte permute per MMA.
NVFP4_BITS_CONSTEXPR int gemvPairPos(int p)
{
    return p - p % 4 + (p % 4 == 1 ? 2 : (p % 4 == 2 ? 1 : p % 4));
}

// The wgmma kernel's K order. Its m64k16 A fragment (as mma.m16n8k16's) gives lane 4g + t, in
// step s of a 64-deep stage, the weight pairs at k = 16s + 2t + {0, 1} (h = 0) and
// 16s + 2t + 8 + {0, 1} (h = 1). Lane t decodes the 16 elements of FP8 block t of its rows (bytes
// 8t..8t+7 of the row: one 8-byte load, one scale) in strided pairs: fragment (s, h), half c, holds
// that block's element wgmmaBlockElement(s, h, c), i.e. elements (4h + s % 2, 4h + s % 2 + 2) of
// word s / 2: the low nibbles of bytes 2h, 2h + 1 in even steps, their high nibbles in odd ones.
NVFP4_BITS_CONSTEXPR int wgmmaBlockElement(int s, int h, int c)
{
    return 8 * (s / 2) + 4 * h + s % 2 + 2 * c;
}

// Where the activation operand (x-hat, or x at w4a16) stores element p (0..63) of a 64-element K
// chunk so that it meets that weight: element e of block t goes to 16s + 2t + 8h + c for the (s, h, c)
// with wgmmaBlockElement(s, h, c) == e. A bijection on 0..63; elements e and e + 2 (e % 4 < 2) land
// side by side.
NVFP4_BITS_CONSTEXPR int permutedKPos(int p)
{
    return 16 * (2 * ((p % 16) / 8) + p % 2) + 2 * (p / 16) + 8 * ((p % 8) / 4) + (p % 4) / 2;
}

} // namespace detail
} // namespace nvfp4
