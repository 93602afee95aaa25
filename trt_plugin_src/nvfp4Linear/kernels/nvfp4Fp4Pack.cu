// Operand preparation for the native block-scaled FP4 GEMM (nvfp4CublasLt.cu), in cuBLASLt's
// formats: the activation quantized to packed E2M1 + UE4M3 block scales in the 128x4 tiled layout
// (nvfp4ScaleLayout.h), the weight block scales re-laid into that layout, and the alpha vector.
// Arch-independent CUDA (runs on any GPU; checked on Hopper GPUs by scripts/check/gpu_check_fp4_pack.py).
#include "nvfp4Launch.cuh"
#include "nvfp4Numerics.cuh"
#include "nvfp4ScaleLayout.h"

namespace nvfp4
{
namespace detail
{
namespace
{

// One thread per (row, 16-element block) of the padded scale grid [rowsPad, kBlocks]: real blocks
// are quantized exactly as quantizeActivationKernel does (nvfp4Math.h), padding rows get scale 0.
// A block holding a NaN has the FP8 NaN scale (0x7F) and zero codes: q * s_B is NaN for all 16
// elements either way (the contract's x-hat), so the product carries the NaN.
template <typename T, bool Vec>
__global__ void quantizeActivationFp4Kernel(T const* __restrict__ x, int64_t M, int64_t kBlocks, int64_t rowsPad,
    float G, float invG, uint2* __restrict__ packed, uint8_t* __restrict__ scales)
{
    int64_t const b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (b >= rowsPad * kBlocks)
    {
        return;
    }
    int64_t const row = b / kBlocks;
    int64_t const kb = b % kBlocks;
    uint8_t* const scaleDst = scales + layout::swizzledScaleOffset(row, kb, kBlocks);
    if (row >= M)
    {
        *scaleDst = 0;
        return;
    }
    float v[16];
    loadBlock<T, Vec>(x + (row * kBlocks + kb) * 16, v);
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < 16; ++i)
    {
        amax = math::absMaxNaN(amax, v[i]);
    }
    math::ActBlockScale const s = math::actBlockScale(amax, G, invG);
    uint32_t words[2] = {0u, 0u};
#pragma unroll
    for (int i = 0; i < 16; ++i)
    {
        bool nan;
        uint32_t const code = math::actQuantizeCode(v[i], s.quantMul, nan);
        words[i / 8] |= code << (4 * (i % 8)); // element 2j in the low nibble of byte j
    }
    packed[row * kBlocks + kb] = make_uint2(words[0], words[1]);
    *scaleDst = s.fp8;
}

// UE4M3 has no sign: a negative weight block scale (no producer writes one) becomes the NaN
// pattern so that the affected outputs are NaN rather than silently wrong; -0 becomes 0.
__device__ __forceinline__ uint32_t toUe4m3(uint32_t bits)
{
    return (bits & 0x80u) == 0 ? bits : ((bits & 0x7Fu) == 0 ? 0u : 0x7Fu);
}

// One thread per (row, group of 4 scales) of the padded grid [rowsPad, kBlocks / 4] (kBlocks % 4 == 0):
// reads one aligned 32-bit word of the row-major weight scales and writes it at its tiled offset
// (the 4 scales of a group are contiguous there). Threads below alphaLen also form
// alpha[n] = fp32(inputGlobalScale * weightGlobalScale[n]) as the contract does; alpha[alphaLen] = 0
// is beta (device pointer mode).
__global__ void prepareWeightFp4Kernel(uint32_t const* __restrict__ weightScale, int64_t N, int64_t kBlocks,
    int64_t rowsPad, uint32_t* __restrict__ scalesOut, float const* __restrict__ wgs, int64_t alphaLen,
    float inputGlobalScale, float* __restrict__ alpha)
{
    int64_t const b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    int64_t const groups = kBlocks / 4;
    if (b < alphaLen)
    {
        alpha[b] = __fmul_rn(inputGlobalScale, wgs[b]);
    }
    else if (b == alphaLen)
    {
        alpha[b] = 0.0f;
    }
    if (b >= rowsPad * groups)
    {
        return;
    }
    int64_t const row = b / groups;
    int64_t const g = b % groups;
    uint32_t out = 0u;
    if (row < N)
    {
        uint32_t const w = __ldg(weightScale + b);
        out = toUe4m3(w & 0xFFu) | (toUe4m3((w >> 8) & 0xFFu) << 8) | (toUe4m3((w >> 16) & 0xFFu) << 16)
            | (toUe4m3(w >> 24) << 24);
    }
    scalesOut[layout::swizzledScaleOffset(row, g * 4, kBlocks) / 4] = out;
}

template <typename T>
cudaError_t launchQuantizeFp4Typed(void const* x, int64_t M, int64_t K, float G, uint8_t* packed, uint8_t* scales,
    cudaStream_t stream)
{
    int64_t const kBlocks = K / 16;
    int64_t const rowsPad = layout::ceilDiv(M, layout::kScaleTileRows) * layout::kScaleTileRows;
    int64_t const threads = rowsPad * kBlocks;
    int const block = 128;
    unsigned const grid = static_cast<unsigned>((threads + block - 1) / block);
    float const invG = math::inverseGlobalScale(G);
    auto* const out = reinterpret_cast<uint2*>(packed);
    if (reinterpret_cast<uintptr_t>(x) % 16 == 0)
    {
        quantizeActivationFp4Kernel<T, true><<<grid, block, 0, stream>>>(
            static_cast<T const*>(x), M, kBlocks, rowsPad, G, invG, out, scales);
    }
    else
    {
        quantizeActivationFp4Kernel<T, false><<<grid, block, 0, stream>>>(
            static_cast<T const*>(x), M, kBlocks, rowsPad, G, invG, out, scales);
    }
    return cudaGetLastError();
}

} // namespace

cudaError_t launchQuantizeActivationFp4(void const* x, ActType actType, int64_t M, int64_t K,
    float inputGlobalScaleInv, uint8_t* packed, uint8_t* scales, cudaStream_t stream)
{
    if (M <= 0 || K <= 0 || K % 64 != 0 || reinterpret_cast<uintptr_t>(packed) % 8 != 0)
    {
        return cudaErrorInvalidValue;
    }
    switch (actType)
    {
    case ActType::kFLOAT: return launchQuantizeFp4Typed<float>(x, M, K, inputGlobalScaleInv, packed, scales, stream);
    case ActType::kHALF: return launchQuantizeFp4Typed<__half>(x, M, K, inputGlobalScaleInv, packed, scales, stream);
    case ActType::kBF16:
        return launchQuantizeFp4Typed<__nv_bfloat16>(x, M, K, inputGlobalScaleInv, packed, scales, stream);
    }
    return cudaErrorInvalidValue;
}

cudaError_t launchPrepareWeightFp4(int8_t const* weightScale, int64_t N, int64_t K, float const* weightGlobalScale,
    int32_t weightGlobalScaleLen, float inputGlobalScale, uint8_t* scalesOut, float* alpha, cudaStream_t stream)
{
    if (N <= 0 || K <= 0 || K % 64 != 0 || reinterpret_cast<uintptr_t>(weightScale) % 4 != 0
        || reinterpret_cast<uintptr_t>(scalesOut) % 4 != 0)
    {
        return cudaErrorInvalidValue;
    }
    int64_t const kBlocks = K / 16;
    int64_t const rowsPad = layout::ceilDiv(N, layout::kScaleTileRows) * layout::kScaleTileRows;
    int64_t const threads = std::max<int64_t>(rowsPad * (kBlocks / 4), weightGlobalScaleLen + 1);
    int const block = 256;
    prepareWeightFp4Kernel<<<static_cast<unsigned>((threads + block - 1) / block), block, 0, stream>>>(
        reinterpret_cast<uint32_t const*>(weightScale), N, kBlocks, rowsPad, reinterpret_cast<uint32_t*>(scalesOut),
        weightGlobalScale, weightGlobalScaleLen, inputGlobalScale, alpha);
    return cudaGetLastError();
}

} // namespace detail
} // namespace nvfp4
