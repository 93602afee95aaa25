/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * NVFP4MoE TensorRT plugin (IPluginV3, "V3One" capabilities): one Mixture-of-Experts block, the
 * routing (softmax top-k of the router logits) and E SiLU-gated experts whose gate, up and down
 * projections are NVFP4 linears. The op contract (inputs, fields, formula) is
 * docs/op-contract-moe.md and NVFP4MoE_PluginConfig.yaml; the CUDA kernels are in kernels/.
 * What every plugin of the library shares (identity, clone, type checks, the creator) is
 * common/pluginV3OneBase.h; the library's entry points are trt_plugin_src/api/pluginLibrary.cpp.
 */
#pragma once

#include "NVFP4MoEFields.h"
#include "nvfp4MoEAttributes.h"
#include "pluginV3OneBase.h"

#include <NvInferRuntime.h>

#include <string>
#include <vector>

namespace nvinfer1
{
namespace plugin
{

class NVFP4MoEPlugin : public nvfp4::PluginV3OneBase<NVFP4MoEPlugin, nvfp4::MoEAttributes>
{
public:
    static constexpr char const* kPluginName = nvfp4::kMoEOpName;
    using Attributes = nvfp4::MoEAttributes;
    // The contract's checks (NVFP4MoEFields.cpp), then the limits of the CUDA kernels.
    static std::string parseFields(PluginFieldCollection const* fc, Attributes& out);
    static PluginFieldCollection const* writeFields(Attributes const& a, nvfp4::PluginFieldWriter& out)
    {
        return nvfp4::writeMoEFields(a, out);
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

class NVFP4MoEPluginCreator : public nvfp4::PluginCreatorV3OneBase<NVFP4MoEPlugin>
{
public:
    NVFP4MoEPluginCreator()
        : PluginCreatorV3OneBase(nvfp4::kMoEFields, nvfp4::kNbMoEFields)
    {
    }
};

} // namespace plugin
} // namespace nvinfer1
