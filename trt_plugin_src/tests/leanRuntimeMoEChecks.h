// The NVFP4MoE plugin's checks inside the TensorRT lean runtime: part of leanRuntimePluginTest.cpp,
// included at the end of its anonymous namespace, whose helpers it uses (check, gRecorder,
// ExprBuilder, Plugin, FieldSet, makeDims, dynamicDesc, staticDesc, fieldsSignature, findCreator,
// printFieldNames, checkRejected, checkSerializationAndClone, checkBadFieldSets, toDevice,
// toDeviceAs, elementAt, roundedTo) and its include of common/nvfp4MoECpu.h. Every IPluginV3One* method
// of the plugin runs on the CPU; enqueue runs against the CPU formula where a GPU is present.
#pragma once

void checkMoERejected(std::string const& what, bool failed, std::string const& expected)
{
    checkRejected(what, failed, expected, "NVFP4MoE");
}

// NVFP4MoE plugin fields as the ONNX parser builds them (E = 4, H = 64, I = 32 unless changed).
struct MoEFields : FieldSet
{
    int32_t ints[8] = {4, 2, 64, 32, 16, 0, 0, 1}; // num_experts .. normalize_topk (5, 6: strings)
    std::string mode = "w4a4", activation = "silu";
    std::vector<float> scales[4] = {{2e-3f, 3e-3f, 1e-3f, 4e-3f}, {500.f, 333.f, 1000.f, 250.f},
        {1e-2f, 2e-2f, 3e-2f, 4e-2f}, {100.f, 50.f, 33.f, 25.f}};

    void setExperts(int32_t e, float value = 1.0f)
    {
        ints[0] = e;
        for (auto& s : scales)
        {
            s.assign(static_cast<size_t>(e), value);
        }
    }

    PluginFieldCollection const* build()
    {
        begin();
        char const* const intNames[8] = {"num_experts", "top_k", "hidden_size", "intermediate_size", "group_size",
            nullptr, nullptr, "normalize_topk"};
        for (int32_t i = 0; i < 5; ++i)
        {
            add(intNames[i], &ints[i], PluginFieldType::kINT32, 1);
        }
        addString("mode", mode);
        addString("activation", activation);
        add(intNames[7], &ints[7], PluginFieldType::kINT32, 1);
        char const* const scaleNames[4] = {"w13_input_global_scale", "w13_input_global_scale_inv",
            "w2_input_global_scale", "w2_input_global_scale_inv"};
        for (int32_t i = 0; i < 4; ++i)
        {
            add(scaleNames[i], scales[i].data(), PluginFieldType::kFLOAT32, static_cast<int32_t>(scales[i].size()));
        }
        return end();
    }
};

// The 8 input descriptions for E = 4, H = 64, I = 32, x [-1, -1, 64] (profile up to [4, 128, 64]).
std::vector<DynamicPluginTensorDesc> moeInputs(DataType t)
{
    return {dynamicDesc(makeDims({-1, -1, 64}), t, makeDims({1, 1, 64}), makeDims({4, 128, 64})),
        dynamicDesc(makeDims({-1, -1, 4}), t, makeDims({1, 1, 4}), makeDims({4, 128, 4})),
        staticDesc(makeDims({4, 64, 32}), DataType::kINT8), staticDesc(makeDims({4, 64, 4}), DataType::kINT8),
        staticDesc(makeDims({4, 64}), DataType::kFLOAT), staticDesc(makeDims({4, 64, 16}), DataType::kINT8),
        staticDesc(makeDims({4, 64, 2}), DataType::kINT8), staticDesc(makeDims({4, 64}), DataType::kFLOAT)};
}

