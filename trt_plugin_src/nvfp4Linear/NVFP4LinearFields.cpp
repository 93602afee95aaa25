#include "NVFP4LinearFields.h"

namespace nvfp4
{

using nvinfer1::PluginField;
using nvinfer1::PluginFieldType;

std::string parseLinearFields(nvinfer1::PluginFieldCollection const* fc, LinearAttributes& out)
{
    PluginFields fields;
    std::string problem = fields.parse(fc, kLinearFields, kNbLinearFields);
    if (!problem.empty())
    {
        return problem;
    }
    out.inFeatures = fields.int32(kAttrInFeatures);
    out.outFeatures = fields.int32(kAttrOutFeatures);
    out.groupSize = fields.int32(kAttrGroupSize);
    out.mode = fields.string(kAttrMode);
    out.inputGlobalScale = fields.float32(kAttrInputGlobalScale);
    out.inputGlobalScaleInv = fields.float32(kAttrInputGlobalScaleInv);
    out.hasBias = fields.int32(kAttrHasBias);
    return validateAttributes(out, "field");
}

nvinfer1::PluginFieldCollection const* LinearFieldValues::collection(LinearAttributes const& a)
{
    mInts[0] = static_cast<int32_t>(a.inFeatures);
    mInts[1] = static_cast<int32_t>(a.outFeatures);
    mInts[2] = static_cast<int32_t>(a.groupSize);
    mInts[3] = static_cast<int32_t>(a.hasBias);
    mFloats[0] = a.inputGlobalScale;
    mFloats[1] = a.inputGlobalScaleInv;
    mMode = a.mode;
    mFields.clear();
    mFields.emplace_back(kAttrInFeatures, &mInts[0], PluginFieldType::kINT32, 1);
    mFields.emplace_back(kAttrOutFeatures, &mInts[1], PluginFieldType::kINT32, 1);
    mFields.emplace_back(kAttrGroupSize, &mInts[2], PluginFieldType::kINT32, 1);
    mFields.emplace_back(kAttrMode, mMode.c_str(), PluginFieldType::kCHAR, static_cast<int32_t>(mMode.size() + 1));
    mFields.emplace_back(kAttrInputGlobalScale, &mFloats[0], PluginFieldType::kFLOAT32, 1);
    mFields.emplace_back(kAttrInputGlobalScaleInv, &mFloats[1], PluginFieldType::kFLOAT32, 1);
    mFields.emplace_back(kAttrHasBias, &mInts[3], PluginFieldType::kINT32, 1);
    mCollection.nbFields = static_cast<int32_t>(mFields.size());
    mCollection.fields = mFields.data();
    return &mCollection;
}

} // namespace nvfp4
