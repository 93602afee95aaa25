// Scalar NVFP4 arithmetic of the NVFP4Linear op (docs/op-contract.md, "Formula"), shared by the
// CUDA kernels, the TensorRT plugin and the CPU ONNX Runtime op so that every implementation rounds
// exactly like the torch reference (export/nvfp4.py, vLLM's ref_nvfp4_quant).
//
// Bit-exactness rules (why the code looks the way it does):
// * Every float32 operation of the contract is one IEEE operation with round-to-nearest-even. On the
//   device the helpers use the explicitly rounded intrinsics (__fmul_rn, __frcp_rn): nvcc never
//   contracts them into an FMA (even with --fmad=true) and they stay IEEE under --prec-div=false.
//   On the host they are plain float operations: x86-64 uses SSE (no excess precision), and the
//   CMake targets compile host code with -ffp-contract=off so that GCC cannot fuse an inlined
//   product with a caller's add (its default in GNU mode is -ffp-contract=fast).
// * Denormals must not be flushed: an FP8 subnormal block scale (2^-9 .. 7*2^-9) times 1/G can be a
//   float32 subnormal only for absurd G, but flushing would still break bit-exactness, so building
//   with --use_fast_math / -ftz=true is not allowed (nvcc 13 defines no macro to detect it; the
//   CMake targets never pass these flags).
// * FP8 encoding is integer-only (no reliance on the FPU rounding mode or FTZ).
// * NaN propagates like torch: max() of a block with a NaN is NaN, clamp() keeps NaN.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define NVFP4_HD __host__ __device__ __forceinline__
#else
#define NVFP4_HD inline
#endif