void checkMoEBuildMethods(Plugin& p)
{
    check(p.build->getNbOutputs() == 1, "NVFP4MoE getNbOutputs == 1");
    DataType const weights[6] = {DataType::kINT8, DataType::kINT8, DataType::kFLOAT, DataType::kINT8, DataType::kINT8,
        DataType::kFLOAT};
    for (DataType t : {DataType::kFLOAT, DataType::kHALF, DataType::kBF16})
    {
        DataType in[8] = {t, t};
        std::copy(weights, weights + 6, in + 2);
        DataType out = DataType::kINT32;
        check(p.build->getOutputDataTypes(&out, 1, in, 8) == 0 && out == t,
            "NVFP4MoE getOutputDataTypes keeps the activation type " + std::to_string(int(t)));
    }
    DataType bad[8] = {DataType::kHALF, DataType::kFLOAT};
    std::copy(weights, weights + 6, bad + 2);
    DataType outType{};
    checkMoERejected("NVFP4MoE getOutputDataTypes rejects router_logits kFLOAT for x kHALF",
        p.build->getOutputDataTypes(&outType, 1, bad, 8) != 0, "input 'router_logits' must be kHALF, got kFLOAT");
    bad[1] = DataType::kHALF;
    bad[5] = DataType::kUINT8;
    checkMoERejected("NVFP4MoE getOutputDataTypes rejects w2_weight kUINT8",
        p.build->getOutputDataTypes(&outType, 1, bad, 8) != 0, "input 'w2_weight' must be kINT8, got kUINT8");
    bad[0] = DataType::kINT32;
    checkMoERejected("NVFP4MoE getOutputDataTypes rejects x kINT32", p.build->getOutputDataTypes(&outType, 1, bad, 8) != 0,
        "input 'x' must be kFLOAT, kHALF or kBF16, got kINT32");

    ExprBuilder eb;
    IDimensionExpr const* batch = eb.symbol();
    IDimensionExpr const* seq = eb.symbol();
    int64_t const constant[8][3] = {{0, 0, 64}, {0, 0, 4}, {4, 64, 32}, {4, 64, 4}, {4, 64, 0}, {4, 64, 16}, {4, 64, 2},
        {4, 64, 0}};
    DimsExprs inputs[8]{};
    for (int32_t i = 0; i < 8; ++i)
    {
        inputs[i].nbDims = (i == 4 || i == 7) ? 2 : 3;
        for (int32_t j = 0; j < inputs[i].nbDims; ++j)
        {
            inputs[i].d[j] = i < 2 && j == 0 ? batch : i < 2 && j == 1 ? seq : eb.constant(constant[i][j]);
        }
    }
    DimsExprs outputs[1]{};
    int32_t rc = p.build->getOutputShapes(inputs, 8, nullptr, 0, outputs, 1, eb);
    check(rc == 0 && outputs[0].nbDims == 3 && outputs[0].d[0] == batch && outputs[0].d[1] == seq
            && outputs[0].d[2]->isConstant() && outputs[0].d[2]->getConstantValue() == 64,
        "NVFP4MoE getOutputShapes [batch, seq, 64] -> [batch, seq, 64]");
    inputs[0].d[2] = eb.constant(48);
    checkMoERejected("NVFP4MoE getOutputShapes rejects x [.., 48] for hidden_size 64",
        p.build->getOutputShapes(inputs, 8, nullptr, 0, outputs, 1, eb) != 0, "last dimension hidden_size=64");
    inputs[0].d[2] = eb.constant(64);
    inputs[3].d[2] = eb.constant(8);
    checkMoERejected("NVFP4MoE getOutputShapes rejects w13_weight_scale [4, 64, 8]",
        p.build->getOutputShapes(inputs, 8, nullptr, 0, outputs, 1, eb) != 0,
        "input 'w13_weight_scale' must have shape [num_experts, 2*intermediate_size, hidden_size/16] = [4, 64, 4], "
        "got [4, 64, 8]");

    // Format combinations: each position with each type, the others valid (decided from inOut[0..pos]).
    DataType const types[] = {DataType::kFLOAT, DataType::kHALF, DataType::kBF16, DataType::kINT8, DataType::kINT32,
        DataType::kUINT8, DataType::kFP8, DataType::kINT64};
    int32_t wrong = 0, tried = 0;
    for (DataType t : {DataType::kFLOAT, DataType::kHALF, DataType::kBF16})
    {
        std::vector<DynamicPluginTensorDesc> io = moeInputs(t);
        io.push_back(staticDesc(makeDims({1, 64}), t));
        for (int32_t pos = 0; pos < 9; ++pos)
        {
            DataType const good = io[pos].desc.type;
            for (DataType candidate : types)
            {
                io[pos].desc.type = candidate;
                bool const expected = pos == 0 ? (candidate == DataType::kFLOAT || candidate == DataType::kHALF
                                                     || candidate == DataType::kBF16)
                                               : candidate == good;
                wrong += p.build->supportsFormatCombination(pos, io.data(), 8, 1) != expected ? 1 : 0;
                ++tried;
            }
            io[pos].desc.type = good;
        }
        io[3].desc.format = TensorFormat::kCHW32;
        wrong += p.build->supportsFormatCombination(3, io.data(), 8, 1) ? 1 : 0;
    }
    check(wrong == 0, "NVFP4MoE supportsFormatCombination over " + std::to_string(tried)
            + " (position, type) cases accepts exactly the contract's types, kLINEAR only",
        std::to_string(wrong) + " disagreements");

    for (DataType t : {DataType::kFLOAT, DataType::kHALF, DataType::kBF16})
    {
        auto in = moeInputs(t);
        auto out = dynamicDesc(makeDims({-1, -1, 64}), t, makeDims({1, 1, 64}), makeDims({4, 128, 64}));
        check(p.build->configurePlugin(in.data(), 8, &out, 1) == 0,
            "NVFP4MoE configurePlugin accepts x [-1,-1,64] type " + std::to_string(int(t)));
        size_t const ws = p.build->getWorkspaceSize(in.data(), 8, &out, 1);
        auto small = in;
        small[0].max = makeDims({1, 1, 64});
        size_t const wsSmall = p.build->getWorkspaceSize(small.data(), 8, &out, 1);
        // At least the experts' intermediate rows for M = 512 tokens x top-2: a2 [P, I] and d [P, H].
        size_t const need = 512 * 2 * (32 + 64) * 2;
        check(ws >= need && ws > wsSmall && wsSmall > 256, "NVFP4MoE getWorkspaceSize covers the profile max ("
                + std::to_string(ws) + " >= " + std::to_string(need) + " bytes for M = 512; " + std::to_string(wsSmall)
                + " for M = 1)");
    }
    auto out = staticDesc(makeDims({2, 64}), DataType::kHALF);
    auto in = moeInputs(DataType::kHALF);
    in[5].desc.dims = makeDims({4, 64, 32});
    checkMoERejected("NVFP4MoE configurePlugin rejects w2_weight [4, 64, 32]", p.build->configurePlugin(in.data(), 8, &out, 1) != 0,
        "input 'w2_weight' must have shape [num_experts, hidden_size, intermediate_size/2] = [4, 64, 16], got [4, 64, 32]");
    in = moeInputs(DataType::kHALF);
    in[0].desc.dims = makeDims({2, 3, 64});
    in[1].desc.dims = makeDims({2, 5, 4});
    checkMoERejected("NVFP4MoE configurePlugin rejects router_logits [2, 5, 4] for x [2, 3, 64]",
        p.build->configurePlugin(in.data(), 8, &out, 1) != 0,
        "input 'router_logits' must have the leading dimensions of x [2, 3, 64] and last dimension num_experts=4");
    in = moeInputs(DataType::kHALF);
    checkMoERejected("NVFP4MoE configurePlugin rejects 7 inputs", p.build->configurePlugin(in.data(), 7, &out, 1) != 0,
        "expected 8 inputs (x, router_logits, w13_weight, w13_weight_scale, w13_weight_global_scale, w2_weight, "
        "w2_weight_scale, w2_weight_global_scale) and 1 output, got 7 and 1");
    auto outFloat = staticDesc(makeDims({2, 64}), DataType::kFLOAT);
    checkMoERejected("NVFP4MoE configurePlugin rejects y kFLOAT for x kHALF",
        p.build->configurePlugin(in.data(), 8, &outFloat, 1) != 0, "output 'y' must have the type of 'x'");
}

