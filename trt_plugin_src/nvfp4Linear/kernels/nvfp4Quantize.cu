// Dynamic NVFP4 quantization of the activation (w4a4), one pass: x [M, K] -> x-hat = q * s_B as fp16
// (exact) for the GEMM kernels, optionally also the FP8 block scales (for bit-exact tests).
// The arithmetic is nvfp4Math.h's, shared with the CPU ONNX Runtime op, so both agree bit for bit.
#include "nvfp4Launch.cuh"
#include "nvfp4Numerics.cuh"
#include "nvfp4Ptx.cuh"

namespace nvfp4
{
namespace detail
{
namespace
{

// One thread per block of 16 (blocks are contiguous along K, so consecutive threads read
// consecutive memory). Permuted (K % 64 == 0): block b is block t = b % 4 of its row's chunk b / 4;
// its 8 pairs go to 4-byte slots that the chunk's 4 threads fill together (permutedKPos).
template <typename T, bool Vec, bool kPermuteK>
__global__ void quantizeActivationKernel(T const* __restrict__ x, int64_t numBlocks, float G, float invG,
    __half* __restrict__ xhat, uint8_t* __restrict__ scaleOut)
{
    allowDependentLaunch(); // the GEMV may start streaming weights meanwhile
    int64_t const b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (b >= numBlocks)
    {
        return;
    }
    float v[16];
    loadBlock<T, Vec>(x + b * 16, v);

    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < 16; ++i)
    {
        amax = math::absMaxNaN(amax, v[i]);
    }
    math::ActBlockScale const s = math::actBlockScale(amax, G, invG);

