/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * NVFP4MoE TensorRT plugin: what only this op knows (its inputs, the kernels' limits, workspace and
 * kernel launch). The fields are read and written by NVFP4MoEFields.cpp; the plugin plumbing and
 * the creator are common/pluginV3OneBase.h.
 */
#include "NVFP4MoEPlugin.h"
#include "nvfp4MoEKernels.h"
#include "pluginTensors.h"

#include <cuda_runtime_api.h>

using namespace nvinfer1;
using namespace nvinfer1::plugin;

namespace
{

// What the CUDA kernels cannot run (the contract itself has no such limits).
std::string checkKernelLimits(nvfp4::MoEAttributes const& a)
{
    if (a.numExperts > nvfp4::kMoEMaxExperts)
    {
        return "field 'num_experts' = " + std::to_string(a.numExperts) + " exceeds the CUDA kernels' limit of "
            + std::to_string(nvfp4::kMoEMaxExperts);
    }
    if (a.topK > nvfp4::kMoEMaxTopK)
    {
        return "field 'top_k' = " + std::to_string(a.topK) + " exceeds the CUDA kernels' limit of "
            + std::to_string(nvfp4::kMoEMaxTopK);
    }
    if (a.intermediateSize / 16 > 65535 || a.hiddenSize / 32 > 65535)
    {
        return "hidden_size / 32 and intermediate_size / 16 must be at most 65535 (a CUDA grid dimension)";
    }
    return "";
}

} // namespace

std::string NVFP4MoEPlugin::parseFields(PluginFieldCollection const* fc, Attributes& out)
{
    std::string const problem = nvfp4::parseMoEFields(fc, out);
    return problem.empty() ? checkKernelLimits(out) : problem;
}

int32_t NVFP4MoEPlugin::numInputs() const
{
    return nvfp4::kMoENumInputs;
}

char const* NVFP4MoEPlugin::inputName(int32_t i) const
{
    return nvfp4::kMoEInputNames[i];
}

// docs/op-contract-moe.md, "Inputs": router_logits has the type of x, the weights and block scales
// are bytes, the weight global scales float32.
DataType NVFP4MoEPlugin::inputType(int32_t i, DataType x) const
{
    switch (i)
    {
    case 1: return x;
    case 4:
    case 7: return DataType::kFLOAT;
    default: return DataType::kINT8;
    }
}

std::string NVFP4MoEPlugin::checkInputShapes(std::vector<std::vector<int64_t>> const& shapes) const
{
    return nvfp4::validateMoEInputShapes(mAttrs, shapes);
}

int64_t NVFP4MoEPlugin::outputChannels() const
{
    return mAttrs.hiddenSize; // y has x's shape
}

size_t NVFP4MoEPlugin::kernelWorkspaceSize(int64_t rows, nvfp4::ActType type) const
{
    return nvfp4::moeWorkspaceSize(rows, static_cast<int32_t>(mAttrs.numExperts), static_cast<int32_t>(mAttrs.topK),
        mAttrs.hiddenSize, mAttrs.intermediateSize, mAttrs.w4a4(), type);
}

int32_t NVFP4MoEPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    try
    {
        if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr)
        {
            reportError("enqueue got null tensor descriptions or pointers");
            return -1;
        }
        nvfp4::MoEParams p;
        p.x = inputs[0];
        p.routerLogits = inputs[1];
        p.w13Weight = static_cast<int8_t const*>(inputs[2]);
        p.w13Scale = static_cast<int8_t const*>(inputs[3]);
        p.w13GlobalScale = static_cast<float const*>(inputs[4]);
        p.w2Weight = static_cast<int8_t const*>(inputs[5]);
        p.w2Scale = static_cast<int8_t const*>(inputs[6]);
        p.w2GlobalScale = static_cast<float const*>(inputs[7]);
        p.y = outputs[0];
        p.M = nvfp4::rowsOf(inputDesc[0].dims);
        p.numExperts = static_cast<int32_t>(mAttrs.numExperts);
        p.topK = static_cast<int32_t>(mAttrs.topK);
        p.hiddenSize = mAttrs.hiddenSize;
        p.intermediateSize = mAttrs.intermediateSize;
        p.w4a4 = mAttrs.w4a4();
        p.normalizeTopk = mAttrs.normalizeTopk != 0;
        p.w13InputScale = mAttrs.w13InputScale.data();
        p.w13InputScaleInv = mAttrs.w13InputScaleInv.data();
        p.w2InputScale = mAttrs.w2InputScale.data();
        p.w2InputScaleInv = mAttrs.w2InputScaleInv.data();
        p.actType = nvfp4::toActType(inputDesc[0].type);
        p.workspace = nvfp4::alignWorkspace(workspace);
        if (p.M == 0)
        {
            return 0;
        }
        cudaError_t const status = nvfp4::launchMoE(p, stream);
        if (status != cudaSuccess)
        {
            reportError(std::string("kernel launch failed for M=") + std::to_string(p.M) + ", num_experts="
                + std::to_string(p.numExperts) + ", top_k=" + std::to_string(p.topK) + ", hidden_size="
                + std::to_string(p.hiddenSize) + ", intermediate_size=" + std::to_string(p.intermediateSize) + ": "
                + cudaGetErrorString(status));
            return -1;
        }
        return 0;
    }
    catch (...)
    {
        return -1;
    }
}
