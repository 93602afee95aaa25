/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * NVFP4Linear TensorRT plugin (IPluginV3, "V3One" capabilities): y = x · Ŵᵀ with FP4 (E2M1) weights,
 * FP8-E4M3 block scales per 16 along K and FP32 global scales; the activation is quantized
 * dynamically to NVFP4 ("w4a4") or used as is ("w4a16"). The op contract (inputs, fields, formula)
 * is docs/op-contract.md and NVFP4Linear_PluginConfig.yaml; the CUDA kernels are in kernels/.
 * What every plugin of the library shares (identity, clone, type checks, the creator) is
 * common/pluginV3OneBase.h.
 */
#pragma once

#include "NVFP4LinearFields.h"
#include "nvfp4LinearAttributes.h"
#include "pluginV3OneBase.h"

#include <NvInferRuntime.h>

#include <string>
#include <vector>

namespace nvinfer1
{
namespace plugin
{

class NVFP4LinearPlugin : public nvfp4::PluginV3OneBase<NVFP4LinearPlugin, nvfp4::LinearAttributes>
{
public:
    static constexpr char const* kPluginName = nvfp4::kOpName;
    using Attributes = nvfp4::LinearAttributes;
    static std::string parseFields(PluginFieldCollection const* fc, Attributes& out)
    {
        return nvfp4::parseLinearFields(fc, out);
    }
    static PluginFieldCollection const* writeFields(Attributes const& a, nvfp4::PluginFieldWriter& out)
    {
        return nvfp4::writeLinearFields(a, out);
    }

    using PluginV3OneBase::PluginV3OneBase;

    // IPluginV3OneRuntime
    int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc, void const* const* inputs,
        void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

private:
    int32_t numInputs() const override;
    char const* inputName(int32_t i) const override;
    DataType inputType(int32_t i, DataType x) const override;
    std::string checkInputShapes(std::vector<std::vector<int64_t>> const& shapes) const override;
    int64_t outputChannels() const override;
    size_t kernelWorkspaceSize(int64_t rows, nvfp4::ActType type) const override;
};

class NVFP4LinearPluginCreator : public nvfp4::PluginCreatorV3OneBase<NVFP4LinearPlugin>
{
public:
    NVFP4LinearPluginCreator()
        : PluginCreatorV3OneBase(nvfp4::kLinearFields, nvfp4::kNbLinearFields)
    {
    }
};

} // namespace plugin
} // namespace nvinfer1
