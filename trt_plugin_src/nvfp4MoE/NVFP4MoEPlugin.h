/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * NVFP4MoE TensorRT plugin (IPluginV3, "V3One" capabilities): one Mixture-of-Experts block, the
 * routing (softmax top-k of the router logits) and E SiLU-gated experts whose gate, up and down
 * projections are NVFP4 linears. The op contract (inputs, fields, formula) is
 * docs/op-contract-moe.md and NVFP4MoE_PluginConfig.yaml; the CUDA kernels are in kernels/.
 * The library's entry points (getCreators, static registration) are in NVFP4LinearPlugin.cpp.
 */
#pragma once

#include "nvfp4MoEAttributes.h"

#include <NvInferRuntime.h>

#include <string>
#include <vector>

namespace nvinfer1
{
namespace plugin
{

class NVFP4MoEPlugin : public IPluginV3, public IPluginV3OneCore, public IPluginV3OneBuild, public IPluginV3OneRuntime
{
public:
    NVFP4MoEPlugin(std::string name, nvfp4::MoEAttributes attributes);
    NVFP4MoEPlugin(NVFP4MoEPlugin const& other);
    NVFP4MoEPlugin& operator=(NVFP4MoEPlugin const&) = delete;
    ~NVFP4MoEPlugin() override = default;

    // IPluginV3
    IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override;
    IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(
        DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(
        int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(
        PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc, void const* const* inputs,
        void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    IPluginV3* attachToContext(IPluginResourceContext* context) noexcept override;
    PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    nvfp4::MoEAttributes const& attributes() const noexcept
    {
        return mAttrs;
    }

private:
    // Reports "NVFP4MoE plugin '<name>': <message>" to the logger and the error recorder.
    void reportError(std::string const& message) const noexcept;
    // The input shapes/types against the fields; "" if fine. Dims may hold -1 (build time).
    std::string checkInputs(PluginTensorDesc const* in, int32_t nbInputs, int32_t nbOutputs) const;
    void buildFieldsToSerialize();

    std::string mName;
    nvfp4::MoEAttributes mAttrs;
    IErrorRecorder* mErrorRecorder{nullptr}; // the execution context's, after attachToContext

    // getFieldsToSerialize() storage (the collection points into these and into mAttrs).
    int32_t mFieldInts[nvfp4::kMoENumFields]{};
    std::vector<PluginField> mFields;
    PluginFieldCollection mFieldCollection{};
};

class NVFP4MoEPluginCreator : public IPluginCreatorV3One
{
public:
    NVFP4MoEPluginCreator();
    ~NVFP4MoEPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    PluginFieldCollection const* getFieldNames() noexcept override;
    IPluginV3* createPlugin(char const* name, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept override;

private:
    std::vector<PluginField> mFieldNames;
    PluginFieldCollection mFieldCollection{};
};

} // namespace plugin
} // namespace nvinfer1
