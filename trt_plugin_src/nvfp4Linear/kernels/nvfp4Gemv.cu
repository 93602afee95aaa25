// Small-M NVFP4 linear (M <= 64 when K % 128 == 0, else M <= 16; decode): memory-bound on the
// weights (0.5625 B per weight) at small M. Two kernels (dispatch in launchGemvTyped):
//  * gemvWideKernel (K % 128 == 0, the common case): the weights are the MMA's A operand, 16-byte
//    weight loads, 32 rows per warp (64 at M = 17-32 on large weights), in-CTA split-K over 4 (8,
//    16) warps reduced in shared memory, the strided fp16 decode; NT = ceil(M / 8) activation n8
//    tiles per warp. Its shape and ring depth come from the tuning table (nvfp4Tuning.h).
//  * gemvMmaKernel (K = 64 mod 128), described here:
// Each warp streams 8*NT weight rows (NT = 1 for M <= 8, 2 above, so the activation fragments are
// reused across more rows when there are more of them) straight from global memory into a ring of
// registers (8-byte coalesced loads, Ring chunks of 64 along K in flight, L1 bypassed), long runs
// along K (split-K only as far as needed to fill the GPU), decodes FP4 with
// bit operations and runs mma.sync m16n8k16 with fp32 accumulation (A rows >= M are zero: the
// tensor cores have ample headroom at this intensity). The activation chunk (L1/L2-resident, shared
// by the CTA's 8 warps, which cover different N rows over the same K range) is fetched one chunk
// ahead. Split-K across CTAs (partials in the workspace, reduced in a fixed order) is chosen so the
// grid fills whole waves of resident CTAs.
#include "nvfp4Launch.cuh"
#include "nvfp4MmaChunk.cuh"
#include "nvfp4Numerics.cuh"
#include "nvfp4Ptx.cuh"
#include "nvfp4Tuning.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

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
    waitPrimaryGridAfterIssuedLoads();
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

// Split-K count for `resident` CTA slots: the smallest that gives ~0.8 of a wave (each split
// shortens the per-warp weight streams, whose start-up latency is not hidden, and adds partial
// sums), never so many that the grid spills into a second wave (4096->6144 at M <= 16: 3 splits
// of 192 CTAs on 528 slots ran 17-20 % slower than 2, H200), and at most `cap`.
int64_t splitsForOneWave(int64_t ctasN, int64_t resident, int64_t cap)
{
    int64_t const wanted = (8 * resident / 10 + ctasN - 1) / ctasN;
    return std::max<int64_t>(1, std::min({wanted, resident / ctasN, cap}));
}

// The 64-chunk kernel keeps at least 16 chunks (1024 elements of K) per split.
int64_t chooseSplits(int64_t N, int64_t K, int rowsPerCta, int smCount)
{
    int64_t const ctasN = (N + rowsPerCta - 1) / rowsPerCta;
    int64_t const cap = std::max<int64_t>(1, std::min<int64_t>(kMaxSplitsGemv, K / 64 / 16));
    return splitsForOneWave(ctasN, static_cast<int64_t>(kCtasPerSm) * smCount, cap);
}

template <typename Op, typename T, bool HasHi>
cudaError_t launchGemvShape(LinearParams const& p, void const* a, int smCount, bool pdl, cudaStream_t stream)
{
    constexpr int kRowsPerCta = GemvShape<HasHi>::kRowsPerCta;
    int64_t const ctasN = (p.N + kRowsPerCta - 1) / kRowsPerCta;
    SplitK const sk = planSplitK(p, p.K / 64, chooseSplits(p.N, p.K, kRowsPerCta, smCount));
    dim3 const grid(static_cast<unsigned>(ctasN), static_cast<unsigned>(sk.splits));
    cudaError_t const err = launchKernel(pdl, gemvMmaKernel<Op, T, HasHi>, grid, dim3(kWarps * 32), 0, stream,
        static_cast<typename Op::Elem const*>(a), reinterpret_cast<uint8_t const*>(p.weight),
        reinterpret_cast<uint8_t const*>(p.weightScale), p.weightGlobalScale, p.weightGlobalScaleLen, p.w4a4,
        p.inputGlobalScale, static_cast<T const*>(p.bias), static_cast<T*>(p.y), sk.partial, static_cast<int>(p.M),
        p.N, p.K, sk.chunksPerSplit);
    return reduceSplitK(p, sk, err, stream, pdl);
}

