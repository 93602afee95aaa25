// TensorRT tensor descriptions as the plugins of this library read them: type names for messages,
// the activation types, dimensions as plain vectors (-1 where unknown), rows and the workspace
// alignment. Host only; plugin sources only (needs the TensorRT headers and the kernels' ActType).
#pragma once

#include "nvfp4LinearKernels.h"

#include <NvInferRuntime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace nvfp4
{

inline char const* dataTypeName(nvinfer1::DataType t)
{
    using nvinfer1::DataType;
    switch (t)
    {
    case DataType::kFLOAT: return "kFLOAT";
    case DataType::kHALF: return "kHALF";
    case DataType::kINT8: return "kINT8";
    case DataType::kINT32: return "kINT32";
    case DataType::kBOOL: return "kBOOL";
    case DataType::kUINT8: return "kUINT8";
    case DataType::kFP8: return "kFP8";
    case DataType::kBF16: return "kBF16";
    case DataType::kINT64: return "kINT64";
    case DataType::kINT4: return "kINT4";
#if NV_TENSORRT_MAJOR > 10 || NV_TENSORRT_MINOR >= 8
    case DataType::kFP4: return "kFP4";
#endif
    default: return "an unsupported type";
    }
}

// The types x (and the activation-typed inputs and y) may have: float32, float16, bfloat16.
inline bool isActivationType(nvinfer1::DataType t)
{
    return t == nvinfer1::DataType::kFLOAT || t == nvinfer1::DataType::kHALF || t == nvinfer1::DataType::kBF16;
}

// The kernels' name of an activation type (isActivationType(t) must hold).
inline ActType toActType(nvinfer1::DataType t)
{
    return t == nvinfer1::DataType::kFLOAT ? ActType::kFLOAT
                                           : (t == nvinfer1::DataType::kBF16 ? ActType::kBF16 : ActType::kHALF);
}

inline std::vector<int64_t> dimsOf(nvinfer1::Dims const& d)
{
    int32_t const rank = std::max<int32_t>(std::min<int32_t>(d.nbDims, nvinfer1::Dims::MAX_DIMS), 0);
    return std::vector<int64_t>(d.d, d.d + rank);
}

// The constant dimensions of a build-time shape; -1 where a dimension is not known yet.
inline std::vector<int64_t> knownDims(nvinfer1::DimsExprs const& e)
{
    std::vector<int64_t> dims;
    for (int32_t j = 0; j < std::min<int32_t>(e.nbDims, nvinfer1::Dims::MAX_DIMS); ++j)
    {
        nvinfer1::IDimensionExpr const* d = e.d[j];
        dims.push_back(d != nullptr && d->isConstant() ? d->getConstantValue() : -1);
    }
    return dims;
}

// Rows of an activation [..., C] (the product of the leading dimensions); -1 if one is unknown.
inline int64_t rowsOf(nvinfer1::Dims const& d)
{
    int64_t m = 1;
    for (int32_t i = 0; i + 1 < std::min<int32_t>(d.nbDims, nvinfer1::Dims::MAX_DIMS); ++i)
    {
        if (d.d[i] < 0)
        {
            return -1;
        }
        m *= d.d[i];
    }
    return m;
}

inline int64_t volume(nvinfer1::Dims const& d)
{
    int64_t v = 1;
    for (int32_t i = 0; i < std::min<int32_t>(d.nbDims, nvinfer1::Dims::MAX_DIMS); ++i)
    {
        v *= d.d[i];
    }
    return v;
}

// The kernels want a 256-byte aligned workspace; TensorRT promises less, so each plugin asks for
// this much more and aligns the pointer itself.
constexpr size_t kWorkspaceAlignment = 256;

inline void* alignWorkspace(void* workspace)
{
    auto const address = reinterpret_cast<uintptr_t>(workspace);
    return workspace ? reinterpret_cast<void*>((address + kWorkspaceAlignment - 1) / kWorkspaceAlignment
                           * kWorkspaceAlignment)
                     : nullptr;
}

} // namespace nvfp4
