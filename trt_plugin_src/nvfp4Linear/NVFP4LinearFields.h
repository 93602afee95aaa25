/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The NVFP4Linear plugin's fields: the table the creator advertises (getFieldNames) and parses
 * (createPlugin), and the values the plugin serializes (getFieldsToSerialize), which a runtime
 * createPlugin parses back with the same code and checks.
 */
#pragma once

#include "nvfp4LinearAttributes.h"
#include "pluginFields.h"

namespace nvfp4
{

// In getFieldNames() order: NVFP4Linear_PluginConfig.yaml's attributes, names and types
// (tests/test_contract.py checks this table against the YAML).
constexpr FieldSpec kLinearFields[] = {
    {kAttrInFeatures, nvinfer1::PluginFieldType::kINT32, false},
    {kAttrOutFeatures, nvinfer1::PluginFieldType::kINT32, false},
    {kAttrGroupSize, nvinfer1::PluginFieldType::kINT32, false},
    {kAttrMode, nvinfer1::PluginFieldType::kCHAR, false},
    {kAttrInputGlobalScale, nvinfer1::PluginFieldType::kFLOAT32, false},
    {kAttrInputGlobalScaleInv, nvinfer1::PluginFieldType::kFLOAT32, false},
    {kAttrHasBias, nvinfer1::PluginFieldType::kINT32, false},
};
constexpr int32_t kNbLinearFields = static_cast<int32_t>(sizeof(kLinearFields) / sizeof(kLinearFields[0]));

// The attributes in `fc`, every field present once with its type and in range; "" or the problem.
std::string parseLinearFields(nvinfer1::PluginFieldCollection const* fc, LinearAttributes& out);

// The attributes as the same fields with the parser's types, in the table's order.
nvinfer1::PluginFieldCollection const* writeLinearFields(LinearAttributes const& a, PluginFieldWriter& out);

} // namespace nvfp4
