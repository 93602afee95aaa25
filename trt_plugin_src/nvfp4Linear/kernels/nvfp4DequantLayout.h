// Workspace layout of the dequantize-then-GEMM path (nvfp4CublasLt.cu): the weights are decoded once
// per call into a 16-bit operand, one slice of rows at a time, and each slice is multiplied by
// cuBLASLt. Host-only arithmetic, shared by the launcher and a CPU test (tests/test_dequant_layout.py).
//
//   [activation operand: x-hat, M x K 16-bit (w4a4 only; the other paths' region, quantized there)]
//   [weight slice: sliceRows x K 16-bit][alpha, beta: 2 floats][cuBLASLt scratch]
// every region 256-byte aligned. sliceRows is all of N when the whole decoded weight fits the
// slice budget, else the most whole 128-row groups that do (at least one group).
#pragma once

#include <cstddef>
#include <cstdint>

namespace nvfp4
{
namespace layout
{

struct DequantWorkspace
{
    int64_t sliceRows = 0;
    size_t slice = 0, alpha = 0, lt = 0, total = 0; // byte offsets of the regions, and the size
};

inline size_t alignUp256(size_t v)
{
    return (v + 255) / 256 * 256;
}

// actBytes: the activation operand's region (0 for w4a16); budget: the most bytes one weight slice
// may take; ltBytes: cuBLASLt's scratch.
inline DequantWorkspace dequantWorkspace(int64_t N, int64_t K, size_t actBytes, size_t budget, size_t ltBytes)
{
    DequantWorkspace w;
    size_t const rowBytes = static_cast<size_t>(K) * 2;
    int64_t rows = N;
    if (static_cast<size_t>(N) * rowBytes > budget)
    {
        int64_t const groups = static_cast<int64_t>(budget / (rowBytes * 128));
        rows = (groups > 0 ? groups : 1) * 128;
        rows = rows < N ? rows : N;
    }
    w.sliceRows = rows;
    w.slice = alignUp256(actBytes);
    w.alpha = w.slice + alignUp256(static_cast<size_t>(rows) * rowBytes);
    w.lt = w.alpha + alignUp256(2 * sizeof(float));
    w.total = w.lt + ltBytes;
    return w;
}

} // namespace layout
} // namespace nvfp4
