// CPU implementation of the NVFP4MoE formula (docs/op-contract-moe.md) on float32 data: the ONNX
// Runtime op runs it, and the C++ lean-runtime test uses it as the reference for the plugin's
// enqueue. Each expert linear is nvfp4LinearCpu.h's linearCpu (gate and up as one linear with
// per-row global scales); routing weights and the combine are computed in double and rounded
// once, as the torch reference (export.reference.nvfp4_moe_exact) does.
#pragma once

#include "floatConvert.h"
#include "nvfp4LinearCpu.h"
#include "nvfp4MoEAttributes.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

namespace nvfp4
{

// The activation type T, for round_T (float32 is the identity).
enum class RoundType : int32_t
{
    kFloat = 0,
    kHalf = 1,
    kBf16 = 2,
};

inline float roundTo(float v, RoundType t)
{
    switch (t)
    {
    case RoundType::kHalf: return math::halfBitsToFloat(math::floatToHalfBits(v));
    case RoundType::kBf16: return math::bf16BitsToFloat(math::floatToBf16Bits(v));
    case RoundType::kFloat: break;
    }
    return v;
}

// silu(v) = v / (1 + exp(-v)) in float32 (contract step 3).
inline float siluFloat(float v)
{
    return v / (1.0f + std::exp(-v));
}

// Steps 1-2 for one token: the k selected experts (largest logits, ties to the lower index; a NaN
// logit counts as 0 for the selection) and their weights, NaN if the row holds a NaN.
inline void routeTokenCpu(float const* logits, int64_t E, int64_t k, bool normalize, int32_t* experts, float* weights)
{
    std::vector<double> l(static_cast<size_t>(E));
    bool hasNaN = false;
    for (int64_t e = 0; e < E; ++e)
    {
        hasNaN = hasNaN || std::isnan(logits[e]);
        l[e] = std::isnan(logits[e]) ? 0.0 : static_cast<double>(logits[e]);
    }
    std::vector<int32_t> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    double const lMax = l[order[0]];
    double total = 0.0;
    for (int64_t e = 0; e < (normalize ? k : E); ++e)
    {
        total += std::exp(l[normalize ? order[e] : e] - lMax);
    }
    for (int64_t j = 0; j < k; ++j)
    {
        experts[j] = order[j];
        weights[j] = hasNaN ? std::numeric_limits<float>::quiet_NaN()
                            : static_cast<float>(std::exp(l[order[j]] - lMax) / total);
    }
}

struct CpuMoEArgs
{
    float const* x = nullptr;             // [M, H], converted (exactly) from T
    float const* routerLogits = nullptr;  // [M, E], converted from T
    uint8_t const* w13 = nullptr;         // [E, 2I, H/2]
    uint8_t const* w13Scale = nullptr;    // [E, 2I, H/16]
    float const* w13GlobalScale = nullptr; // [E, 2I]
    uint8_t const* w2 = nullptr;          // [E, H, I/2]
    uint8_t const* w2Scale = nullptr;     // [E, H, I/16]
    float const* w2GlobalScale = nullptr; // [E, H]
    float* y = nullptr;                   // [M, H] float32 result, before the final rounding to T
    int64_t M = 0;
    RoundType type = RoundType::kFloat;
};

// y for all rows (validated attributes and shapes).
inline void moeCpu(CpuMoEArgs const& a, MoEAttributes const& attrs)
{
    int64_t const E = attrs.numExperts, k = attrs.topK, H = attrs.hiddenSize, I = attrs.intermediateSize;
    std::vector<int32_t> experts(static_cast<size_t>(a.M * k));
    std::vector<float> weights(static_cast<size_t>(a.M * k));
    for (int64_t m = 0; m < a.M; ++m)
    {
        routeTokenCpu(a.routerLogits + m * E, E, k, attrs.normalizeTopk != 0, &experts[m * k], &weights[m * k]);
    }
    std::vector<double> acc(static_cast<size_t>(a.M * H), 0.0);
    std::vector<int64_t> pairs; // (token * k + slot) routed to expert e, in token order
    std::vector<float> xe, gu, h, d;
    for (int64_t e = 0; e < E; ++e)
    {
        pairs.clear();
        for (int64_t p = 0; p < a.M * k; ++p)
        {
            if (experts[p] == e)
            {
                pairs.push_back(p);
            }
        }
        if (pairs.empty())
        {
            continue;
        }
        int64_t const c = static_cast<int64_t>(pairs.size());
        xe.resize(static_cast<size_t>(c * H));
        for (int64_t r = 0; r < c; ++r)
        {
            std::copy_n(a.x + (pairs[r] / k) * H, H, xe.begin() + r * H);
        }
        // gate and up: one linear [2I, H] with per-row global scales (they quantize the same x).
        gu.resize(static_cast<size_t>(c * 2 * I));
        CpuLinearArgs l;
        l.x = xe.data();
        l.weight = a.w13 + e * 2 * I * (H / 2);
        l.weightScale = a.w13Scale + e * 2 * I * (H / math::kGroupSize);
        l.weightGlobalScale = a.w13GlobalScale + e * 2 * I;
        l.weightGlobalScaleLen = 2 * I;
        l.y = gu.data();
        l.M = c;
        l.N = 2 * I;
        l.K = H;
        l.w4a4 = attrs.w4a4();
        l.inputGlobalScale = attrs.w13InputScale[e];
        l.inputGlobalScaleInv = attrs.w13InputScaleInv[e];
        linearCpu(l);
        h.resize(static_cast<size_t>(c * I));
        for (int64_t r = 0; r < c; ++r)
        {
            for (int64_t j = 0; j < I; ++j)
            {
                float const g = roundTo(gu[r * 2 * I + j], a.type);
                float const u = roundTo(gu[r * 2 * I + I + j], a.type);
                float const act = roundTo(siluFloat(g), a.type);
                h[r * I + j] = roundTo(act * u, a.type);
            }
        }
        d.resize(static_cast<size_t>(c * H));
        l.x = h.data();
        l.weight = a.w2 + e * H * (I / 2);
        l.weightScale = a.w2Scale + e * H * (I / math::kGroupSize);
        l.weightGlobalScale = a.w2GlobalScale + e * H;
        l.weightGlobalScaleLen = H;
        l.y = d.data();
        l.N = H;
        l.K = I;
        l.inputGlobalScale = attrs.w2InputScale[e];
        l.inputGlobalScaleInv = attrs.w2InputScaleInv[e];
        linearCpu(l);
        for (int64_t r = 0; r < c; ++r)
        {
            double const w = weights[pairs[r]];
            double* out = &acc[(pairs[r] / k) * H];
            for (int64_t n = 0; n < H; ++n)
            {
                out[n] += w * static_cast<double>(roundTo(d[r * H + n], a.type));
            }
        }
    }
    // A token whose logits hold a NaN has NaN weights, so its row is NaN (contract step 1).
    for (int64_t i = 0; i < a.M * H; ++i)
    {
        a.y[i] = static_cast<float>(acc[i]);
    }
}

} // namespace nvfp4