void checkMoESerializationAndClone(IPluginCreatorV3One* creator, Plugin& p, std::string const& builtSignature)
{
    checkSerializationAndClone(creator, p, builtSignature, "NVFP4MoE ", [](Plugin& attached) {
        std::vector<DynamicPluginTensorDesc> const dyn = moeInputs(DataType::kBF16);
        std::vector<PluginTensorDesc> in;
        for (auto const& d : dyn)
        {
            in.push_back(d.desc);
        }
        in[0].dims = makeDims({3, 7, 64});
        in[1].dims = makeDims({3, 7, 4});
        PluginTensorDesc out = in[0];
        check(attached.runtime->onShapeChange(in.data(), 8, &out, 1) == 0, "NVFP4MoE onShapeChange accepts x [3, 7, 64]");
        in[7].dims = makeDims({4, 32});
        checkMoERejected("NVFP4MoE onShapeChange rejects w2_weight_global_scale [4, 32] (error goes to the context's "
                         "recorder)",
            attached.runtime->onShapeChange(in.data(), 8, &out, 1) != 0,
            "input 'w2_weight_global_scale' must have shape [num_experts, hidden_size] = [4, 64], got [4, 32]");
    });
    MoEFields corrupt;
    corrupt.ints[1] = 7;
    IPluginV3* bad = creator->createPlugin("moe0", corrupt.build(), TensorRTPhase::kRUNTIME);
    checkMoERejected("NVFP4MoE createPlugin(kRUNTIME) rejects corrupt serialized fields", bad == nullptr,
        "corrupt serialized fields in the engine: field 'top_k' must be in [1, num_experts=4], got 7");
    delete bad;
}

