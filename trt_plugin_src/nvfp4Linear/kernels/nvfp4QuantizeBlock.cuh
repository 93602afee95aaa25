// One 16-element block of the w4a4 activation quantization (nvfp4Math.h's arithmetic), shared by
// the stand-alone quantize kernel (nvfp4Quantize.cu) and the GEMV that quantizes its own K range
// (nvfp4Gemv.cu), so that both produce the same x-hat bit for bit.
#pragma once

#include "nvfp4KernelsInternal.cuh"

namespace nvfp4
{
namespace detail
{

// The 16 elements at `src` as float. Vec: 16-byte aligned (vector loads), else element loads.
template <typename T, bool Vec>
__device__ __forceinline__ void loadActBlock(T const* src, float (&v)[16])
{
    if constexpr (!Vec)
    {
#pragma unroll
        for (int i = 0; i < 16; ++i)
        {
            v[i] = toFloat<T>(src[i]);
        }
    }
    else
    {
        constexpr int kPerVec = 16 / sizeof(T);
#pragma unroll
        for (int j = 0; j < 16 / kPerVec; ++j)
        {
            uint4 const u = __ldg(reinterpret_cast<uint4 const*>(src) + j);
            T const* e = reinterpret_cast<T const*>(&u);
#pragma unroll
            for (int i = 0; i < kPerVec; ++i)
            {
                v[j * kPerVec + i] = toFloat<T>(e[i]);
            }
        }
    }
}

// x-hat = q * s_B of one block as fp16 (exact; NaN stays NaN) into out (16-byte aligned);
// returns s_B as float8_e4m3fn bits. G = input_global_scale_inv, invG = fp32(1/G).
__device__ __forceinline__ uint8_t quantizeActBlock(float const (&v)[16], float G, float invG, uint4 (&out)[2])
{
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < 16; ++i)
    {
        amax = math::absMaxNaN(amax, v[i]);
    }
    math::ActBlockScale const s = math::actBlockScale(amax, G, invG);
    __half* h = reinterpret_cast<__half*>(out);
#pragma unroll
    for (int i = 0; i < 16; ++i)
    {
        // q * s_B is exact in fp16 (and NaN stays NaN), so the conversion does not round.
        h[i] = __float2half_rn(__fmul_rn(math::actQuantize(v[i], s.quantMul), s.scale));
    }
    return s.fp8;
}

} // namespace detail
} // namespace nvfp4
