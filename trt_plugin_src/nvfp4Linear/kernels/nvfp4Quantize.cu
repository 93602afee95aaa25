// The activation operand pass before the GEMM kernels: dynamic NVFP4 quantization (w4a4), x [M, K]
// -> x-hat = q * s_B as fp16 (exact; bf16, also exact, for the dequantize-then-GEMM path at bf16),
// optionally also the FP8 block scales (for bit-exact tests);
// or, for the wgmma kernel at w4a16, x itself (fp16/bf16) moved into that kernel's K order.
// The arithmetic is nvfp4Math.h's, shared with the CPU ONNX Runtime op, so both agree bit for bit.
#include "nvfp4Launch.cuh"
#include "nvfp4Numerics.cuh"
#include "nvfp4Ptx.cuh"

#include <type_traits>

namespace nvfp4
{
namespace detail
{
namespace
{

// One thread per block of 16 (blocks are contiguous along K, so consecutive threads read
// consecutive memory). kWgmma (K % 64 == 0): block b is block t = b % 4 of its row's chunk b / 4;
// its 16 elements go as 8 pairs to 4-byte slots that the chunk's 4 threads fill together (permutedKPos).
template <typename T, typename XT, bool Vec, ActOrder kOrder>
__global__ void quantizeActivationKernel(T const* __restrict__ x, int64_t numBlocks, float G, float invG,
    XT* __restrict__ xhat, uint8_t* __restrict__ scaleOut)
{
    static_assert(kOrder == ActOrder::kNatural || std::is_same<XT, __half>::value, "bf16 x-hat: natural order only");
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

    alignas(16) XT out[16];
#pragma unroll
    for (int i = 0; i < 16; ++i)
    {
        // q * s_B is exact in fp16 and bf16 (and NaN stays NaN), so the conversion does not round.
        out[i] = fromFloat<XT>(__fmul_rn(math::actQuantize(v[i], s.quantMul), s.scale));
    }
    if constexpr (kOrder == ActOrder::kWgmma)
    {
        __half* const chunk = xhat + (b / 4) * 64;
        int const t = static_cast<int>(b % 4);
#pragma unroll
        for (int i = 0; i < 8; ++i)
        {
            int const j = i / 2 * 4 + i % 2; // elements j and j + 2 lie side by side in the permuted order
            __half2 const pair = __halves2half2(out[j], out[j + 2]);
            *reinterpret_cast<__half2*>(chunk + permutedKPos(16 * t + j)) = pair;
        }
    }
    else
    {
        uint32_t v[8];
#pragma unroll
        for (int i = 0; i < 8; ++i)
        {
            v[i] = reinterpret_cast<uint32_t const*>(out)[i];
        }
        if constexpr (kOrder == ActOrder::kGemvPairs)
        {
#pragma unroll
            for (int i = 0; i < 8; i += 2) // (x0, x1), (x2, x3) -> (x0, x2), (x1, x3): gemvPairPos
            {
                uint32_t const lo = v[i];
                v[i] = __byte_perm(lo, v[i + 1], 0x5410);
                v[i + 1] = __byte_perm(lo, v[i + 1], 0x7632);
            }
        }
        uint4* dst = reinterpret_cast<uint4*>(xhat + b * 16);
        dst[0] = make_uint4(v[0], v[1], v[2], v[3]);
        dst[1] = make_uint4(v[4], v[5], v[6], v[7]);
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

template <typename T, typename XT, int kLanes, ActOrder kOrder>
__global__ void quantizeActivationSmallKernel(T const* __restrict__ x, int64_t numBlocks, float G, float invG,
    XT* __restrict__ xhat, uint8_t* __restrict__ scaleOut)
{
    static_assert(kOrder == ActOrder::kNatural || std::is_same<XT, __half>::value, "bf16 x-hat: natural order only");
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
        int64_t const dst = kOrder == ActOrder::kWgmma ? e / 64 * 64 + permutedKPos(static_cast<int>(e % 64))
            : kOrder == ActOrder::kGemvPairs           ? e / 4 * 4 + gemvPairPos(static_cast<int>(e % 4))
                                                       : e;
        xhat[dst] = fromFloat<XT>(__fmul_rn(math::actQuantize(v[i], s.quantMul), s.scale));
    }
    if (scaleOut != nullptr && part == 0)
    {
        scaleOut[b] = s.fp8;
    }
}

template <typename T, ActOrder kOrder, typename XT = __half>
cudaError_t launchTyped(void const* x, int64_t M, int64_t K, float G, XT* xhat, uint8_t* scaleOut, cudaStream_t stream)
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
        quantizeActivationSmallKernel<T, XT, kSmallLanes, kOrder><<<static_cast<unsigned>(smallGrid), threads, 0, stream>>>(
            static_cast<T const*>(x), numBlocks, G, invG, xhat, scaleOut);
        return cudaGetLastError();
    }
    bool const vec = (reinterpret_cast<uintptr_t>(x) % 16) == 0;
    if (vec)
    {
        quantizeActivationKernel<T, XT, true, kOrder><<<static_cast<unsigned>(grid), threads, 0, stream>>>(
            static_cast<T const*>(x), numBlocks, G, invG, xhat, scaleOut);
    }
    else
    {
        quantizeActivationKernel<T, XT, false, kOrder><<<static_cast<unsigned>(grid), threads, 0, stream>>>(
            static_cast<T const*>(x), numBlocks, G, invG, xhat, scaleOut);
    }
    return cudaGetLastError();
}

template <typename T>
cudaError_t launchOrdered(void const* x, int64_t M, int64_t K, float G, __half* xhat, uint8_t* scaleOut,
    ActOrder order, cudaStream_t stream)
{
    switch (order)
    {
    case ActOrder::kNatural: return launchTyped<T, ActOrder::kNatural>(x, M, K, G, xhat, scaleOut, stream);
    case ActOrder::kGemvPairs: return launchTyped<T, ActOrder::kGemvPairs>(x, M, K, G, xhat, scaleOut, stream);
    case ActOrder::kWgmma: return launchTyped<T, ActOrder::kWgmma>(x, M, K, G, xhat, scaleOut, stream);
    }
    return cudaErrorInvalidValue;
}

// One thread per 4 consecutive elements x0..x3 of a 64-element chunk: the pairs (x0, x2) and (x1, x3),
// each side by side in permutedKPos's order, each one 32-bit store (K % 64 == 0, 16-byte aligned rows).
template <typename T>
__global__ void permuteActivationKernel(T const* __restrict__ x, int64_t numQuads, T* __restrict__ out)
{
    allowDependentLaunch(); // the wgmma kernel may start streaming weights meanwhile
    int64_t const i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= numQuads)
    {
        return;
    }
    int64_t const e = 4 * i;
    uint2 const v = *reinterpret_cast<uint2 const*>(x + e);
    T* const chunk = out + e / 64 * 64;
    int const p = static_cast<int>(e % 64);
    *reinterpret_cast<uint32_t*>(chunk + permutedKPos(p)) = __byte_perm(v.x, v.y, 0x5410);
    *reinterpret_cast<uint32_t*>(chunk + permutedKPos(p + 1)) = __byte_perm(v.x, v.y, 0x7632);
}

} // namespace