void checkMoEBadFields(IPluginCreatorV3One* creator)
{
    checkBadFieldSets<MoEFields>(creator, "NVFP4MoE", "NVFP4MoE ", {
        {"missing num_experts", [](MoEFields& f) { f.omit = {"num_experts"}; }, "missing field 'num_experts' (kINT32)"},
        {"missing w2_input_global_scale_inv", [](MoEFields& f) { f.omit = {"w2_input_global_scale_inv"}; },
            "missing field 'w2_input_global_scale_inv' (kFLOAT32)"},
        {"top_k as kFLOAT32", [](MoEFields& f) { f.wrongType = "top_k"; },
            "field 'top_k' must be one kINT32 value, got type kFLOAT32"},
        {"w13_input_global_scale as kINT32", [](MoEFields& f) { f.wrongType = "w13_input_global_scale"; },
            "field 'w13_input_global_scale' must be a list of kFLOAT32 values, got type kINT32 with length 4"},
        {"a duplicate mode", [](MoEFields& f) { f.duplicate = "mode"; }, "field 'mode' is given twice"},
        {"an unknown field", [](MoEFields& f) { f.extra = {{std::string(200, 'q') + "\x01", 1}}; },
            "unknown field \"" + std::string(64, 'q') + "... (201 bytes)\"; expected num_experts, top_k"},
        {"3 values for 4 experts", [](MoEFields& f) { f.scales[2].pop_back(); },
            "field 'w2_input_global_scale' must have num_experts=4 values, got 3"},
        {"top_k 5 of 4 experts", [](MoEFields& f) { f.ints[1] = 5; }, "field 'top_k' must be in [1, num_experts=4], got 5"},
        {"top_k 40 (kernel limit 32)",
            [](MoEFields& f) {
                f.setExperts(64);
                f.ints[1] = 40;
            },
            "field 'top_k' = 40 exceeds the CUDA kernels' limit of 32"},
        {"num_experts 5000 (kernel limit)",
            [](MoEFields& f) {
                f.setExperts(5000);
            },
            "field 'num_experts' = 5000 exceeds the CUDA kernels' limit of 4096"},
        {"hidden_size 40", [](MoEFields& f) { f.ints[2] = 40; },
            "field 'hidden_size' must be a positive multiple of 16, got 40"},
        {"group_size 32", [](MoEFields& f) { f.ints[4] = 32; }, "field 'group_size' must be 16, got 32"},
        {"mode w8a8", [](MoEFields& f) { f.mode = "w8a8"; }, "field 'mode' must be \"w4a4\" or \"w4a16\", got \"w8a8\""},
        {"activation gelu", [](MoEFields& f) { f.activation = "gelu"; }, "field 'activation' must be \"silu\", got \"gelu\""},
        {"normalize_topk 2", [](MoEFields& f) { f.ints[7] = 2; }, "field 'normalize_topk' must be 0 or 1, got 2"},
        {"a zero G (w4a4)", [](MoEFields& f) { f.scales[1][2] = 0.f; },
            "field 'w13_input_global_scale_inv' must be finite and > 0 for mode \"w4a4\", got 0 for expert 2"},
    });
    MoEFields w4a16;
    w4a16.mode = "w4a16";
    w4a16.scales[0][1] = 0.f; // ignored for weight-only, but must be finite
    Plugin ok(creator->createPlugin("moe0", w4a16.build(), TensorRTPhase::kBUILD));
    check(ok.plugin != nullptr, "NVFP4MoE createPlugin accepts w4a16 with an ignored scale of 0");
}

