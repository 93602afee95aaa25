// What every plugin of this library does the same way, as two bases in the spirit of TensorRT
// OSS's plugin/common: the IPluginV3 plugin with the "V3One" capabilities (identity, clone,
// attachToContext, the parsed fields and their serialization, the input count/type/shape checks
// behind getOutputDataTypes, getOutputShapes, supportsFormatCombination, configurePlugin and
// onShapeChange, getWorkspaceSize, one-line error reports), and its creator (getFieldNames from the
// plugin's field table, createPlugin with one-line refusals).
//
// A plugin derives from PluginV3OneBase<Plugin, Attributes> (Attributes: its fields, parsed),
// inherits its constructor and provides
//   static constexpr char const* kPluginName;
//   using Attributes = ...;                                                     (for the creator)
//   static std::string parseFields(PluginFieldCollection const*, Attributes&);   "" or the problem
//   static PluginFieldCollection const* writeFields(Attributes const&, PluginFieldWriter&);
// the virtual hooks below (input count, names and types, the shape checks, y's last dimension, the
// kernels' workspace) and enqueue.
#pragma once

#include "messageText.h"
#include "nvfp4LinearAttributes.h"
#include "pluginFields.h"
#include "pluginLogging.h"
#include "pluginTensors.h"

#include <NvInferRuntime.h>

