// What every ONNX Runtime custom op of this library does the same way over ORT's C API: the API
// table the library was registered with, one-line errors naming the node, the C++ exception
// boundary, tensor shapes and data, node attributes, the session's thread pool, the conversion of
// the activation types to and from float32, and the OrtCustomOp table itself (one per activation
// type under one name). Each op (nvfp4LinearOrtOp.cpp, nvfp4MoEOrtOp.cpp) provides its attributes'
// reading and checks and its compute; ortOpLibrary.cpp registers them.
#pragma once

#include "floatConvert.h"
#include "messageText.h"

#include <onnxruntime_c_api.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace nvfp4
{
namespace ort
{

// Lowest ORT API that has everything the ops use (CreateKernelV2/KernelComputeV2,
// KernelInfo_GetNodeName): any ORT >= 1.16 loads the library.
constexpr uint32_t kApiVersion = 16;
// KernelContext_ParallelFor came with API 17; on older ORT the ops run on one thread.
constexpr uint32_t kApiVersionParallelFor = 17;

// The API tables RegisterCustomOps received (ORT's static tables: they outlive every session).
struct Api
{
    OrtApi const* api = nullptr;
    OrtApi const* parallelFor = nullptr; // nullptr on ORT < 1.17
};

inline Api& registered()
{
    static Api tables;
    return tables;
}

inline OrtApi const& api()
{
    return *registered().api;
}

// True if `status` is success; otherwise releases it (the caller writes its own message).
inline bool ok(OrtStatus* status)
{
    if (status == nullptr)
    {
        return true;
    }
    api().ReleaseStatus(status);
    return false;
}

// "<op> node '<name>': <message>", the name made printable and capped.
inline OrtStatus* error(
    char const* op, std::string const& node, std::string const& message, OrtErrorCode code = ORT_INVALID_ARGUMENT)
{
    std::string const text = std::string(op) + " node '" + printable(node, kMaxEcho, '\'') + "': " + message;
    return api().CreateStatus(code, text.c_str());
}

// The C++ exception boundary of every callback ORT makes: nothing may unwind into ORT's C code.
template <typename Call>
OrtStatus* guarded(char const* op, std::string const& node, Call call) noexcept
{
    try
    {
        return call();
    }
    catch (std::bad_alloc const&)
    {
        return api().CreateStatus(ORT_FAIL, (std::string(op) + ": out of memory").c_str());
    }
    catch (std::exception const& e)
    {
        try
        {
            return error(op, node, std::string("internal error: ") + e.what(), ORT_RUNTIME_EXCEPTION);
        }
        catch (...)
        {
        }
    }
    catch (...)
    {
    }
    return api().CreateStatus(ORT_FAIL, "internal error in an NVFP4 custom op");
}

// ---- tensors

inline std::vector<int64_t> shapeOf(OrtValue const* value)
{
    OrtTensorTypeAndShapeInfo* info = nullptr;
    std::vector<int64_t> dims;
    if (value == nullptr || !ok(api().GetTensorTypeAndShape(value, &info)))
    {
        return dims;
    }
    size_t rank = 0;
    if (ok(api().GetDimensionsCount(info, &rank)))
    {
        dims.resize(rank);
        if (!ok(api().GetDimensions(info, dims.data(), rank)))
        {
            dims.clear();
        }
    }
    api().ReleaseTensorTypeAndShapeInfo(info);
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

// The inputs of a run, in order up to the first absent (optional) one, and their shapes (their data
// is read only once the shapes are checked: dataOf).
struct Inputs
{
    std::vector<OrtValue const*> values;
    std::vector<std::vector<int64_t>> shapes;
};

inline Inputs inputsOf(OrtKernelContext* context)
{
    size_t count = 0;
    Inputs inputs;
    if (!ok(api().KernelContext_GetInputCount(context, &count)))
    {
        return inputs;
    }
    for (size_t i = 0; i < count; ++i)
    {
        OrtValue const* value = nullptr;
        if (!ok(api().KernelContext_GetInput(context, i, &value)) || value == nullptr)
        {
            break;
        }
        inputs.values.push_back(value);
        inputs.shapes.push_back(shapeOf(value));
    }
    return inputs;
}

// The data of every input (read once their shapes are checked) and of output 0 allocated with shape
// `outDims` (nullptr if it is empty); "" or what failed.
inline std::string bindData(OrtKernelContext* context, Inputs const& inputs, std::vector<int64_t> const& outDims,
    std::vector<void*>& data, void*& outData)
{
    data.assign(inputs.values.size(), nullptr);
    for (size_t i = 0; i < inputs.values.size(); ++i)
    {
        if (!ok(api().GetTensorMutableData(const_cast<OrtValue*>(inputs.values[i]), &data[i])))
        {
            return "could not read input " + std::to_string(i);
        }
    }
    OrtValue* output = nullptr;
    outData = nullptr;
    if (!ok(api().KernelContext_GetOutput(context, 0, outDims.data(), outDims.size(), &output))
        || !ok(api().GetTensorMutableData(output, &outData)))
    {
        return "could not allocate the output " + shapeToString(outDims);
    }
    return "";
}

// ---- the node, when its kernel is created

inline std::string nodeNameOf(OrtKernelInfo const* info)
{
    size_t size = 0;
    if (!ok(api().KernelInfo_GetNodeName(info, nullptr, &size)) || size == 0)
    {
        return "";
    }
    std::vector<char> buffer(size);
    if (!ok(api().KernelInfo_GetNodeName(info, buffer.data(), &size)))
    {
        return "";
    }
    return std::string(buffer.data());
}

// How many inputs the node has (optional ones left out at the end do not count); -1 if unknown.
inline int64_t inputCountOf(OrtKernelInfo const* info)
{
    size_t count = 0;
    return ok(api().KernelInfo_GetInputCount(info, &count)) ? static_cast<int64_t>(count) : -1;
}

// Input `index`'s shape if it is a constant (an initializer: known before the first run, so a bad
// weight is refused at session creation), else `unknown` (checked at each run).
inline std::vector<int64_t> constantShapeOr(OrtKernelInfo const* info, size_t index, std::vector<int64_t> unknown)
{
    int isConstant = 0;
    OrtValue const* value = nullptr;
    if (ok(api().KernelInfoGetConstantInput_tensor(info, index, &isConstant, &value)) && isConstant && value)
    {
        return shapeOf(value);
    }
    return unknown;
}

// Reads the node's attributes one by one; the first that is missing or of another ONNX type ends
// the reading (every call after it returns false) and is said by problem().
class AttributeReader
{
public:
    explicit AttributeReader(OrtKernelInfo const* info)
        : mInfo(info)
    {
    }

    bool int64(char const* name, int64_t& out)
    {
        return mProblem.empty() && (ok(api().KernelInfoGetAttribute_int64(mInfo, name, &out)) || fail(name, "an INT"));
    }

    bool float32(char const* name, float& out)
    {
        return mProblem.empty() && (ok(api().KernelInfoGetAttribute_float(mInfo, name, &out)) || fail(name, "a FLOAT"));
    }

    bool string(char const* name, std::string& out)
    {
        if (!mProblem.empty())
        {
            return false;
        }
        size_t size = 0;
        if (!ok(api().KernelInfoGetAttribute_string(mInfo, name, nullptr, &size)) || size == 0)
        {
            return fail(name, "a STRING");
        }
        std::vector<char> buffer(size);
        if (!ok(api().KernelInfoGetAttribute_string(mInfo, name, buffer.data(), &size)))
        {
            return fail(name, "a STRING");
        }
        out.assign(buffer.data());
        return true;
    }

    // ORT reports a FLOAT (scalar) attribute as an empty FLOATS: an empty list counts as missing.
    bool floats(char const* name, std::vector<float>& out)
    {
        if (!mProblem.empty())
        {
            return false;
        }
        size_t size = 0;
        if (!ok(api().KernelInfoGetAttributeArray_float(mInfo, name, nullptr, &size)) || size == 0)
        {
            return fail(name, "a FLOATS");
        }
        out.resize(size);
        return ok(api().KernelInfoGetAttributeArray_float(mInfo, name, out.data(), &size)) || fail(name, "a FLOATS");
    }

    std::string const& problem() const
    {
        return mProblem;
    }

private:
    bool fail(char const* name, char const* type)
    {
        mProblem = std::string("attribute '") + name + "' is missing or not " + type;
        return false;
    }

    OrtKernelInfo const* mInfo;
    std::string mProblem;
};

// ---- the session's intra-op thread pool

// Runs task(i) for i in [0, count) on the session's threads (the ones ORT was told to use); on ORT
// < 1.17, or if ORT refuses, on this thread. Tasks write disjoint outputs: rerunning all is harmless.
inline void parallelFor(OrtKernelContext* context, int64_t count, std::function<void(int64_t)> const& task)
{
    auto trampoline = [](void* data, size_t i) {
        (*static_cast<std::function<void(int64_t)> const*>(data))(static_cast<int64_t>(i));
    };
    OrtApi const* threads = registered().parallelFor;
    if (threads == nullptr
        || !ok(threads->KernelContext_ParallelFor(context, trampoline, static_cast<size_t>(count), 0,
            const_cast<std::function<void(int64_t)>*>(&task))))
    {
        for (int64_t i = 0; i < count; ++i)
        {
            task(i);
        }
    }
}

// ---- activation types

// Conversion of the activation type's elements to / from float32 (exact / RNE).
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

// `count` elements of type kType as float32 (exact).
template <ONNXTensorElementDataType kType>
std::vector<float> toFloats(void const* data, int64_t count)
{
    using Traits = Activation<kType>;
    auto const* in = static_cast<typename Traits::Storage const*>(data);
    std::vector<float> out(static_cast<size_t>(count));
    for (size_t i = 0; i < out.size(); ++i)
    {
        out[i] = Traits::toFloat(in[i]);
    }
    return out;
}

// `values` rounded to kType into `data`.
template <ONNXTensorElementDataType kType>
void fromFloats(std::vector<float> const& values, void* data)
{
    using Traits = Activation<kType>;
    auto* out = static_cast<typename Traits::Storage*>(data);
    for (size_t i = 0; i < values.size(); ++i)
    {
        out[i] = Traits::fromFloat(values[i]);
    }
}

// ---- the OrtCustomOp table

// A node's kernel: its name (for messages) and its attributes, read and checked once.
template <typename Attributes>
struct Kernel
{
    std::string nodeName;
    Attributes attrs;
};

// One op of the library for one activation type. `Op` provides
//   static constexpr char const* kName; static constexpr size_t kNumInputs; using Attributes = ...;
//   static ONNXTensorElementDataType inputType(size_t index, ONNXTensorElementDataType activation);
//   static bool inputOptional(size_t index);
//   static OrtStatus* readAttributes(OrtKernelInfo const*, std::string const& node, Attributes&);
//       every attribute and constant input checked here, when the session is created;
//   template <ONNXTensorElementDataType kType>
//   static OrtStatus* compute(std::string const& node, Attributes const&, OrtKernelContext*);
//       the rest checked at each run.
template <typename Op, ONNXTensorElementDataType kType>
struct CustomOp : OrtCustomOp
{
    CustomOp()
    {
        std::memset(static_cast<OrtCustomOp*>(this), 0, sizeof(OrtCustomOp));
        version = kApiVersion;
        CreateKernel = nullptr; // CreateKernelV2 reports errors instead
        GetName = [](OrtCustomOp const*) { return Op::kName; };
        GetExecutionProviderType = [](OrtCustomOp const*) -> char const* { return "CPUExecutionProvider"; };
        GetInputTypeCount = [](OrtCustomOp const*) -> size_t { return Op::kNumInputs; };
        GetInputType = [](OrtCustomOp const*, size_t index) { return Op::inputType(index, kType); };
        GetOutputTypeCount = [](OrtCustomOp const*) -> size_t { return 1; };
        GetOutputType = [](OrtCustomOp const*, size_t) { return kType; };
        GetInputCharacteristic = [](OrtCustomOp const*, size_t index) {
            return Op::inputOptional(index) ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
        };
        GetOutputCharacteristic = [](OrtCustomOp const*, size_t) { return INPUT_OUTPUT_REQUIRED; };
        GetInputMemoryType = [](OrtCustomOp const*, size_t) { return OrtMemTypeDefault; };
        GetVariadicInputMinArity = [](OrtCustomOp const*) { return 1; };
        GetVariadicInputHomogeneity = [](OrtCustomOp const*) { return 1; };
        GetVariadicOutputMinArity = [](OrtCustomOp const*) { return 1; };
        GetVariadicOutputHomogeneity = [](OrtCustomOp const*) { return 1; };
        CreateKernelV2 = [](OrtCustomOp const*, OrtApi const*, OrtKernelInfo const* info, void** out) -> OrtStatus* {
            *out = nullptr;
            return guarded(Op::kName, "", [&]() -> OrtStatus* {
                auto kernel = std::make_unique<Kernel<typename Op::Attributes>>();
                kernel->nodeName = nodeNameOf(info);
                if (OrtStatus* status = Op::readAttributes(info, kernel->nodeName, kernel->attrs))
                {
                    return status;
                }
                *out = kernel.release();
                return nullptr;
            });
        };
        KernelComputeV2 = [](void* kernel, OrtKernelContext* context) -> OrtStatus* {
            auto const& k = *static_cast<Kernel<typename Op::Attributes> const*>(kernel);
            return guarded(
                Op::kName, k.nodeName, [&] { return Op::template compute<kType>(k.nodeName, k.attrs, context); });
        };
        KernelDestroy = [](void* kernel) { delete static_cast<Kernel<typename Op::Attributes>*>(kernel); };
        GetStartVersion = [](OrtCustomOp const*) { return 1; };
        GetEndVersion = [](OrtCustomOp const*) { return INT_MAX; };
    }
};

// Adds `Op` for float32, float16 and bfloat16 to `domain` (ORT merges them into one schema with
// per-input type constraints). The op tables live as long as the process, as the domain must.
template <typename Op>
OrtStatus* addForEveryActivationType(OrtCustomOpDomain* domain)
{
    static CustomOp<Op, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT> const opFloat;
    static CustomOp<Op, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16> const opHalf;
    static CustomOp<Op, ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16> const opBf16;
    OrtStatus* status = nullptr;
    for (OrtCustomOp const* op : {static_cast<OrtCustomOp const*>(&opFloat), static_cast<OrtCustomOp const*>(&opHalf),
             static_cast<OrtCustomOp const*>(&opBf16)})
    {
        if (status == nullptr)
        {
            status = api().CustomOpDomain_Add(domain, op);
        }
    }
    return status;
}

} // namespace ort
} // namespace nvfp4