// enqueue of random blocks against the CPU formula (common/nvfp4MoECpu.h), with the tolerance of
// scripts/check/gpu_check_moe.py (nvfp4MoE/README.md): each row within max(4 eps_T, 2^-16) of its
// largest magnitude; in w4a4, max(1, M/100) rows by up to 1/8 of it (an FP4 code of h that lay
// within float32 rounding of a boundary may flip).
void checkMoEEnqueue(IPluginCreatorV3One* creator)
{
    std::mt19937 rng(4321);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::uniform_int_distribution<int> byte(0, 255);
    int32_t const E = 8, k = 2;
    int64_t const H = 256, I = 128;
    for (DataType t : {DataType::kFLOAT, DataType::kHALF, DataType::kBF16})
    {
        for (std::string const mode : {"w4a4", "w4a16"})
        {
            for (int64_t M : {1, 5, 40, 300})
            {
                MoEFields f;
                f.setExperts(E);
                f.ints[1] = k;
                f.ints[2] = static_cast<int32_t>(H);
                f.ints[3] = static_cast<int32_t>(I);
                f.ints[7] = M % 2;
                f.mode = mode;
                for (int32_t e = 0; e < E; ++e)
                {
                    f.scales[0][e] = (1.f + e) * 2e-3f;
                    f.scales[1][e] = 1.f / f.scales[0][e];
                    f.scales[2][e] = (3.f + e) * 1e-3f;
                    f.scales[3][e] = 1.f / f.scales[2][e];
                }
                Plugin p(creator->createPlugin("moe0", f.build(), TensorRTPhase::kBUILD));
                nvfp4::MoEAttributes attrs; // the same fields, for the CPU formula
                attrs.numExperts = E;
                attrs.topK = k;
                attrs.hiddenSize = H;
                attrs.intermediateSize = I;
                attrs.groupSize = 16;
                attrs.mode = mode;
                attrs.activation = "silu";
                attrs.normalizeTopk = M % 2;
                attrs.w13InputScale = f.scales[0];
                attrs.w13InputScaleInv = f.scales[1];
                attrs.w2InputScale = f.scales[2];
                attrs.w2InputScaleInv = f.scales[3];
                std::string const problem = nvfp4::validateMoEAttributes(attrs, "field");
                std::vector<float> x(M * H), logits(M * E), gs13(E * 2 * I), gs2(E * H);
                std::vector<uint8_t> w13(E * 2 * I * H / 2), s13(E * 2 * I * H / 16), w2(E * H * I / 2), s2(E * H * I / 16);
                for (auto& v : x) v = normal(rng) * 1.5f;
                for (auto& v : logits) v = normal(rng) * 2.f;
                for (auto& v : gs13) v = 0.02f * (1.f + std::abs(normal(rng)));
                for (auto& v : gs2) v = 0.01f * (1.f + std::abs(normal(rng)));
                for (auto* bytes : {&w13, &w2}) for (auto& v : *bytes) v = static_cast<uint8_t>(byte(rng));
                for (auto* bytes : {&s13, &s2}) for (auto& v : *bytes) v = static_cast<uint8_t>(0x30 + byte(rng) % 0x10);
                if (M == 40)
                {
                    logits[3 * E + 1] = NAN;          // row 3 of y must be NaN
                    x[5 * H + 7] = INFINITY;          // saturates in w4a4, Inf/NaN row in w4a16
                    for (int32_t e = 0; e < E; ++e)
                        logits[7 * E + e] = 1.f;      // ties: experts 0 and 1
                    for (int64_t m = 10; m < 30; ++m) // all these tokens to expert 6
                        logits[m * E + 6] = 40.f;
                }
                void* dx = toDeviceAs(x, t); // x and the logits in T, rounded alike on the host
                void* dl = toDeviceAs(logits, t);
                nvfp4::RoundType const rt = t == DataType::kFLOAT ? nvfp4::RoundType::kFloat
                    : t == DataType::kHALF                        ? nvfp4::RoundType::kHalf
                                                                  : nvfp4::RoundType::kBf16;
                std::vector<float> ref(M * H);
                nvfp4::CpuMoEArgs a;
                a.x = x.data();
                a.routerLogits = logits.data();
                a.w13 = w13.data();
                a.w13Scale = s13.data();
                a.w13GlobalScale = gs13.data();
                a.w2 = w2.data();
                a.w2Scale = s2.data();
                a.w2GlobalScale = gs2.data();
                a.y = ref.data();
                a.M = M;
                a.type = rt;
                nvfp4::moeCpu(a, attrs);

                size_t const elem = elementSize(t);
                void* dev[6] = {toDevice(w13), toDevice(s13), toDevice(gs13), toDevice(w2), toDevice(s2), toDevice(gs2)};
                void* dy = nullptr;
                cudaMalloc(&dy, M * H * elem);
                cudaMemset(dy, 0xFF, M * H * elem); // NaN poison: every element must be written
                std::vector<DynamicPluginTensorDesc> din = {
                    dynamicDesc(makeDims({-1, H}), t, makeDims({1, H}), makeDims({512, H})),
                    dynamicDesc(makeDims({-1, E}), t, makeDims({1, E}), makeDims({512, E})),
                    staticDesc(makeDims({E, 2 * I, H / 2}), DataType::kINT8),
                    staticDesc(makeDims({E, 2 * I, H / 16}), DataType::kINT8), staticDesc(makeDims({E, 2 * I}), DataType::kFLOAT),
                    staticDesc(makeDims({E, H, I / 2}), DataType::kINT8), staticDesc(makeDims({E, H, I / 16}), DataType::kINT8),
                    staticDesc(makeDims({E, H}), DataType::kFLOAT)};
                auto dout = dynamicDesc(makeDims({-1, H}), t, makeDims({1, H}), makeDims({512, H}));
                size_t const wsBytes = p.build->getWorkspaceSize(din.data(), 8, &dout, 1);
                void* ws = nullptr;
                cudaMalloc(&ws, wsBytes + 1);
                std::vector<PluginTensorDesc> in;
                for (auto const& d : din)
                {
                    in.push_back(d.desc);
                }
                in[0].dims = makeDims({M, H});
                in[1].dims = makeDims({M, E});
                PluginTensorDesc out = dout.desc;
                out.dims = makeDims({M, H});
                void const* inputs[8] = {dx, dl, dev[0], dev[1], dev[2], dev[3], dev[4], dev[5]};
                void* outputs[1] = {dy};
                bool ok = problem.empty() && p.plugin && p.build->configurePlugin(din.data(), 8, &dout, 1) == 0
                    && p.runtime->onShapeChange(in.data(), 8, &out, 1) == 0
                    && p.runtime->enqueue(in.data(), &out, inputs, outputs, ws, nullptr) == 0
                    && cudaDeviceSynchronize() == cudaSuccess;
                std::vector<uint8_t> yBytes(M * H * elem);
                cudaMemcpy(yBytes.data(), dy, yBytes.size(), cudaMemcpyDeviceToHost);
                double const epsT = t == DataType::kFLOAT ? 0x1p-23 : t == DataType::kHALF ? 0x1p-10 : 0x1p-7; // eps_T
                int64_t nanMismatch = 0, flippedRows = 0;
                double worst = 0.0;
                for (int64_t m = 0; m < M; ++m)
                {
                    double rowMax = 0.0, rowErr = 0.0;
                    std::vector<float> got(H), want(H);
                    for (int64_t n = 0; n < H; ++n)
                    {
                        int64_t const i = m * H + n;
                        got[n] = elementAt(yBytes, i, t);
                        want[n] = roundedTo(ref[i], t);
                        if (std::isnan(want[n]) || std::isnan(got[n]))
                        {
                            nanMismatch += std::isnan(want[n]) != std::isnan(got[n]) ? 1 : 0;
                            continue;
                        }
                        rowMax = std::max(rowMax, std::abs(double(want[n])));
                    }
                    for (int64_t n = 0; n < H; ++n)
                    {
                        if (!std::isnan(want[n]) && !std::isnan(got[n]))
                        {
                            rowErr = std::max(rowErr, std::abs(double(got[n]) - want[n]) / (rowMax + 1e-30));
                        }
                    }
                    double const tight = std::max(4 * epsT, 0x1p-16);
                    flippedRows += rowErr > tight ? 1 : 0;
                    worst = std::max(worst, rowErr);
                }
                bool const close = mode == "w4a16" ? flippedRows == 0
                                                   : flippedRows <= std::max<int64_t>(1, M / 100) && worst <= 0.125;
                check(ok && close && nanMismatch == 0,
                    "NVFP4MoE enqueue matches the CPU formula: type " + std::to_string(int(t)) + " " + mode + " M="
                        + std::to_string(M),
                    "ok=" + std::to_string(ok) + " worst error/row max=" + std::to_string(worst) + " rows beyond "
                        + "the tight bound=" + std::to_string(flippedRows) + " NaN mismatches="
                        + std::to_string(nanMismatch) + " " + problem + gRecorder.last());
                for (void* ptr : {dx, dl, dy, ws, dev[0], dev[1], dev[2], dev[3], dev[4], dev[5]})
                {
                    cudaFree(ptr);
                }
            }
        }
    }
}

