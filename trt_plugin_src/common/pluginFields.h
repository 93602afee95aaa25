// Reading and writing a TensorRT PluginFieldCollection against a plugin's table of fields, shared by
// the plugins of this library. Whatever the collection holds (TensorRT's ONNX parser passes the node's attributes
// that the creator names; a deserialized engine passes what getFieldsToSerialize() wrote, which a
// corrupt plan can garble), the result is either every field once, with its type and length, or one
// sentence saying what is wrong: a missing, duplicate or unknown field, a wrong type or length, or no
// data. Names and strings echoed in that sentence are capped (messageText.h). The writer builds the
// collection getFieldsToSerialize() returns, with the types the parser passes, so that the runtime
// createPlugin parses an engine's fields with the same code and checks.
#pragma once

#include "messageText.h"

#include <NvInferRuntime.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <string>
#include <vector>

namespace nvfp4
{

// One field of a plugin's contract: its name, its PluginFieldType (kINT32, kFLOAT32 or kCHAR), and
// whether it holds one value (a kCHAR field: one string) or a list of one or more values.
struct FieldSpec
{
    char const* name;
    nvinfer1::PluginFieldType type;
    bool list;
};

// Node attributes TensorRT's ONNX parser reads itself (not plugin fields); accepted and ignored.
constexpr char const* kParserAttributes[] = {"plugin_version", "plugin_namespace"};
// More fields than any plugin has, and longer strings and lists than any field needs.
constexpr int32_t kMaxFields = 256;
constexpr int32_t kMaxStringBytes = 4096;
constexpr int32_t kMaxListLength = 1 << 20;

inline char const* fieldTypeName(nvinfer1::PluginFieldType t)
{
    using nvinfer1::PluginFieldType;
    switch (t)
    {
    case PluginFieldType::kFLOAT16: return "kFLOAT16";
    case PluginFieldType::kFLOAT32: return "kFLOAT32";
    case PluginFieldType::kFLOAT64: return "kFLOAT64";
    case PluginFieldType::kINT8: return "kINT8";
    case PluginFieldType::kINT16: return "kINT16";
    case PluginFieldType::kINT32: return "kINT32";
    case PluginFieldType::kCHAR: return "kCHAR";
    case PluginFieldType::kDIMS: return "kDIMS";
    case PluginFieldType::kUNKNOWN: return "kUNKNOWN";
    case PluginFieldType::kBF16: return "kBF16";
    case PluginFieldType::kINT64: return "kINT64";
    default: return "another type";
    }
}

// The fields of one collection, checked against a table; values are read from the collection, which
// must outlive this object (createPlugin's arguments do).
class PluginFields
{
public:
    // "" when `fc` holds exactly the fields of `specs` (plus ignorable parser attributes), each once,
    // with the right type and length; else the problem.
    std::string parse(nvinfer1::PluginFieldCollection const* fc, FieldSpec const* specs, int32_t nbSpecs)
    {
        mSpecs = specs;
        mNbSpecs = nbSpecs;
        mFields.assign(static_cast<size_t>(nbSpecs), nullptr);
        if (fc == nullptr || fc->nbFields < 0 || (fc->nbFields > 0 && fc->fields == nullptr))
        {
            return "no plugin fields were given; expected " + expectedList();
        }
        if (fc->nbFields > kMaxFields)
        {
            return std::to_string(fc->nbFields) + " plugin fields were given; expected " + expectedList();
        }
        for (int32_t i = 0; i < fc->nbFields; ++i)
        {
            nvinfer1::PluginField const& f = fc->fields[i];
            if (f.name == nullptr)
            {
                return "plugin field #" + std::to_string(i) + " has no name";
            }
            std::string const name(f.name, strnlen(f.name, kMaxStringBytes));
            int32_t const index = indexOf(name);
            if (index < 0)
            {
                if (isParserAttribute(name))
                {
                    continue;
                }
                return "unknown field " + quoted(name) + "; expected " + expectedList();
            }
            if (mFields[index] != nullptr)
            {
                return "field '" + name + "' is given twice";
            }
            std::string const problem = checkShape(specs[index], f);
            if (!problem.empty())
            {
                return problem;
            }
            mFields[index] = &f;
        }
        for (int32_t j = 0; j < nbSpecs; ++j)
        {
            if (mFields[j] == nullptr)
            {
                return std::string("missing field '") + specs[j].name + "' (" + fieldTypeName(specs[j].type)
                    + "); every field of the op contract is required";
            }
        }
        return "";
    }

