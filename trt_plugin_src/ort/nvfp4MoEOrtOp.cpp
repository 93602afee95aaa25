// ONNX Runtime CPU op trt.plugins::NVFP4MoE: one Mixture-of-Experts block, the exact formula of
// docs/op-contract-moe.md (common/nvfp4MoECpu.h, whose expert linears are nvfp4LinearCpu.h's).
// Registered beside NVFP4Linear by the library's RegisterCustomOps (nvfp4LinearOrtOp.cpp); like it,
// one OrtCustomOp per activation type under one name, op struct version 16 (ORT >= 1.16).
// Every attribute and input shape is checked before any data is touched, and no C++ exception
// crosses into ORT: each is turned into one error line naming the node.
#include "nvfp4MoEOrtOp.h"

#include "nvfp4MoEAttributes.h"
#include "nvfp4MoECpu.h"
#include "ortOpSupport.h"

#include <climits>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace
{

constexpr uint32_t kOrtApiVersionUsed = 16;

OrtApi const* gApi = nullptr;

OrtStatus* makeError(std::string const& nodeName, std::string const& message, OrtErrorCode code = ORT_INVALID_ARGUMENT)
{
    std::string const text = std::string(nvfp4::kMoEOpName) + " node '" + nodeName + "': " + message;
    return gApi->CreateStatus(code, text.c_str());
}

struct Kernel
{
    std::string nodeName;
    nvfp4::MoEAttributes attrs;
};

OrtStatus* readAttributes(OrtKernelInfo const* info, std::string const& node, nvfp4::MoEAttributes& a)
{
    static char const* const kTypeName[] = {"an INT", "a STRING", "a FLOATS"};
    for (int32_t i = 0; i < nvfp4::kMoENumFields; ++i)
    {
        nvfp4::MoEFieldSpec const& f = nvfp4::kMoEFields[i];
        bool read = false;
        switch (f.kind)
        {
        case nvfp4::MoEFieldKind::kInt: read = nvfp4::ort::readInt(*gApi, info, f.name, *a.intField(i)); break;
        case nvfp4::MoEFieldKind::kString: read = nvfp4::ort::readString(*gApi, info, f.name, *a.stringField(i)); break;
        case nvfp4::MoEFieldKind::kFloats: read = nvfp4::ort::readFloats(*gApi, info, f.name, *a.floatsField(i)); break;
        }
        if (!read)
        {
            return makeError(node, std::string("attribute '") + f.name + "' is missing or not "
                    + kTypeName[static_cast<int32_t>(f.kind)] + "; the op contract requires " + nvfp4::moeFieldList());
        }
    }
    return nullptr;
}

OrtStatus* createKernel(OrtKernelInfo const* info, Kernel& kernel)
{
    kernel.nodeName = nvfp4::ort::nodeNameOf(*gApi, info);
    std::string const& node = kernel.nodeName;
    nvfp4::MoEAttributes& a = kernel.attrs;
    if (OrtStatus* status = readAttributes(info, node, a))
    {
        return status;
    }
    std::string problem = nvfp4::validateMoEAttributes(a, "attribute");
    if (!problem.empty())
    {
        return makeError(node, problem);
    }
    // Initializers are known now: reject a bad weight / scale shape at session creation, not at Run.
    size_t inputCount = 0;
    if (!nvfp4::ort::ok(*gApi, gApi->KernelInfo_GetInputCount(info, &inputCount)) || inputCount != 8)
    {
        return makeError(node, "expected 8 inputs, got " + std::to_string(inputCount));
    }
    std::vector<std::vector<int64_t>> shapes{{-1, a.hiddenSize}, {-1, a.numExperts}};
    for (size_t i = 2; i < 8; ++i)
    {
        int isConstant = 0;
        OrtValue const* value = nullptr;
        if (nvfp4::ort::ok(*gApi, gApi->KernelInfoGetConstantInput_tensor(info, i, &isConstant, &value)) && isConstant
            && value)
        {
            shapes.push_back(nvfp4::ort::shapeOf(*gApi, value));
        }
        else
        {
            shapes.push_back(std::vector<int64_t>(i == 4 || i == 7 ? 2 : 3, -1)); // checked at Run
        }
    }
    problem = nvfp4::validateMoEInputShapes(a, shapes);
    return problem.empty() ? nullptr : makeError(node, problem);
}

template <ONNXTensorElementDataType kType>
OrtStatus* compute(Kernel const& kernel, OrtKernelContext* context)
{
    using Traits = nvfp4::ort::Activation<kType>;
    using Storage = typename Traits::Storage;
    nvfp4::MoEAttributes const& a = kernel.attrs;
    std::string const& node = kernel.nodeName;

    OrtValue const* inputs[8] = {};
    std::vector<std::vector<int64_t>> shapes;
    void* data[8] = {};
    for (size_t i = 0; i < 8; ++i)
    {
        if (!nvfp4::ort::ok(*gApi, gApi->KernelContext_GetInput(context, i, &inputs[i])) || inputs[i] == nullptr)
        {
            return makeError(node, std::string("input '") + nvfp4::kMoEInputNames[i] + "' is missing");
        }
        shapes.push_back(nvfp4::ort::shapeOf(*gApi, inputs[i]));
    }
    std::string const problem = nvfp4::validateMoEInputShapes(a, shapes);
    if (!problem.empty())
    {
        return makeError(node, problem);
    }
    for (size_t i = 0; i < 8; ++i)
    {
        if (!nvfp4::ort::ok(*gApi, gApi->GetTensorMutableData(const_cast<OrtValue*>(inputs[i]), &data[i])))
        {
            return makeError(node, std::string("could not read input '") + nvfp4::kMoEInputNames[i] + "'");
        }
    }
    std::vector<int64_t> const& outDims = shapes[0];
    int64_t const H = a.hiddenSize, E = a.numExperts;
    int64_t const M = nvfp4::ort::elementCount(outDims) / H;
    OrtValue* output = nullptr;
    void* outData = nullptr;
    if (!nvfp4::ort::ok(*gApi, gApi->KernelContext_GetOutput(context, 0, outDims.data(), outDims.size(), &output))
        || !nvfp4::ort::ok(*gApi, gApi->GetTensorMutableData(output, &outData)))
    {
        return makeError(node, "could not allocate the output " + nvfp4::shapeToString(outDims));
    }

    // Activations to float32 (exact), the formula, then the one rounding of y to T.
    std::vector<float> x(static_cast<size_t>(M * H)), logits(static_cast<size_t>(M * E)), y(static_cast<size_t>(M * H));
    auto const* xIn = static_cast<Storage const*>(data[0]);
    auto const* logitsIn = static_cast<Storage const*>(data[1]);
    for (size_t i = 0; i < x.size(); ++i)
    {
        x[i] = Traits::toFloat(xIn[i]);
    }
    for (size_t i = 0; i < logits.size(); ++i)
    {
        logits[i] = Traits::toFloat(logitsIn[i]);
    }
    nvfp4::CpuMoEArgs args;
    args.x = x.data();
    args.routerLogits = logits.data();
    args.w13 = static_cast<uint8_t const*>(data[2]);
    args.w13Scale = static_cast<uint8_t const*>(data[3]);
    args.w13GlobalScale = static_cast<float const*>(data[4]);
    args.w2 = static_cast<uint8_t const*>(data[5]);
    args.w2Scale = static_cast<uint8_t const*>(data[6]);
    args.w2GlobalScale = static_cast<float const*>(data[7]);
    args.y = y.data();
    args.M = M;
    args.type = kType == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ? nvfp4::RoundType::kFloat
        : kType == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16     ? nvfp4::RoundType::kHalf
                                                             : nvfp4::RoundType::kBf16;
    nvfp4::moeCpu(args, a);
    auto* yOut = static_cast<Storage*>(outData);
    for (size_t i = 0; i < y.size(); ++i)
    {
        yOut[i] = Traits::fromFloat(y[i]);
    }
    return nullptr;
}

// Runs `body`; a C++ exception becomes one ORT error naming the node.
template <typename Body>
OrtStatus* guarded(std::string const& node, Body&& body) noexcept
{
    try
    {
        return body();
    }
    catch (std::exception const& e)
    {
        return makeError(node, std::string("internal error: ") + e.what(), ORT_RUNTIME_EXCEPTION);
    }
    catch (...)
    {
        return makeError(node, "internal error", ORT_RUNTIME_EXCEPTION);
    }
}

template <ONNXTensorElementDataType kType>
struct MoEOp : OrtCustomOp
{
    MoEOp()
    {
        std::memset(static_cast<OrtCustomOp*>(this), 0, sizeof(OrtCustomOp));
        version = kOrtApiVersionUsed;
        CreateKernel = nullptr; // CreateKernelV2 reports errors instead
        GetName = [](OrtCustomOp const*) { return nvfp4::kMoEOpName; };
        GetExecutionProviderType = [](OrtCustomOp const*) -> char const* { return "CPUExecutionProvider"; };
        GetInputTypeCount = [](OrtCustomOp const*) -> size_t { return nvfp4::kMoENumInputs; };
        GetInputType = [](OrtCustomOp const*, size_t index) {
            // x, router_logits: T; weights and block scales: INT8 bytes; global scales: FLOAT.
            switch (index)
            {
            case 0:
            case 1: return kType;
            case 4:
            case 7: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
            default: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
            }
        };
        GetOutputTypeCount = [](OrtCustomOp const*) -> size_t { return 1; };
        GetOutputType = [](OrtCustomOp const*, size_t) { return kType; };
        GetInputCharacteristic = [](OrtCustomOp const*, size_t) { return INPUT_OUTPUT_REQUIRED; };
        GetOutputCharacteristic = [](OrtCustomOp const*, size_t) { return INPUT_OUTPUT_REQUIRED; };
        GetInputMemoryType = [](OrtCustomOp const*, size_t) { return OrtMemTypeDefault; };
        GetVariadicInputMinArity = [](OrtCustomOp const*) { return 1; };
        GetVariadicInputHomogeneity = [](OrtCustomOp const*) { return 1; };
        GetVariadicOutputMinArity = [](OrtCustomOp const*) { return 1; };
        GetVariadicOutputHomogeneity = [](OrtCustomOp const*) { return 1; };
        CreateKernelV2 = [](OrtCustomOp const*, OrtApi const*, OrtKernelInfo const* info, void** out) -> OrtStatus* {
            *out = nullptr;
            return guarded(nvfp4::ort::nodeNameOf(*gApi, info), [&]() -> OrtStatus* {
                auto* kernel = new Kernel();
                if (OrtStatus* status = createKernel(info, *kernel))
                {
                    delete kernel;
                    return status;
                }
                *out = kernel;
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

MoEOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT> const gOpFloat;
MoEOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16> const gOpHalf;
MoEOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16> const gOpBf16;

} // namespace

OrtStatus* nvfp4::addMoEOrtOps(OrtApi const* api, OrtCustomOpDomain* domain)
{
    gApi = api;
    OrtStatus* status = nullptr;
    for (OrtCustomOp const* op : {static_cast<OrtCustomOp const*>(&gOpFloat), static_cast<OrtCustomOp const*>(&gOpHalf),
             static_cast<OrtCustomOp const*>(&gOpBf16)})
    {
        if (status == nullptr)
        {
            status = api->CustomOpDomain_Add(domain, op);
        }
    }
    return status;
}
