// CPU implementation of the NVFP4Linear formula (docs/op-contract.md) on float32 data: the ONNX Runtime
// op runs it, and C++ tests use it as the reference for the CUDA kernels.
//
// Exactness (why the result does not depend on the summation order): every product of the formula is
// exact and the sums are taken in double, so the result is the exact value rounded once to float32
// (the torch `exact` reference) unless a sum needs more than 53 significant bits.
// * w4a4: per block of 16, Σ (2·q_i)(2·c_i) over the E2M1 values in halves is an integer (|.| ≤ 2304),
//   computed in int32; times the two FP8 block scales it has ≤ 20 significant bits, exact in float32;
//   the blocks are summed in double.
// * w4a16: each x_k · ŵ_k (24 + 6 significant bits) is exact in double and summed in double.
// alpha is applied last (in double), the result rounded to float32, then the bias added in float32.
//
// Speed: the weights stay packed (0.5 byte per weight) and are decoded in registers with a 16-entry
// byte shuffle, rows of N are split over the caller's thread pool (`ParallelFor`), and x86-64 CPUs with
// AVX2 run the block dot products 32 codes at a time (chosen at run time; other CPUs run the portable
// loops, which compute the same sums).
#pragma once

#include "nvfp4Math.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define NVFP4_CPU_X86 1
#endif

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
};

// Runs task(i) for every i in [0, count), possibly concurrently (ONNX Runtime's thread pool). Tasks
// write disjoint outputs, so any schedule gives the same result.
using ParallelFor = std::function<void(int64_t count, std::function<void(int64_t)> const& task)>;

inline void runSerially(int64_t count, std::function<void(int64_t)> const& task)
{
    for (int64_t i = 0; i < count; ++i)
    {
        task(i);
    }
}

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