    int32_t int32(char const* name) const
    {
        return *static_cast<int32_t const*>(field(name).data);
    }
    float float32(char const* name) const
    {
        return *static_cast<float const*>(field(name).data);
    }
    std::string string(char const* name) const
    {
        nvinfer1::PluginField const& f = field(name);
        auto const* chars = static_cast<char const*>(f.data);
        return std::string(chars, strnlen(chars, static_cast<size_t>(f.length)));
    }
    std::vector<float> floats(char const* name) const
    {
        nvinfer1::PluginField const& f = field(name);
        auto const* values = static_cast<float const*>(f.data);
        return std::vector<float>(values, values + f.length);
    }

private:
    static bool isParserAttribute(std::string const& name)
    {
        for (char const* p : kParserAttributes)
        {
            if (name == p)
            {
                return true;
            }
        }
        return false;
    }

    int32_t indexOf(std::string const& name) const
    {
        for (int32_t j = 0; j < mNbSpecs; ++j)
        {
            if (name == mSpecs[j].name)
            {
                return j;
            }
        }
        return -1;
    }

    nvinfer1::PluginField const& field(char const* name) const
    {
        int32_t const index = indexOf(name);
        if (index < 0 || mFields[static_cast<size_t>(index)] == nullptr)
        {
            throw std::logic_error(std::string("field '") + name + "' was not parsed"); // a bug, not bad input
        }
        return *mFields[static_cast<size_t>(index)];
    }

    static std::string checkShape(FieldSpec const& spec, nvinfer1::PluginField const& f)
    {
        bool const isString = spec.type == nvinfer1::PluginFieldType::kCHAR;
        int32_t const maxLength = isString ? kMaxStringBytes : (spec.list ? kMaxListLength : 1);
        bool const lengthOk = f.length >= 1 && f.length <= maxLength;
        if (f.type == spec.type && f.data != nullptr && lengthOk)
        {
            return "";
        }
        std::string wanted = "one kCHAR string";
        if (!isString)
        {
            wanted = spec.list ? std::string("a list of ") + fieldTypeName(spec.type) + " values"
                               : std::string("one ") + fieldTypeName(spec.type) + " value";
        }
        return std::string("field '") + spec.name + "' must be " + wanted + ", got type " + fieldTypeName(f.type)
            + " with length " + std::to_string(f.length) + (f.data == nullptr ? " and no data" : "");
    }

    std::string expectedList() const
    {
        std::string list;
        for (int32_t j = 0; j < mNbSpecs; ++j)
        {
            list += (j ? ", " : "") + std::string(mSpecs[j].name);
        }
        return list;
    }

    FieldSpec const* mSpecs{nullptr};
    int32_t mNbSpecs{0};
    std::vector<nvinfer1::PluginField const*> mFields;
};

// Fields written one by one into storage of its own (the collection points into it), in the order
// of the plugin's table. Each write starts with clear().
class PluginFieldWriter
{
public:
    PluginFieldWriter() = default;
    // A copy starts empty (the original's fields point into the original's storage).
    PluginFieldWriter(PluginFieldWriter const&) {}
    PluginFieldWriter& operator=(PluginFieldWriter const&)
    {
        clear();
        return *this;
    }

    void clear()
    {
        mFields.clear();
        mData.clear();
    }
    void int32(char const* name, int64_t value)
    {
        auto const v = static_cast<int32_t>(value);
        add(name, &v, sizeof v, nvinfer1::PluginFieldType::kINT32, 1);
    }
    void float32(char const* name, float value)
    {
        add(name, &value, sizeof value, nvinfer1::PluginFieldType::kFLOAT32, 1);
    }
    // With its terminating NUL, as the ONNX parser passes a STRING attribute.
    void string(char const* name, std::string const& value)
    {
        add(name, value.c_str(), value.size() + 1, nvinfer1::PluginFieldType::kCHAR,
            static_cast<int32_t>(value.size() + 1));
    }
    void floats(char const* name, std::vector<float> const& values)
    {
        add(name, values.data(), values.size() * sizeof(float), nvinfer1::PluginFieldType::kFLOAT32,
            static_cast<int32_t>(values.size()));
    }
    nvinfer1::PluginFieldCollection const* collection()
    {
        mCollection.nbFields = static_cast<int32_t>(mFields.size());
        mCollection.fields = mFields.data();
        return &mCollection;
    }

private:
    void add(char const* name, void const* data, size_t bytes, nvinfer1::PluginFieldType type, int32_t length)
    {
        auto const* first = static_cast<char const*>(data);
        mData.emplace_back(first, first + bytes); // a deque never moves the buffers it already holds
        mFields.emplace_back(name, mData.back().data(), type, length);
    }

    std::deque<std::vector<char>> mData;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

} // namespace nvfp4
