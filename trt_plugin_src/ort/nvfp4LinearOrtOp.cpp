// ONNX Runtime custom-op library: trt.plugins::NVFP4Linear on the CPU execution provider, the exact
// formula of docs/op-contract.md (shared code in trt_plugin_src/common/). It lets the exported ONNX
// model run anywhere, e.g. to compare it with the torch reference before building a TensorRT engine.
//
// Built against the ONNX Runtime C API headers only (no link against libonnxruntime): ORT calls
// RegisterCustomOps(), which receives the OrtApi. One OrtCustomOp per activation type (float,
// float16, bfloat16) under one name: ORT merges them into one schema with per-input type constraints.
// The op struct declares version 16 and the library asks for API 16, so any ORT >= 1.16 loads it.
#include "floatConvert.h"
#include "nvfp4LinearAttributes.h"
#include "nvfp4LinearCpu.h"
#include "nvfp4MoEOrtOp.h"

#include <onnxruntime_c_api.h>

#include <climits>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace
{

// Lowest ORT API that has everything used here (CreateKernelV2/KernelComputeV2, KernelInfo_GetNodeName).
constexpr uint32_t kOrtApiVersionUsed = 16;

OrtApi const* gApi = nullptr;
// The same API at the version that has KernelContext_ParallelFor (ORT >= 1.17); nullptr on older ORT,
// which then runs the op on one thread.
constexpr uint32_t kOrtApiVersionParallelFor = 17;
OrtApi const* gParallelApi = nullptr;

// Runs `call`; on failure frees ORT's status and returns false (the caller writes its own message).
bool ortOk(OrtStatus* status)
{
    if (status == nullptr)
    {
        return true;
    }
    gApi->ReleaseStatus(status);
    return false;
}

OrtStatus* makeError(std::string const& nodeName, std::string const& message)
{
    std::string const text = std::string(nvfp4::kOpName) + " node '" + nvfp4::printable(nodeName, nvfp4::kMaxEcho, '\'')
        + "': " + message;
    return gApi->CreateStatus(ORT_INVALID_ARGUMENT, text.c_str());
}

// The C++ exception boundary of every callback ORT makes: nothing may unwind into ORT's C code.
template <typename Call>
OrtStatus* guarded(std::string const& nodeName, Call call) noexcept
{
    try
    {
        return call();
    }
    catch (std::bad_alloc const&)
    {
        return gApi->CreateStatus(ORT_FAIL, (std::string(nvfp4::kOpName) + ": out of memory").c_str());
    }
    catch (std::exception const& e)
    {
        try
        {
            return makeError(nodeName, std::string("internal error: ") + e.what());
        }
        catch (...)
        {
        }
    }
    catch (...)
    {
    }
    return gApi->CreateStatus(ORT_FAIL, "NVFP4Linear: internal error");
}

std::vector<int64_t> shapeOf(OrtValue const* value)
{
    OrtTensorTypeAndShapeInfo* info = nullptr;
    std::vector<int64_t> dims;
    if (!ortOk(gApi->GetTensorTypeAndShape(value, &info)))
    {
        return dims;
    }
    size_t rank = 0;
    if (ortOk(gApi->GetDimensionsCount(info, &rank)))
    {
        dims.resize(rank);
        if (!ortOk(gApi->GetDimensions(info, dims.data(), rank)))
        {
            dims.clear();
        }
    }
    gApi->ReleaseTensorTypeAndShapeInfo(info);
    return dims;
}

int64_t elementCount(std::vector<int64_t> const& dims)
{
    int64_t count = 1;
    for (int64_t d : dims)
    {
        count *= d;
    }
    return count;
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
        return nvfp4::math::halfBitsToFloat(v);
    }
    static uint16_t fromFloat(float v)
    {
        return nvfp4::math::floatToHalfBits(v);
    }
};

template <>
struct Activation<ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16>
{
    using Storage = uint16_t;
    static float toFloat(uint16_t v)
    {
        return nvfp4::math::bf16BitsToFloat(v);
    }
    static uint16_t fromFloat(float v)
    {
        return nvfp4::math::floatToBf16Bits(v);
    }
};

struct Kernel
{
    std::string nodeName;
    nvfp4::LinearAttributes attrs;
};

// ---- attribute reading (missing / wrong-typed attributes get our own one-line message) ----

