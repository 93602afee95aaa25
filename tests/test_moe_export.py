"""NVFP4MoE in ONNX: the node against its contract YAML and the checkpoint's tensors, the
verifier's node reference on its own, the qdq expansion, whole-model exports of tiny Qwen3-MoE and
Mixtral checkpoints checked layer by layer and end to end on CPU, and the layer check failing on
one expert scale moved by one FP8 step."""
from __future__ import annotations

import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from onnx.reference import ReferenceEvaluator

from export.checkpoint import open_checkpoint
from export.checkpoint.moe import find_expert_blocks, read_moe_block, routing_from_config
from export.contract import op_contract
from export.dtypes import torch_dtype
from export.layer import NVFP4LinearWeights, NVFP4MoEWeights
from export.moe import StackedMoE, stack_moe
from export.nvfp4 import dequantize_weight, pack_fp4
from export.onnx_export import export_model
from export.onnx_reference import nvfp4_moe_node_reference, reference_ops
from export.reference import nvfp4_moe_exact
from export.sidecar import load_sidecar
from export.torch_ops import moe_node_attributes
from plugins.verify.accuracy import graph_scores, reference_scores
from plugins.verify.layers import random_ids, verify_layers
from plugins.verify.runtimes import cpu_runtime

FIXTURES_MOE = Path(__file__).resolve().parent / "fixtures" / "producers-moe"

_ONNX_TYPES = {"float32": onnx.TensorProto.FLOAT, "float16": onnx.TensorProto.FLOAT16,
               "int8": onnx.TensorProto.INT8}
_ATTR_TYPES = {"INT": onnx.AttributeProto.INT, "FLOATS": onnx.AttributeProto.FLOATS,
               "STRING": onnx.AttributeProto.STRING}


# ------------------------------------------------------------------------------ a random block

