// ONNX Runtime CPU op trt.plugins::NVFP4MoE: one Mixture-of-Experts block, the exact formula of
// docs/op-contract-moe.md (common/nvfp4MoECpu.h, whose expert linears are nvfp4LinearCpu.h's).
// Every attribute and constant input shape is checked when the kernel is created, the rest at each
// run, before any data is touched; refusals are one line naming the node (ortOpSupport.h).
#include "nvfp4MoEAttributes.h"
#include "nvfp4MoECpu.h"
#include "ortOpSupport.h"
#include "ortOps.h"

#include <string>
#include <vector>

namespace
{

using nvfp4::ort::error;

struct MoEOrtOp
{
    static constexpr char const* kName = nvfp4::kMoEOpName;
    using Attributes = nvfp4::MoEAttributes;
    static constexpr size_t kNumInputs = nvfp4::kMoENumInputs;

    // x, router_logits: T; weights and block scales: INT8 bytes; weight global scales: FLOAT
    // (docs/op-contract-moe.md, "Inputs").
    static ONNXTensorElementDataType inputType(size_t index, ONNXTensorElementDataType activation)
    {
        switch (index)
        {
        case 0:
        case 1: return activation;
        case 4:
        case 7: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
        default: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
        }
    }
    static bool inputOptional(size_t /*index*/)
    {
        return false;
    }

    static OrtStatus* readAttributes(OrtKernelInfo const* info, std::string const& node, Attributes& a)
    {
        nvfp4::ort::AttributeReader read(info);
        bool const complete = read.int64(nvfp4::kMoEAttrNumExperts, a.numExperts)
            && read.int64(nvfp4::kMoEAttrTopK, a.topK) && read.int64(nvfp4::kMoEAttrHiddenSize, a.hiddenSize)
            && read.int64(nvfp4::kMoEAttrIntermediateSize, a.intermediateSize)
            && read.int64(nvfp4::kMoEAttrGroupSize, a.groupSize) && read.string(nvfp4::kMoEAttrMode, a.mode)
            && read.string(nvfp4::kMoEAttrActivation, a.activation)
            && read.int64(nvfp4::kMoEAttrNormalizeTopk, a.normalizeTopk)
            && read.floats(nvfp4::kMoEAttrW13InputGlobalScale, a.w13InputScale)
            && read.floats(nvfp4::kMoEAttrW13InputGlobalScaleInv, a.w13InputScaleInv)
            && read.floats(nvfp4::kMoEAttrW2InputGlobalScale, a.w2InputScale)
            && read.floats(nvfp4::kMoEAttrW2InputGlobalScaleInv, a.w2InputScaleInv);
        if (!complete)
        {
            return error(kName, node, read.problem());
        }
        std::string problem = nvfp4::validateMoEAttributes(a, "attribute");
        if (!problem.empty())
        {
            return error(kName, node, problem);
        }
        int64_t const inputCount = nvfp4::ort::inputCountOf(info);
        if (inputCount != nvfp4::kMoENumInputs)
        {
            return error(kName, node, "expected 8 inputs, got " + std::to_string(inputCount));
        }
        std::vector<std::vector<int64_t>> shapes{{-1, a.hiddenSize}, {-1, a.numExperts}};
        for (size_t i = 2; i < nvfp4::kMoENumInputs; ++i)
        {
            shapes.push_back(nvfp4::ort::constantShapeOr(info, i, std::vector<int64_t>(i == 4 || i == 7 ? 2 : 3, -1)));
        }
        problem = nvfp4::validateMoEInputShapes(a, shapes);
        return problem.empty() ? nullptr : error(kName, node, problem);
    }

    template <ONNXTensorElementDataType kType>
    static OrtStatus* compute(std::string const& node, Attributes const& a, OrtKernelContext* context)
    {
        nvfp4::ort::Inputs const inputs = nvfp4::ort::inputsOf(context);
        std::vector<std::vector<int64_t>> const& shapes = inputs.shapes;
        std::string const problem = nvfp4::validateMoEInputShapes(a, shapes);
        if (!problem.empty())
        {
            return error(kName, node, problem);
        }
        std::vector<int64_t> const& outDims = shapes[0];
        int64_t const H = a.hiddenSize, E = a.numExperts;
        int64_t const M = nvfp4::ort::elementCount(outDims) / H;
        std::vector<void*> data;
        void* outData = nullptr;
        std::string const failed = nvfp4::ort::bindData(context, inputs, outDims, data, outData);
        if (!failed.empty())
        {
            return error(kName, node, failed);
        }

        // Activations to float32 (exact), the formula, then the one rounding of y to T.
        std::vector<float> const x = nvfp4::ort::toFloats<kType>(data[0], M * H);
        std::vector<float> const logits = nvfp4::ort::toFloats<kType>(data[1], M * E);
        std::vector<float> y(static_cast<size_t>(M * H));
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
        nvfp4::ort::fromFloats<kType>(y, outData);
        return nullptr;
    }
};

} // namespace

OrtStatus* nvfp4::addMoEOrtOps(OrtCustomOpDomain* domain)
{
    return ort::addForEveryActivationType<MoEOrtOp>(domain);
}
