// Entry points of the NVFP4MoE kernels: argument checks, workspace size and the sequence of
// launches (data flow: nvfp4MoEInternal.cuh).
#include "nvfp4MoEInternal.cuh"

#include <algorithm>
#include <cmath>
#include <vector>

namespace nvfp4
{
namespace moe
{

Options& options()
{
    static Options o;
    return o;
}

namespace
{

// Tiny problems group in one CTA (one launch instead of three). The W4A4 gather is that CTA's
// bottleneck: on an H200 (E = 128, top-8, H = 2048) one CTA and three kernels tie at 1024 gather
// blocks (M = 1, 34 us) and three kernels win from 2048 on (M = 2: 46 vs 53 us; M = 32: 183 vs 361).
constexpr int64_t kSingleCtaMaxTokens = 64;
constexpr int64_t kSingleCtaMaxBlocks = 1024; // gather blocks of 16 (P * H / 16)

// Rows per work item: about the average number of pairs per expert, so that most experts take one
// item (their weights streamed once) without many idle MMA columns.
int32_t chooseRowsPerItem(int64_t pairs, int32_t numExperts)
{
    if (options().rowsPerItem != 0)
    {
        return options().rowsPerItem;
    }
    double const average = static_cast<double>(pairs) / numExperts;
    return average <= 8 ? 8 : average <= 16 ? 16 : average <= 32 ? 32 : 64;
}

bool positiveFinite(float v)
{
    return std::isfinite(v) && v > 0.0f;
}

cudaError_t deviceSm(int& sm)
{
    int dev = 0, major = 0, minor = 0;
    cudaError_t err = cudaGetDevice(&dev);
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    sm = major * 10 + minor;
    return err;
}

cudaError_t launchExpertLinear(ExpertLinearArgs const& a, int sm, cudaStream_t stream)
{
    int32_t const forced = options().gemm;
    bool const mma = forced == 2 || (forced == 0 && mmaSupports(a, sm));
    if (mma && !mmaSupports(a, sm))
    {
        return cudaErrorNotSupported;
    }
    bool const bf16Operand = !a.w4a4 && a.actType == ActType::kBF16;
    return mma ? launchExpertLinearMma(a, bf16Operand, stream) : launchExpertLinearSimt(a, stream);
}

} // namespace
} // namespace moe

size_t moeWorkspaceSize(int64_t M, int32_t numExperts, int32_t topK, int64_t hiddenSize, int64_t intermediateSize,
    bool w4a4, ActType actType)
{
    if (M <= 0 || numExperts <= 0 || topK <= 0 || hiddenSize <= 0 || intermediateSize <= 0)
    {
        return 0;
    }
    return moe::Workspace(nullptr, M, numExperts, topK, hiddenSize, intermediateSize, w4a4, actType).bytes;
}

cudaError_t launchMoE(MoEParams const& p, cudaStream_t stream)
{
    using namespace moe;
    int64_t const E = p.numExperts, H = p.hiddenSize, I = p.intermediateSize;
    if (p.M < 0 || E < 1 || p.topK < 1 || p.topK > E || H <= 0 || H % 16 != 0 || I <= 0 || I % 16 != 0)
    {
        return cudaErrorInvalidValue;
    }
    if (p.actType != ActType::kFLOAT && p.actType != ActType::kHALF && p.actType != ActType::kBF16)
    {
        return cudaErrorInvalidValue;
    }
    if (p.w4a4)
    {
        for (float const* scales : {p.w13InputScale, p.w13InputScaleInv, p.w2InputScale, p.w2InputScaleInv})
        {
            if (scales == nullptr || !std::all_of(scales, scales + E, positiveFinite))
            {
                return cudaErrorInvalidValue;
            }
        }
    }
    if (E > kMoEMaxExperts || p.topK > kMoEMaxTopK || p.M * p.topK > INT32_MAX / 2 || I / 16 > 65535 || H / 32 > 65535)
    {
        return cudaErrorNotSupported;
    }
    if (p.M == 0)
    {
        return cudaSuccess;
    }
    if (p.x == nullptr || p.routerLogits == nullptr || p.w13Weight == nullptr || p.w13Scale == nullptr
        || p.w13GlobalScale == nullptr || p.w2Weight == nullptr || p.w2Scale == nullptr || p.w2GlobalScale == nullptr
        || p.y == nullptr || p.workspace == nullptr || reinterpret_cast<uintptr_t>(p.workspace) % 256 != 0)
    {
        return cudaErrorInvalidValue;
    }
    int sm = p.smVersion;
    if (sm <= 0)
    {
        cudaError_t const err = deviceSm(sm);
        if (err != cudaSuccess)
        {
            return err;
        }
    }
    Workspace const ws(p.workspace, p.M, p.numExperts, p.topK, H, I, p.w4a4, p.actType);
    int64_t const P = p.M * p.topK;
    int32_t const rowsPerItem = chooseRowsPerItem(P, p.numExperts);
    if (rowsPerItem != 8 && rowsPerItem != 16 && rowsPerItem != 32 && rowsPerItem != 64)
    {
        return cudaErrorInvalidValue;
    }

    // The per-expert activation scales travel as kernel parameters: the first chunk with the
    // routing kernel, any further ones (E > 240) with their own small launches.
    std::vector<float> table(static_cast<size_t>(kNumScaleSlots * E), 1.0f);
    if (p.w4a4)
    {
        std::copy_n(p.w13InputScale, E, table.begin() + kW13InputScale * E);
        std::copy_n(p.w13InputScaleInv, E, table.begin() + kW13InputScaleInv * E);
        std::copy_n(p.w2InputScale, E, table.begin() + kW2InputScale * E);
        std::copy_n(p.w2InputScaleInv, E, table.begin() + kW2InputScaleInv * E);
    }
    ScaleChunk chunk;
    cudaError_t err = cudaSuccess;
    for (size_t offset = kScaleChunk; offset < table.size() && err == cudaSuccess; offset += kScaleChunk)
    {
        int32_t const count = static_cast<int32_t>(std::min<size_t>(kScaleChunk, table.size() - offset));
        std::copy_n(table.begin() + offset, count, chunk.values);
        err = launchUploadScales(chunk, static_cast<int32_t>(offset), count, ws.scales, stream);
    }
    int32_t const firstCount = static_cast<int32_t>(std::min<size_t>(kScaleChunk, table.size()));
    std::copy_n(table.begin(), firstCount, chunk.values);

    bool const singleCta = options().grouping == 1
        || (options().grouping == 0 && p.M <= kSingleCtaMaxTokens && P * (H / 16) <= kSingleCtaMaxBlocks);
    RoutingArgs const routing{p.x, p.routerLogits, p.M, p.numExperts, p.topK, H, p.normalizeTopk, p.w4a4, rowsPerItem,
        p.actType, &ws, &chunk, firstCount};
    if (err == cudaSuccess)
    {
        err = launchRouting(routing, singleCta, stream);
    }

    bool const pdl = sm >= 90;
    ExpertLinearArgs w13{};
    w13.a = p.w4a4 ? static_cast<void const*>(ws.xhat1) : p.x;
    w13.rowOfPos = p.w4a4 ? nullptr : ws.sortedPair;
    w13.topK = p.topK;
    w13.w = reinterpret_cast<uint8_t const*>(p.w13Weight);
    w13.ws = reinterpret_cast<uint8_t const*>(p.w13Scale);
    w13.wgs = p.w13GlobalScale;
    w13.N = 2 * I;
    w13.K = H;
    w13.items = ws.items;
    w13.offsets = ws.offsets;
    w13.numExperts = p.numExperts;
    w13.maxItems = maxWorkItems(P, p.numExperts, rowsPerItem);
    w13.rowsPerItem = rowsPerItem;
    w13.w4a4 = p.w4a4;
    w13.inputScale = ws.scales + kW13InputScale * E;
    w13.gated = true;
    w13.I = I;
    w13.nextInputScaleInv = ws.scales + kW2InputScaleInv * E;
    w13.out = ws.a2;
    w13.actType = p.actType;
    w13.pdl = pdl;
    if (err == cudaSuccess)
    {
        err = launchExpertLinear(w13, sm, stream);
    }

    ExpertLinearArgs w2 = w13;
    w2.a = ws.a2;
    w2.rowOfPos = nullptr;
    w2.w = reinterpret_cast<uint8_t const*>(p.w2Weight);
    w2.ws = reinterpret_cast<uint8_t const*>(p.w2Scale);
    w2.wgs = p.w2GlobalScale;
    w2.N = H;
    w2.K = I;
    w2.inputScale = ws.scales + kW2InputScale * E;
    w2.gated = false;
    w2.nextInputScaleInv = nullptr;
    w2.out = ws.d;
    if (err == cudaSuccess)
    {
        err = launchExpertLinear(w2, sm, stream);
    }
    if (err == cudaSuccess)
    {
        err = launchCombine(p.y, ws, p.M, p.topK, H, p.actType, pdl, stream);
    }
    return err;
}

} // namespace nvfp4
