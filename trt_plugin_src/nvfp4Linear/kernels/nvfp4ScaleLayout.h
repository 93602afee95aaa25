// cuBLASLt's tiled layout of 1D block scaling factors (cuBLAS documentation, "1D Block Scaling
// Factors Layout"), used by the native FP4 path (nvfp4CublasLt.cu) for CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3.
//
// A scale matrix [rows, kBlocks] (one scale per 16 elements along K, row-major in the op contract)
// is stored as tiles of 128 rows x 4 scale columns, 512 bytes each, tiles ordered row-tile major:
//   tile   = (row / 128) * ceil(kBlocks / 4) + kBlock / 4
//   offset = tile * 512 + (row % 32) * 16 + ((row % 128) / 32) * 4 + kBlock % 4
// Rows are padded to a multiple of 128 and scale columns to a multiple of 4; the padding bytes are
// written as zero. Shared by the device kernels and the host (CPU test: tests/test_fp4_scale_layout.py).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define NVFP4_LAYOUT_HD __host__ __device__ __forceinline__
#else
#define NVFP4_LAYOUT_HD inline
#endif

namespace nvfp4
{
namespace layout
{

constexpr int64_t kScaleTileRows = 128;
constexpr int64_t kScaleTileCols = 4;
constexpr int64_t kScaleTileBytes = kScaleTileRows * kScaleTileCols;

NVFP4_LAYOUT_HD int64_t ceilDiv(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

// Bytes of the swizzled scale buffer of a [rows, kBlocks] scale matrix (padding included).
NVFP4_LAYOUT_HD int64_t swizzledScaleBytes(int64_t rows, int64_t kBlocks)
{
    return ceilDiv(rows, kScaleTileRows) * ceilDiv(kBlocks, kScaleTileCols) * kScaleTileBytes;
}

// Byte offset of scale (row, kBlock) in that buffer.
NVFP4_LAYOUT_HD int64_t swizzledScaleOffset(int64_t row, int64_t kBlock, int64_t kBlocks)
{
    int64_t const tile = (row / kScaleTileRows) * ceilDiv(kBlocks, kScaleTileCols) + kBlock / kScaleTileCols;
    int64_t const r = row % kScaleTileRows;
    return tile * kScaleTileBytes + (r % 32) * 16 + (r / 32) * 4 + kBlock % kScaleTileCols;
}

} // namespace layout
} // namespace nvfp4
