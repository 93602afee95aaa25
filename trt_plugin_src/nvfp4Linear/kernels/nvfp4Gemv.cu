// Small-M NVFP4 linear (M <= 16, decode): memory-bound on the weights (0.5625 B per weight).
// Each warp streams 8*NT weight rows (NT = 1 for M <= 8, 2 above, so the activation fragments are
// reused across more rows when there are more of them) straight from global memory into a ring of
// registers (8-byte coalesced loads, Ring chunks of 64 along K in flight, L1 bypassed), long runs
// along K (split-K only as far as needed to fill the GPU), decodes FP4 with
// bit operations and runs mma.sync m16n8k16 with fp32 accumulation (A rows >= M are zero: the
// tensor cores have ample headroom at this intensity). The activation chunk (L1/L2-resident, shared
// by the CTA's 8 warps, which cover different N rows over the same K range) is fetched one chunk
// ahead. Split-K across CTAs (partials in the workspace, reduced in a fixed order) is chosen so the
// grid fills whole waves of resident CTAs.
#include "nvfp4KernelsInternal.cuh"

#include <algorithm>
#include <cmath>

namespace nvfp4
{
namespace detail
{
namespace
{

constexpr int kWarps = 4;
constexpr int kCtasPerSm = 4; // __launch_bounds__ below: <= 128 registers

// n8 tiles per warp and ring depth per activation-row case.
template <bool HasHi>
struct GemvShape
{
    static constexpr int kNT = HasHi ? 2 : 1;
    static constexpr int kRing = HasHi ? 6 : 12;
    static constexpr int kRowsPerCta = kWarps * 8 * kNT;
};

__device__ __forceinline__ uint2 loadStreaming(void const* p)
{
    uint2 v;
    asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
}

// HasHi: M > 8, so A rows g+8 exist (else their registers and loads are skipped).
template <typename Op, typename T, bool HasHi>
__global__ void __launch_bounds__(kWarps * 32, kCtasPerSm) gemvMmaKernel(typename Op::Elem const* __restrict__ a,
    uint8_t const* __restrict__ w, uint8_t const* __restrict__ ws, float const* __restrict__ wgs, int32_t wgsLen,
    bool w4a4, float igs, T const* __restrict__ bias, T* __restrict__ y, float* __restrict__ partial, int M, int64_t N,
    int64_t K, int chunksPerSplit)
{
    constexpr int kNT = GemvShape<HasHi>::kNT;
    constexpr int kRing = GemvShape<HasHi>::kRing;
    constexpr int kRowsPerCta = GemvShape<HasHi>::kRowsPerCta;
    int const warp = threadIdx.x / 32;
    int const lane = threadIdx.x % 32;
    int const g = lane / 4;
    int const t = lane % 4;
    int64_t const nWarp = static_cast<int64_t>(blockIdx.x) * kRowsPerCta + warp * 8 * kNT;
    int64_t const numChunks = K / 64;
    int64_t const cBeg = static_cast<int64_t>(blockIdx.y) * chunksPerSplit;
    int const nLocal = static_cast<int>(max(int64_t{0}, min(numChunks, cBeg + chunksPerSplit) - cBeg));
    bool const rowLo = g < M;
    bool const rowHi = HasHi && g + 8 < M;

    uint8_t const* wRow[kNT];
    uint8_t const* sRow[kNT];
    bool nOk[kNT];
#pragma unroll
    for (int j = 0; j < kNT; ++j)
    {
        int64_t const n = nWarp + j * 8 + g;
        nOk[j] = n < N;
        int64_t const nc = nOk[j] ? n : 0;
        wRow[j] = w + nc * (K / 2) + cBeg * 32 + t * 8;
        sRow[j] = ws + nc * (K / 16) + cBeg * 4 + t;
    }
    auto const* aLo = a + static_cast<int64_t>(rowLo ? g : 0) * K + cBeg * 64 + t * 16;
    auto const* aHi = a + static_cast<int64_t>(rowHi ? g + 8 : 0) * K + cBeg * 64 + t * 16;

    uint2 wv[kRing][kNT];
    uint32_t sv[kRing][kNT];
    auto loadWeights = [&](int slot, int i) {
#pragma unroll
        for (int j = 0; j < kNT; ++j)
        {
            if (nOk[j])
            {
                wv[slot][j] = loadStreaming(wRow[j] + static_cast<int64_t>(i) * 32);
                sv[slot][j] = __ldg(sRow[j] + static_cast<int64_t>(i) * 4);
            }
            else
            {
                wv[slot][j] = make_uint2(0, 0);
                sv[slot][j] = 0;
            }
        }
    };
    uint4 const zero = make_uint4(0, 0, 0, 0);
    auto loadA = [&](uint4 (&dst)[2][2], int i) {
        int64_t const off = static_cast<int64_t>(i) * 64;
        dst[0][0] = rowLo ? __ldg(reinterpret_cast<uint4 const*>(aLo + off)) : zero;
        dst[0][1] = rowLo ? __ldg(reinterpret_cast<uint4 const*>(aLo + off + 8)) : zero;
        if (HasHi)
        {
            dst[1][0] = rowHi ? __ldg(reinterpret_cast<uint4 const*>(aHi + off)) : zero;
            dst[1][1] = rowHi ? __ldg(reinterpret_cast<uint4 const*>(aHi + off + 8)) : zero;
        }
        else
        {
            dst[1][0] = zero;
            dst[1][1] = zero;
        }
    };

#pragma unroll
    for (int p = 0; p < kRing; ++p)
    {
        if (p < nLocal)
        {
            loadWeights(p, p);
        }
    }
    // The weight ring is in flight; only now wait for the kernel that wrote the activation operand
    // (w4a4 quantization, when launched as a programmatic dependent launch; else a no-op).
    waitPrimaryGrid();
    uint4 aCur[2][2];
    uint4 aNext[2][2];
    if (nLocal > 0)
    {
        loadA(aCur, 0);
    }

    // Two accumulator sets (even / odd MMA step) halve the dependent-MMA chains.
    float acc[2][kNT][4] = {};
    for (int i0 = 0; i0 < nLocal; i0 += kRing)
    {
#pragma unroll
        for (int p = 0; p < kRing; ++p)
        {
            int const i = i0 + p;
            if (i < nLocal) // uniform across the CTA
            {
                if (i + 1 < nLocal)
                {
                    loadA(aNext, i + 1);
                }
                uint32_t b[kNT][2][4];
#pragma unroll
                for (int j = 0; j < kNT; ++j)
                {
                    uint32_t const sc = Op::scalePair(sv[p][j]);
                    decodeWeightWord<Op>(wv[p][j].x, sc, b[j][0]);
                    decodeWeightWord<Op>(wv[p][j].y, sc, b[j][1]);
                }
                if (i + kRing < nLocal)
                {
                    loadWeights(p, i + kRing);
                }
#pragma unroll
                for (int s = 0; s < 4; ++s)
                {
                    uint4 const& l = aCur[0][s >> 1];
                    uint4 const& h = aCur[1][s >> 1];
                    uint32_t const af[4] = {(s & 1) ? l.z : l.x, (s & 1) ? h.z : h.x, (s & 1) ? l.w : l.y,
                        (s & 1) ? h.w : h.y};
#pragma unroll
                    for (int j = 0; j < kNT; ++j)
                    {
                        // step s uses bytes 2s, 2s+1 of the thread's 8 weight bytes
                        Op::mma(acc[s & 1][j], af, b[j][s >> 1][(2 * s) & 3], b[j][s >> 1][(2 * s + 1) & 3]);
                    }
                }
#pragma unroll
                for (int r = 0; r < 2; ++r)
                {
                    aCur[r][0] = aNext[r][0];
                    aCur[r][1] = aNext[r][1];
                }
            }
        }
    }

    allowDependentLaunch(); // the split-K reduction may launch (it waits for this grid to finish)
    // Accumulator layout: c0,c1 = row g, cols 2t,2t+1; c2,c3 = row g+8.
#pragma unroll
    for (int j = 0; j < kNT; ++j)
    {
#pragma unroll
        for (int r = 0; r < 4; ++r)
        {
            int const m = g + (r >= 2 ? 8 : 0);
            int64_t const n = nWarp + j * 8 + 2 * t + (r & 1);
            if (m >= M || n >= N)
            {
                continue;
            }
            float const v = acc[0][j][r] + acc[1][j][r];
            if (gridDim.y == 1)
            {
                storeOutput<T>(y, m * N + n, v, epilogueAlpha(wgs, wgsLen, n, w4a4, igs, kWeightOperandScale), bias, n);
            }
            else
            {
                partial[(static_cast<int64_t>(blockIdx.y) * M + m) * N + n] = v;
            }
        }
    }
}

// Split-K count: the smallest that gives ~0.8 of a wave of resident CTAs (each split shortens the
// per-warp weight streams, whose start-up latency is not hidden, and adds partial sums), keeping at
// least 16 chunks (1024 elements of K) per split.
int64_t chooseSplits(int64_t N, int64_t K, int rowsPerCta, int smCount)
{
    int64_t const ctasN = (N + rowsPerCta - 1) / rowsPerCta;
    int64_t const numChunks = K / 64;
    int64_t const wanted = (8 * static_cast<int64_t>(kCtasPerSm) * smCount / 10 + ctasN - 1) / ctasN;
    int64_t const cap = std::max<int64_t>(1, std::min<int64_t>(kMaxSplitsGemv, numChunks / 16));
    return std::max<int64_t>(1, std::min(wanted, cap));
}

template <typename Op, typename T, bool HasHi>
cudaError_t launchGemvShape(LinearParams const& p, void const* a, int smCount, bool pdl, cudaStream_t stream)
{
    constexpr int kRowsPerCta = GemvShape<HasHi>::kRowsPerCta;
    int64_t const ctasN = (p.N + kRowsPerCta - 1) / kRowsPerCta;
    int64_t const numChunks = p.K / 64;
    int64_t splits = chooseSplits(p.N, p.K, kRowsPerCta, smCount);
    int64_t const chunksPerSplit = (numChunks + splits - 1) / splits;
    splits = (numChunks + chunksPerSplit - 1) / chunksPerSplit;

    float* partial = nullptr;
    if (splits > 1)
    {
        partial = reinterpret_cast<float*>(static_cast<uint8_t*>(p.workspace) + actOperandBytes(p.M, p.K, p.w4a4));
    }
    dim3 const grid(static_cast<unsigned>(ctasN), static_cast<unsigned>(splits));
    cudaError_t err = launchKernel(pdl, gemvMmaKernel<Op, T, HasHi>, grid, dim3(kWarps * 32), 0, stream,
        static_cast<typename Op::Elem const*>(a), reinterpret_cast<uint8_t const*>(p.weight),
        reinterpret_cast<uint8_t const*>(p.weightScale), p.weightGlobalScale, p.weightGlobalScaleLen, p.w4a4,
        p.inputGlobalScale, static_cast<T const*>(p.bias), static_cast<T*>(p.y), partial, static_cast<int>(p.M), p.N,
        p.K, static_cast<int>(chunksPerSplit));
    if (err == cudaSuccess && splits > 1)
    {
        err = launchReduceSplits(p, partial, static_cast<int>(splits), stream, pdl);
    }
    return err;
}

template <typename Op, typename T>
cudaError_t launchGemvTyped(LinearParams const& p, void const* a, int smCount, bool pdl, cudaStream_t stream)
{
    return p.M > 8 ? launchGemvShape<Op, T, true>(p, a, smCount, pdl, stream)
                   : launchGemvShape<Op, T, false>(p, a, smCount, pdl, stream);
}

} // namespace

cudaError_t launchGemv(
    LinearParams const& p, void const* a, bool bf16Operand, int smCount, bool pdl, cudaStream_t stream)
{
    if (p.M > 16)
    {
        return cudaErrorInvalidValue;
    }
    if (bf16Operand)
    {
        return launchGemvTyped<Bf16Operand, __nv_bfloat16>(p, a, smCount, pdl, stream);
    }
    switch (p.actType)
    {
    case ActType::kFLOAT: return launchGemvTyped<HalfOperand, float>(p, a, smCount, pdl, stream);
    case ActType::kHALF: return launchGemvTyped<HalfOperand, __half>(p, a, smCount, pdl, stream);
    case ActType::kBF16: return launchGemvTyped<HalfOperand, __nv_bfloat16>(p, a, smCount, pdl, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace detail
} // namespace nvfp4
