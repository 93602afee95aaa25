/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * NVFP4Linear TensorRT plugin: what only this op knows (its inputs, output shape, workspace and
 * kernel launch). The fields are read and written by NVFP4LinearFields.cpp; the plugin plumbing
 * and the creator are common/pluginV3OneBase.h; the library's entry points (getCreators, static
 * registration, logger) are trt_plugin_src/api/pluginLibrary.cpp and common/pluginLogging.cpp.
 */
#include "NVFP4LinearPlugin.h"
#include "nvfp4LinearKernels.h"
#include "pluginLogging.h"
#include "pluginTensors.h"

#include <cuda_runtime_api.h>

#include <mutex>

using namespace nvinfer1;
using namespace nvinfer1::plugin;

namespace
{

// docs/op-contract.md, "Inputs".
constexpr char const* kInputNames[] = {"x", "weight", "weight_scale", "weight_global_scale", "bias"};

} // namespace

int32_t NVFP4LinearPlugin::numInputs() const
{
    return mAttrs.numInputs();
}

char const* NVFP4LinearPlugin::inputName(int32_t i) const
{
    return kInputNames[i];
}

DataType NVFP4LinearPlugin::inputType(int32_t i, DataType x) const
{
    switch (i)
    {
    case 1:
    case 2: return DataType::kINT8;  // weight, weight_scale: bytes
    case 3: return DataType::kFLOAT; // weight_global_scale
    default: return x;               // bias
    }
}

std::string NVFP4LinearPlugin::checkInputShapes(std::vector<std::vector<int64_t>> const& shapes) const
{
    return nvfp4::validateInputShapes(mAttrs, shapes);
}

int64_t NVFP4LinearPlugin::outputChannels() const
{
    return mAttrs.outFeatures;
}

size_t NVFP4LinearPlugin::kernelWorkspaceSize(int64_t rows, nvfp4::ActType type) const
{
    return nvfp4::workspaceSize(rows, mAttrs.outFeatures, mAttrs.inFeatures, mAttrs.w4a4(), type);
}

int32_t NVFP4LinearPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    try
    {
        if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr)
        {
            reportError("enqueue got null tensor descriptions or pointers");
            return -1;
        }
        nvfp4::LinearParams p;
        p.x = inputs[0];
        p.weight = static_cast<int8_t const*>(inputs[1]);
        p.weightScale = static_cast<int8_t const*>(inputs[2]);
        p.weightGlobalScale = static_cast<float const*>(inputs[3]);
        p.weightGlobalScaleLen = static_cast<int32_t>(nvfp4::volume(inputDesc[3].dims));
        p.bias = mAttrs.hasBias ? inputs[4] : nullptr;
        p.y = outputs[0];
        p.M = nvfp4::rowsOf(inputDesc[0].dims);
        p.N = mAttrs.outFeatures;
        p.K = mAttrs.inFeatures;
        p.w4a4 = mAttrs.w4a4();
        p.inputGlobalScale = mAttrs.inputGlobalScale;
        p.inputGlobalScaleInv = mAttrs.inputGlobalScaleInv;
        p.actType = nvfp4::toActType(inputDesc[0].type);
        p.workspace = nvfp4::alignWorkspace(workspace);
        if (p.M == 0)
        {
            return 0;
        }
        cudaError_t const status = nvfp4::launchLinear(p, stream);
        if (status != cudaSuccess)
        {
            reportError(std::string("kernel launch failed for M=") + std::to_string(p.M) + ", N="
                + std::to_string(p.N) + ", K=" + std::to_string(p.K) + ": " + cudaGetErrorString(status));
            return -1;
        }
        // Once per process each: why Blackwell's native FP4 GEMM or the large-M dequantize-then-GEMM
        // path (both cuBLASLt) was not used.
        if (char const* why = nvfp4::nativeFp4Status())
        {
            static std::once_flag once;
            std::call_once(once, [why] {
                nvfp4::report(ILogger::Severity::kWARNING, std::string(why) + "; using the 16-bit tensor-core kernels");
            });
        }
        if (char const* why = nvfp4::dequantGemmStatus())
        {
            static std::once_flag once;
            std::call_once(once, [why] {
                nvfp4::report(ILogger::Severity::kWARNING, std::string(why) + "; using the fused-decode kernels");
            });
        }
        return 0;
    }
    catch (...)
    {
        return -1;
    }
}