namespace nvfp4
{
namespace math
{

// The contract's constants.
constexpr int32_t kGroupSize = 16;       // elements per block scale along K
constexpr float kE2M1Max = 6.0f;         // largest E2M1 magnitude
constexpr float kE4M3Max = 448.0f;       // largest finite float8_e4m3fn magnitude
constexpr float kOneSixth = 1.0f / 6.0f; // fp32(1/6): vLLM multiplies by get_reciprocal(6.0) in float32
constexpr uint8_t kE4M3NaN = 0x7F;       // float8_e4m3fn NaN (S.1111.111)

// ---------------------------------------------------------------------------------------------
// Bit casts and explicitly rounded float32 operations.

NVFP4_HD float bitsToFloat(uint32_t bits)
{
#if defined(__CUDA_ARCH__)
    return __uint_as_float(bits);
#else
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
#endif
}

NVFP4_HD uint32_t floatToBits(float f)
{
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    return bits;
#endif
}

NVFP4_HD bool isNaN(float f)
{
    return (floatToBits(f) & 0x7FFFFFFFu) > 0x7F800000u;
}

// a*b rounded to float32, never fused with a neighbouring add.
NVFP4_HD float mulRn(float a, float b)
{
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

// 1/a rounded to float32 (IEEE division, also under --prec-div=false).
NVFP4_HD float rcpRn(float a)
{
#if defined(__CUDA_ARCH__)
    return __frcp_rn(a);
#else
    return 1.0f / a;
#endif
}

// max(|a|, |b|) that returns NaN if either is NaN (torch.max semantics; fmaxf would drop the NaN).
NVFP4_HD float absMaxNaN(float a, float b)
{
    float const absA = bitsToFloat(floatToBits(a) & 0x7FFFFFFFu);
    float const absB = bitsToFloat(floatToBits(b) & 0x7FFFFFFFu);
    if (isNaN(absA) || isNaN(absB))
    {
        return bitsToFloat(0x7FC00000u);
    }
    return absA > absB ? absA : absB;
}

// clamp(v, lo, hi) that keeps NaN (torch.clamp semantics; fminf/fmaxf would replace it).
NVFP4_HD float clampNaN(float v, float lo, float hi)
{
    if (v < lo)
    {
        return lo;
    }
    if (v > hi)
    {
        return hi;
    }
    return v; // also NaN
}

// ---------------------------------------------------------------------------------------------
// FP8 E4M3 (float8_e4m3fn: bias 7, no infinities, S.1111.111 is NaN, max 448, min subnormal 2^-9).

// Decode a float8_e4m3fn bit pattern (exact in float32).
NVFP4_HD float fp8e4m3ToFloat(uint8_t bits)
{
    uint32_t const sign = static_cast<uint32_t>(bits & 0x80u) << 24;
    uint32_t const exponent = (bits >> 3) & 0xFu;
    uint32_t const mantissa = bits & 0x7u;
    if (exponent == 0xFu && mantissa == 0x7u)
    {
        return bitsToFloat(sign | 0x7FC00000u);
    }
    if (exponent == 0)
    {
        // mantissa * 2^-9, exact: 2^-9 is float 0x3B000000.
        float const magnitude = static_cast<float>(mantissa) * bitsToFloat(0x3B000000u);
        return bitsToFloat(sign | floatToBits(magnitude));
    }
    // Rebias 7 -> 127 and widen the 3-bit mantissa to 23 bits.
    return bitsToFloat(sign | ((exponent + 120u) << 23) | (mantissa << 20));
}

// Round-half-to-even of sig / 2^shift (shift >= 1), integer only.
NVFP4_HD uint32_t shiftRightRne(uint32_t sig, uint32_t shift)
{
    if (shift >= 32u)
    {
        return 0u; // sig < 2^24 <= half of 2^shift
    }
    uint32_t const quotient = sig >> shift;
    uint32_t const remainder = sig & ((1u << shift) - 1u);
    uint32_t const half = 1u << (shift - 1u);
    bool const roundUp = remainder > half || (remainder == half && (quotient & 1u));
    return quotient + (roundUp ? 1u : 0u);
}

// float32 -> float8_e4m3fn bits with round-to-nearest-even, as torch's .to(torch.float8_e4m3fn)
// (torch 2.13 CPU, checked): subnormals are rounded on the 2^-9 grid, NaN gives NaN (0x7F | sign),
// anything at or beyond 448 (incl. +-Inf) saturates to +-448. The contract clamps to +-448 first.
NVFP4_HD uint8_t floatToFp8e4m3(float v)
{
    uint32_t const bits = floatToBits(v);
    uint8_t const sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
    uint32_t const absBits = bits & 0x7FFFFFFFu;
    if (absBits > 0x7F800000u)
    {
        return static_cast<uint8_t>(sign | kE4M3NaN);
    }
    if (absBits >= 0x43E00000u) // 448.0f and beyond
    {
        return static_cast<uint8_t>(sign | 0x7Eu);
    }
    int32_t const biasedExponent = static_cast<int32_t>(absBits >> 23);
    uint32_t const fraction = absBits & 0x7FFFFFu;
    if (biasedExponent < 127 - 6) // below 2^-6, the smallest normal: subnormal grid k * 2^-9
    {
        // value = sig * 2^(e - 23) with e the unbiased exponent; k = value * 2^9 = sig >> (14 - e).
        uint32_t const sig = biasedExponent == 0 ? fraction : (fraction | 0x800000u);
        int32_t const e = biasedExponent == 0 ? -126 : biasedExponent - 127;
        uint32_t const k = shiftRightRne(sig, static_cast<uint32_t>(14 - e));
        return static_cast<uint8_t>(sign | k); // k == 8 is 2^-6, the next encoding: still correct
    }
    // Normal: exponent rebias 127 -> 7, keep 3 mantissa bits, RNE on the 20 dropped bits. A carry
    // out of the mantissa correctly bumps the exponent.
    uint32_t const shifted = ((static_cast<uint32_t>(biasedExponent - 120) << 23) | fraction);
    uint32_t const rounded = shiftRightRne(shifted, 20u);
    return static_cast<uint8_t>(sign | (rounded & 0x7Fu));
}

// ---------------------------------------------------------------------------------------------
// E2M1 (FP4): codes 0..7 are 0, 0.5, 1, 1.5, 2, 3, 4, 6; bit 3 is the sign.

// Decode the low 4 bits of `nibble` (exact).
NVFP4_HD float e2m1ToFloat(uint8_t nibble)
{
    uint32_t const sign = static_cast<uint32_t>(nibble & 0x8u) << 28;
    uint32_t const exponent = (nibble >> 1) & 0x3u;
    uint32_t const mantissa = nibble & 0x1u;
    // exponent 0: 0 or 0.5 (0.5 = 0x3F000000); else (1 + m/2) * 2^(exponent-1).
    uint32_t const magnitude = exponent == 0 ? (mantissa ? 0x3F000000u : 0u)
                                             : (((exponent + 126u) << 23) | (mantissa << 22));
    return bitsToFloat(sign | magnitude);
}

// Code of rne4(v): nearest E2M1 value, ties to the even code (0.25->0, 0.75->1, 1.25->1, 1.75->2,
// 2.5->2, 3.5->4, 5->4), saturating at +-6. The sign bit is v's sign bit (so -0.1 -> code 8 = -0,
// like torch's sign(x)*round(|x|)). NaN has no code: callers test isNaN(v) first (returns 0).
NVFP4_HD uint8_t e2m1RneCode(float v)
{
    uint32_t const bits = floatToBits(v);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u)
    {
        return 0;
    }
    uint8_t const sign = static_cast<uint8_t>((bits >> 28) & 0x8u);
    float const a = bitsToFloat(bits & 0x7FFFFFFFu);
    uint8_t code;
    if (a <= 0.25f)
        code = 0;
    else if (a < 0.75f)
        code = 1;
    else if (a <= 1.25f)
        code = 2;
    else if (a < 1.75f)
        code = 3;
    else if (a <= 2.5f)
        code = 4;
    else if (a < 3.5f)
        code = 5;
    else if (a <= 5.0f)
        code = 6;
    else
        code = 7;
    return static_cast<uint8_t>(sign | code);
}

// rne4(v) as a float (NaN stays NaN): what the reference's cast_to_fp4 returns.
NVFP4_HD float e2m1Rne(float v)
{
    if (isNaN(v))
    {
        return v;
    }
    return e2m1ToFloat(e2m1RneCode(v));
}

// ---------------------------------------------------------------------------------------------
// Dynamic NVFP4 quantization of one activation block of 16 (w4a4), in the contract's order:
//   a   = max |x_i|                                  (NaN if any x_i is NaN)
//   s_B = fp8( clamp(G * (a * fp32(1/6)), -448, 448) )
//   r   = s_B * fp32(1/G)
//   o   = (r == 0) ? 0 : 1/r
//   q_i = rne4( clamp(x_i * o, -6, 6) ),  x̂_i = q_i * s_B (exact)

// fp32(1/G): computed once per node (G = input_global_scale_inv).
NVFP4_HD float inverseGlobalScale(float inputGlobalScaleInv)
{
    return rcpRn(inputGlobalScaleInv);
}

struct ActBlockScale
{
    uint8_t fp8;     // s_B as float8_e4m3fn bits (0x7F/0xFF if the block holds a NaN)
    float scale;     // s_B decoded (NaN if the block holds a NaN)
    float quantMul;  // o: multiplies x_i before rounding to E2M1 (0 for an all-zero block)
};

// Block scale and quantization multiplier from the block's absolute maximum `amax` (NaN-propagated,
// see absMaxNaN), G and fp32(1/G).
NVFP4_HD ActBlockScale actBlockScale(float amax, float inputGlobalScaleInv, float inverseG)
{
    ActBlockScale s;
    float const unclamped = mulRn(inputGlobalScaleInv, mulRn(amax, kOneSixth));
    s.fp8 = floatToFp8e4m3(clampNaN(unclamped, -kE4M3Max, kE4M3Max));
    s.scale = fp8e4m3ToFloat(s.fp8);
    float const r = mulRn(s.scale, inverseG);
    s.quantMul = (r == 0.0f) ? 0.0f : rcpRn(r);
    return s;
}

// q_i = rne4(clamp(x_i * o, -6, 6)) as a float (NaN stays NaN).
NVFP4_HD float actQuantize(float x, float quantMul)
{
    return e2m1Rne(clampNaN(mulRn(x, quantMul), -kE2M1Max, kE2M1Max));
}

// Same, as an E2M1 code; `isNaNOut` is set when the quantized value is NaN (the row's outputs must
// then be NaN: the code alone cannot carry it).
NVFP4_HD uint8_t actQuantizeCode(float x, float quantMul, bool& isNaNOut)
{
    float const v = clampNaN(mulRn(x, quantMul), -kE2M1Max, kE2M1Max);
    isNaNOut = isNaN(v);
    return e2m1RneCode(v);
}

// ---------------------------------------------------------------------------------------------
// Weight operand: ŵ[n,k] = e2m1(code) * fp8(scale) (exact in float32, 6 significant bits).

// Code of element k (0-based, along K) of a packed row: element 2j is the low nibble of byte j.
NVFP4_HD uint8_t unpackCode(uint8_t const* packedRow, int64_t k)
{
    uint8_t const byte = packedRow[k >> 1];
    return (k & 1) ? static_cast<uint8_t>(byte >> 4) : static_cast<uint8_t>(byte & 0xFu);
}

NVFP4_HD float weightValue(uint8_t code, uint8_t scaleBits)
{
    return mulRn(e2m1ToFloat(code), fp8e4m3ToFloat(scaleBits));
}

} // namespace math
} // namespace nvfp4
