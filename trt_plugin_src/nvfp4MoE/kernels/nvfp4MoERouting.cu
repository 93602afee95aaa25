// Routing, grouping by expert, the W4A4 gather of the experts' input, and the final combine of
// the NVFP4MoE op (data flow: nvfp4MoEInternal.cuh). Decode-sized problems run routing, grouping and
// gather in one CTA (one launch); larger ones in three kernels.
#include "nvfp4MoEInternal.cuh"

#include <cfloat>
#include <climits>

namespace nvfp4
{
namespace moe
{
namespace
{

constexpr int kGroupThreads = 1024; // the grouping CTA

__global__ void uploadScalesKernel(ScaleChunk const chunk, int32_t offset, int32_t count, float* __restrict__ table)
{
    for (int32_t i = threadIdx.x; i < count; i += blockDim.x)
    {
        table[offset + i] = chunk.values[i];
    }
}

// (v, i) comes before (w, j) in the selection order: larger logit first, ties to the lower index.
__device__ __forceinline__ bool before(float v, int32_t i, float w, int32_t j)
{
    return v > w || (v == w && i < j);
}

// Steps 1-2 of the contract for one token, by one warp: expert and weight of slot j are written by
// lane j. Round j selects the first logit (in the selection order) after round j-1's; a NaN logit
// counts as 0 for the selection and makes every weight of the token NaN.
template <typename T>
__device__ void routeToken(T const* __restrict__ logits, int32_t E, int32_t k, bool normalize,
    int32_t* __restrict__ expertOut, float* __restrict__ weightOut)
{
    int const lane = threadIdx.x % 32;
    bool nanHere = false;
    for (int32_t e = lane; e < E; e += 32)
    {
        nanHere = nanHere || math::isNaN(detail::toFloat<T>(logits[e]));
    }
    bool const hasNaN = __any_sync(0xFFFFFFFFu, nanHere);

    float prevV = __int_as_float(0x7F800000); // +Inf, index -1: every logit comes after it
    int32_t prevI = -1;
    float mineV = 0.0f;  // lane j: the logit selected in round j
    int32_t mineI = 0;
    float lMax = 0.0f;
    for (int32_t j = 0; j < k; ++j)
    {
        float bestV = -__int_as_float(0x7F800000);
        int32_t bestI = INT_MAX; // "none": after every real logit, -Inf included
        for (int32_t e = lane; e < E; e += 32)
        {
            float v = detail::toFloat<T>(logits[e]);
            v = math::isNaN(v) ? 0.0f : v;
            if (before(prevV, prevI, v, e) && before(v, e, bestV, bestI))
            {
                bestV = v;
                bestI = e;
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o /= 2)
        {
            float const v = __shfl_xor_sync(0xFFFFFFFFu, bestV, o);
            int32_t const i = __shfl_xor_sync(0xFFFFFFFFu, bestI, o);
            if (before(v, i, bestV, bestI))
            {
                bestV = v;
                bestI = i;
            }
        }
        if (lane == j)
        {
            mineV = bestV;
            mineI = bestI;
        }
        lMax = j == 0 ? bestV : lMax;
        prevV = bestV;
        prevI = bestI;
    }
    // exp(l - l_max): +Inf - +Inf and -Inf - -Inf give NaN weights, as in the reference.
    float const mineExp = lane < k ? expf(__fsub_rn(mineV, lMax)) : 0.0f;
    float total = 0.0f;
    if (normalize)
    {
        total = mineExp;
    }
    else
    {
        for (int32_t e = lane; e < E; e += 32)
        {
            float const v = detail::toFloat<T>(logits[e]);
            total = __fadd_rn(total, expf(__fsub_rn(math::isNaN(v) ? 0.0f : v, lMax)));
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o /= 2)
    {
        total = __fadd_rn(total, __shfl_xor_sync(0xFFFFFFFFu, total, o));
    }
    if (lane < k)
    {
        expertOut[lane] = mineI;
        weightOut[lane] = hasNaN ? __int_as_float(0x7FC00000) : __fdiv_rn(mineExp, total);
    }
}

// Exclusive scan, in place, of data[0..n) in shared memory by the whole CTA; returns the total.
// `warpTotals` is 32 ints of shared memory.
__device__ int32_t blockExclusiveScan(int32_t* data, int32_t n, int32_t* warpTotals)
{
    int32_t const per = (n + blockDim.x - 1) / blockDim.x;
    int32_t const begin = min(n, static_cast<int32_t>(threadIdx.x) * per);
    int32_t const end = min(n, begin + per);
    int32_t local = 0;
    for (int32_t i = begin; i < end; ++i)
    {
        local += data[i];
    }
    int const lane = threadIdx.x % 32;
    int const warp = threadIdx.x / 32;
    int const numWarps = blockDim.x / 32;
    int32_t inclusive = local;
#pragma unroll
    for (int o = 1; o < 32; o *= 2)
    {
        int32_t const v = __shfl_up_sync(0xFFFFFFFFu, inclusive, o);
        inclusive += lane >= o ? v : 0;
    }
    if (lane == 31)
    {
        warpTotals[warp] = inclusive;
    }
    __syncthreads();
    if (warp == 0)
    {
        int32_t t = lane < numWarps ? warpTotals[lane] : 0;
#pragma unroll
        for (int o = 1; o < 32; o *= 2)
        {
            int32_t const v = __shfl_up_sync(0xFFFFFFFFu, t, o);
            t += lane >= o ? v : 0;
        }
        warpTotals[lane] = t; // inclusive over warps
    }
    __syncthreads();
    int32_t run = (warp > 0 ? warpTotals[warp - 1] : 0) + inclusive - local;
    for (int32_t i = begin; i < end; ++i)
    {
        int32_t const v = data[i];
        data[i] = run;
        run += v;
    }
    int32_t const total = warpTotals[numWarps - 1];
    __syncthreads(); // warpTotals is reused by the next scan
    return total;
}

// Groups the P pairs by expert (one CTA): offsets, each pair's pos, the pair at each pos, and the
// work list. `shared` holds 2 * E + 32 ints.
__device__ void groupPairs(int32_t P, int32_t E, int32_t rowsPerItem, Workspace const& ws, int32_t* shared)
{
    int32_t* const start = shared;           // per expert: its count, then its first pos
    int32_t* const itemStart = shared + E;   // per expert: its number of items, then its first item
    int32_t* const warpTotals = shared + 2 * E;
    for (int32_t e = threadIdx.x; e < E; e += blockDim.x)
    {
        start[e] = 0;
    }
    __syncthreads();
    for (int32_t p = threadIdx.x; p < P; p += blockDim.x)
    {
        ws.pairPos[p] = atomicAdd(&start[ws.pairExpert[p]], 1); // rank within the expert
    }
    __syncthreads();
    for (int32_t e = threadIdx.x; e < E; e += blockDim.x)
    {
        itemStart[e] = (start[e] + rowsPerItem - 1) / rowsPerItem;
    }
    __syncthreads();
    blockExclusiveScan(start, E, warpTotals);
    int32_t const numItems = blockExclusiveScan(itemStart, E, warpTotals);
    for (int32_t e = threadIdx.x; e < E; e += blockDim.x)
    {
        ws.offsets[e] = start[e];
    }
    if (threadIdx.x == 0)
    {
        ws.offsets[E] = P;
        ws.offsets[E + 1] = numItems;
    }
    for (int32_t it = threadIdx.x; it < numItems; it += blockDim.x)
    {
        // The last expert whose first item is <= it (experts without items share their successor's).
        int32_t lo = 0, hi = E - 1;
        while (lo < hi)
        {
            int32_t const mid = (lo + hi + 1) / 2;
            if (itemStart[mid] <= it)
            {
                lo = mid;
            }
            else
            {
                hi = mid - 1;
            }
        }
        ws.items[it] = WorkItem{lo, (it - itemStart[lo]) * rowsPerItem};
    }
    for (int32_t p = threadIdx.x; p < P; p += blockDim.x)
    {
        int32_t const pos = start[ws.pairExpert[p]] + ws.pairPos[p];
        ws.pairPos[p] = pos;
        ws.sortedPair[pos] = p;
    }
}

// x-hat1 of one block of 16 of pos: x of the pair's token quantized with its expert's G (w4a4).
template <typename T, bool Vec>
__device__ __forceinline__ void gatherBlock(T const* __restrict__ x, int64_t H, int32_t topK, int32_t E,
    Workspace const& ws, int64_t pos, int64_t block)
{
    int32_t const p = ws.sortedPair[pos];
    float const G = ws.scales[kW13InputScaleInv * E + ws.pairExpert[p]];
    float v[16];
    detail::loadBlock<T, Vec>(x + (p / topK) * H + block * 16, v);
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < 16; ++i)
    {
        amax = math::absMaxNaN(amax, v[i]);
    }
    math::ActBlockScale const s = math::actBlockScale(amax, G, math::inverseGlobalScale(G));
    alignas(16) __half out[16];
#pragma unroll
    for (int i = 0; i < 16; ++i)
    {
        out[i] = __float2half_rn(__fmul_rn(math::actQuantize(v[i], s.quantMul), s.scale)); // exact in fp16
    }
    uint4* dst = reinterpret_cast<uint4*>(ws.xhat1 + pos * H + block * 16);
    dst[0] = reinterpret_cast<uint4 const*>(out)[0];
    dst[1] = reinterpret_cast<uint4 const*>(out)[1];
}

struct RoutingKernelArgs
{
    void const* x;
    void const* logits;
    int32_t M, E, topK;
    int64_t H;
    bool normalize, w4a4;
    int32_t rowsPerItem;
    Workspace ws;
    int32_t firstScaleCount;
};

__device__ __forceinline__ void writeFirstScales(RoutingKernelArgs const& a, ScaleChunk const& chunk)
{
    if (blockIdx.x == 0)
    {
        for (int32_t i = threadIdx.x; i < a.firstScaleCount; i += blockDim.x)
        {
            a.ws.scales[i] = chunk.values[i];
        }
    }
}

template <typename T>
__device__ __forceinline__ void routeTokens(RoutingKernelArgs const& a, int64_t firstWarp, int64_t warpStride)
{
    for (int64_t m = firstWarp; m < a.M; m += warpStride)
    {
        routeToken<T>(static_cast<T const*>(a.logits) + m * a.E, a.E, a.topK, a.normalize,
            a.ws.pairExpert + m * a.topK, a.ws.pairWeight + m * a.topK);
    }
}

template <typename T, bool Vec>
__device__ __forceinline__ void gatherAll(RoutingKernelArgs const& a, int64_t first, int64_t stride)
{
    int64_t const blocksPerRow = a.H / 16;
    int64_t const total = static_cast<int64_t>(a.M) * a.topK * blocksPerRow;
    for (int64_t idx = first; idx < total; idx += stride)
    {
        gatherBlock<T, Vec>(static_cast<T const*>(a.x), a.H, a.topK, a.E, a.ws, idx / blocksPerRow, idx % blocksPerRow);
    }
}

// Decode-sized problems: routing, grouping and gather in one CTA of kGroupThreads.
template <typename T, bool Vec>
__global__ void __launch_bounds__(kGroupThreads) routeGroupGatherKernel(
    RoutingKernelArgs const a, ScaleChunk const chunk)
{
    extern __shared__ int32_t shared[];
    writeFirstScales(a, chunk);
    routeTokens<T>(a, threadIdx.x / 32, blockDim.x / 32);
    __syncthreads();
    groupPairs(a.M * a.topK, a.E, a.rowsPerItem, a.ws, shared);
    __syncthreads();
    detail::allowDependentLaunch();
    if (a.w4a4)
    {
        gatherAll<T, Vec>(a, threadIdx.x, blockDim.x);
    }
}

// Larger problems, step 1: one warp per token.
template <typename T>
__global__ void routeKernel(RoutingKernelArgs const a, ScaleChunk const chunk)
{
    writeFirstScales(a, chunk);
    int64_t const warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
    routeTokens<T>(a, static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32, warps);
}

// Step 2: grouping, one CTA.
__global__ void __launch_bounds__(kGroupThreads) groupKernel(RoutingKernelArgs const a)
{
    extern __shared__ int32_t shared[];
    groupPairs(a.M * a.topK, a.E, a.rowsPerItem, a.ws, shared);
    detail::allowDependentLaunch();
}

// Step 3 (w4a4): gather, one thread per block of 16.
template <typename T, bool Vec>
__global__ void gatherKernel(RoutingKernelArgs const a)
{
    detail::allowDependentLaunch();
    detail::waitPrimaryGrid();
    gatherAll<T, Vec>(a, static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x,
        static_cast<int64_t>(gridDim.x) * blockDim.x);
}

template <typename T>
__global__ void combineKernel(T* __restrict__ y, T const* __restrict__ d, float const* __restrict__ pairWeight,
    int32_t const* __restrict__ pairPos, int64_t M, int32_t topK, int64_t H)
{
    detail::waitPrimaryGrid();
    int64_t const idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= M * H)
    {
        return;
    }
    int64_t const m = idx / H;
    int64_t const n = idx % H;
    float acc = 0.0f;
    for (int32_t j = 0; j < topK; ++j) // fixed order: deterministic
    {
        int64_t const p = m * topK + j;
        acc = __fmaf_rn(pairWeight[p], detail::toFloat<T>(d[static_cast<int64_t>(pairPos[p]) * H + n]), acc);
    }
    y[idx] = detail::fromFloat<T>(acc);
}

template <typename T>
cudaError_t launchRoutingTyped(RoutingArgs const& r, bool singleCta, cudaStream_t stream)
{
    RoutingKernelArgs a{r.x, r.logits, static_cast<int32_t>(r.M), r.E, r.topK, r.H, r.normalize, r.w4a4,
        r.rowsPerItem, *r.ws, r.firstScaleCount};
    size_t const smem = sizeof(int32_t) * (2 * static_cast<size_t>(r.E) + 32);
    bool const vec = reinterpret_cast<uintptr_t>(r.x) % 16 == 0;
    if (singleCta)
    {
        auto kernel = vec ? routeGroupGatherKernel<T, true> : routeGroupGatherKernel<T, false>;
        kernel<<<1, kGroupThreads, smem, stream>>>(a, *r.firstScales);
        return cudaGetLastError();
    }
    int const routeThreads = 256;
    int64_t const routeGrid = (r.M + routeThreads / 32 - 1) / (routeThreads / 32);
    routeKernel<T><<<static_cast<unsigned>(routeGrid), routeThreads, 0, stream>>>(a, *r.firstScales);
    groupKernel<<<1, kGroupThreads, smem, stream>>>(a);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess || !r.w4a4)
    {
        return err;
    }
    int const threads = 256;
    int64_t const blocks = r.M * r.topK * (r.H / 16);
    auto kernel = vec ? gatherKernel<T, true> : gatherKernel<T, false>;
    return detail::launchKernel(false, kernel, dim3(static_cast<unsigned>((blocks + threads - 1) / threads)),
        dim3(threads), 0, stream, a);
}

template <typename T>
cudaError_t launchCombineTyped(
    void* y, Workspace const& ws, int64_t M, int32_t topK, int64_t H, bool pdl, cudaStream_t stream)
{
    int const threads = 256;
    return detail::launchKernel(pdl, combineKernel<T>, dim3(static_cast<unsigned>((M * H + threads - 1) / threads)),
        dim3(threads), 0, stream, static_cast<T*>(y), static_cast<T const*>(ws.d),
        static_cast<float const*>(ws.pairWeight), static_cast<int32_t const*>(ws.pairPos), M, topK, H);
}

} // namespace

cudaError_t launchUploadScales(ScaleChunk const& chunk, int32_t offset, int32_t count, float* table, cudaStream_t stream)
{
    uploadScalesKernel<<<1, 256, 0, stream>>>(chunk, offset, count, table);
    return cudaGetLastError();
}

cudaError_t launchRouting(RoutingArgs const& a, bool singleCta, cudaStream_t stream)
{
    switch (a.actType)
    {
    case ActType::kFLOAT: return launchRoutingTyped<float>(a, singleCta, stream);
    case ActType::kHALF: return launchRoutingTyped<__half>(a, singleCta, stream);
    case ActType::kBF16: return launchRoutingTyped<__nv_bfloat16>(a, singleCta, stream);
    }
    return cudaErrorInvalidValue;
}

cudaError_t launchCombine(
    void* y, Workspace const& ws, int64_t M, int32_t topK, int64_t H, ActType actType, bool pdl, cudaStream_t stream)
{
    switch (actType)
    {
    case ActType::kFLOAT: return launchCombineTyped<float>(y, ws, M, topK, H, pdl, stream);
    case ActType::kHALF: return launchCombineTyped<__half>(y, ws, M, topK, H, pdl, stream);
    case ActType::kBF16: return launchCombineTyped<__nv_bfloat16>(y, ws, M, topK, H, pdl, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace moe
} // namespace nvfp4
