/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * NVFP4Linear TensorRT plugin (IPluginV3, "V3One" capabilities): y = x · Ŵᵀ with FP4 (E2M1) weights,
 * FP8-E4M3 block scales per 16 along K and FP32 global scales; the activation is quantized
 * dynamically to NVFP4 ("w4a4") or used as is ("w4a16"). The op contract (inputs, fields, formula)
 * is docs/op-contract.md and NVFP4Linear_PluginConfig.yaml; the CUDA kernels are in kernels/.
 */
#pragma once

#include "NVFP4LinearFields.h"
#include "nvfp4LinearAttributes.h"

#include <NvInferRuntime.h>

#include <string>
#include <vector>

namespace nvinfer1
{
namespace plugin
{

class NVFP4LinearPlugin : public IPluginV3, public IPluginV3OneCore, public IPluginV3OneBuild, public IPluginV3OneRuntime
{
public:
    NVFP4LinearPlugin(std::string name, nvfp4::LinearAttributes attributes);
    NVFP4LinearPlugin(NVFP4LinearPlugin const& other);
    NVFP4LinearPlugin& operator=(NVFP4LinearPlugin const&) = delete;
    ~NVFP4LinearPlugin() override = default;

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

    nvfp4::LinearAttributes const& attributes() const noexcept
    {
        return mAttrs;
    }

private:
    // Reports "NVFP4Linear plugin '<name>': <message>" to the logger and the error recorder.
    void reportError(std::string const& message) const noexcept;
    // The input shapes/types against the fields; "" if fine. Dims may hold -1 (build time).
    std::string checkInputs(PluginTensorDesc const* in, int32_t nbInputs, int32_t nbOutputs) const;

    std::string mName;
    nvfp4::LinearAttributes mAttrs;
    IErrorRecorder* mErrorRecorder{nullptr}; // the execution context's, after attachToContext

    nvfp4::LinearFieldValues mSerialized; // getFieldsToSerialize()'s storage, rebuilt on each call
};

class NVFP4LinearPluginCreator : public IPluginCreatorV3One
{
public:
    NVFP4LinearPluginCreator();
    ~NVFP4LinearPluginCreator() override = default;

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
