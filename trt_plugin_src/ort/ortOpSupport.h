// Small helpers over the ONNX Runtime C API for this library's custom ops: status handling, tensor
// shapes, node attributes, and the conversion of the activation types to and from float32.
// Every function takes the OrtApi the library was registered with.
#pragma once

#include "floatConvert.h"

#include <onnxruntime_c_api.h>

#include <cstdint>
#include <string>
#include <vector>

namespace nvfp4
{
namespace ort
{

// True if `status` is success; otherwise releases it (the caller writes its own message).
inline bool ok(OrtApi const& api, OrtStatus* status)
{
    if (status == nullptr)
    {
        return true;
    }
    api.ReleaseStatus(status);
    return false;
}

// The dimensions of a tensor value (empty if they cannot be read).
inline std::vector<int64_t> shapeOf(OrtApi const& api, OrtValue const* value)
{
    OrtTensorTypeAndShapeInfo* info = nullptr;
    std::vector<int64_t> dims;
    if (value == nullptr || !ok(api, api.GetTensorTypeAndShape(value, &info)))
    {
        return dims;
    }
    size_t rank = 0;
    if (ok(api, api.GetDimensionsCount(info, &rank)))
    {
        dims.resize(rank);
        if (!ok(api, api.GetDimensions(info, dims.data(), rank)))
        {
            dims.clear();
        }
    }
    api.ReleaseTensorTypeAndShapeInfo(info);
    return dims;
}

inline int64_t elementCount(std::vector<int64_t> const& dims)
{
    int64_t count = 1;
    for (int64_t d : dims)
    {
        count *= d;
    }
    return count;
}

inline std::string nodeNameOf(OrtApi const& api, OrtKernelInfo const* info)
{
    size_t size = 0;
    if (!ok(api, api.KernelInfo_GetNodeName(info, nullptr, &size)) || size == 0)
    {
        return "";
    }
    std::vector<char> buffer(size);
    if (!ok(api, api.KernelInfo_GetNodeName(info, buffer.data(), &size)))
    {
        return "";
    }
    return std::string(buffer.data());
}

// Attribute readers: false if the attribute is missing or of another type.
inline bool readInt(OrtApi const& api, OrtKernelInfo const* info, char const* name, int64_t& out)
{
    return ok(api, api.KernelInfoGetAttribute_int64(info, name, &out));
}

inline bool readString(OrtApi const& api, OrtKernelInfo const* info, char const* name, std::string& out)
{
    size_t size = 0;
    if (!ok(api, api.KernelInfoGetAttribute_string(info, name, nullptr, &size)) || size == 0)
    {
        return false;
    }
    std::vector<char> buffer(size);
    if (!ok(api, api.KernelInfoGetAttribute_string(info, name, buffer.data(), &size)))
    {
        return false;
    }
    out.assign(buffer.data());
    return true;
}

// ORT reports a FLOAT (scalar) attribute as an empty FLOATS: an empty list counts as missing.
inline bool readFloats(OrtApi const& api, OrtKernelInfo const* info, char const* name, std::vector<float>& out)
{
    size_t size = 0;
    if (!ok(api, api.KernelInfoGetAttributeArray_float(info, name, nullptr, &size)) || size == 0)
    {
        return false;
    }
    out.resize(size);
    return ok(api, api.KernelInfoGetAttributeArray_float(info, name, out.data(), &size));
}

// Activation-type traits: conversion of one element to / from float32 (exact / RNE).
template <ONNXTensorElementDataType kType>
struct Activation;

template <>
struct Activation<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT>
{
    using Storage = float;
    static float toFloat(float v)
    {
        return v;
    }
    static float fromFloat(float v)
    {
        return v;
    }
};

template <>
struct Activation<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16>
{
    using Storage = uint16_t;
    static float toFloat(uint16_t v)
    {
        return math::halfBitsToFloat(v);
    }
    static uint16_t fromFloat(float v)
    {
        return math::floatToHalfBits(v);
    }
};

template <>
struct Activation<ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16>
{
    using Storage = uint16_t;
    static float toFloat(uint16_t v)
    {
        return math::bf16BitsToFloat(v);
    }
    static uint16_t fromFloat(float v)
    {
        return math::floatToBf16Bits(v);
    }
};

} // namespace ort
} // namespace nvfp4
