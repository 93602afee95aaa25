"""Whole-model export: both ONNX formats, every checkpoint layout, run on CPU against the torch
reference; every NVFP4Linear node checked against the op contract YAML."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from export.checkpoint import FORMATS, open_checkpoint
from export.onnx_export import export_model
from plugins.verify.layers import verify_layers
from export.torch_ops import op_contract

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tiny-llama-nvfp4"
PRODUCERS = ROOT / "tests" / "fixtures" / "producers"

_ONNX_TYPES = {"float32": onnx.TensorProto.FLOAT, "float16": onnx.TensorProto.FLOAT16,
               "bfloat16": onnx.TensorProto.BFLOAT16, "int8": onnx.TensorProto.INT8}
_ATTR_TYPES = {"INT": onnx.AttributeProto.INT, "FLOAT": onnx.AttributeProto.FLOAT,
               "STRING": onnx.AttributeProto.STRING}


def _ort_library_or_skip():
    from plugins.library import find_ort_library

    try:
        return find_ort_library()
    except FileNotFoundError as e:
        pytest.skip(f"plugin format runs through the ORT custom-op library, which is not built: {e}")


def _export(src, tmp_path, fmt, dtype="float32", **kw):
    out = tmp_path / f"model-{fmt}-{dtype}.onnx"
    return export_model(src, out, fmt=fmt, dtype=dtype, progress=False, **kw)


def _value_types(model: onnx.ModelProto) -> dict[str, tuple[int, list]]:
    """name -> (elem_type, dims) for inputs, outputs, initializers and inferred values."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = vi.type.tensor_type
        types[vi.name] = (t.elem_type, [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim])
    for init in model.graph.initializer:
        types[init.name] = (init.data_type, list(init.dims))
    return types


