// The experts' NVFP4 linears on tensor cores (mma.sync m16n8k16, sm_80+): one launch covers every
// selected expert. The grid is (work item, N tile): a work item is up to 8 * NT pairs of one expert
// (nvfp4MoEInternal.cuh), an N tile 32 weight rows of that expert (w13: 16 gate rows and the same
// 16 up rows, so the epilogue forms h and its FP8 block itself). Each CTA streams its 32 rows once
// for all its pairs: at decode (a few pairs per expert) every selected expert's weights are read
// once, by the CTAs of its N tiles.
//
// Operand layout and the MMAs of a K chunk are the dense wide GEMV's (nvfp4Gemv.cu), shared through
// nvfp4MmaChunk.cuh (mmaChunk128, natural decode) and nvfp4Numerics.cuh (HalfOperand / Bf16Operand,
// epilogueAlpha): the weights are the MMA's A operand (m16 = 16 weight rows, decoded to
// w' = ŵ * 2^-7 in fp16/bf16, exact), the pairs' activation rows the B operand (n8 = 8 pairs); a
// K chunk is 128 elements, 16 weight bytes per row and thread (one 16-byte load). The CTA's 4 warps
// split K and add their partial sums in shared memory in a fixed order (deterministic).
#include "nvfp4MmaChunk.cuh"
#include "nvfp4MoEInternal.cuh"

#include <type_traits>