namespace cpu
{

constexpr int64_t kG = math::kGroupSize;

// The weight operand of the integer block dot: 2·e2m1(code) + 12, in 0..24 (unsigned, as the AVX2
// u8 x s8 multiply wants it). The +12 is taken out again with 12 · Σ 2·q_i of the activation block.
constexpr int32_t kWeightOffset = 12;
constexpr uint8_t kOffsetCode[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};

// Activation operand of every row (w4a4): 2·q_i as int8, per block s_B and the offset correction.
struct QuantizedActivations
{
    std::vector<int8_t> codes;        // [M, K], 2·q in -12..12
    std::vector<int32_t> correction;  // [M, K/16], 12 · Σ_block 2·q
    std::vector<float> scale;         // [M, K/16], s_B
    std::vector<uint8_t> rowIsNaN;    // [M], a NaN reached the quantized row: its outputs are NaN
};

inline QuantizedActivations quantizeActivations(CpuLinearArgs const& a)
{
    int64_t const blocks = a.K / kG;
    QuantizedActivations q;
    q.codes.resize(static_cast<size_t>(a.M * a.K));
    q.correction.resize(static_cast<size_t>(a.M * blocks));
    q.scale.resize(static_cast<size_t>(a.M * blocks));
    q.rowIsNaN.assign(static_cast<size_t>(a.M), 0);
    float const inverseG = math::inverseGlobalScale(a.inputGlobalScaleInv);
    for (int64_t m = 0; m < a.M; ++m)
    {
        float const* x = a.x + m * a.K;
        for (int64_t b = 0; b < blocks; ++b)
        {
            float amax = 0.f;
            for (int64_t i = 0; i < kG; ++i)
            {
                amax = math::absMaxNaN(amax, x[b * kG + i]);
            }
            math::ActBlockScale const s = math::actBlockScale(amax, a.inputGlobalScaleInv, inverseG);
            int32_t sum = 0;
            for (int64_t i = 0; i < kG; ++i)
            {
                bool isNaN = false;
                uint8_t const code = math::actQuantizeCode(x[b * kG + i], s.quantMul, isNaN);
                int32_t const halves = static_cast<int32_t>(kOffsetCode[code]) - kWeightOffset;
                q.codes[m * a.K + b * kG + i] = static_cast<int8_t>(halves);
                sum += halves;
                q.rowIsNaN[m] |= static_cast<uint8_t>(isNaN);
            }
            q.rowIsNaN[m] |= static_cast<uint8_t>(math::isNaN(s.scale));
            q.correction[m * blocks + b] = kWeightOffset * sum;
            q.scale[m * blocks + b] = s.scale;
        }
    }
    return q;
}

// Σ_blocks (Σ_i 2q_i · 2c_i) · s_B · s_w  (= 4 · Σ_k x̂_k ŵ_k) of one weight row and one activation row,
// blocks [begin, end).
inline double dotW4A4Portable(uint8_t const* packed, uint8_t const* scaleBits, int8_t const* x,
    int32_t const* corr, float const* xs, int64_t begin, int64_t end)
{
    double acc = 0.0;
    for (int64_t b = begin; b < end; ++b)
    {
        int32_t d = 0;
        for (int64_t i = 0; i < kG; ++i)
        {
            int32_t const w = kOffsetCode[math::unpackCode(packed, b * kG + i)];
            d += w * static_cast<int32_t>(x[b * kG + i]);
        }
        d -= corr[b];
        acc += static_cast<double>(static_cast<float>(d) * (xs[b] * math::fp8e4m3ToFloat(scaleBits[b])));
    }
    return acc;
}

// Σ_k x_k · ŵ_k of one weight row, elements [begin, end) (multiples of 16).
inline double dotW4A16Portable(uint8_t const* packed, uint8_t const* scaleBits, double const* x, int64_t begin,
    int64_t end)
{
    double acc = 0.0;
    for (int64_t k = begin; k < end; ++k)
    {
        acc += x[k] * static_cast<double>(math::weightValue(math::unpackCode(packed, k), scaleBits[k / kG]));
    }
    return acc;
}

#if NVFP4_CPU_X86
// float8_e4m3fn bits -> value, for the AVX2 gather.
inline float const* fp8Table()
{
    static std::vector<float> const table = [] {
        std::vector<float> t(256);
        for (int i = 0; i < 256; ++i)
        {
            t[i] = math::fp8e4m3ToFloat(static_cast<uint8_t>(i));
        }
        return t;
    }();
    return table.data();
}

__attribute__((target("avx2,fma"))) inline double sumLanes(__m256d v)
{
    __m128d const s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

// 16 packed bytes -> their 32 codes in element order (low nibble first), one per byte.
__attribute__((target("avx2,fma"))) inline __m256i unpackCodes32(uint8_t const* packed)
{
    __m128i const low4 = _mm_set1_epi8(0x0F);
    __m128i const p = _mm_loadu_si128(reinterpret_cast<__m128i const*>(packed));
    __m128i const lo = _mm_and_si128(p, low4);
    __m128i const hi = _mm_and_si128(_mm_srli_epi16(p, 4), low4);
    return _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
}

// dotW4A4Portable over all K/16 blocks, 8 blocks (128 codes) per step, decoding the packed codes in
// registers with a byte shuffle.
__attribute__((target("avx2,fma"))) inline double dotW4A4Avx2(uint8_t const* packed, uint8_t const* scaleBits,
    int8_t const* x, int32_t const* corr, float const* xs, int64_t blocks)
{
    __m256i const table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<__m128i const*>(kOffsetCode)));
    __m256i const ones = _mm256_set1_epi16(1);
    __m256i const order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    float const* fp8 = fp8Table();
    __m256d acc0 = _mm256_setzero_pd();
    __m256d acc1 = _mm256_setzero_pd();
    int64_t b = 0;
    for (; b + 8 <= blocks; b += 8)
    {
        __m256i sums[4];
        for (int j = 0; j < 4; ++j)
        {
            // Two blocks: u8 x s8 products summed in pairs (|.| ≤ 576), then in fours (int32).
            __m256i const wv = _mm256_shuffle_epi8(table, unpackCodes32(packed + (b + 2 * j) * (kG / 2)));
            __m256i const xv = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(x + (b + 2 * j) * kG));
            sums[j] = _mm256_madd_epi16(_mm256_maddubs_epi16(wv, xv), ones);
        }
        // Lanes after two horizontal adds: blocks b+0, 2, 4, 6 | b+1, 3, 5, 7; then natural order.
        __m256i const h = _mm256_hadd_epi32(_mm256_hadd_epi32(sums[0], sums[1]), _mm256_hadd_epi32(sums[2], sums[3]));
        __m256i const d = _mm256_sub_epi32(_mm256_permutevar8x32_epi32(h, order),
            _mm256_loadu_si256(reinterpret_cast<__m256i const*>(corr + b)));
        __m256 const ws = _mm256_i32gather_ps(fp8,
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<__m128i const*>(scaleBits + b))), 4);
        __m256 const terms = _mm256_mul_ps(_mm256_cvtepi32_ps(d), _mm256_mul_ps(_mm256_loadu_ps(xs + b), ws));
        acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(terms)));
        acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(terms, 1)));
    }
    return sumLanes(_mm256_add_pd(acc0, acc1)) + dotW4A4Portable(packed, scaleBits, x, corr, xs, b, blocks);
}

