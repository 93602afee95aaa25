/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * NVFP4Linear TensorRT plugin and its creator. The fields are read and written by
 * NVFP4LinearFields.cpp; the library's entry points (getCreators, static registration, logger) are
 * trt_plugin_src/api/pluginLibrary.cpp and trt_plugin_src/common/pluginLogging.cpp.
 */
#include "NVFP4LinearPlugin.h"
#include "nvfp4LinearKernels.h"
#include "pluginLogging.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <mutex>

using namespace nvinfer1;
using namespace nvinfer1::plugin;
using nvfp4::report;

namespace
{

std::string pluginPrefix(std::string const& name)
{
    return std::string(nvfp4::kOpName) + " plugin '" + nvfp4::printable(name, nvfp4::kMaxEcho, '\'') + "': ";
}

char const* typeName(DataType t)
{
    switch (t)
    {
    case DataType::kFLOAT: return "kFLOAT";
    case DataType::kHALF: return "kHALF";
    case DataType::kINT8: return "kINT8";
    case DataType::kINT32: return "kINT32";
    case DataType::kBOOL: return "kBOOL";
    case DataType::kUINT8: return "kUINT8";
    case DataType::kFP8: return "kFP8";
    case DataType::kBF16: return "kBF16";
    case DataType::kINT64: return "kINT64";
    case DataType::kINT4: return "kINT4";
#if NV_TENSORRT_MAJOR > 10 || NV_TENSORRT_MINOR >= 8
    case DataType::kFP4: return "kFP4";
#endif
    default: return "an unsupported type";
    }
}

bool isActivationType(DataType t)
{
    return t == DataType::kFLOAT || t == DataType::kHALF || t == DataType::kBF16;
}

nvfp4::ActType toActType(DataType t)
{
    return t == DataType::kFLOAT ? nvfp4::ActType::kFLOAT
                                 : (t == DataType::kBF16 ? nvfp4::ActType::kBF16 : nvfp4::ActType::kHALF);
}

std::vector<int64_t> toVector(Dims const& d)
{
    return std::vector<int64_t>(d.d, d.d + std::max<int32_t>(d.nbDims, 0));
}

// Rows of x ([..., K] -> M); -1 if a leading dimension is unknown.
int64_t rowsOf(Dims const& d)
{
    int64_t m = 1;
    for (int32_t i = 0; i + 1 < d.nbDims; ++i)
    {
        if (d.d[i] < 0)
        {
            return -1;
        }
        m *= d.d[i];
    }
    return m;
}

int64_t volume(Dims const& d)
{
    int64_t v = 1;
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        v *= d.d[i];
    }
    return v;
}

} // namespace

// ====================================================================== NVFP4LinearPlugin

NVFP4LinearPlugin::NVFP4LinearPlugin(std::string name, nvfp4::LinearAttributes attributes)
    : mName(std::move(name))
    , mAttrs(std::move(attributes))
{
}

NVFP4LinearPlugin::NVFP4LinearPlugin(NVFP4LinearPlugin const& other)
    : IPluginV3(other)
    , IPluginV3OneCore(other)
    , IPluginV3OneBuild(other)
    , IPluginV3OneRuntime(other)
    , mName(other.mName)
    , mAttrs(other.mAttrs)
    , mErrorRecorder(other.mErrorRecorder)
{
    // mSerialized is rebuilt by each getFieldsToSerialize(): never copied.
}

void NVFP4LinearPlugin::reportError(std::string const& message) const noexcept
{
    try
    {
        report(ILogger::Severity::kERROR, pluginPrefix(mName) + message, mErrorRecorder);
    }
    catch (...)
    {
    }
}

IPluginCapability* NVFP4LinearPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* NVFP4LinearPlugin::clone() noexcept
{
    try
    {
        return new NVFP4LinearPlugin(*this);
    }
    catch (...)
    {
        reportError("clone failed (out of memory)");
        return nullptr;
    }
}

char const* NVFP4LinearPlugin::getPluginName() const noexcept
{
    return nvfp4::kOpName;
}

char const* NVFP4LinearPlugin::getPluginVersion() const noexcept
{
    return nvfp4::kPluginVersion;
}

char const* NVFP4LinearPlugin::getPluginNamespace() const noexcept
{
    return nvfp4::kPluginNamespace;
}