def check_nodes_against_contract(model: onnx.ModelProto, dtype: str, layers: dict) -> int:
    """Every NVFP4Linear node: domain, attribute names/types/values, input count/types/shapes and
    output type as the YAML says; returns the number of nodes."""
    c = op_contract()
    assert dict((o.domain, o.version) for o in model.opset_import)[c["domain"]] == 1
    assert 17 <= dict((o.domain, o.version) for o in model.opset_import)[""] <= 23
    assert model.ir_version <= 10
    types = _value_types(model)
    t_act = _ONNX_TYPES[dtype]
    nodes = [n for n in model.graph.node if n.op_type == c["name"]]
    for node in nodes:
        assert node.domain == c["domain"]
        attrs = {a.name: a for a in node.attribute}
        assert set(attrs) == set(c["attributes"]) | {"plugin_version", "plugin_namespace"}, node.name
        for name, spec in c["attributes"].items():
            assert attrs[name].type == _ATTR_TYPES[spec["onnx"]], (node.name, name)
        val = {k: onnx.helper.get_attribute_value(a) for k, a in attrs.items()}
        assert val["plugin_version"].decode() == c["plugin_version"]
        assert val["plugin_namespace"].decode() == c["plugin_namespace"]
        assert val["group_size"] == c["group_size"]
        assert val["mode"].decode() in c["modes"]
        n, k = val["out_features"], val["in_features"]
        assert k % c["group_size"] == 0 and n > 0
        assert len(node.input) == 4 + val["has_bias"]
        layer = layers[node.name]  # node names are the checkpoint's module paths
        assert (n, k) == (layer.out_features, layer.in_features) and val["mode"].decode() == layer.mode
        if layer.w4a4:
            assert np.float32(val["input_global_scale"]) == layer.input_global_scale.item()
            assert np.float32(val["input_global_scale_inv"]) == layer.input_global_scale_inv.item()
            assert val["input_global_scale"] > 0 and val["input_global_scale_inv"] > 0
        expect_shape = {"x": None, "weight": [n, k // 2], "weight_scale": [n, k // c["group_size"]],
                        "bias": [n]}
        for spec, name in zip(c["inputs"], node.input):
            elem, dims = types[name]
            assert elem == (t_act if spec["type"] == "T" else _ONNX_TYPES[spec["type"]]), (node.name, spec["name"])
            if spec["name"] == "x":
                assert not dims or isinstance(dims[-1], str) or dims[-1] == k  # symbolic where inference stops
            elif spec["name"] == "weight_global_scale":
                assert dims in ([1], [n])
            else:
                assert dims == expect_shape[spec["name"]], (node.name, spec["name"], dims)
        assert types[node.output[0]][0] == t_act
        # The weight bytes are the checkpoint's, unchanged.
        inits = {i.name: i for i in model.graph.initializer}
        w = onnx.numpy_helper.to_array(inits[node.input[1]])
        assert np.array_equal(w.view(np.uint8), layer.weight_packed.numpy())
    return len(nodes)


@pytest.mark.parametrize("fmt", ["plugin", "qdq"])
def test_tiny_checkpoints_all_layouts(tiny_checkpoint, tmp_path, fmt):
    layout, src = tiny_checkpoint
    if fmt == "plugin":
        _ort_library_or_skip()
    res = _export(src, tmp_path, fmt)
    onnx.checker.check_model(str(res.onnx_path), full_check=True)
    model = onnx.load(str(res.onnx_path))
    assert model.ir_version <= 11
    ckpt = open_checkpoint(src)
    if fmt == "plugin":
        layers = {name: ckpt.layer(name) for name in ckpt.quantized_names}
        assert check_nodes_against_contract(model, "float32", layers) == len(layers) == res.quantized_layers
    report = verify_layers(res.onnx_path, src)
    assert report.ok, report.table()


@pytest.mark.parametrize("layout", FORMATS)
@pytest.mark.parametrize("fmt", ["plugin", "qdq"])
def test_real_producer_fixtures(layout, fmt, tmp_path):
    src = PRODUCERS / layout
    if not (src / "config.json").exists():
        pytest.skip(f"no real-producer fixture at {src}")
    if fmt == "plugin":
        _ort_library_or_skip()
    res = _export(src, tmp_path, fmt)
    onnx.checker.check_model(str(res.onnx_path), full_check=True)
    if fmt == "plugin":
        ckpt = open_checkpoint(src)
        check_nodes_against_contract(onnx.load(str(res.onnx_path)), "float32",
                                     {n: ckpt.layer(n) for n in ckpt.quantized_names})
    report = verify_layers(res.onnx_path, src)
    assert report.ok, report.table()


@pytest.mark.parametrize("family, fmt", [("qwen2", "plugin"), ("qwen2", "qdq"), ("qwen3", "plugin"),
                                         ("mistral", "plugin")])
def test_families_w4a16_and_bias(family, fmt, make_tiny_checkpoint, tmp_path):
    """qwen2: W4A16 with q/k/v biases; qwen3: q/k norm and tied embeddings; mistral."""
    if fmt == "plugin":
        _ort_library_or_skip()
    src = make_tiny_checkpoint("compressed-tensors", family=family, w4a16=(family == "qwen2"))
    res = _export(src, tmp_path, fmt)
    ckpt = open_checkpoint(src)
    model = onnx.load(str(res.onnx_path))
    if fmt == "plugin":
        check_nodes_against_contract(model, "float32", {n: ckpt.layer(n) for n in ckpt.quantized_names})
    else:
        assert not any(n.op_type == "TRT_FP4DynamicQuantize" for n in model.graph.node)  # W4A16
    report = verify_layers(res.onnx_path, src)
    assert report.ok, report.table()


def test_qdq_rewrite_per_channel_global_scale_and_bias():
    """A node with a per-output-channel weight_global_scale ([N], allowed by the contract for
    fused layers) rewrites to DQ(axis=0); the result runs in onnx.reference like the reference."""
    import onnx_ir as ir
    import torch
    from onnx.reference import ReferenceEvaluator

    from export.qdq import reference_ops, rewrite_to_qdq
    from export.reference import nvfp4_linear_exact
    from tests.test_torch_ops import _export_single, _layer, _x

    layer = _layer(per_channel=True, bias=True)
    model_ir = ir.from_proto(_export_single(layer))
    model_ir.opset_imports[""] = 23
    assert rewrite_to_qdq(model_ir) == 1
    proto = ir.to_proto(model_ir)
    onnx.checker.check_model(proto, full_check=True)
    dq_axes = [onnx.helper.get_attribute_value(a) for n in proto.graph.node if n.op_type == "DequantizeLinear"
               for a in n.attribute if a.name == "axis"]
    assert 0 in dq_axes
    x = _x(m=4, seed=5)
    y = ReferenceEvaluator(proto, new_ops=reference_ops()).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(y, nvfp4_linear_exact(x, layer).numpy(), rtol=1e-5, atol=1e-5)
    assert torch.is_tensor(x)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_example_half_precision_plugin(dtype, tmp_path):
    _ort_library_or_skip()
    res = _export(EXAMPLE, tmp_path, "plugin", dtype=dtype)
    model = onnx.load(str(res.onnx_path))
    ckpt = open_checkpoint(EXAMPLE)
    check_nodes_against_contract(model, dtype, {n: ckpt.layer(n) for n in ckpt.quantized_names})
    # Unquantized weights are stored in the activation dtype.
    inits = {i.name: i for i in model.graph.initializer}
    assert inits["model.embed_tokens.weight"].data_type == _ONNX_TYPES[dtype]
    assert inits["lm_head.weight"].data_type == _ONNX_TYPES[dtype]
    report = verify_layers(res.onnx_path, EXAMPLE)
    assert report.ok, report.table()


def test_qdq_structure(tmp_path):
    res = _export(EXAMPLE, tmp_path, "qdq", dtype="float16")
    model = onnx.load(str(res.onnx_path))
    onnx.checker.check_model(model, full_check=True)
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets[""] >= 23 and opsets["trt"] == 1 and "trt.plugins" not in opsets
    assert model.ir_version == 11
    ops = [n.op_type for n in model.graph.node]
    assert "NVFP4Linear" not in ops
    fp4 = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT4E2M1]
    fp8 = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT8E4M3FN]
    assert len(fp4) == len(fp8) == res.quantized_layers == 14
    assert ops.count("TRT_FP4DynamicQuantize") == 14  # the example is W4A4
    assert ops.count("DequantizeLinear") == 4 * 14
    for n in model.graph.node:
        if n.op_type == "TRT_FP4DynamicQuantize":
            a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            assert n.domain == "trt" and a == {"axis": -1, "block_size": 16, "scale_type": onnx.TensorProto.FLOAT8E4M3FN}
        if n.op_type == "DequantizeLinear" and any(i.name == n.input[0] for i in fp4):
            a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            assert a == {"axis": 1, "block_size": 16}
    # The FP4 bytes are the checkpoint's packed bytes.
    ckpt = open_checkpoint(EXAMPLE)
    by_name = {i.name: i for i in fp4}
    layer = ckpt.layer("model.layers.0.self_attn.q_proj")
    assert list(by_name["model.layers.0.self_attn.q_proj.weight"].dims) == [layer.out_features, layer.in_features]
    assert by_name["model.layers.0.self_attn.q_proj.weight"].raw_data == layer.weight_packed.numpy().tobytes()
    report = verify_layers(res.onnx_path, EXAMPLE)
    assert report.ok, report.table()


