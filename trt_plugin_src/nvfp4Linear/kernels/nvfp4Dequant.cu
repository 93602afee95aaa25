// The weight operand of the dequantize-then-GEMM path (nvfp4CublasLt.cu): rows of the packed FP4
// weight decoded to w' = ŵ * 2^-7 in fp16 or bf16, natural K order, the mma.sync kernels' operand
// (nvfp4Numerics.cuh: exact in both types), so cuBLAS multiplies the same exact products. The first
// slice's launch also writes the epilogue's alpha (the power of two undone there) for cuBLASLt.
#include "nvfp4Launch.cuh"
#include "nvfp4Numerics.cuh"

namespace nvfp4
{
namespace detail
{
namespace
{

// Thread i decodes word i of the slice's packed weight (8 E2M1, element 2j in the low nibble of
// byte j; half of FP8 block i / 2) into 8 contiguous 16-bit values: one 4-byte load and one 16-byte
// store per thread, so a warp reads 128 and writes 512 contiguous bytes. Words of consecutive rows
// are contiguous in the weight and the slice alike (K % 16 == 0), blocks in the scales. Threads
// 0 and 1 also write the scalar alpha and the zero beta after it when `alpha` is given (the path
// takes one weight_global_scale; a slice has at least 2 words, as K >= 16).
template <typename Op>
__global__ void dequantizeWeightKernel(uint32_t const* __restrict__ weight, uint8_t const* __restrict__ scale,
    int64_t numWords, uint4* __restrict__ out, float* __restrict__ alpha, float const* __restrict__ wgs, bool w4a4,
    float igs)
{
    int64_t const i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (alpha != nullptr && i <= 1)
    {
        alpha[i] = i == 0 ? epilogueAlpha(wgs, 1, 0, w4a4, igs, kWeightOperandScale) : 0.0f;
    }
    if (i >= numWords)
    {
        return;
    }
    uint32_t b[4];
    decodeWeightWord<Op>(weight[i], Op::scalePair(scale[i / 2]), b);
    out[i] = make_uint4(b[0], b[1], b[2], b[3]);
}

} // namespace

cudaError_t launchDequantizeWeight(LinearParams const& p, bool bf16Operand, int64_t n0, int64_t rows, void* out,
    float* alpha, cudaStream_t stream)
{
    int64_t const wordsPerRow = p.K / 8;
    int64_t const numWords = rows * wordsPerRow;
    int64_t const threads = 256;
    unsigned const grid = static_cast<unsigned>((numWords + threads - 1) / threads);
    auto const* const w = reinterpret_cast<uint32_t const*>(p.weight) + n0 * wordsPerRow;
    auto const* const s = reinterpret_cast<uint8_t const*>(p.weightScale) + n0 * (p.K / 16);
    if (bf16Operand)
    {
        dequantizeWeightKernel<Bf16Operand><<<grid, threads, 0, stream>>>(w, s, numWords, static_cast<uint4*>(out),
            alpha, p.weightGlobalScale, p.w4a4, p.inputGlobalScale);
    }
    else
    {
        dequantizeWeightKernel<HalfOperand><<<grid, threads, 0, stream>>>(w, s, numWords, static_cast<uint4*>(out),
            alpha, p.weightGlobalScale, p.w4a4, p.inputGlobalScale);
    }
    return cudaGetLastError();
}

} // namespace detail
} // namespace nvfp4