OrtStatus* readInt(OrtKernelInfo const* info, std::string const& node, char const* name, int64_t& out)
{
    if (!ortOk(gApi->KernelInfoGetAttribute_int64(info, name, &out)))
    {
        return makeError(node, std::string("attribute '") + name + "' is missing or not an INT; the op contract "
            "requires in_features, out_features, group_size, mode, input_global_scale, input_global_scale_inv, has_bias");
    }
    return nullptr;
}

OrtStatus* readFloat(OrtKernelInfo const* info, std::string const& node, char const* name, float& out)
{
    if (!ortOk(gApi->KernelInfoGetAttribute_float(info, name, &out)))
    {
        return makeError(node, std::string("attribute '") + name + "' is missing or not a FLOAT");
    }
    return nullptr;
}

OrtStatus* readString(OrtKernelInfo const* info, std::string const& node, char const* name, std::string& out)
{
    size_t size = 0;
    if (!ortOk(gApi->KernelInfoGetAttribute_string(info, name, nullptr, &size)) || size == 0)
    {
        return makeError(node, std::string("attribute '") + name + "' is missing or not a STRING");
    }
    std::vector<char> buffer(size);
    if (!ortOk(gApi->KernelInfoGetAttribute_string(info, name, buffer.data(), &size)))
    {
        return makeError(node, std::string("attribute '") + name + "' could not be read");
    }
    out.assign(buffer.data());
    return nullptr;
}

std::string nodeNameOf(OrtKernelInfo const* info)
{
    size_t size = 0;
    if (!ortOk(gApi->KernelInfo_GetNodeName(info, nullptr, &size)) || size == 0)
    {
        return "";
    }
    std::vector<char> buffer(size);
    if (!ortOk(gApi->KernelInfo_GetNodeName(info, buffer.data(), &size)))
    {
        return "";
    }
    return std::string(buffer.data());
}

OrtStatus* createKernel(OrtKernelInfo const* info, Kernel& kernel)
{
    kernel.nodeName = nodeNameOf(info);
    std::string const& node = kernel.nodeName;
    nvfp4::LinearAttributes& a = kernel.attrs;
    OrtStatus* status = nullptr;
    if ((status = readInt(info, node, nvfp4::kAttrInFeatures, a.inFeatures))
        || (status = readInt(info, node, nvfp4::kAttrOutFeatures, a.outFeatures))
        || (status = readInt(info, node, nvfp4::kAttrGroupSize, a.groupSize))
        || (status = readString(info, node, nvfp4::kAttrMode, a.mode))
        || (status = readFloat(info, node, nvfp4::kAttrInputGlobalScale, a.inputGlobalScale))
        || (status = readFloat(info, node, nvfp4::kAttrInputGlobalScaleInv, a.inputGlobalScaleInv))
        || (status = readInt(info, node, nvfp4::kAttrHasBias, a.hasBias)))
    {
        return status;
    }
    std::string const problem = nvfp4::validateAttributes(a, "attribute");
    if (!problem.empty())
    {
        return makeError(node, problem);
    }
    // The input count before any input is looked at: a node with fewer inputs than has_bias implies
    // must never have its constants read.
    size_t inputCount = 0;
    if (!ortOk(gApi->KernelInfo_GetInputCount(info, &inputCount)))
    {
        return makeError(node, "could not read the input count");
    }
    if (inputCount != static_cast<size_t>(a.numInputs()))
    {
        return makeError(node, "has_bias=" + std::to_string(a.hasBias) + " but the node has " + std::to_string(inputCount)
                + " inputs; expected " + std::to_string(a.numInputs()) + " (x, weight, weight_scale, weight_global_scale"
                + (a.hasBias ? ", bias)" : ")"));
    }
    // Initializers are known now: reject a bad weight / scale shape at session creation, not at Run.
    std::vector<std::vector<int64_t>> shapes{{-1, a.inFeatures}};
    for (size_t i = 1; i < static_cast<size_t>(a.numInputs()); ++i)
    {
        int isConstant = 0;
        OrtValue const* value = nullptr;
        if (ortOk(gApi->KernelInfoGetConstantInput_tensor(info, i, &isConstant, &value)) && isConstant && value)
        {
            shapes.push_back(shapeOf(value));
        }
        else
        {
            // Not an initializer: unknown now, checked at Run.
            shapes.push_back(i <= 2 ? std::vector<int64_t>{-1, -1} : std::vector<int64_t>{-1});
        }
    }
    std::string const shapeProblem = nvfp4::validateInputShapes(a, shapes);
    if (!shapeProblem.empty())
    {
        return makeError(node, shapeProblem);
    }
    return nullptr;
}