def test_external_data_and_sidecar(tmp_path):
    lib = _ort_library_or_skip()
    res = _export(EXAMPLE, tmp_path, "plugin", external_data=True)
    assert res.data_path is not None and res.data_path.name == res.onnx_path.name + ".data"
    assert res.onnx_path.stat().st_size < 100_000 < res.data_path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [res.onnx_path.name, res.data_path.name, res.sidecar_path.name])  # no temporary left
    side = json.loads(res.sidecar_path.read_text())
    assert side["format"] == "plugin" and side["dtype"] == "float32"
    assert side["plugin"] == {"name": "NVFP4Linear", "version": "1", "namespace": "", "domain": "trt.plugins",
                              "ops": [{"name": "NVFP4Linear", "version": "1", "namespace": ""}]}
    assert side["quantized_layers"] == 14 and side["excluded_layers"] == ["lm_head"]
    assert side["checkpoint_format"] == "modelopt"
    from plugins.ort import make_session

    sess = make_session(res.onnx_path, library=lib)
    assert [i.name for i in sess.get_inputs()] == [i["name"] for i in side["inputs"]]
    assert [o.name for o in sess.get_outputs()] == [o["name"] for o in side["outputs"]]
    for entry in side["inputs"]:
        assert len(entry["min"]) == len(entry["opt"]) == len(entry["max"]) == len(entry["shape"])
        assert all(a <= b <= c for a, b, c in zip(entry["min"], entry["opt"], entry["max"]))
    assert side["inputs"][3]["min"][2] == 0  # an empty KV cache is allowed
    report = verify_layers(res.onnx_path, EXAMPLE, library=lib)
    assert report.ok, report.table()


