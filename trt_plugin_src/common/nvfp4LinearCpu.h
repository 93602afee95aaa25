// CPU implementation of the NVFP4Linear formula (docs/op-contract.md) on float32 data: the
// ONNX Runtime op runs it, and C++ tests use it as the reference for the CUDA kernels.
// Products are exact (x̂ and ŵ have at most 24 + 6 significant bits) and are summed in double, so
// the result is within one float32 rounding of the exact value; alpha is applied last, then the
// bias in float32, as the contract says.
#pragma once

#include "nvfp4Math.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace nvfp4
{

struct CpuLinearArgs
{
    float const* x = nullptr;                 // [M, K] activation converted (exactly) to float32
    uint8_t const* weight = nullptr;          // [N, K/2] packed E2M1 codes
    uint8_t const* weightScale = nullptr;     // [N, K/16] float8_e4m3fn bits
    float const* weightGlobalScale = nullptr; // [1] or [N]
    int64_t weightGlobalScaleLen = 1;
    float const* bias = nullptr;              // [N] converted to float32, or nullptr
    float* y = nullptr;                       // [M, N] float32 result, before rounding to T
    int64_t M = 0, N = 0, K = 0;              // K % 16 == 0
    bool w4a4 = true;
    float inputGlobalScale = 1.f;
    float inputGlobalScaleInv = 1.f;
    float const* weightDequantized = nullptr; // optional ŵ [N, K] from dequantizeWeight (cached)
};

// x̂ of one row (w4a4): per block of 16, q_i * s_B with the contract's rounding (NaN propagates).
inline void quantizeActivationRow(float const* x, int64_t K, float inputGlobalScaleInv, float* xHat)
{
    float const inverseG = math::inverseGlobalScale(inputGlobalScaleInv);
    for (int64_t b = 0; b < K; b += math::kGroupSize)
    {
        float amax = 0.f;
        for (int64_t i = 0; i < math::kGroupSize; ++i)
        {
            amax = math::absMaxNaN(amax, x[b + i]);
        }
        math::ActBlockScale const s = math::actBlockScale(amax, inputGlobalScaleInv, inverseG);
        for (int64_t i = 0; i < math::kGroupSize; ++i)
        {
            xHat[b + i] = math::mulRn(math::actQuantize(x[b + i], s.quantMul), s.scale);
        }
    }
}

// ŵ [N, K] as float32 (exact).
inline std::vector<float> dequantizeWeight(uint8_t const* weight, uint8_t const* weightScale, int64_t N, int64_t K)
{
    std::vector<float> w(static_cast<size_t>(N * K));
    for (int64_t n = 0; n < N; ++n)
    {
        uint8_t const* row = weight + n * (K / 2);
        uint8_t const* scales = weightScale + n * (K / math::kGroupSize);
        for (int64_t k = 0; k < K; ++k)
        {
            w[n * K + k] = math::weightValue(math::unpackCode(row, k), scales[k / math::kGroupSize]);
        }
    }
    return w;
}

// alpha[n] of the contract: input_global_scale * weight_global_scale[n or 0] (w4a4), or the weight
// global scale alone (w4a16).
inline float linearAlpha(CpuLinearArgs const& a, int64_t n)
{
    float const g = a.weightGlobalScale[a.weightGlobalScaleLen == 1 ? 0 : n];
    return a.w4a4 ? math::mulRn(a.inputGlobalScale, g) : g;
}

// Rows [mBegin, mEnd) of y, given ŵ.
inline void linearCpuRows(CpuLinearArgs const& a, float const* w, int64_t mBegin, int64_t mEnd)
{
    std::vector<float> xHat(static_cast<size_t>(a.K));
    for (int64_t m = mBegin; m < mEnd; ++m)
    {
        float const* xRow = a.x + m * a.K;
        if (a.w4a4)
        {
            quantizeActivationRow(xRow, a.K, a.inputGlobalScaleInv, xHat.data());
            xRow = xHat.data();
        }
        for (int64_t n = 0; n < a.N; ++n)
        {
            float const* wRow = w + n * a.K;
            double acc = 0.0;
            for (int64_t k = 0; k < a.K; ++k)
            {
                acc += static_cast<double>(xRow[k]) * static_cast<double>(wRow[k]);
            }
            float out = static_cast<float>(acc * static_cast<double>(linearAlpha(a, n)));
            if (a.bias != nullptr)
            {
                out = out + a.bias[n];
            }
            a.y[m * a.N + n] = out;
        }
    }
}

// y for all rows; large problems are split over threads by rows (the result does not depend on it).
inline void linearCpu(CpuLinearArgs const& a)
{
    std::vector<float> decoded;
    float const* w = a.weightDequantized;
    if (w == nullptr)
    {
        decoded = dequantizeWeight(a.weight, a.weightScale, a.N, a.K);
        w = decoded.data();
    }
    double const work = static_cast<double>(a.M) * static_cast<double>(a.N) * static_cast<double>(a.K);
    int64_t const threads = std::min<int64_t>(
        {static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency())), a.M, 16,
            static_cast<int64_t>(work / (1 << 22)) + 1});
    if (threads <= 1)
    {
        linearCpuRows(a, w, 0, a.M);
        return;
    }
    std::vector<std::thread> pool;
    int64_t const chunk = (a.M + threads - 1) / threads;
    for (int64_t begin = 0; begin < a.M; begin += chunk)
    {
        pool.emplace_back(linearCpuRows, std::cref(a), w, begin, std::min(a.M, begin + chunk));
    }
    for (auto& t : pool)
    {
        t.join();
    }
}

} // namespace nvfp4