#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace nvfp4
{

// "<op> plugin '<name>': ", the name made printable and capped (a model can name a node anything).
inline std::string pluginPrefix(char const* op, std::string const& name)
{
    return std::string(op) + " plugin '" + printable(name, kMaxEcho, '\'') + "': ";
}

template <typename Plugin, typename Attributes>
class PluginV3OneBase : public nvinfer1::IPluginV3,
                        public nvinfer1::IPluginV3OneCore,
                        public nvinfer1::IPluginV3OneBuild,
                        public nvinfer1::IPluginV3OneRuntime
{
public:
    PluginV3OneBase(std::string name, Attributes attributes)
        : mAttrs(std::move(attributes))
        , mName(std::move(name))
    {
    }
    PluginV3OneBase& operator=(PluginV3OneBase const&) = delete;
    ~PluginV3OneBase() override = default;

    Attributes const& attributes() const noexcept
    {
        return mAttrs;
    }

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override
    {
        switch (type)
        {
        case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
        case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
        case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
        }
        return nullptr;
    }

    nvinfer1::IPluginV3* clone() noexcept override
    {
        try
        {
            return new Plugin(static_cast<Plugin const&>(*this));
        }
        catch (...)
        {
            reportError("clone failed (out of memory)");
            return nullptr;
        }
    }

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override
    {
        return Plugin::kPluginName;
    }
    char const* getPluginVersion() const noexcept override
    {
        return kPluginVersion;
    }
    char const* getPluginNamespace() const noexcept override
    {
        return kPluginNamespace;
    }

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override
    {
        return 1;
    }

    // y has the type of x.
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override
    {
        try
        {
            std::string problem = checkCounts(nbInputs, nbOutputs);
            if (problem.empty() && (outputTypes == nullptr || inputTypes == nullptr))
            {
                problem = "getOutputDataTypes got no types";
            }
            if (problem.empty())
            {
                problem = checkTypes(inputTypes, nbInputs);
            }
            if (!problem.empty())
            {
                reportError(problem);
                return -1;
            }
            outputTypes[0] = inputTypes[0];
            return 0;
        }
        catch (...)
        {
            return -1;
        }
    }

    // Position `pos` (inputs, then y) with the type the contract gives it; kLINEAR only. TensorRT
    // asks position by position, each decided from the positions before it (x's type first).
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override
    {
        if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs || !checkCounts(nbInputs, nbOutputs).empty())
        {
            return false;
        }
        nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != nvinfer1::TensorFormat::kLINEAR)
        {
            return false;
        }
        if (pos == 0)
        {
            return isActivationType(desc.type);
        }
        nvinfer1::DataType const x = inOut[0].desc.type;
        return desc.type == (pos == nbInputs ? x : inputType(pos, x));
    }

    // y is x with the last dimension outputChannels(). Constant input dimensions are checked now
    // (the build fails early), the rest in configurePlugin.
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override
    {
        try
        {
            std::string problem = checkCounts(nbInputs, nbOutputs);
            if (problem.empty() && (inputs == nullptr || outputs == nullptr))
            {
                problem = "getOutputShapes got no shapes";
            }
            if (problem.empty())
            {
                std::vector<std::vector<int64_t>> shapes;
                for (int32_t i = 0; i < nbInputs; ++i)
                {
                    shapes.push_back(knownDims(inputs[i]));
                }
                problem = checkInputShapes(shapes);
            }
            if (!problem.empty())
            {
                reportError(problem);
                return -1;
            }
            outputs[0] = inputs[0];
            outputs[0].d[inputs[0].nbDims - 1] = exprBuilder.constant(outputChannels());
            return 0;
        }
        catch (...)
        {
            return -1;
        }
    }

    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override
    {
        try
        {
            if (in == nullptr || out == nullptr)
            {
                reportError("configurePlugin got no tensor descriptions");
                return -1;
            }
            std::vector<nvinfer1::PluginTensorDesc> descs;
            for (int32_t i = 0; i < nbInputs; ++i)
            {
                descs.push_back(in[i].desc);
            }
            std::string problem = checkInputs(descs.data(), nbInputs, nbOutputs);
            if (problem.empty() && out[0].desc.type != in[0].desc.type)
            {
                problem = std::string("output 'y' must have the type of 'x' (") + dataTypeName(in[0].desc.type)
                    + "), got " + dataTypeName(out[0].desc.type);
            }
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

    // For the profile's largest x, which covers every smaller one; enqueue aligns the pointer.
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept override
    {
        if (inputs == nullptr || nbInputs < 1 || !isActivationType(inputs[0].desc.type))
        {
            return 0;
        }
        int64_t const maxRows = rowsOf(inputs[0].max);
        return maxRows > 0 ? kernelWorkspaceSize(maxRows, toActType(inputs[0].desc.type)) + kWorkspaceAlignment : 0;
    }

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept override
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

    // Exactly the build-time fields with the parser's types, so that createPlugin(kRUNTIME) parses
    // them with the same code and the same checks.
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override
    {
        try
        {
            return Plugin::writeFields(mAttrs, mSerialized);
        }
        catch (...)
        {
            return nullptr;
        }
    }

    // A clone that reports to the execution context's error recorder.
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override
    {
        try
        {
            auto* plugin = new Plugin(static_cast<Plugin const&>(*this));
            static_cast<PluginV3OneBase*>(plugin)->mErrorRecorder = context ? context->getErrorRecorder() : nullptr;
            return plugin;
        }
        catch (...)
        {
            return nullptr;
        }
    }

protected:
    PluginV3OneBase(PluginV3OneBase const&) = default;

    // ---- what differs per op
    virtual int32_t numInputs() const = 0;
    virtual char const* inputName(int32_t i) const = 0;
    // The type input `i` (>= 1) must have when x has the activation type `x`.
    virtual nvinfer1::DataType inputType(int32_t i, nvinfer1::DataType x) const = 0;
    // The inputs' shapes (one per input; -1 where unknown) against the fields; "" if fine.
    virtual std::string checkInputShapes(std::vector<std::vector<int64_t>> const& shapes) const = 0;
    // The last dimension of y.
    virtual int64_t outputChannels() const = 0;
    // Bytes of workspace the kernels need for x with `rows` rows of type `type` (any fewer rows too).
    virtual size_t kernelWorkspaceSize(int64_t rows, ActType type) const = 0;

    // "" if there are numInputs() inputs and one output, else what was expected.
    std::string checkCounts(int32_t nbInputs, int32_t nbOutputs) const
    {
        if (nbInputs == numInputs() && nbOutputs == 1)
        {
            return "";
        }
        std::string names;
        for (int32_t i = 0; i < numInputs(); ++i)
        {
            names += (i ? ", " : "") + std::string(inputName(i));
        }
        return "expected " + std::to_string(numInputs()) + " inputs (" + names + ") and 1 output, got "
            + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs);
    }

    // x an activation type, every other input the type inputType() gives; "" or the first problem.
    std::string checkTypes(nvinfer1::DataType const* types, int32_t nbInputs) const
    {
        if (!isActivationType(types[0]))
        {
            return std::string("input 'x' must be kFLOAT, kHALF or kBF16, got ") + dataTypeName(types[0]);
        }
        for (int32_t i = 1; i < nbInputs; ++i)
        {
            nvinfer1::DataType const expected = inputType(i, types[0]);
            if (types[i] != expected)
            {
                return std::string("input '") + inputName(i) + "' must be " + dataTypeName(expected) + ", got "
                    + dataTypeName(types[i]);
            }
        }
        return "";
    }

    // The actual inputs (configure time or run time) against the fields: counts, shapes, types.
    std::string checkInputs(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, int32_t nbOutputs) const
    {
        std::string problem = checkCounts(nbInputs, nbOutputs);
        if (!problem.empty() || in == nullptr)
        {
            return problem.empty() ? "no input descriptions were given" : problem;
        }
        std::vector<std::vector<int64_t>> shapes;
        std::vector<nvinfer1::DataType> types;
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            shapes.push_back(dimsOf(in[i].dims));
            types.push_back(in[i].type);
        }
        problem = checkInputShapes(shapes);
        return problem.empty() ? checkTypes(types.data(), nbInputs) : problem;
    }

    // "<op> plugin '<name>': <message>" to TensorRT's logger and error recorder. Never throws.
    void reportError(std::string const& message) const noexcept
    {
        try
        {
            report(nvinfer1::ILogger::Severity::kERROR, pluginPrefix(Plugin::kPluginName, mName) + message,
                mErrorRecorder);
        }
        catch (...)
        {
        }
    }

    Attributes const mAttrs;