    alignas(16) __half out[16];
#pragma unroll
    for (int i = 0; i < 16; ++i)
    {
        // q * s_B is exact in fp16 (and NaN stays NaN), so the conversion does not round.
        out[i] = __float2half_rn(__fmul_rn(math::actQuantize(v[i], s.quantMul), s.scale));
    }
    if constexpr (kPermuteK)
    {
        __half* const chunk = xhat + (b / 4) * 64;
        int const t = static_cast<int>(b % 4);
#pragma unroll
        for (int j = 0; j < 16; j += 2)
        {
            *reinterpret_cast<uint32_t*>(chunk + permutedKPos(16 * t + j)) = reinterpret_cast<uint32_t const*>(out)[j / 2];
        }
    }
    else
    {
        uint4* dst = reinterpret_cast<uint4*>(xhat + b * 16);
        dst[0] = reinterpret_cast<uint4 const*>(out)[0];
        dst[1] = reinterpret_cast<uint4 const*>(out)[1];
    }
    if (scaleOut != nullptr)
    {
        scaleOut[b] = s.fp8;
    }
}

// Small inputs (decode: M * K / 16 <= kSmallBlocks): the one-thread-per-block kernel above is a
// chain of ~16 serial element quantizations per thread with too few threads to hide it (its
// latency, not bandwidth, is what the GEMV waits for). Here kLanes threads share a block: each
// quantizes 16 / kLanes elements; the block maximum is combined with shuffles (max is exact and
// absMaxNaN keeps NaN whatever the order, so s_B is the same) and every lane derives s_B itself.
constexpr int kSmallLanes = 16;
constexpr int64_t kSmallBlocks = 8192;

template <typename T, int kLanes, bool kPermuteK>
__global__ void quantizeActivationSmallKernel(T const* __restrict__ x, int64_t numBlocks, float G, float invG,
    __half* __restrict__ xhat, uint8_t* __restrict__ scaleOut)
{
    static_assert(32 % kLanes == 0 && kLanes <= 16, "a block's lanes lie in one warp");
    constexpr int kPer = 16 / kLanes;
    allowDependentLaunch(); // the GEMV may start streaming weights meanwhile
    int64_t const tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    int64_t const b = tid / kLanes;
    if (b >= numBlocks)
    {
        return; // the block's lanes all leave together
    }
    int const part = static_cast<int>(tid % kLanes);
    unsigned const lane = threadIdx.x % 32;
    unsigned const group = ((1u << kLanes) - 1u) << (lane / kLanes * kLanes);
    int64_t const e0 = b * 16 + part * kPer;
    float v[kPer];
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < kPer; ++i)
    {
        v[i] = toFloat<T>(x[e0 + i]);
        amax = math::absMaxNaN(amax, v[i]);
    }
#pragma unroll
    for (int o = kLanes / 2; o > 0; o /= 2)
    {
        amax = math::absMaxNaN(amax, __shfl_xor_sync(group, amax, o));
    }
    math::ActBlockScale const s = math::actBlockScale(amax, G, invG);
#pragma unroll
    for (int i = 0; i < kPer; ++i)
    {
        int64_t const e = e0 + i;
        int64_t const dst = kPermuteK ? e / 64 * 64 + permutedKPos(static_cast<int>(e % 64)) : e;
        xhat[dst] = __float2half_rn(__fmul_rn(math::actQuantize(v[i], s.quantMul), s.scale));
    }
    if (scaleOut != nullptr && part == 0)
    {
        scaleOut[b] = s.fp8;
    }
}

template <typename T, bool kPermuteK>
cudaError_t launchTyped(
    void const* x, int64_t M, int64_t K, float G, __half* xhat, uint8_t* scaleOut, cudaStream_t stream)
{
    int64_t const numBlocks = M * (K / 16);
    if (numBlocks == 0)
    {
        return cudaSuccess;
    }
    int const threads = 128;
    int64_t const grid = (numBlocks + threads - 1) / threads;
    float const invG = math::inverseGlobalScale(G);
    if (numBlocks <= kSmallBlocks)
    {
        int64_t const smallGrid = (numBlocks * kSmallLanes + threads - 1) / threads;
        quantizeActivationSmallKernel<T, kSmallLanes, kPermuteK><<<static_cast<unsigned>(smallGrid), threads, 0, stream>>>(
            static_cast<T const*>(x), numBlocks, G, invG, xhat, scaleOut);
        return cudaGetLastError();
    }
    bool const vec = (reinterpret_cast<uintptr_t>(x) % 16) == 0;
    if (vec)
    {
        quantizeActivationKernel<T, true, kPermuteK><<<static_cast<unsigned>(grid), threads, 0, stream>>>(
            static_cast<T const*>(x), numBlocks, G, invG, xhat, scaleOut);
    }
    else
    {
        quantizeActivationKernel<T, false, kPermuteK><<<static_cast<unsigned>(grid), threads, 0, stream>>>(
            static_cast<T const*>(x), numBlocks, G, invG, xhat, scaleOut);
    }
    return cudaGetLastError();
}

template <typename T>
cudaError_t launchOrdered(void const* x, int64_t M, int64_t K, float G, __half* xhat, uint8_t* scaleOut, bool permuteK,
    cudaStream_t stream)
{
    return permuteK ? launchTyped<T, true>(x, M, K, G, xhat, scaleOut, stream)
                    : launchTyped<T, false>(x, M, K, G, xhat, scaleOut, stream);
}

} // namespace

cudaError_t launchQuantizeActivation(void const* x, ActType actType, int64_t M, int64_t K, float inputGlobalScaleInv,
    __half* xhat, uint8_t* scaleOut, bool permuteK, cudaStream_t stream)
{
    if (permuteK && K % 64 != 0)
    {
        return cudaErrorInvalidValue;
    }
    switch (actType)
    {
    case ActType::kFLOAT: return launchOrdered<float>(x, M, K, inputGlobalScaleInv, xhat, scaleOut, permuteK, stream);
    case ActType::kHALF: return launchOrdered<__half>(x, M, K, inputGlobalScaleInv, xhat, scaleOut, permuteK, stream);
    case ActType::kBF16:
        return launchOrdered<__nv_bfloat16>(x, M, K, inputGlobalScaleInv, xhat, scaleOut, permuteK, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace detail
} // namespace nvfp4