// Runs the op's tasks on the session's intra-op thread pool (the threads ORT was told to use).
void parallelFor(OrtKernelContext* context, int64_t count, std::function<void(int64_t)> const& task)
{
    auto trampoline = [](void* data, size_t i) {
        (*static_cast<std::function<void(int64_t)> const*>(data))(static_cast<int64_t>(i));
    };
    if (gParallelApi == nullptr
        || !ortOk(gParallelApi->KernelContext_ParallelFor(context, trampoline, static_cast<size_t>(count), 0,
            const_cast<std::function<void(int64_t)>*>(&task))))
    {
        nvfp4::runSerially(count, task); // each task writes its own rows: rerunning all is harmless
    }
}

template <ONNXTensorElementDataType kType>
OrtStatus* compute(Kernel const& kernel, OrtKernelContext* context)
{
    using Traits = Activation<kType>;
    using Storage = typename Traits::Storage;
    nvfp4::LinearAttributes const& a = kernel.attrs;
    std::string const& node = kernel.nodeName;

    size_t inputCount = 0;
    if (!ortOk(gApi->KernelContext_GetInputCount(context, &inputCount)))
    {
        return makeError(node, "could not read the input count");
    }
    OrtValue const* inputs[5] = {nullptr, nullptr, nullptr, nullptr, nullptr};
    for (size_t i = 0; i < inputCount && i < 5; ++i)
    {
        if (!ortOk(gApi->KernelContext_GetInput(context, i, &inputs[i])))
        {
            inputs[i] = nullptr;
        }
    }
    std::vector<std::vector<int64_t>> shapes;
    for (int32_t i = 0; i < 5 && inputs[i] != nullptr; ++i)
    {
        shapes.push_back(shapeOf(inputs[i]));
    }
    std::string const problem = nvfp4::validateInputShapes(a, shapes);
    if (!problem.empty())
    {
        return makeError(node, problem);
    }

    std::vector<int64_t> outDims = shapes[0];
    int64_t const K = a.inFeatures;
    int64_t const N = a.outFeatures;
    int64_t const M = elementCount(outDims) / K;
    outDims.back() = N;
    OrtValue* output = nullptr;
    if (!ortOk(gApi->KernelContext_GetOutput(context, 0, outDims.data(), outDims.size(), &output)))
    {
        return makeError(node, "could not allocate the output " + nvfp4::shapeToString(outDims));
    }

    void* data[5] = {};
    for (int32_t i = 0; i < a.numInputs(); ++i)
    {
        if (!ortOk(gApi->GetTensorMutableData(const_cast<OrtValue*>(inputs[i]), &data[i])))
        {
            return makeError(node, "could not read input " + std::to_string(i));
        }
    }
    void* outData = nullptr;
    if (!ortOk(gApi->GetTensorMutableData(output, &outData)))
    {
        return makeError(node, "could not write the output");
    }

    // Activation and bias to float32 (exact), the formula, then round the result to T.
    auto const* xIn = static_cast<Storage const*>(data[0]);
    std::vector<float> x(static_cast<size_t>(M * K));
    for (size_t i = 0; i < x.size(); ++i)
    {
        x[i] = Traits::toFloat(xIn[i]);
    }
    std::vector<float> bias;
    if (a.hasBias)
    {
        auto const* biasIn = static_cast<Storage const*>(data[4]);
        bias.resize(static_cast<size_t>(N));
        for (int64_t n = 0; n < N; ++n)
        {
            bias[n] = Traits::toFloat(biasIn[n]);
        }
    }
    std::vector<float> y(static_cast<size_t>(M * N));

    nvfp4::CpuLinearArgs args;
    args.x = x.data();
    args.weight = static_cast<uint8_t const*>(data[1]);
    args.weightScale = static_cast<uint8_t const*>(data[2]);
    args.weightGlobalScale = static_cast<float const*>(data[3]);
    args.weightGlobalScaleLen = elementCount(shapes[3]);
    args.bias = a.hasBias ? bias.data() : nullptr;
    args.y = y.data();
    args.M = M;
    args.N = N;
    args.K = K;
    args.w4a4 = a.w4a4();
    args.inputGlobalScale = a.inputGlobalScale;
    args.inputGlobalScaleInv = a.inputGlobalScaleInv;
    nvfp4::linearCpu(args, [context](int64_t count, std::function<void(int64_t)> const& task) {
        parallelFor(context, count, task);
    });

    auto* yOut = static_cast<Storage*>(outData);
    for (size_t i = 0; i < y.size(); ++i)
    {
        yOut[i] = Traits::fromFloat(y[i]);
    }
    return nullptr;
}