int32_t NVFP4LinearPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t NVFP4LinearPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    try
    {
        if (nbInputs != mAttrs.numInputs() || nbOutputs != 1 || outputTypes == nullptr || inputTypes == nullptr)
        {
            reportError("expected " + std::to_string(mAttrs.numInputs()) + " inputs (has_bias="
                + std::to_string(mAttrs.hasBias) + ") and 1 output, got " + std::to_string(nbInputs) + " and "
                + std::to_string(nbOutputs));
            return -1;
        }
        if (!isActivationType(inputTypes[0]))
        {
            reportError(std::string("input 'x' must be kFLOAT, kHALF or kBF16, got ") + typeName(inputTypes[0]));
            return -1;
        }
        char const* const names[] = {"x", "weight", "weight_scale", "weight_global_scale", "bias"};
        DataType const expected[] = {inputTypes[0], DataType::kINT8, DataType::kINT8, DataType::kFLOAT, inputTypes[0]};
        for (int32_t i = 1; i < nbInputs; ++i)
        {
            if (inputTypes[i] != expected[i])
            {
                reportError(std::string("input '") + names[i] + "' must be " + typeName(expected[i]) + ", got "
                    + typeName(inputTypes[i]));
                return -1;
            }
        }
        outputTypes[0] = inputTypes[0];
        return 0;
    }
    catch (...)
    {
        return -1;
    }
}

int32_t NVFP4LinearPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    try
    {
        if (nbInputs != mAttrs.numInputs() || nbOutputs != 1 || inputs == nullptr || outputs == nullptr)
        {
            reportError("expected " + std::to_string(mAttrs.numInputs()) + " inputs and 1 output, got "
                + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs));
            return -1;
        }
        // Constant dimensions are checked now (the build fails early); the rest in configurePlugin.
        std::vector<std::vector<int64_t>> shapes;
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            std::vector<int64_t> dims;
            for (int32_t j = 0; j < inputs[i].nbDims; ++j)
            {
                IDimensionExpr const* e = inputs[i].d[j];
                dims.push_back(e != nullptr && e->isConstant() ? e->getConstantValue() : -1);
            }
            shapes.push_back(dims);
        }
        std::string const problem = nvfp4::validateInputShapes(mAttrs, shapes);
        if (!problem.empty())
        {
            reportError(problem);
            return -1;
        }
        outputs[0] = inputs[0];
        outputs[0].d[inputs[0].nbDims - 1] = exprBuilder.constant(mAttrs.outFeatures);
        return 0;
    }
    catch (...)
    {
        return -1;
    }
}

bool NVFP4LinearPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs || nbInputs != mAttrs.numInputs())
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == 0)
    {
        return isActivationType(desc.type);
    }
    if (pos == 1 || pos == 2)
    {
        return desc.type == DataType::kINT8;
    }
    if (pos == 3)
    {
        return desc.type == DataType::kFLOAT;
    }
    return desc.type == inOut[0].desc.type; // bias and y: the activation type
}

std::string NVFP4LinearPlugin::checkInputs(PluginTensorDesc const* in, int32_t nbInputs, int32_t nbOutputs) const
{
    if (in == nullptr || nbInputs != mAttrs.numInputs() || nbOutputs != 1)
    {
        return "expected " + std::to_string(mAttrs.numInputs()) + " inputs (has_bias=" + std::to_string(mAttrs.hasBias)
            + ") and 1 output, got " + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs);
    }
    std::vector<std::vector<int64_t>> shapes;
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        shapes.push_back(toVector(in[i].dims));
    }
    std::string problem = nvfp4::validateInputShapes(mAttrs, shapes);
    if (!problem.empty())
    {
        return problem;
    }
    if (!isActivationType(in[0].type))
    {
        return std::string("input 'x' must be kFLOAT, kHALF or kBF16, got ") + typeName(in[0].type);
    }
    if (in[1].type != DataType::kINT8 || in[2].type != DataType::kINT8 || in[3].type != DataType::kFLOAT
        || (mAttrs.hasBias && in[4].type != in[0].type))
    {
        return "inputs must be (x: T, weight: kINT8, weight_scale: kINT8, weight_global_scale: kFLOAT, bias: T)";
    }
    return "";
}

int32_t NVFP4LinearPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        if (in == nullptr || out == nullptr)
        {
            reportError("configurePlugin got no tensor descriptions");
            return -1;
        }
        std::vector<PluginTensorDesc> descs;
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            descs.push_back(in[i].desc);
        }
        std::string const problem = checkInputs(descs.data(), nbInputs, nbOutputs);
        if (!problem.empty())
        {
            reportError(problem);
            return -1;
        }
        if (out[0].desc.type != in[0].desc.type)
        {
            reportError(std::string("output 'y' must have the type of 'x' (") + typeName(in[0].desc.type) + "), got "
                + typeName(out[0].desc.type));
            return -1;
        }
        return 0;
    }
    catch (...)
    {
        return -1;
    }
}

