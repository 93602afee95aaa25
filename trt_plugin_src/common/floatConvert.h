// float16 / bfloat16 <-> float32 conversions with round-to-nearest-even, integer only, so that the
// CPU ONNX Runtime op (and any host code) rounds its float32 result to the activation type exactly
// like torch's .to(torch.float16 / torch.bfloat16). Host and device (same macro as nvfp4Math.h).
#pragma once

#include "nvfp4Math.h"

#include <cstdint>

namespace nvfp4
{
namespace math
{

NVFP4_HD float halfBitsToFloat(uint16_t h)
{
    uint32_t const sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t const exponent = (h >> 10) & 0x1Fu;
    uint32_t const mantissa = h & 0x3FFu;
    if (exponent == 0x1Fu)
    {
        return bitsToFloat(sign | 0x7F800000u | (mantissa << 13)); // Inf / NaN (payload kept)
    }
    if (exponent == 0)
    {
        // mantissa * 2^-24, exact: 2^-24 is float 0x33800000.
        float const magnitude = static_cast<float>(mantissa) * bitsToFloat(0x33800000u);
        return bitsToFloat(sign | floatToBits(magnitude));
    }
    return bitsToFloat(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

NVFP4_HD uint16_t floatToHalfBits(float f)
{
    uint32_t const bits = floatToBits(f);
    uint16_t const sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
    uint32_t const absBits = bits & 0x7FFFFFFFu;
    if (absBits > 0x7F800000u)
    {
        return static_cast<uint16_t>(sign | 0x7E00u); // quiet NaN
    }
    if (absBits >= 0x477FF000u) // 65520: ties to even go up to Inf
    {
        return static_cast<uint16_t>(sign | 0x7C00u);
    }
    int32_t const biasedExponent = static_cast<int32_t>(absBits >> 23);
    uint32_t const fraction = absBits & 0x7FFFFFu;
    if (biasedExponent < 127 - 14) // below 2^-14: subnormal grid k * 2^-24
    {
        uint32_t const sig = biasedExponent == 0 ? fraction : (fraction | 0x800000u);
        int32_t const e = biasedExponent == 0 ? -126 : biasedExponent - 127;
        return static_cast<uint16_t>(sign | shiftRightRne(sig, static_cast<uint32_t>(-1 - e)));
    }
    uint32_t const shifted = (static_cast<uint32_t>(biasedExponent - 112) << 23) | fraction;
    return static_cast<uint16_t>(sign | shiftRightRne(shifted, 13u));
}

NVFP4_HD float bf16BitsToFloat(uint16_t b)
{
    return bitsToFloat(static_cast<uint32_t>(b) << 16);
}

NVFP4_HD uint16_t floatToBf16Bits(float f)
{
    uint32_t const bits = floatToBits(f);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u)
    {
        return static_cast<uint16_t>((bits >> 16) | 0x40u); // quiet NaN, sign kept
    }
    uint32_t const roundingBias = 0x7FFFu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>((bits + roundingBias) >> 16); // carries into Inf correctly
}

} // namespace math
} // namespace nvfp4