private:
    std::string mName;
    nvinfer1::IErrorRecorder* mErrorRecorder{nullptr}; // the execution context's, after attachToContext
    PluginFieldWriter mSerialized;                     // getFieldsToSerialize()'s storage, rebuilt each call
};

template <typename Plugin>
class PluginCreatorV3OneBase : public nvinfer1::IPluginCreatorV3One
{
public:
    // `fields`: the plugin's field table, in getFieldNames() order.
    PluginCreatorV3OneBase(FieldSpec const* fields, int32_t nbFields)
    {
        for (int32_t i = 0; i < nbFields; ++i)
        {
            mFieldNames.emplace_back(fields[i].name, nullptr, fields[i].type, 1);
        }
        mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
        mFieldCollection.fields = mFieldNames.data();
    }

    char const* getPluginName() const noexcept override
    {
        return Plugin::kPluginName;
    }
    char const* getPluginVersion() const noexcept override
    {
        return kPluginVersion;
    }
    char const* getPluginNamespace() const noexcept override
    {
        return kPluginNamespace;
    }
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override
    {
        return &mFieldCollection;
    }

    // At build time `fc` holds the node's attributes as TensorRT's ONNX parser converts them; at run
    // time what getFieldsToSerialize() wrote into the engine, which a corrupt plan can garble: both
    // go through the same checks, and a refusal is one line to the logger and error recorder.
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override
    {
        std::string pluginName;
        try
        {
            pluginName = name ? std::string(name, strnlen(name, kMaxStringBytes)) : "";
            typename Plugin::Attributes attributes;
            std::string problem = Plugin::parseFields(fc, attributes);
            if (problem.empty())
            {
                return new Plugin(pluginName, std::move(attributes));
            }
            if (phase == nvinfer1::TensorRTPhase::kRUNTIME)
            {
                problem = "corrupt serialized fields in the engine: " + problem;
            }
            report(nvinfer1::ILogger::Severity::kERROR, pluginPrefix(Plugin::kPluginName, pluginName) + problem);
        }
        catch (std::exception const& e)
        {
            report(nvinfer1::ILogger::Severity::kERROR,
                pluginPrefix(Plugin::kPluginName, pluginName) + "createPlugin failed: " + e.what());
        }
        catch (...)
        {
            report(nvinfer1::ILogger::Severity::kERROR,
                pluginPrefix(Plugin::kPluginName, pluginName) + "createPlugin failed");
        }
        return nullptr;
    }

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

} // namespace nvfp4