// dotW4A16Portable over all K, one block (16 codes) per step: 2·e2m1 as int8 through a byte shuffle,
// times s_w/2 in float32 (exact), times x in double.
__attribute__((target("avx2,fma"))) inline double dotW4A16Avx2(uint8_t const* packed, uint8_t const* scaleBits,
    double const* x, int64_t K)
{
    __m128i const table = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
    __m128i const low4 = _mm_set1_epi8(0x0F);
    float const* fp8 = fp8Table();
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    for (int64_t b = 0; b < K / kG; ++b)
    {
        __m128i const p = _mm_loadl_epi64(reinterpret_cast<__m128i const*>(packed + b * (kG / 2)));
        __m128i const codes = _mm_unpacklo_epi8(_mm_and_si128(p, low4), _mm_and_si128(_mm_srli_epi16(p, 4), low4));
        __m128i const twice = _mm_shuffle_epi8(table, codes);
        __m256 const half = _mm256_set1_ps(0.5f * fp8[scaleBits[b]]);
        __m256 const w0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(twice)), half);
        __m256 const w1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(twice, 8))), half);
        double const* xb = x + b * kG;
        // The products are exact in double, so a fused multiply-add rounds like a separate add.
        acc[0] = _mm256_fmadd_pd(_mm256_loadu_pd(xb), _mm256_cvtps_pd(_mm256_castps256_ps128(w0)), acc[0]);
        acc[1] = _mm256_fmadd_pd(_mm256_loadu_pd(xb + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(w0, 1)), acc[1]);
        acc[2] = _mm256_fmadd_pd(_mm256_loadu_pd(xb + 8), _mm256_cvtps_pd(_mm256_castps256_ps128(w1)), acc[2]);
        acc[3] = _mm256_fmadd_pd(_mm256_loadu_pd(xb + 12), _mm256_cvtps_pd(_mm256_extractf128_ps(w1, 1)), acc[3]);
    }
    return sumLanes(_mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3])));
}

// NVFP4_CPU_PORTABLE=1 in the environment forces the portable loops (how the tests check them on
// an AVX2 machine).
inline bool haveAvx2()
{
    // cpu_init first: this may run before libgcc's own initializer (e.g. from a static constructor).
    static bool const have = (__builtin_cpu_init(), __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        && std::getenv("NVFP4_CPU_PORTABLE") == nullptr;
    return have;
}
#endif

inline double dotW4A4(CpuLinearArgs const& a, int64_t n, QuantizedActivations const& q, int64_t m)
{
    int64_t const blocks = a.K / kG;
    uint8_t const* packed = a.weight + n * (a.K / 2);
    uint8_t const* scaleBits = a.weightScale + n * blocks;
    int8_t const* x = q.codes.data() + m * a.K;
    int32_t const* corr = q.correction.data() + m * blocks;
    float const* xs = q.scale.data() + m * blocks;
#if NVFP4_CPU_X86
    if (haveAvx2())
    {
        return dotW4A4Avx2(packed, scaleBits, x, corr, xs, blocks);
    }
#endif
    return dotW4A4Portable(packed, scaleBits, x, corr, xs, 0, blocks);
}

inline double dotW4A16(CpuLinearArgs const& a, int64_t n, double const* x)
{
    uint8_t const* packed = a.weight + n * (a.K / 2);
    uint8_t const* scaleBits = a.weightScale + n * (a.K / kG);
#if NVFP4_CPU_X86
    if (haveAvx2())
    {
        return dotW4A16Avx2(packed, scaleBits, x, a.K);
    }
#endif
    return dotW4A16Portable(packed, scaleBits, x, 0, a.K);
}

} // namespace cpu

// y = the contract's formula for all rows. Work is split over rows of N; `parallelFor` may run the
// tasks concurrently.
inline void linearCpu(CpuLinearArgs const& a, ParallelFor const& parallelFor = runSerially)
{
    cpu::QuantizedActivations q;
    std::vector<double> xDouble;
    if (a.w4a4)
    {
        q = cpu::quantizeActivations(a);
    }
    else
    {
        xDouble.assign(a.x, a.x + a.M * a.K);
    }
    double const work = static_cast<double>(a.M) * static_cast<double>(a.N) * static_cast<double>(a.K);
    // Below ~64k multiply-adds a task costs more to hand out than to run.
    int64_t const tasks = std::max<int64_t>(1, std::min<int64_t>(a.N, static_cast<int64_t>(work / (1 << 16))));
    int64_t const rowsPerTask = (a.N + tasks - 1) / tasks;
    auto task = [&](int64_t t) {
        for (int64_t n = t * rowsPerTask; n < std::min(a.N, (t + 1) * rowsPerTask); ++n)
        {
            double const alpha = static_cast<double>(linearAlpha(a, n));
            for (int64_t m = 0; m < a.M; ++m)
            {
                float out;
                if (a.w4a4)
                {
                    // The integer dot counts halves of both operands: 4 · Σ x̂ŵ (the 0.25 is exact).
                    out = q.rowIsNaN[m] ? math::bitsToFloat(0x7FC00000u)
                                        : static_cast<float>(cpu::dotW4A4(a, n, q, m) * 0.25 * alpha);
                }
                else
                {
                    out = static_cast<float>(cpu::dotW4A16(a, n, xDouble.data() + m * a.K) * alpha);
                }
                if (a.bias != nullptr)
                {
                    out = out + a.bias[n];
                }
                a.y[m * a.N + n] = out;
            }
        }
    };
    int64_t const count = (a.N + rowsPerTask - 1) / rowsPerTask;
    if (count <= 1)
    {
        runSerially(count, task);
        return;
    }
    parallelFor(count, task);
}

} // namespace nvfp4
