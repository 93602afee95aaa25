#include "NVFP4MoEFields.h"

namespace nvfp4
{

std::string parseMoEFields(nvinfer1::PluginFieldCollection const* fc, MoEAttributes& out)
{
    PluginFields fields;
    std::string problem = fields.parse(fc, kMoEFields, kNbMoEFields);
    if (!problem.empty())
    {
        return problem;
    }
    out.numExperts = fields.int32(kMoEAttrNumExperts);
    out.topK = fields.int32(kMoEAttrTopK);
    out.hiddenSize = fields.int32(kMoEAttrHiddenSize);
    out.intermediateSize = fields.int32(kMoEAttrIntermediateSize);
    out.groupSize = fields.int32(kMoEAttrGroupSize);
    out.mode = fields.string(kMoEAttrMode);
    out.activation = fields.string(kMoEAttrActivation);
    out.normalizeTopk = fields.int32(kMoEAttrNormalizeTopk);
    out.w13InputScale = fields.floats(kMoEAttrW13InputGlobalScale);
    out.w13InputScaleInv = fields.floats(kMoEAttrW13InputGlobalScaleInv);
    out.w2InputScale = fields.floats(kMoEAttrW2InputGlobalScale);
    out.w2InputScaleInv = fields.floats(kMoEAttrW2InputGlobalScaleInv);
    return validateMoEAttributes(out, "field");
}

nvinfer1::PluginFieldCollection const* writeMoEFields(MoEAttributes const& a, PluginFieldWriter& out)
{
    out.clear();
    out.int32(kMoEAttrNumExperts, a.numExperts);
    out.int32(kMoEAttrTopK, a.topK);
    out.int32(kMoEAttrHiddenSize, a.hiddenSize);
    out.int32(kMoEAttrIntermediateSize, a.intermediateSize);
    out.int32(kMoEAttrGroupSize, a.groupSize);
    out.string(kMoEAttrMode, a.mode);
    out.string(kMoEAttrActivation, a.activation);
    out.int32(kMoEAttrNormalizeTopk, a.normalizeTopk);
    out.floats(kMoEAttrW13InputGlobalScale, a.w13InputScale);
    out.floats(kMoEAttrW13InputGlobalScaleInv, a.w13InputScaleInv);
    out.floats(kMoEAttrW2InputGlobalScale, a.w2InputScale);
    out.floats(kMoEAttrW2InputGlobalScaleInv, a.w2InputScaleInv);
    return out.collection();
}

} // namespace nvfp4