// ---- the OrtCustomOp callbacks, one op object per activation type ----

template <ONNXTensorElementDataType kType>
struct LinearOp : OrtCustomOp
{
    LinearOp()
    {
        std::memset(static_cast<OrtCustomOp*>(this), 0, sizeof(OrtCustomOp));
        version = kOrtApiVersionUsed;
        CreateKernel = nullptr; // CreateKernelV2 reports errors instead
        GetName = [](OrtCustomOp const*) { return nvfp4::kOpName; };
        GetExecutionProviderType = [](OrtCustomOp const*) -> char const* { return "CPUExecutionProvider"; };
        GetInputTypeCount = [](OrtCustomOp const*) -> size_t { return 5; };
        GetInputType = [](OrtCustomOp const*, size_t index) {
            // x, weight, weight_scale, weight_global_scale, bias (docs/op-contract.md "Inputs")
            switch (index)
            {
            case 1:
            case 2: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
            case 3: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
            default: return kType;
            }
        };
        GetOutputTypeCount = [](OrtCustomOp const*) -> size_t { return 1; };
        GetOutputType = [](OrtCustomOp const*, size_t) { return kType; };
        GetInputCharacteristic = [](OrtCustomOp const*, size_t index) {
            return index == 4 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
        };
        GetOutputCharacteristic = [](OrtCustomOp const*, size_t) { return INPUT_OUTPUT_REQUIRED; };
        GetInputMemoryType = [](OrtCustomOp const*, size_t) { return OrtMemTypeDefault; };
        GetVariadicInputMinArity = [](OrtCustomOp const*) { return 1; };
        GetVariadicInputHomogeneity = [](OrtCustomOp const*) { return 1; };
        GetVariadicOutputMinArity = [](OrtCustomOp const*) { return 1; };
        GetVariadicOutputHomogeneity = [](OrtCustomOp const*) { return 1; };
        CreateKernelV2 = [](OrtCustomOp const*, OrtApi const*, OrtKernelInfo const* info, void** out) -> OrtStatus* {
            *out = nullptr;
            return guarded("", [&]() -> OrtStatus* {
                auto kernel = std::make_unique<Kernel>();
                if (OrtStatus* status = createKernel(info, *kernel))
                {
                    return status;
                }
                *out = kernel.release();
                return nullptr;
            });
        };
        KernelComputeV2 = [](void* kernel, OrtKernelContext* context) -> OrtStatus* {
            auto const& k = *static_cast<Kernel*>(kernel);
            return guarded(k.nodeName, [&] { return compute<kType>(k, context); });
        };
        KernelDestroy = [](void* kernel) { delete static_cast<Kernel*>(kernel); };
        GetStartVersion = [](OrtCustomOp const*) { return 1; };
        GetEndVersion = [](OrtCustomOp const*) { return INT_MAX; };
    }
};

LinearOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT> const gOpFloat;
LinearOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16> const gOpHalf;
LinearOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16> const gOpBf16;

} // namespace

// ORT's entry point for SessionOptions.register_custom_ops_library(). The domain must outlive every
// session that uses it, so it is created once per process and never released.
extern "C" OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, OrtApiBase const* apiBase)
{
    static std::mutex mutex;
    static OrtCustomOpDomain* domain = nullptr;
    std::lock_guard<std::mutex> lock(mutex);
    if (gApi == nullptr)
    {
        gApi = apiBase->GetApi(kOrtApiVersionUsed);
        if (gApi == nullptr)
        {
            return nullptr; // cannot even create a status; ORT then reports the op as unregistered
        }
        gParallelApi = apiBase->GetApi(kOrtApiVersionParallelFor);
    }
    if (domain == nullptr)
    {
        OrtStatus* status = gApi->CreateCustomOpDomain(nvfp4::kOpDomain, &domain);
        for (OrtCustomOp const* op : {static_cast<OrtCustomOp const*>(&gOpFloat),
                 static_cast<OrtCustomOp const*>(&gOpHalf), static_cast<OrtCustomOp const*>(&gOpBf16)})
        {
            if (status == nullptr)
            {
                status = gApi->CustomOpDomain_Add(domain, op);
            }
        }
        status = status ? status : nvfp4::addMoEOrtOps(gApi, domain);
        if (status != nullptr)
        {
            domain = nullptr;
            return status;
        }
    }
    return gApi->AddCustomOpDomain(options, domain);
}