def test_fp4_dynamic_quantize_reference_op():
    """The onnx.reference TRT_FP4DynamicQuantize follows the contract's activation math."""
    import ml_dtypes
    import torch

    from export.nvfp4 import quantize_activation
    from export.qdq import fp4_dynamic_quantize

    x = np.random.default_rng(0).normal(size=(2, 3, 64)).astype(np.float32) * 4
    x[0, 0, :16] = 0  # zero block -> zero scale, zero codes
    x[0, 1, 5] = np.inf  # saturates the block scale at 448
    x[1, 2, :8] = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0]
    d = np.float32(0.01)
    q, s = fp4_dynamic_quantize(x, d)
    assert q.dtype == ml_dtypes.float4_e2m1fn and s.dtype == ml_dtypes.float8_e4m3fn
    assert q.shape == x.shape and s.shape == (2, 3, 4)
    q_ref, s_ref = quantize_activation(torch.from_numpy(x.reshape(-1, 64)), torch.tensor(np.float32(1) / d))
    np.testing.assert_array_equal(q.astype(np.float32).reshape(-1, 64), q_ref.numpy())
    np.testing.assert_array_equal(s.astype(np.float32).reshape(-1, 4), s_ref.numpy())
    assert s[0, 0, 0] == 0 and np.all(q[0, 0, :16].astype(np.float32) == 0)
    assert s[0, 1, 0] == 448


def test_deferred_dtype_conversion(tmp_path, monkeypatch):
    """Dense weights stored in another dtype are converted while being written (the bench's
    float16-from-bfloat16 case); the result equals an eager conversion."""
    import export.modeling

    monkeypatch.setattr(export.modeling, "_DEFER_MIN_NUMEL", 1)
    res = _export(EXAMPLE, tmp_path, "qdq", dtype="float16")
    model = onnx.load(str(res.onnx_path))
    inits = {i.name: i for i in model.graph.initializer}
    ckpt = open_checkpoint(EXAMPLE)
    for name in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):
        assert inits[name].data_type == onnx.TensorProto.FLOAT16
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(inits[name]),
                                      ckpt.tensor(name).half().numpy())
    report = verify_layers(res.onnx_path, EXAMPLE)
    assert report.ok, report.table()


def test_excluded_linear_stays_dense(make_tiny_checkpoint, tmp_path):
    """A linear the producer left unquantized is a Gemm on a weight in the activation dtype."""
    src = make_tiny_checkpoint("quark", exclude=("lm_head", "model.layers.1.mlp.down_proj"))
    res = _export(src, tmp_path, "qdq", dtype="float16")
    assert res.quantized_layers == 13 and "model.layers.1.mlp.down_proj" in res.excluded_layers
    model = onnx.load(str(res.onnx_path))
    inits = {i.name: i for i in model.graph.initializer}
    assert inits["model.layers.1.mlp.down_proj.weight"].data_type == onnx.TensorProto.FLOAT16
    gemm_weights = [n.input[1] for n in model.graph.node if n.op_type == "Gemm"]
    assert "model.layers.1.mlp.down_proj.weight" in gemm_weights and "lm_head.weight" in gemm_weights
    report = verify_layers(res.onnx_path, src)
    assert report.ok, report.table()
