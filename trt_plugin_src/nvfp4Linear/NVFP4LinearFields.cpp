#include "NVFP4LinearFields.h"

namespace nvfp4
{

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

nvinfer1::PluginFieldCollection const* writeLinearFields(LinearAttributes const& a, PluginFieldWriter& out)
{
    out.clear();
    out.int32(kAttrInFeatures, a.inFeatures);
    out.int32(kAttrOutFeatures, a.outFeatures);
    out.int32(kAttrGroupSize, a.groupSize);
    out.string(kAttrMode, a.mode);
    out.float32(kAttrInputGlobalScale, a.inputGlobalScale);
    out.float32(kAttrInputGlobalScaleInv, a.inputGlobalScaleInv);
    out.int32(kAttrHasBias, a.hasBias);
    return out.collection();
}

} // namespace nvfp4