// Everything above, through the registry (loadLibrary already done by main).
void checkMoEPlugin(IPluginRegistry* registry, bool haveGpu)
{
    IPluginCreatorV3One* creator = findCreator(registry, "NVFP4MoE");
    check(creator != nullptr, "getCreator(\"NVFP4MoE\", \"1\", \"\") is an IPluginCreatorV3One");
    if (creator == nullptr)
    {
        return;
    }
    check(std::string(creator->getPluginName()) == "NVFP4MoE" && std::string(creator->getPluginVersion()) == "1"
            && std::string(creator->getPluginNamespace()).empty(),
        "NVFP4MoE creator name / version / namespace");
    printFieldNames("MOE_FIELDS_JSON", creator);

    MoEFields fields;
    Plugin p(creator->createPlugin("moe0", fields.build(), TensorRTPhase::kBUILD));
    check(p.plugin && p.core && p.build && p.runtime,
        "NVFP4MoE createPlugin(kBUILD) from parser-style fields; kCORE, kBUILD and kRUNTIME interfaces");
    if (!p.plugin || !p.core || !p.build || !p.runtime)
    {
        return;
    }
    check(std::string(p.core->getPluginName()) == "NVFP4MoE" && std::string(p.core->getPluginVersion()) == "1",
        "NVFP4MoE plugin name / version match the creator");
    checkMoEBuildMethods(p);
    checkMoESerializationAndClone(creator, p, fieldsSignature(fields.build()));
    checkMoEBadFields(creator);
    if (haveGpu)
    {
        checkMoEEnqueue(creator);
    }
    else
    {
        std::printf("SKIP NVFP4MoE enqueue: no CUDA device\n");
    }
}