// ---------------------------------------------------------------------------------------------
// Wide GEMV (K % 128 == 0, the common case): the weights are the MMA's A operand (m16 = 16 weight
// rows, so one MMA covers 256 weights) and the activation the B operand (n8 = activation rows
// 0..7, one more n8 tile per further 8 rows: NT = ceil(M / 8) <= 8). Thread t of a quad owns 32 contiguous K elements of a
// 128-chunk (two FP8 blocks, 16 weight bytes per row: one 16-byte load, the two scales one 16-bit
// load); MMA step s (0..7) pairs logical k (2t, 2t+1) with physical 32t+4s+{0,1} and (2t+8, 2t+9)
// with 32t+4s+{2,3}, identically for the activation (4 x 16-byte loads per row per chunk).
// A warp owns 16 * MT rows (MT m16 tiles: 2, or 4 where the tuning table says) over its share of
// the CTA's K range; the CTA's warps sum their partial results in shared memory in a fixed order
// (no extra launch, deterministic).
// The weights stream through a register ring of kDepth chunks (16-byte loads, L1 bypassed); the
// activation (L1/L2-resident) is loaded at the start of each chunk, ahead of that chunk's decode.
constexpr int kWideWarps = 4; // warps per CTA = ways of the in-CTA K split

// Mid M (16 < M <= 64): NT = ceil(M / 8) n8 activation tiles per warp (3..8); the weight work per
// chunk is unchanged, MMAs and activation loads grow with NT. Above 2 tiles the activation words
// are loaded per 32-bit word group q (NT uint4 live instead of 4 NT) to bound registers.
template <int NT, int MT>
struct WideShape
{
    static constexpr int kRows = 16 * MT; // weight rows per warp and per CTA
    static constexpr int kDepth = tuning::gemvRingDepth(NT);
    static constexpr int kMinCtas = tuning::gemvMinCtasPerSm(NT, MT);
    static constexpr bool kActPerWord = NT > 2; // activation loaded per word group q
};

// L2Prefetch: the L2 fetches the 256-byte block around the 64 bytes a row needs per chunk, so
// DRAM serves each row in longer bursts; pays off only where the row streams run long (it fetches
// up to 192 bytes past the end of a warp's K range).
template <bool L2Prefetch>
__device__ __forceinline__ uint4 loadStreaming16(void const* p)
{
    uint4 v;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    constexpr bool kHint = false; // .L2::256B needs sm_80 (the GEMV is never dispatched below)
#else
    constexpr bool kHint = L2Prefetch;
#endif
    if constexpr (kHint)
    {
        asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                     : "l"(p));
    }
    else
    {
        asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                     : "l"(p));
    }
    return v;
}

__device__ __forceinline__ uint32_t loadScalePair(void const* p)
{
    unsigned short v;
    asm volatile("ld.global.nc.L1::no_allocate.u16 %0, [%1];\n" : "=h"(v) : "l"(p));
    return v;
}

