/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The NVFP4MoE plugin's fields: the table the creator advertises (getFieldNames) and parses
 * (createPlugin), and the values the plugin serializes (getFieldsToSerialize), which a runtime
 * createPlugin parses back with the same code and checks.
 */
#pragma once

#include "nvfp4MoEAttributes.h"
#include "pluginFields.h"

namespace nvfp4
{

// In getFieldNames() order: NVFP4MoE_PluginConfig.yaml's attributes, names and types; the FLOATS
// attributes are lists (num_experts values each, checked by validateMoEAttributes).
// tests/test_contract.py checks this table against the YAML.
constexpr FieldSpec kMoEFields[] = {
    {kMoEAttrNumExperts, nvinfer1::PluginFieldType::kINT32, false},
    {kMoEAttrTopK, nvinfer1::PluginFieldType::kINT32, false},
    {kMoEAttrHiddenSize, nvinfer1::PluginFieldType::kINT32, false},
    {kMoEAttrIntermediateSize, nvinfer1::PluginFieldType::kINT32, false},
    {kMoEAttrGroupSize, nvinfer1::PluginFieldType::kINT32, false},
    {kMoEAttrMode, nvinfer1::PluginFieldType::kCHAR, false},
    {kMoEAttrActivation, nvinfer1::PluginFieldType::kCHAR, false},
    {kMoEAttrNormalizeTopk, nvinfer1::PluginFieldType::kINT32, false},
    {kMoEAttrW13InputGlobalScale, nvinfer1::PluginFieldType::kFLOAT32, true},
    {kMoEAttrW13InputGlobalScaleInv, nvinfer1::PluginFieldType::kFLOAT32, true},
    {kMoEAttrW2InputGlobalScale, nvinfer1::PluginFieldType::kFLOAT32, true},
    {kMoEAttrW2InputGlobalScaleInv, nvinfer1::PluginFieldType::kFLOAT32, true},
};
constexpr int32_t kNbMoEFields = static_cast<int32_t>(sizeof(kMoEFields) / sizeof(kMoEFields[0]));

// The attributes in `fc`, every field present once with its type and in range; "" or the problem.
std::string parseMoEFields(nvinfer1::PluginFieldCollection const* fc, MoEAttributes& out);

// The attributes as the same fields with the parser's types, in the table's order.
nvinfer1::PluginFieldCollection const* writeMoEFields(MoEAttributes const& a, PluginFieldWriter& out);

} // namespace nvfp4
