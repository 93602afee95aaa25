// Shared pieces of the NVFP4MoE kernels (not part of the public API): the workspace layout, the
// work list that groups the (token, slot) pairs by expert, the experts' epilogues, and the
// launchers that nvfp4MoE.cu dispatches to.
//
// Data flow of one launchMoE (P = M * top_k pairs; "pos" is a pair's place in expert order):
//   routing    router_logits -> pairExpert[P], pairWeight[P]              (nvfp4MoERouting.cu)
//   grouping   -> offsets[E+1] (each expert's pairs are pos offsets[e] .. offsets[e+1]-1),
//              pairPos[P], sortedPair[pos], the work list items[] of (expert, first row)
//   gather     w4a4: x-hat1[pos] = quantize(x[token of pos], G13[expert])   (fp16, exact)
//   w13        per work item and 16 columns j: gate and up rows j of the expert, then
//              h = round_T(round_T(silu(g)) * u), quantized with G2[expert] (w4a4) -> a2[pos]
//   w2         d[pos] = round_T(down(a2[pos]))                               (nvfp4MoEGemm.cu,
//                                                                            nvfp4MoESimt.cu)
//   combine    y[m] = round_T(sum_j pairWeight[m, j] * d[pairPos[m, j]]), slots in order j = 0..k-1
// Within an expert the pairs' order depends on atomics, but every output depends only on its own
// row, so y is deterministic.
#pragma once

#include "nvfp4MoEKernels.h"

// The dense kernels' helpers (nvfp4Linear/kernels/), reused: numerics and weight decoding, the
// programmatic-dependent-launch primitives, launchKernel / alignUp.
#include "nvfp4Launch.cuh"
#include "nvfp4Numerics.cuh"
#include "nvfp4Ptx.cuh"

#include <cstdint>
#include <type_traits>

namespace nvfp4
{
namespace moe
{

using detail::alignUp;

// Per-expert activation scales, copied to the workspace by kernel parameters (no host copy).
enum ScaleSlot : int32_t
{
    kW13InputScale = 0,
    kW13InputScaleInv = 1,
    kW2InputScale = 2,
    kW2InputScaleInv = 3,
    kNumScaleSlots = 4,
};

// One kernel parameter's worth of scales (under the portable 4 KB parameter limit).
constexpr int32_t kScaleChunk = 960;
struct ScaleChunk
{
    float values[kScaleChunk];
};

// Rows (pairs of one expert) per work item: 8 * NT, NT n8 tiles of the mma kernel.
constexpr int32_t kMinRowsPerItem = 8;
constexpr int32_t kMaxRowsPerItem = 64;

// A work item: `rowStart` rows into expert `expert`'s pairs, up to rowsPerItem of them.
struct WorkItem
{
    int32_t expert;
    int32_t rowStart;
};

// f(std::integral_constant<int32_t, R>{}) for R = rowsPerItem (the kernels are templates on it).
template <typename F>
cudaError_t withRowsPerItem(int32_t rowsPerItem, F&& f)
{
    switch (rowsPerItem)
    {
    case 8: return f(std::integral_constant<int32_t, 8>{});
    case 16: return f(std::integral_constant<int32_t, 16>{});
    case 32: return f(std::integral_constant<int32_t, 32>{});
    case 64: return f(std::integral_constant<int32_t, 64>{});
    default: return cudaErrorInvalidValue;
    }
}

// Upper bound of the number of work items for P pairs: sum_e ceil(c_e / R) <= P / R + active experts.
inline int64_t maxWorkItems(int64_t pairs, int32_t numExperts, int32_t rowsPerItem)
{
    return pairs / rowsPerItem + (pairs < numExperts ? pairs : numExperts);
}

// Where everything lives in the workspace (each part 256-byte aligned).
struct Workspace
{
    float* scales = nullptr;          // [4][E] (ScaleSlot)
    int32_t* pairExpert = nullptr;    // [P]
    float* pairWeight = nullptr;      // [P] (NaN for a token whose logits hold a NaN)
    int32_t* pairPos = nullptr;       // [P] pos of pair p
    int32_t* sortedPair = nullptr;    // [P] pair at pos
    int32_t* offsets = nullptr;       // [E + 1] then the number of work items
    WorkItem* items = nullptr;        // [maxWorkItems(P, E, kMinRowsPerItem)]
    __half* xhat1 = nullptr;          // [P, H] w4a4 only
    void* a2 = nullptr;               // [P, I] fp16 x-hat (w4a4) or T (w4a16)
    void* d = nullptr;                // [P, H] T
    size_t bytes = 0;