// ActPairs: the activation is x-hat in gemvPairPos's order (w4a4), so the fp16 strided decode's
// pairs meet whole activation words. kCtaWarps: the in-CTA K split (kWideWarps, or 2 or 4 times that
// in place of as many CTA splits: the same warps per SM, the sums in shared memory).
template <typename Op, typename T, int NT, int MT, bool L2Prefetch, bool ActPairs, int kCtaWarps = kWideWarps>
__global__ void __launch_bounds__(kCtaWarps * 32, WideShape<NT, MT>::kMinCtas * kWideWarps / kCtaWarps) gemvWideKernel(
    typename Op::Elem const* __restrict__ a, uint8_t const* __restrict__ w, uint8_t const* __restrict__ ws,
    float const* __restrict__ wgs, int32_t wgsLen, bool w4a4, float igs, T const* __restrict__ bias,
    T* __restrict__ y, float* __restrict__ partial, int M, int64_t N, int64_t K, int chunksPerSplit)
{
    using Shape = WideShape<NT, MT>;
    constexpr int kDepth = Shape::kDepth;
    // fp16 operand: strided-pair decode, and w' = ŵ * 2^-14 (the scale pair straight from the FP8
    // conversion, no x 2^7): exact in fp16 (>= 2^-24, <= 6 significant bits, <= 0.17); the epilogue
    // multiplies by alpha * 2^14.
    constexpr bool kFast = std::is_same<Op, HalfOperand>::value;
    constexpr bool kStrided = kFast || NT <= tuning::kGemvBf16StridedMaxNt;
    constexpr float kOperandScale = kFast ? kWeightOperandScale * kWeightOperandScale : kWeightOperandScale;
    static_assert(kCtaWarps % kWideWarps == 0 && Shape::kMinCtas * kWideWarps / kCtaWarps >= 1, "CTAs per SM");
    __shared__ float red[kCtaWarps][MT * NT * 4][32];

    int const warp = threadIdx.x / 32;
    int const lane = threadIdx.x % 32;
    int const g = lane / 4;
    int const t = lane % 4;
    int64_t const nBase = static_cast<int64_t>(blockIdx.x) * Shape::kRows;
    int64_t const numChunks = K / 128;
    int64_t const cSplit = static_cast<int64_t>(blockIdx.y) * chunksPerSplit;
    int const splitLen = static_cast<int>(max(int64_t{0}, min(numChunks, cSplit + chunksPerSplit) - cSplit));
    int const per = (splitLen + kCtaWarps - 1) / kCtaWarps;
    int const cW = min(splitLen, warp * per);
    int const nLocal = min(splitLen, cW + per) - cW;
    int64_t const c0 = cSplit + cW;

    // Rows >= N read row N-1 and activation rows >= M read row M-1 (valid memory, no predicates):
    // they only feed accumulator entries that are never stored.
    uint8_t const* wRow[MT][2];
    uint8_t const* sRow[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
    {
#pragma unroll
        for (int h = 0; h < 2; ++h)
        {
            int64_t const n = min(nBase + mt * 16 + h * 8 + g, N - 1);
            wRow[mt][h] = w + n * (K / 2) + c0 * 64 + t * 16;
            sRow[mt][h] = ws + n * (K / 16) + c0 * 8 + t * 2;
        }
    }
    uint4 const* aRow[NT];
#pragma unroll
    for (int j = 0; j < NT; ++j)
    {
        int const m = min(j * 8 + g, M - 1);
        aRow[j] = reinterpret_cast<uint4 const*>(a + static_cast<int64_t>(m) * K + c0 * 128 + t * 32);
    }

    uint4 wv[kDepth][MT][2];
    uint32_t sv[kDepth][MT][2];
    // Chunk `i` relative to the running pointers.
    auto loadWeights = [&](int slot, int i) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
        {
#pragma unroll
            for (int h = 0; h < 2; ++h)
            {
                wv[slot][mt][h] = loadStreaming16<L2Prefetch>(wRow[mt][h] + i * 64);
                sv[slot][mt][h] = loadScalePair(sRow[mt][h] + i * 8);
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
    // The weight ring is in flight; only now wait for the kernel that wrote the activation operand
    // (w4a4 quantization as a programmatic dependent launch; else a no-op).
    waitPrimaryGridAfterIssuedLoads();

    float acc[MT][NT][4] = {};
    for (int i0 = 0; i0 < nLocal; i0 += kDepth)
    {
#pragma unroll
        for (int p = 0; p < kDepth; ++p)
        {
            if (i0 + p < nLocal) // uniform across the warp
            {
                constexpr bool kPerWord = Shape::kActPerWord;
                uint4 aCur[NT][kPerWord ? 1 : 4];
                if constexpr (!kPerWord)
                {
#pragma unroll
                    for (int j = 0; j < NT; ++j)
                    {
#pragma unroll
                        for (int q = 0; q < 4; ++q)
                        {
                            aCur[j][q] = __ldg(aRow[j] + p * 16 + q);
                        }
                    }
                }
                uint32_t sc[MT][2][2];
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
                {
#pragma unroll
                    for (int h = 0; h < 2; ++h)
                    {
                        if constexpr (kFast)
                        {
                            // Both block scales in one FP8x2 -> f16x2 conversion (exact, NaN kept).
                            __half2_raw const raw = __nv_cvt_fp8x2_to_halfraw2(
                                static_cast<__nv_fp8x2_storage_t>(sv[p][mt][h]), __NV_E4M3);
                            uint32_t const both = static_cast<uint32_t>(raw.x) | (static_cast<uint32_t>(raw.y) << 16);
                            sc[mt][h][0] = __byte_perm(both, 0u, 0x1010);
                            sc[mt][h][1] = __byte_perm(both, 0u, 0x3232);
                        }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
                        else if constexpr (std::is_same<Op, Bf16Operand>::value)
                        {
                            // s_w * 2^119 as bf16 pairs (Bf16Operand::scalePair without its software
                            // FP8 decode): FP8x2 -> f16x2 -> f32 (exact), x 2^119 (exact), -> bf16 (exact).
                            __half2_raw const raw = __nv_cvt_fp8x2_to_halfraw2(
                                static_cast<__nv_fp8x2_storage_t>(sv[p][mt][h]), __NV_E4M3);
                            float2 const f = __half22float2(__half2(raw));
                            __nv_bfloat162 const s0 = __float2bfloat162_rn(__fmul_rn(f.x, 6.64613997892457936e35f));
                            __nv_bfloat162 const s1 = __float2bfloat162_rn(__fmul_rn(f.y, 6.64613997892457936e35f));
                            sc[mt][h][0] = *reinterpret_cast<uint32_t const*>(&s0);
                            sc[mt][h][1] = *reinterpret_cast<uint32_t const*>(&s1);
                        }
#endif
                        else
                        {
                            sc[mt][h][0] = Op::scalePair(sv[p][mt][h] & 0xFFu);
                            sc[mt][h][1] = Op::scalePair(sv[p][mt][h] >> 8);
                        }
                    }
                }
                mmaChunk128<Op, MT, NT, kPerWord, kStrided, kFast && ActPairs>(wv[p], sc, aCur, aRow, p * 16, acc);
                if (i0 + p + kDepth < nLocal)
                {
                    loadWeights(p, p + kDepth);
                }
            }
        }
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
        {
#pragma unroll
            for (int h = 0; h < 2; ++h)
            {
                wRow[mt][h] += kDepth * 64;
                sRow[mt][h] += kDepth * 8;
            }
        }
#pragma unroll
        for (int j = 0; j < NT; ++j)
        {
            aRow[j] += kDepth * 16;
        }
    }

    allowDependentLaunch(); // the split-K reduction, if any, may launch (it waits for this grid to finish)
    storeAccumulators(red, acc, warp, lane);
    __syncthreads();
    // Accumulator layout (m16n8): c0,c1 = weight row g, activation rows 2t, 2t+1; c2,c3 = row g+8.
    for (int e = threadIdx.x; e < MT * NT * 4 * 32; e += kCtaWarps * 32)
    {
        int const idx = e / 32;
        int const l = e % 32;
        int const r = idx % 4;
        int const j = (idx / 4) % NT;
        int const mt = idx / (4 * NT);
        int const m = j * 8 + 2 * (l % 4) + (r & 1);
        int64_t const n = nBase + mt * 16 + l / 4 + (r >= 2 ? 8 : 0);
        if (m >= M || n >= N)
        {
            continue;
        }
        float const v = sumOverWarps(red, idx, l);
        if (gridDim.y == 1)
        {
            storeOutput<T>(y, m * N + n, v, epilogueAlpha(wgs, wgsLen, n, w4a4, igs, kOperandScale), bias, n);
        }
        else
        {
            // The reduction applies alpha * 2^7: bring the fast path's 2^-14 operand to 2^-7 (exact).
            partial[(static_cast<int64_t>(blockIdx.y) * M + m) * N + n]
                = kFast ? __fmul_rn(v, kOperandScale / kWeightOperandScale) : v;
        }
    }
}

static_assert(tuning::kGemvWide.maxSplits <= kMaxSplitsGemv, "the workspace holds kMaxSplitsGemv partial sums");

// One grid of the wide kernel with kCtaWarps warps per CTA and `sk`'s CTA splits.
template <typename Op, typename T, int NT, int MT, bool ActPairs, int kCtaWarps>
cudaError_t launchWideGrid(LinearParams const& p, void const* a, int64_t ctasN, SplitK const& sk, bool pdl,
    cudaStream_t stream)
{
    dim3 const grid(static_cast<unsigned>(ctasN), static_cast<unsigned>(sk.splits));
    auto kernel = gemvWideKernel<Op, T, NT, MT, false, ActPairs, kCtaWarps>;
    if constexpr (NT == 1)
    {
        // .L2::256B: -7..-17 % at 16-28 chunks per warp and M <= 8 (8192->28672, 28672->8192);
        // +6..10 % at 8 chunks per warp (4096->14336), +4 % at M = 16 (H100).
        if ((sk.chunksPerSplit + kCtaWarps - 1) / kCtaWarps >= tuning::kGemvWide.l2HintChunks)
        {
            kernel = gemvWideKernel<Op, T, NT, MT, true, ActPairs, kCtaWarps>;
        }
    }
    cudaError_t const err = launchKernel(pdl, kernel, grid, dim3(kCtaWarps * 32), 0, stream,
        static_cast<typename Op::Elem const*>(a), reinterpret_cast<uint8_t const*>(p.weight),
        reinterpret_cast<uint8_t const*>(p.weightScale), p.weightGlobalScale, p.weightGlobalScaleLen, p.w4a4,
        p.inputGlobalScale, static_cast<T const*>(p.bias), static_cast<T*>(p.y), sk.partial, static_cast<int>(p.M),
        p.N, p.K, sk.chunksPerSplit);
    return reduceSplitK(p, sk, err, stream, pdl);
}

// Whether `splits` CTA splits of ctasN columns may run as ctasN CTAs of `splits` times the warps with
// the same load on the SMs: no SM gets more warps than under the split grid (4096->6144, 2 splits:
// 192 CTAs of 8 warps put 16 warps on 60 SMs, the 384 of 4 at most 12), and about as many SMs work
// (4096->1024, 4 splits: 32 CTA columns would leave 100 SMs idle instead of 4).
bool wideCtasKeepLoad(int64_t ctasN, int64_t splits, int smCount)
{
    auto const ceilDiv = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
    bool const noHeavierSm = splits * ceilDiv(ctasN, smCount) <= ceilDiv(ctasN * splits, smCount);
    bool const asManySms = 10 * std::min<int64_t>(ctasN, smCount) >= 9 * std::min<int64_t>(ctasN * splits, smCount);
    return noHeavierSm && asManySms;
}

// The split plan fills ~0.8 of a wave with kWideWarps-warp CTAs. Two or four splits run instead as
// CTAs of 2x or 4x the warps where registers, the shared-memory sums and the SMs' load allow it:
// each warp over the same length of K, summed in shared memory, so neither the partial sums nor
// the reduction launch remain.
template <typename Op, typename T, int NT, int MT, bool ActPairs>
cudaError_t launchGemvWide(LinearParams const& p, void const* a, int smCount, bool pdl, cudaStream_t stream)
{
    using Shape = WideShape<NT, MT>;
    int64_t const ctasN = (p.N + Shape::kRows - 1) / Shape::kRows;
    int64_t const numChunks = p.K / 128;
    // Every warp keeps >= 2 chunks.
    int64_t const resident = static_cast<int64_t>(Shape::kMinCtas) * smCount;
    int64_t const cap
        = std::max<int64_t>(1, std::min<int64_t>(tuning::kGemvWide.maxSplits, numChunks / (2 * kWideWarps)));
    int64_t const splits = splitsForOneWave(ctasN, resident, cap);
    constexpr int kMinCtas = Shape::kMinCtas;
    // The warps' sums (red) within the 48 KB of static shared memory of one CTA.
    constexpr auto sumsFit = [](int warps) { return sizeof(float) * 32 * 4 * MT * NT * warps <= 48 * 1024; };
    bool const wide = wideCtasKeepLoad(ctasN, splits, smCount);
    if constexpr (kMinCtas >= 4 && sumsFit(4 * kWideWarps))
    {
        if (wide && splits == 4)
        {
            return launchWideGrid<Op, T, NT, MT, ActPairs, 4 * kWideWarps>(p, a, ctasN, planSplitK(p, numChunks, 1), pdl, stream);
        }
    }
    if constexpr (kMinCtas >= 2 && sumsFit(2 * kWideWarps))
    {
        if (wide && splits == 2)
        {
            return launchWideGrid<Op, T, NT, MT, ActPairs, 2 * kWideWarps>(p, a, ctasN, planSplitK(p, numChunks, 1), pdl, stream);
        }
    }
    return launchWideGrid<Op, T, NT, MT, ActPairs, kWideWarps>(p, a, ctasN, planSplitK(p, numChunks, splits), pdl, stream);
}

// The wide kernel instantiated for NT = ceil(M / 8): tries NT, NT + 1, ... up to the table's maxNt;
// m16 tiles per warp by the tuning table: four (large weights, NT = 3-4), one (small weights, NT = 1),
// else two.
template <typename Op, typename T, bool ActPairs, int NT = 1>
cudaError_t launchGemvWideForM(LinearParams const& p, void const* a, int smCount, bool pdl, cudaStream_t stream)
{
    if constexpr (NT <= tuning::kGemvWide.maxNt)
    {
        if ((p.M + 7) / 8 != NT)
        {
            return launchGemvWideForM<Op, T, ActPairs, NT + 1>(p, a, smCount, pdl, stream);
        }
        if constexpr (NT >= tuning::kGemvFourTilesMinNt && NT <= tuning::kGemvFourTilesMaxNt)
        {
            if (p.N * p.K >= tuning::kGemvFourTilesMinWeights)
            {
                return launchGemvWide<Op, T, NT, 4, ActPairs>(p, a, smCount, pdl, stream);
            }
        }
        if constexpr (NT == 1)
        {
            if (p.N * p.K < tuning::kGemvOneTileMaxWeights)
            {
                return launchGemvWide<Op, T, NT, 1, ActPairs>(p, a, smCount, pdl, stream);
            }
        }
        return launchGemvWide<Op, T, NT, 2, ActPairs>(p, a, smCount, pdl, stream);
    }
    else
    {
        return cudaErrorInvalidValue;
    }
}

template <typename Op, typename T>
cudaError_t launchGemvTyped(LinearParams const& p, void const* a, int smCount, bool pdl, cudaStream_t stream)
{
    if (p.K % 128 == 0)
    {
        // Only w4a4 has its x-hat in the pair order, and w4a16 reads fp16 x only (fp16 operand).
        if constexpr (std::is_same<Op, HalfOperand>::value && std::is_same<T, __half>::value)
        {
            return gemvReadsActivationPairs(p) ? launchGemvWideForM<Op, T, true>(p, a, smCount, pdl, stream)
                                               : launchGemvWideForM<Op, T, false>(p, a, smCount, pdl, stream);
        }
        else
        {
            constexpr bool kPairs = std::is_same<Op, HalfOperand>::value;
            return gemvReadsActivationPairs(p) == kPairs ? launchGemvWideForM<Op, T, kPairs>(p, a, smCount, pdl, stream)
                                                         : cudaErrorInvalidValue;
        }
    }
    if (p.M > 16)
    {
        return cudaErrorNotSupported; // the 64-chunk kernel covers M <= 16 only
    }
    // K = 64 (mod 128): the 64-chunk kernel.
    return p.M > 8 ? launchGemvShape<Op, T, true>(p, a, smCount, pdl, stream)
                   : launchGemvShape<Op, T, false>(p, a, smCount, pdl, stream);
}

} // namespace

bool gemvReadsActivationPairs(LinearParams const& p)
{
    return p.w4a4 && p.K % 128 == 0;
}

// Largest M the GEMV kernels take for this K (nvfp4Launch.cuh; used by the dispatch
// and the workspace size): the wide kernel (K % 128 == 0) up to 8 n8 tiles, the 64-chunk one 16.
int64_t gemvMaxM(int64_t K)
{
    return K % 128 == 0 ? 8 * tuning::kGemvWide.maxNt : 16;
}

cudaError_t launchGemv(
    LinearParams const& p, void const* a, bool bf16Operand, int smCount, bool pdl, cudaStream_t stream)
{
    if (p.M > gemvMaxM(p.K))
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