def random_block(e=4, h=32, i=16, top_k=2, normalize=True, w4a4=True, seed=0) -> NVFP4MoEWeights:
    """Experts with distinct power-of-two scales (G = 1/s_in exactly, as ModelOpt and Quark store)."""
    gen = torch.Generator().manual_seed(seed)

    def linear(name, n, k, j):
        codes = torch.randint(0, 16, (n, k), generator=gen, dtype=torch.uint8)
        scale = (torch.rand(n, k // 16, generator=gen) * 4 + 0.25).to(torch.float8_e4m3fn)
        s_in = torch.tensor(2.0 ** -(6 + j % 3), dtype=torch.float32) if w4a4 else None
        return NVFP4LinearWeights(name, pack_fp4(codes), scale, torch.tensor(2.0 ** -(3 + j % 4)),
                                  s_in, None if s_in is None else 1.0 / s_in)

    gate = tuple(linear(f"gate{x}", i, h, x) for x in range(e))
    up = tuple(replace_input_scale(linear(f"up{x}", i, h, x + 1), gate[x]) for x in range(e))
    down = tuple(linear(f"down{x}", h, i, 2 * x + 1) for x in range(e))
    return NVFP4MoEWeights("block", torch.randn(e, h, generator=gen), gate, up, down, top_k, normalize)


def replace_input_scale(lin: NVFP4LinearWeights, like: NVFP4LinearWeights) -> NVFP4LinearWeights:
    from dataclasses import replace

    return replace(lin, input_global_scale=like.input_global_scale, input_global_scale_inv=like.input_global_scale_inv)


def single_node_model(st: StackedMoE, dtype=np.float32) -> onnx.ModelProto:
    c = op_contract("NVFP4MoE")
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    attrs = moe_node_attributes(
        num_experts=st.num_experts, top_k=st.top_k, hidden_size=st.hidden_size,
        intermediate_size=st.intermediate_size, mode=st.mode, normalize_topk=st.normalize_topk,
        w13_input_global_scale=st.w13_input_global_scale, w13_input_global_scale_inv=st.w13_input_global_scale_inv,
        w2_input_global_scale=st.w2_input_global_scale, w2_input_global_scale_inv=st.w2_input_global_scale_inv)
    inits = [onnx.numpy_helper.from_array(t.numpy(), name) for name, t in zip(StackedMoE.TENSORS, st.tensors())]
    node = helper.make_node(c["name"], ["x", "router_logits", *StackedMoE.TENSORS], ["y"], domain=c["domain"],
                            name="block.experts", **attrs)
    graph = helper.make_graph(
        [node], "moe",
        [helper.make_tensor_value_info("x", elem, ["m", st.hidden_size]),
         helper.make_tensor_value_info("router_logits", elem, ["m", st.num_experts])],
        [helper.make_tensor_value_info("y", elem, ["m", st.hidden_size])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23), helper.make_opsetid(c["domain"], 1)],
                             ir_version=10)


def dense_moe_f64(x, logits, moe: NVFP4MoEWeights):
    """An independent W4A16 MoE in float64 from the dequantized weights: softmax, top-k,
    (renormalise), sum of r · down(silu(gate x) · up x)."""
    x64 = x.double()
    p = torch.softmax(logits.double(), -1)
    vals, idx = torch.topk(p, moe.top_k, -1)
    if moe.normalize_topk:
        vals = vals / vals.sum(-1, keepdim=True)

    def deq(lin):
        return dequantize_weight(lin.weight_packed, lin.weight_scale, lin.weight_global_scale, dtype=torch.float64)

    y = torch.zeros_like(x64)
    for m in range(x.shape[0]):
        for r, e in zip(vals[m], idx[m].tolist()):
            h = torch.nn.functional.silu(deq(moe.gate[e]) @ x64[m]) * (deq(moe.up[e]) @ x64[m])
            y[m] += r * (deq(moe.down[e]) @ h)
    return y


# ------------------------------------------------------------------------------ the node reference

@pytest.mark.parametrize("normalize", [True, False])
def test_node_reference_is_the_contract(normalize):
    """The verifier's NVFP4MoE reference, given only the node and its input arrays, computes the
    MoE of the block the node was made from: bit-equal to nvfp4_moe_exact on the block (W4A4), and
    within float32 rounding of an independent float64 MoE (W4A16)."""
    for w4a4 in (True, False):
        moe = random_block(normalize=normalize, w4a4=w4a4)
        model = single_node_model(stack_moe(moe))
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(9, moe.hidden_size, generator=gen)
        logits = torch.randn(9, moe.num_experts, generator=gen) * 2
        logits[3, 1] = logits[3, 2]  # a tie: the lower expert index wins
        inputs = [x.numpy(), logits.numpy()] + [onnx.numpy_helper.to_array(t) for t in model.graph.initializer]
        got = nvfp4_moe_node_reference(model.graph.node[0], inputs)
        assert got.dtype == np.float32 and got.shape == (9, moe.hidden_size)
        assert np.array_equal(got, nvfp4_moe_exact(x, logits, moe).numpy())
        if not w4a4:
            want = dense_moe_f64(x, logits, moe)
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_node_reference_sees_a_perturbed_expert_scale():
    """A changed global scale of one expert's down projection changes exactly the tokens routed to it."""
    moe = random_block(e=4, top_k=1)
    model = single_node_model(stack_moe(moe))
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(16, moe.hidden_size, generator=gen)
    logits = torch.randn(16, moe.num_experts, generator=gen) * 3
    inputs = [x.numpy(), logits.numpy()] + [onnx.numpy_helper.to_array(t) for t in model.graph.initializer]
    base = nvfp4_moe_node_reference(model.graph.node[0], inputs)
    perturbed = list(inputs)
    w2_g = inputs[2 + StackedMoE.TENSORS.index("w2_weight_global_scale")].copy()
    w2_g[1] *= 1.5
    perturbed[2 + StackedMoE.TENSORS.index("w2_weight_global_scale")] = w2_g
    changed = np.abs(nvfp4_moe_node_reference(model.graph.node[0], perturbed) - base).max(-1) > 0
    routed_to_1 = logits.argmax(-1).numpy() == 1
    assert routed_to_1.any() and np.array_equal(changed, routed_to_1)


def test_onnx_reference_runs_the_node_through_the_evaluator():
    moe = random_block(e=5, top_k=3, normalize=False)
    model = single_node_model(stack_moe(moe), np.float16)
    x = torch.randn(6, moe.hidden_size).half()
    logits = torch.randn(6, moe.num_experts).half()
    y = ReferenceEvaluator(model, new_ops=reference_ops()).run(None, {"x": x.numpy(), "router_logits": logits.numpy()})[0]
    assert y.dtype == np.float16 and np.array_equal(y, nvfp4_moe_exact(x, logits, moe).numpy())


@pytest.mark.parametrize("w4a4", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
def test_qdq_expansion_of_one_node(w4a4, normalize):
    """--format qdq's standard-op form of one NVFP4MoE node computes the contract (float32; only the
    summation order differs)."""
    import onnx_ir as ir

    from export.qdq import reference_ops as qdq_ops
    from export.qdq import rewrite_to_qdq

    moe = random_block(e=4, top_k=2, normalize=normalize, w4a4=w4a4)
    model = ir.from_proto(single_node_model(stack_moe(moe)))
    assert rewrite_to_qdq(model) == 2 * moe.num_experts
    proto = ir.to_proto(model)
    onnx.checker.check_model(proto, full_check=True)
    assert not [n for n in proto.graph.node if n.domain == op_contract("NVFP4MoE")["domain"]]
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(7, moe.hidden_size, generator=gen)
    logits = torch.randn(7, moe.num_experts, generator=gen) * 2
    y = ReferenceEvaluator(proto, new_ops=qdq_ops()).run(None, {"x": x.numpy(), "router_logits": logits.numpy()})[0]
    want = nvfp4_moe_exact(x, logits, moe).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


# ------------------------------------------------------------------------------ whole models

def check_moe_nodes(model: onnx.ModelProto, checkpoint, dtype: str) -> int:
    """Every NVFP4MoE node against the YAML (domain, attribute names/types, input count/types/
    shapes) and against the checkpoint: attributes = the block's, stacked inputs = its tensors."""
    c = op_contract("NVFP4MoE")
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    top_k, normalize = routing_from_config(checkpoint.config)
    blocks = {b.name: b for b in find_expert_blocks(checkpoint).values()}
    nodes = [n for n in model.graph.node if n.op_type == c["name"]]
    for node in nodes:
        assert node.domain == c["domain"] and len(node.input) == len(c["inputs"]) and len(node.output) == 1
        attrs = {a.name: a for a in node.attribute}
        assert set(attrs) == set(c["attributes"]) | {"plugin_version", "plugin_namespace"}
        for name, spec in c["attributes"].items():
            assert attrs[name].type == _ATTR_TYPES[spec["onnx"]], (node.name, name)
        val = {k: helper.get_attribute_value(a) for k, a in attrs.items()}
        block = blocks[node.name.rpartition(".experts")[0]]  # node name = "<block>.experts"
        moe = read_moe_block(checkpoint, block, top_k=top_k, normalize_topk=normalize)
        assert (val["num_experts"], val["top_k"], val["hidden_size"], val["intermediate_size"]) == \
            (moe.num_experts, moe.top_k, moe.hidden_size, moe.intermediate_size)
        assert val["mode"].decode() == moe.mode and val["activation"] == b"silu"
        assert val["normalize_topk"] == int(normalize) and val["group_size"] == c["group_size"]
        for e in range(moe.num_experts):
            g, u, d = moe.gate[e], moe.up[e], moe.down[e]
            assert np.float32(val["w13_input_global_scale"][e]) == g.input_global_scale.item() == u.input_global_scale.item()
            assert np.float32(val["w13_input_global_scale_inv"][e]) == g.input_global_scale_inv.item()
            assert np.float32(val["w2_input_global_scale"][e]) == d.input_global_scale.item()
            assert np.float32(val["w2_input_global_scale_inv"][e]) == d.input_global_scale_inv.item()
            w13, w13_s, w13_g, w2, w2_s, w2_g = (inits[n][e] for n in node.input[2:])
            assert np.array_equal(w13.view(np.uint8), np.concatenate([g.weight_packed.numpy(), u.weight_packed.numpy()]))
            assert np.array_equal(w13_s.view(np.uint8), np.concatenate(
                [g.weight_scale.view(torch.uint8).numpy(), u.weight_scale.view(torch.uint8).numpy()]))
            assert np.array_equal(w13_g, np.array([g.weight_global_scale.item()] * moe.intermediate_size
                                                  + [u.weight_global_scale.item()] * moe.intermediate_size, np.float32))
            assert np.array_equal(w2.view(np.uint8), d.weight_packed.numpy())
            assert np.array_equal(w2_s.view(np.uint8), d.weight_scale.view(torch.uint8).numpy())
            assert np.all(w2_g == np.float32(d.weight_global_scale.item()))
        for spec, name in zip(c["inputs"][2:], node.input[2:]):
            assert inits[name].dtype == (np.int8 if spec["type"] == "int8" else np.float32), (node.name, name)
        # The router Gemm feeding input 1 reads the checkpoint's router (in the graph's dtype).
        producer = {o: n for n in model.graph.node for o in n.output}
        gemm = producer[node.input[1]]
        while gemm.op_type == "Reshape":  # linear_2d flattens to 2-D around the Gemm
            gemm = producer[gemm.input[0]]
        assert gemm.op_type == "Gemm" and gemm.input[1] == f"{block.router_name}.weight"
        router = inits[gemm.input[1]]
        assert router.dtype == np.dtype(dtype)
        assert np.array_equal(router, moe.router_weight.to(getattr(torch, dtype)).numpy())
    return len(nodes)


def assert_exported_model_matches(onnx_path, src, logp_atol=1e-4):
    """The layer-by-layer check passes, and end to end the graph's next-token log-probabilities
    equal the torch `exact` model's (the graph around the custom nodes is wired right)."""
    report = verify_layers(onnx_path, src)
    assert report.ok, report.table()
    side = load_sidecar(onnx_path)
    windows = random_ids(side, tokens=6)
    graph = graph_scores(cpu_runtime(side)(onnx_path, []), side, windows)
    ref = reference_scores(open_checkpoint(src), torch_dtype(side["dtype"]), windows, "reference")
    assert np.abs(graph.logp - ref.logp).max() < logp_atol


@pytest.mark.parametrize("family", ["qwen3_moe", "mixtral"])
@pytest.mark.parametrize("fmt", ["plugin", "qdq"])
def test_whole_model_export(family, fmt, make_tiny_checkpoint, tmp_path):
    layout = {"qwen3_moe": "modelopt", "mixtral": "compressed-tensors"}[family]
    src = make_tiny_checkpoint(layout, family=family)
    res = export_model(src, tmp_path / "m.onnx", fmt=fmt, dtype="float32", progress=False)
    ck = open_checkpoint(src)
    assert res.quantized_layers == len(ck.quantized_names)
    model = onnx.load(str(res.onnx_path))
    onnx.checker.check_model(model, full_check=True)
    if fmt == "plugin":
        assert check_moe_nodes(model, ck, "float32") == 2  # one node per MoE block
        # The sidecar names both ops the plugin library must register.
        assert [op["name"] for op in res.sidecar["plugin"]["ops"]] == ["NVFP4Linear", "NVFP4MoE"]
    else:
        assert not [n for n in model.graph.node if n.domain == "trt.plugins"]
        assert res.sidecar["plugin"] is None
    assert_exported_model_matches(res.onnx_path, src)


def test_float16_plugin_export_keeps_types(make_tiny_checkpoint, tmp_path):
    src = make_tiny_checkpoint("quark", family="qwen3_moe")
    res = export_model(src, tmp_path / "m.onnx", fmt="plugin", dtype="float16", progress=False)
    model = onnx.load(str(res.onnx_path))
    assert check_moe_nodes(model, open_checkpoint(src), "float16") == 2
    report = verify_layers(res.onnx_path, src)
    assert report.ok, report.table()


@pytest.mark.parametrize("what", ["weight_scale", "weight_global_scale", "input_scale"])
def test_layer_check_fails_on_one_perturbed_expert_scale(what, tmp_path):
    """One expert's scale moved by one FP8 step in the exported graph: the layer-by-layer check
    (reference from the checkpoint's experts) fails at that MoE node and nowhere else."""
    src = FIXTURES_MOE / "qwen3_moe" / "modelopt"
    res = export_model(src, tmp_path / "m.onnx", fmt="plugin", dtype="float32", progress=False)
    model = onnx.load(str(res.onnx_path))
    node = next(n for n in model.graph.node if n.op_type == "NVFP4MoE")
    inits = {i.name: i for i in model.graph.initializer}
    expert = 1
    if what == "weight_scale":  # the largest block scale of the expert's first down row, one code up
        t = inits[node.input[6]]
        raw = np.frombuffer(t.raw_data, dtype=np.uint8).copy().reshape(onnx.numpy_helper.to_array(t).shape)
        row = raw[expert, 0]
        j = int(np.argmax(row.view(ml_dtypes.float8_e4m3fn).astype(np.float32)))
        row[j] += 1
        t.raw_data = raw.tobytes()
    elif what == "weight_global_scale":  # the expert's down projection, x 9/8
        g = onnx.numpy_helper.to_array(inits[node.input[7]]).copy()
        g[expert] *= np.float32(9 / 8)
        inits[node.input[7]].CopyFrom(onnx.numpy_helper.from_array(g, node.input[7]))
    else:  # the activation scale entering the expert's down projection (and G with it)
        attrs = {a.name: a for a in node.attribute}
        attrs["w2_input_global_scale"].floats[expert] *= 9 / 8
        attrs["w2_input_global_scale_inv"].floats[expert] = float(
            np.float32(1) / np.float32(attrs["w2_input_global_scale"].floats[expert]))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    shutil.copy(str(res.onnx_path) + ".json", str(bad) + ".json")
    report = verify_layers(bad, src)
    assert not report.ok
    assert {r.node for r in report.results if not r.ok} == {node.name}
