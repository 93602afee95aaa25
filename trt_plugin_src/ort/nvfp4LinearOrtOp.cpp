// ONNX Runtime CPU op trt.plugins::NVFP4Linear: the exact formula of docs/op-contract.md
// (common/nvfp4LinearCpu.h), its rows spread over the session's thread pool. Every attribute and
// constant input shape is checked when the kernel is created, the rest at each run, before any data
// is touched; refusals are one line naming the node (ortOpSupport.h).
#include "nvfp4LinearAttributes.h"
#include "nvfp4LinearCpu.h"
#include "ortOpSupport.h"
#include "ortOps.h"

#include <string>
#include <vector>

namespace
{

using nvfp4::ort::error;

struct LinearOrtOp
{
    static constexpr char const* kName = nvfp4::kOpName;
    using Attributes = nvfp4::LinearAttributes;
    static constexpr size_t kNumInputs = 5;

    // x, weight, weight_scale, weight_global_scale, bias (docs/op-contract.md, "Inputs").
    static ONNXTensorElementDataType inputType(size_t index, ONNXTensorElementDataType activation)
    {
        switch (index)
        {
        case 1:
        case 2: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
        case 3: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
        default: return activation;
        }
    }
    static bool inputOptional(size_t index)
    {
        return index == 4;
    }

    static OrtStatus* readAttributes(OrtKernelInfo const* info, std::string const& node, Attributes& a)
    {
        nvfp4::ort::AttributeReader read(info);
        bool const complete = read.int64(nvfp4::kAttrInFeatures, a.inFeatures)
            && read.int64(nvfp4::kAttrOutFeatures, a.outFeatures) && read.int64(nvfp4::kAttrGroupSize, a.groupSize)
            && read.string(nvfp4::kAttrMode, a.mode) && read.float32(nvfp4::kAttrInputGlobalScale, a.inputGlobalScale)
            && read.float32(nvfp4::kAttrInputGlobalScaleInv, a.inputGlobalScaleInv)
            && read.int64(nvfp4::kAttrHasBias, a.hasBias);
        if (!complete)
        {
            return error(kName, node, read.problem());
        }
        std::string const problem = nvfp4::validateAttributes(a, "attribute");
        if (!problem.empty())
        {
            return error(kName, node, problem);
        }
        // The input count before any input is looked at: a node with fewer inputs than has_bias
        // implies must never have its constants read.
        int64_t const inputCount = nvfp4::ort::inputCountOf(info);
        if (inputCount != a.numInputs())
        {
            return error(kName, node,
                "has_bias=" + std::to_string(a.hasBias) + " but the node has " + std::to_string(inputCount)
                    + " inputs; expected " + std::to_string(a.numInputs())
                    + " (x, weight, weight_scale, weight_global_scale" + (a.hasBias ? ", bias)" : ")"));
        }
        std::vector<std::vector<int64_t>> shapes{{-1, a.inFeatures}};
        for (size_t i = 1; i < static_cast<size_t>(a.numInputs()); ++i)
        {
            shapes.push_back(nvfp4::ort::constantShapeOr(info, i, std::vector<int64_t>(i <= 2 ? 2 : 1, -1)));
        }
        std::string const shapeProblem = nvfp4::validateInputShapes(a, shapes);
        return shapeProblem.empty() ? nullptr : error(kName, node, shapeProblem);
    }

    template <ONNXTensorElementDataType kType>
    static OrtStatus* compute(std::string const& node, Attributes const& a, OrtKernelContext* context)
    {
        nvfp4::ort::Inputs const inputs = nvfp4::ort::inputsOf(context);
        std::vector<std::vector<int64_t>> const& shapes = inputs.shapes;
        std::string const problem = nvfp4::validateInputShapes(a, shapes);
        if (!problem.empty())
        {
            return error(kName, node, problem);
        }
        std::vector<int64_t> outDims = shapes[0];
        int64_t const K = a.inFeatures;
        int64_t const N = a.outFeatures;
        int64_t const M = nvfp4::ort::elementCount(outDims) / K;
        outDims.back() = N;
        std::vector<void*> data;
        void* outData = nullptr;
        std::string const failed = nvfp4::ort::bindData(context, inputs, outDims, data, outData);
        if (!failed.empty())
        {
            return error(kName, node, failed);
        }

        // Activation and bias to float32 (exact), the formula, then round the result to T.
        std::vector<float> const x = nvfp4::ort::toFloats<kType>(data[0], M * K);
        std::vector<float> const bias = a.hasBias ? nvfp4::ort::toFloats<kType>(data[4], N) : std::vector<float>();
        std::vector<float> y(static_cast<size_t>(M * N));
        nvfp4::CpuLinearArgs args;
        args.x = x.data();
        args.weight = static_cast<uint8_t const*>(data[1]);
        args.weightScale = static_cast<uint8_t const*>(data[2]);
        args.weightGlobalScale = static_cast<float const*>(data[3]);
        args.weightGlobalScaleLen = nvfp4::ort::elementCount(shapes[3]);
        args.bias = a.hasBias ? bias.data() : nullptr;
        args.y = y.data();
        args.M = M;
        args.N = N;
        args.K = K;
        args.w4a4 = a.w4a4();
        args.inputGlobalScale = a.inputGlobalScale;
        args.inputGlobalScaleInv = a.inputGlobalScaleInv;
        nvfp4::linearCpu(args, [context](int64_t count, std::function<void(int64_t)> const& task) {
            nvfp4::ort::parallelFor(context, count, task);
        });
        nvfp4::ort::fromFloats<kType>(y, outData);
        return nullptr;
    }
};

} // namespace

OrtStatus* nvfp4::addLinearOrtOps(OrtCustomOpDomain* domain)
{
    return ort::addForEveryActivationType<LinearOrtOp>(domain);
}