cudaError_t launchPermuteActivation(void const* x, ActType actType, int64_t M, int64_t K, void* out, cudaStream_t stream)
{
    if (K % 64 != 0 || actType == ActType::kFLOAT)
    {
        return cudaErrorInvalidValue;
    }
    int64_t const numQuads = M * K / 4;
    if (numQuads == 0)
    {
        return cudaSuccess;
    }
    int const threads = 256;
    unsigned const grid = static_cast<unsigned>((numQuads + threads - 1) / threads);
    if (actType == ActType::kHALF)
    {
        permuteActivationKernel<__half><<<grid, threads, 0, stream>>>(
            static_cast<__half const*>(x), numQuads, static_cast<__half*>(out));
    }
    else
    {
        permuteActivationKernel<__nv_bfloat16><<<grid, threads, 0, stream>>>(
            static_cast<__nv_bfloat16 const*>(x), numQuads, static_cast<__nv_bfloat16*>(out));
    }
    return cudaGetLastError();
}

cudaError_t launchQuantizeActivation(void const* x, ActType actType, int64_t M, int64_t K, float inputGlobalScaleInv,
    __half* xhat, uint8_t* scaleOut, ActOrder order, cudaStream_t stream)
{
    if (order == ActOrder::kWgmma && K % 64 != 0)
    {
        return cudaErrorInvalidValue;
    }
    switch (actType)
    {
    case ActType::kFLOAT: return launchOrdered<float>(x, M, K, inputGlobalScaleInv, xhat, scaleOut, order, stream);
    case ActType::kHALF: return launchOrdered<__half>(x, M, K, inputGlobalScaleInv, xhat, scaleOut, order, stream);
    case ActType::kBF16:
        return launchOrdered<__nv_bfloat16>(x, M, K, inputGlobalScaleInv, xhat, scaleOut, order, stream);
    }
    return cudaErrorInvalidValue;
}

cudaError_t launchQuantizeActivationBf16(
    void const* x, ActType actType, int64_t M, int64_t K, float inputGlobalScaleInv, __nv_bfloat16* xhat, cudaStream_t stream)
{
    switch (actType)
    {
    case ActType::kFLOAT:
        return launchTyped<float, ActOrder::kNatural>(x, M, K, inputGlobalScaleInv, xhat, nullptr, stream);
    case ActType::kHALF:
        return launchTyped<__half, ActOrder::kNatural>(x, M, K, inputGlobalScaleInv, xhat, nullptr, stream);
    case ActType::kBF16:
        return launchTyped<__nv_bfloat16, ActOrder::kNatural>(x, M, K, inputGlobalScaleInv, xhat, nullptr, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace detail
} // namespace nvfp4