    Workspace(void* base, int64_t M, int32_t E, int32_t topK, int64_t H, int64_t I, bool w4a4, ActType actType)
    {
        int64_t const P = M * topK;
        size_t const t = actType == ActType::kFLOAT ? 4 : 2;
        auto* p = static_cast<uint8_t*>(base);
        auto take = [&](size_t size) {
            uint8_t* at = p ? p + bytes : nullptr;
            bytes += alignUp(size, 256);
            return at;
        };
        scales = reinterpret_cast<float*>(take(sizeof(float) * kNumScaleSlots * E));
        pairExpert = reinterpret_cast<int32_t*>(take(sizeof(int32_t) * P));
        pairWeight = reinterpret_cast<float*>(take(sizeof(float) * P));
        pairPos = reinterpret_cast<int32_t*>(take(sizeof(int32_t) * P));
        sortedPair = reinterpret_cast<int32_t*>(take(sizeof(int32_t) * P));
        offsets = reinterpret_cast<int32_t*>(take(sizeof(int32_t) * (E + 2))); // [E + 1]: number of work items
        items = reinterpret_cast<WorkItem*>(take(sizeof(WorkItem) * maxWorkItems(P, E, kMinRowsPerItem)));
        xhat1 = reinterpret_cast<__half*>(take(w4a4 ? sizeof(__half) * P * H : 0));
        a2 = take((w4a4 ? 2 : t) * P * I);
        d = take(t * P * H);
    }
};

// Process-wide overrides for tests and benchmarks (C API nvfp4_moe_set_options); 0 = automatic.
struct Options
{
    int32_t gemm = 0;        // 1: SIMT, 2: mma.sync
    int32_t rowsPerItem = 0; // 8, 16, 32 or 64
    int32_t grouping = 0;    // 1: one CTA does routing, grouping and gather; 2: one kernel each
};
Options& options();

// ---------------------------------------------------------------------------------------------
// Launchers of nvfp4MoERouting.cu.

struct RoutingArgs
{
    void const* x;
    void const* logits;
    int64_t M;
    int32_t E, topK;
    int64_t H;
    bool normalize, w4a4;
    int32_t rowsPerItem;
    ActType actType;
    Workspace const* ws;
    ScaleChunk const* firstScales; // the first kScaleChunk scale values (written by the first kernel)
    int32_t firstScaleCount;
};

// Copies scale values [offset, offset + count) of the table (count <= kScaleChunk).
cudaError_t launchUploadScales(ScaleChunk const& chunk, int32_t offset, int32_t count, float* table, cudaStream_t stream);
// Routing, grouping and (w4a4) gather: one CTA for small problems, else three kernels.
cudaError_t launchRouting(RoutingArgs const& a, bool singleCta, cudaStream_t stream);
// y = combine of d (pdl: may start while w2 drains, sm_90+).
cudaError_t launchCombine(void* y, Workspace const& ws, int64_t M, int32_t topK, int64_t H, ActType actType, bool pdl,
    cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// The expert linears (nvfp4MoEGemm.cu: mma.sync, nvfp4MoESimt.cu: SIMT).

struct ExpertLinearArgs
{
    void const* a;                 // activation operand rows [., K]: xhat1 / a2 (pos-indexed) or x
    int32_t const* rowOfPos;       // non-null: the operand row of pos is rowOfPos[pos] / topK (x by token)
    int32_t topK;
    uint8_t const* w;              // [E, N, K/2]
    uint8_t const* ws;             // [E, N, K/16]
    float const* wgs;              // [E, N]
    int64_t N, K;
    WorkItem const* items;
    int32_t const* offsets;        // [E + 1], then the number of items
    int32_t numExperts;
    int64_t maxItems;
    int32_t rowsPerItem;
    bool w4a4;
    float const* inputScale;       // [E] s_in of this linear's activation (alpha)
    // w13 (fused SiLU gating): N = 2I; out = a2 [P, I], quantized with nextInputScaleInv (w4a4).
    bool gated;
    int64_t I;
    float const* nextInputScaleInv; // [E] G of the down projection's input
    void* out;                     // w13: a2; w2: d [P, N] (T)
    ActType actType;               // T
    bool pdl;
};

// The mma.sync kernel: sm >= 80, K % 128 == 0, a 16-bit operand (fp16 x-hat or x, bf16 x),
// 16-byte aligned rows. bf16Operand: the operand is bf16 (w4a16 with T = bf16).
bool mmaSupports(ExpertLinearArgs const& a, int sm);
cudaError_t launchExpertLinearMma(ExpertLinearArgs const& a, bool bf16Operand, cudaStream_t stream);
// The SIMT kernel: any architecture and shape; the operand is fp16 x-hat (w4a4) or T (w4a16).
cudaError_t launchExpertLinearSimt(ExpertLinearArgs const& a, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// Device helpers shared by the kernels.

template <typename T>
__device__ __forceinline__ float roundTo(float v)
{
    return detail::toFloat<T>(detail::fromFloat<T>(v));
}

// silu(v) = v / (1 + exp(-v)), float32 (contract step 3), each operation rounded once.
__device__ __forceinline__ float silu(float v)
{
    return __fdiv_rn(v, __fadd_rn(1.0f, expf(-v)));
}

// The work item of this CTA; false if there is none (the grid covers the upper bound).
struct ItemRows
{
    int32_t expert;
    int32_t rows;    // valid rows, 1..rowsPerItem
    int32_t posBase; // pos of row 0
};

__device__ __forceinline__ bool itemRows(ExpertLinearArgs const& a, int64_t item, ItemRows& r)
{
    int32_t const numItems = a.offsets[a.numExperts + 1];
    if (item >= numItems)
    {
        return false;
    }
    WorkItem const it = a.items[item];
    int32_t const count = a.offsets[it.expert + 1] - a.offsets[it.expert];
    r.expert = it.expert;
    r.rows = min(a.rowsPerItem, count - it.rowStart);
    r.posBase = a.offsets[it.expert] + it.rowStart;
    return true;
}

// The operand row of pos.
__device__ __forceinline__ int64_t operandRow(ExpertLinearArgs const& a, int32_t pos)
{
    return a.rowOfPos != nullptr ? a.rowOfPos[pos] / a.topK : pos;
}

// Weight row of local row lr (0..31) of N tile `tile`: w2 rows 32*tile + lr; w13 (gated) gate rows
// 16*tile + lr for lr < 16 and the matching up rows I + 16*tile + lr - 16.
__device__ __forceinline__ int64_t weightRow(ExpertLinearArgs const& a, int64_t tile, int32_t lr)
{
    if (a.gated)
    {
        return (lr < 16 ? 0 : a.I - 16) + 16 * tile + lr;
    }
    return 32 * tile + lr;
}

// The epilogue of one CTA tile (32 weight rows x rows): `acc(lr, m)` is the dot product of weight
// row lr and operand row m (times operandScale, undone by the alpha multiplier). Called by all 128
// threads (the gated epilogue shuffles within half-warps).
template <typename T, typename Acc>
__device__ __forceinline__ void expertEpilogue(
    ExpertLinearArgs const& a, ItemRows const& r, int64_t tile, float operandScale, Acc const& acc)
{
    int64_t const e = r.expert;
    float const s = a.w4a4 ? a.inputScale[e] : 1.0f;
    float const* wgs = a.wgs + e * a.N;
    if (!a.gated)
    {
        for (int32_t idx = threadIdx.x; idx < 32 * a.rowsPerItem; idx += blockDim.x)
        {
            int32_t const lr = idx % 32;
            int32_t const m = idx / 32;
            int64_t const n = 32 * tile + lr;
            if (m < r.rows && n < a.N)
            {
                detail::storeOutput<T>(static_cast<T*>(a.out), static_cast<int64_t>(r.posBase + m) * a.N + n,
                    acc(lr, m), detail::epilogueAlpha(wgs, static_cast<int32_t>(a.N), n, a.w4a4, s, operandScale),
                    nullptr, n);
            }
        }
        return;
    }
    // Gated: 16 consecutive threads hold row m's 16 columns j = one FP8 block of a2.
    float const G = a.w4a4 ? a.nextInputScaleInv[e] : 1.0f;
    float const invG = math::inverseGlobalScale(G);
    for (int32_t base = 0; base < 16 * a.rowsPerItem; base += blockDim.x)
    {
        int32_t const idx = base + threadIdx.x;
        int32_t const jj = idx % 16;
        int32_t const m = idx / 16;
        int64_t const j = 16 * tile + jj;
        float const g = roundTo<T>(__fmul_rn(acc(jj, m),
            detail::epilogueAlpha(wgs, static_cast<int32_t>(a.N), j, a.w4a4, s, operandScale)));
        float const u = roundTo<T>(__fmul_rn(acc(16 + jj, m),
            detail::epilogueAlpha(wgs, static_cast<int32_t>(a.N), a.I + j, a.w4a4, s, operandScale)));
        float const h = roundTo<T>(__fmul_rn(roundTo<T>(silu(g)), u));
        bool const valid = m < r.rows;
        int64_t const at = static_cast<int64_t>(r.posBase + m) * a.I + j;
        if (a.w4a4)
        {
            float amax = math::absMaxNaN(h, 0.0f);
#pragma unroll
            for (int o = 8; o > 0; o /= 2)
            {
                amax = math::absMaxNaN(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, o));
            }
            math::ActBlockScale const sb = math::actBlockScale(amax, G, invG);
            if (valid)
            {
                static_cast<__half*>(a.out)[at] = __float2half_rn(__fmul_rn(math::actQuantize(h, sb.quantMul), sb.scale));
            }
        }
        else if (valid)
        {
            static_cast<T*>(a.out)[at] = detail::fromFloat<T>(h);
        }
    }
}

} // namespace moe
} // namespace nvfp4