namespace nvfp4
{
namespace moe
{
namespace
{

constexpr int kWarps = 4;
constexpr int kMT = 2; // m16 weight tiles per CTA: 32 weight rows

__device__ __forceinline__ uint4 loadWeights16(void const* p)
{
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// The two FP8 block scales of a thread's 32 elements (low byte: the first block).
__device__ __forceinline__ uint32_t loadScalePair(uint8_t const* p)
{
    return __ldg(reinterpret_cast<unsigned short const*>(p));
}

template <typename Op, typename T, int NT>
__global__ void __launch_bounds__(kWarps * 32) expertMmaKernel(ExpertLinearArgs const a)
{
    using Elem = typename Op::Elem;
    constexpr int kDepth = NT == 1 ? 4 : 2; // weight chunks in flight per warp
    constexpr bool kPerWord = NT > 2;       // activation words loaded one word group at a time
    __shared__ float red[kWarps][kMT * NT * 4][32];

    detail::allowDependentLaunch();
    detail::waitPrimaryGrid(); // the work list and the operand are written by the kernels before
    ItemRows r;
    if (!itemRows(a, blockIdx.x, r))
    {
        return;
    }
    int64_t const tile = blockIdx.y;
    int const warp = threadIdx.x / 32;
    int const lane = threadIdx.x % 32;
    int const g = lane / 4;
    int const t = lane % 4;
    int64_t const K = a.K;
    int64_t const numChunks = K / 128;
    int64_t const per = (numChunks + kWarps - 1) / kWarps;
    int64_t const c0 = min(numChunks, warp * per);
    int const nLocal = static_cast<int>(min(numChunks, c0 + per) - c0);

    // Rows >= N read row N-1 and pair rows >= rows read the last valid row (valid memory, no
    // predicates): they only feed results that are never stored.
    int64_t const e = r.expert;
    uint8_t const* wRow[kMT][2];
    uint8_t const* sRow[kMT][2];
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
    {
#pragma unroll
        for (int h = 0; h < 2; ++h)
        {
            int64_t const n = min(weightRow(a, tile, mt * 16 + h * 8 + g), a.N - 1);
            wRow[mt][h] = a.w + (e * a.N + n) * (K / 2) + c0 * 64 + t * 16;
            sRow[mt][h] = a.ws + (e * a.N + n) * (K / 16) + c0 * 8 + t * 2;
        }
    }
    uint4 const* aRow[NT];
#pragma unroll
    for (int j = 0; j < NT; ++j)
    {
        int32_t const m = min(j * 8 + g, r.rows - 1);
        aRow[j] = reinterpret_cast<uint4 const*>(
            static_cast<Elem const*>(a.a) + operandRow(a, r.posBase + m) * K + c0 * 128 + t * 32);
    }

    uint4 wv[kDepth][kMT][2];
    uint32_t sv[kDepth][kMT][2];
    auto loadWeights = [&](int slot, int i) {
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
        {
#pragma unroll
            for (int h = 0; h < 2; ++h)
            {
                wv[slot][mt][h] = loadWeights16(wRow[mt][h] + static_cast<int64_t>(i) * 64);
                sv[slot][mt][h] = loadScalePair(sRow[mt][h] + static_cast<int64_t>(i) * 8);
            }
        }
    };
#pragma unroll
    for (int p = 0; p < kDepth; ++p)
    {
        if (p < nLocal)
        {
            loadWeights(p, p);
        }
    }

    float acc[kMT][NT][4] = {};
    for (int i0 = 0; i0 < nLocal; i0 += kDepth)
    {
#pragma unroll
        for (int p = 0; p < kDepth; ++p)
        {
            int const i = i0 + p;
            if (i < nLocal) // uniform across the warp
            {
                uint4 aCur[NT][kPerWord ? 1 : 4];
                if constexpr (!kPerWord)
                {
#pragma unroll
                    for (int j = 0; j < NT; ++j)
                    {
#pragma unroll
                        for (int q = 0; q < 4; ++q)
                        {
                            aCur[j][q] = __ldg(aRow[j] + static_cast<int64_t>(i) * 16 + q);
                        }
                    }
                }
                uint32_t sc[kMT][2][2];
#pragma unroll
                for (int mt = 0; mt < kMT; ++mt)
                {
#pragma unroll
                    for (int h = 0; h < 2; ++h)
                    {
                        sc[mt][h][0] = Op::scalePair(sv[p][mt][h] & 0xFFu);
                        sc[mt][h][1] = Op::scalePair(sv[p][mt][h] >> 8);
                    }
                }
                detail::mmaChunk128<Op, kMT, NT, kPerWord, false, false>(
                    wv[p], sc, aCur, aRow, static_cast<int64_t>(i) * 16, acc);
                if (i + kDepth < nLocal)
                {
                    loadWeights(p, i + kDepth);
                }
            }
        }
    }

    detail::storeAccumulators(red, acc, warp, lane);
    __syncthreads();
    // Accumulator layout (m16n8): c0, c1 = weight row g, pairs 2t, 2t+1; c2, c3 = weight row g+8.
    auto accAt = [&](int32_t lr, int32_t m) {
        int const wr = lr % 16;
        int const idx = ((lr / 16) * NT + m / 8) * 4 + 2 * (wr / 8) + (m & 1);
        int const l = 4 * (wr % 8) + (m % 8) / 2;
        return detail::sumOverWarps(red, idx, l);
    };
    expertEpilogue<T>(a, r, tile, detail::kWeightOperandScale, accAt);
}

template <typename Op, typename T, int NT>
cudaError_t launchTyped(ExpertLinearArgs const& a, cudaStream_t stream)
{
    int64_t const tiles = a.gated ? a.I / 16 : (a.N + 31) / 32;
    return detail::launchKernel(a.pdl, expertMmaKernel<Op, T, NT>,
        dim3(static_cast<unsigned>(a.maxItems), static_cast<unsigned>(tiles)), dim3(kWarps * 32), 0, stream, a);
}

template <typename Op, typename T>
cudaError_t launchForRows(ExpertLinearArgs const& a, cudaStream_t stream)
{
    return withRowsPerItem(
        a.rowsPerItem, [&](auto rows) { return launchTyped<Op, T, decltype(rows)::value / 8>(a, stream); });
}

bool aligned(void const* p, size_t bytes)
{
    return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

} // namespace

bool mmaSupports(ExpertLinearArgs const& a, int sm)
{
    bool const operand16 = a.w4a4 || a.actType != ActType::kFLOAT;
    return sm >= 80 && operand16 && a.K % 128 == 0 && aligned(a.a, 16) && aligned(a.w, 16) && aligned(a.ws, 2);
}

cudaError_t launchExpertLinearMma(ExpertLinearArgs const& a, bool bf16Operand, cudaStream_t stream)
{
    if (bf16Operand)
    {
        return launchForRows<detail::Bf16Operand, __nv_bfloat16>(a, stream);
    }
    switch (a.actType)
    {
    case ActType::kFLOAT: return launchForRows<detail::HalfOperand, float>(a, stream);
    case ActType::kHALF: return launchForRows<detail::HalfOperand, __half>(a, stream);
    case ActType::kBF16: return launchForRows<detail::HalfOperand, __nv_bfloat16>(a, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace moe
} // namespace nvfp4