size_t NVFP4LinearPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    if (inputs == nullptr || nbInputs < 1)
    {
        return 0;
    }
    // The profile's largest x covers every smaller M; +256 lets enqueue align the pointer itself.
    int64_t const maxM = rowsOf(inputs[0].max);
    if (maxM <= 0)
    {
        return 0;
    }
    return nvfp4::workspaceSize(maxM, mAttrs.outFeatures, mAttrs.inFeatures, mAttrs.w4a4(),
               toActType(inputs[0].desc.type))
        + 256;
}

int32_t NVFP4LinearPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    try
    {
        std::string const problem = checkInputs(in, nbInputs, nbOutputs);
        if (!problem.empty())
        {
            reportError(problem);
            return -1;
        }
        return 0;
    }
    catch (...)
    {
        return -1;
    }
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
        p.weightGlobalScaleLen = static_cast<int32_t>(volume(inputDesc[3].dims));
        p.bias = mAttrs.hasBias ? inputs[4] : nullptr;
        p.y = outputs[0];
        p.M = rowsOf(inputDesc[0].dims);
        p.N = mAttrs.outFeatures;
        p.K = mAttrs.inFeatures;
        p.w4a4 = mAttrs.w4a4();
        p.inputGlobalScale = mAttrs.inputGlobalScale;
        p.inputGlobalScaleInv = mAttrs.inputGlobalScaleInv;
        p.actType = toActType(inputDesc[0].type);
        auto const address = reinterpret_cast<uintptr_t>(workspace);
        p.workspace = workspace ? reinterpret_cast<void*>((address + 255) / 256 * 256) : nullptr;
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
        // Once per process: why Blackwell's native FP4 GEMM was not used.
        if (char const* why = nvfp4::nativeFp4Status())
        {
            static std::once_flag once;
            std::call_once(once, [why] {
                report(ILogger::Severity::kWARNING, std::string(why) + "; using the 16-bit tensor-core kernels");
            });
        }
        return 0;
    }
    catch (...)
    {
        return -1;
    }
}

IPluginV3* NVFP4LinearPlugin::attachToContext(IPluginResourceContext* context) noexcept
{
    try
    {
        auto* plugin = new NVFP4LinearPlugin(*this);
        plugin->mErrorRecorder = context ? context->getErrorRecorder() : nullptr;
        return plugin;
    }
    catch (...)
    {
        return nullptr;
    }
}

PluginFieldCollection const* NVFP4LinearPlugin::getFieldsToSerialize() noexcept
{
    try
    {
        // Exactly the build-time fields with the parser's types, so that createPlugin(kRUNTIME)
        // parses them with the same code and the same checks.
        return mSerialized.collection(mAttrs);
    }
    catch (...)
    {
        return nullptr;
    }
}

// ====================================================================== NVFP4LinearPluginCreator

NVFP4LinearPluginCreator::NVFP4LinearPluginCreator()
{
    for (nvfp4::FieldSpec const& field : nvfp4::kLinearFields)
    {
        mFieldNames.emplace_back(field.name, nullptr, field.type, 1);
    }
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* NVFP4LinearPluginCreator::getPluginName() const noexcept
{
    return nvfp4::kOpName;
}

char const* NVFP4LinearPluginCreator::getPluginVersion() const noexcept
{
    return nvfp4::kPluginVersion;
}

char const* NVFP4LinearPluginCreator::getPluginNamespace() const noexcept
{
    return nvfp4::kPluginNamespace;
}

PluginFieldCollection const* NVFP4LinearPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

IPluginV3* NVFP4LinearPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept
{
    std::string const pluginName = name ? name : "";
    try
    {
        nvfp4::LinearAttributes attrs;
        std::string problem = nvfp4::parseLinearFields(fc, attrs);
        if (!problem.empty())
        {
            if (phase == TensorRTPhase::kRUNTIME)
            {
                problem = "corrupt serialized fields in the engine: " + problem;
            }
            report(ILogger::Severity::kERROR, pluginPrefix(pluginName) + problem);
            return nullptr;
        }
        return new NVFP4LinearPlugin(pluginName, attrs);
    }
    catch (std::exception const& e)
    {
        report(ILogger::Severity::kERROR, pluginPrefix(pluginName) + "createPlugin failed: " + e.what());
    }
    catch (...)
    {
        report(ILogger::Severity::kERROR, pluginPrefix(pluginName) + "createPlugin failed");
    }
    return nullptr;
}
