"""The `nvfp4::linear` custom op, the NVFP4Linear module and its one-node ONNX export."""
from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch

from export.layer import NVFP4LinearWeights
from export.nvfp4 import quantize_weight
from export.reference import nvfp4_linear_emulation, nvfp4_linear_exact
from export.torch_ops import (NVFP4Linear, node_attributes, op_contract, register_onnx_symbolic,
                              shape_only_tracing)


def _layer(n=32, k=64, *, w4a4=True, bias=True, per_channel=False, seed=0, edge=False) -> NVFP4LinearWeights:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g)
    if edge:
        w[0, :16] = 0.0  # a zero block
        w[1, 16:32] *= 1e-6  # FP8 subnormal block scales
    gs = (w.abs().amax(dim=1) / 2688.0) if per_channel else None
    packed, scale, gscale = quantize_weight(w, gs)
    isc = torch.tensor(0.0123, dtype=torch.float32)
    return NVFP4LinearWeights("test.proj", packed, scale, gscale, isc if w4a4 else None,
                              (1.0 / isc) if w4a4 else None,
                              torch.randn(n, generator=g) * 0.1 if bias else None)


def _x(m=5, k=64, seed=1, edge=False):
    x = torch.randn(2, m, k, generator=torch.Generator().manual_seed(seed)) * 3
    if edge:
        x[0, 0, :16] = 0.0  # zero activation block
        x[0, 1, 3] = 1e4  # saturating block
        x[1, 0, :16] = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0] * 2)  # ties
    return x


@pytest.mark.parametrize("w4a4", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("per_channel", [True, False])
def test_custom_op_is_the_exact_reference(w4a4, bias, per_channel):
    layer = _layer(w4a4=w4a4, bias=bias, per_channel=per_channel, edge=True)
    x = _x(edge=True)
    got = NVFP4Linear(layer, reference="onnx")(x)
    want = nvfp4_linear_exact(x, layer)
    assert torch.equal(got, want)
    assert got.shape == (2, 5, 32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_module_references(dtype):
    layer = _layer()
    x = _x().to(dtype)
    exact = NVFP4Linear(layer, reference="exact", dtype=dtype)(x)
    emu = NVFP4Linear(layer, reference="emulation", dtype=dtype)(x)
    assert exact.dtype == dtype and emu.dtype == dtype
    assert torch.equal(emu, nvfp4_linear_emulation(x, NVFP4Linear(layer, dtype=dtype)._layer))
    # The two differ only by roundings to dtype (and their effect on activation quantization).
    rel = (exact.double() - emu.double()).abs().max() / exact.double().abs().max()
    assert rel < {torch.float32: 1e-5, torch.float16: 5e-2, torch.bfloat16: 1e-1}[dtype]


def test_fake_impl_and_opcheck():
    layer = _layer()
    mod = NVFP4Linear(layer, reference="onnx")
    args = (_x(), mod.weight, mod.weight_scale, mod.weight_global_scale, mod.bias, 64, 32, "w4a4",
            mod.input_global_scale, mod.input_global_scale_inv)
    torch.library.opcheck(torch.ops.nvfp4.linear.default, args,
                          test_utils=("test_schema", "test_faketensor"))
    with shape_only_tracing():
        assert torch.equal(torch.ops.nvfp4.linear(*args), torch.zeros(2, 5, 32))


def test_buffers_are_views_of_the_checkpoint():
    layer = _layer()
    mod = NVFP4Linear(layer)
    assert mod.weight.dtype == torch.int8 and mod.weight.data_ptr() == layer.weight_packed.data_ptr()
    assert mod.weight_scale.dtype == torch.int8 and mod.weight_scale.data_ptr() == layer.weight_scale.data_ptr()


def test_node_attributes_follow_the_yaml():
    c = op_contract()
    attrs = node_attributes(in_features=64, out_features=32, mode="w4a16", input_global_scale=0.5,
                            input_global_scale_inv=2.0, has_bias=False)
    assert list(attrs)[: len(c["attributes"])] == list(c["attributes"])
    assert attrs["input_global_scale"] == 1.0 and attrs["input_global_scale_inv"] == 1.0  # ignored in w4a16
    assert attrs["group_size"] == c["group_size"] and attrs["plugin_version"] == c["plugin_version"]
    with pytest.raises(ValueError, match="mode"):
        node_attributes(in_features=64, out_features=32, mode="w8a8", input_global_scale=1.0,
                        input_global_scale_inv=1.0, has_bias=False)


class _Wrap(torch.nn.Module):
    def __init__(self, lin):
        super().__init__()
        self.proj = lin

    def forward(self, x):
        return self.proj(x)


def _export_single(layer, dtype=torch.float32) -> onnx.ModelProto:
    register_onnx_symbolic()
    mod = _Wrap(NVFP4Linear(layer, reference="onnx", dtype=dtype)).eval()
    buf = io.BytesIO()
    with torch.no_grad(), shape_only_tracing():
        torch.onnx.export(mod, (_x().to(dtype),), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b", 1: "s"}, "y": {0: "b", 1: "s"}}, opset_version=20,
                          custom_opsets={"trt.plugins": 1})
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("bias", [True, False])
def test_onnx_export_is_one_node(bias):
    layer = _layer(bias=bias)
    m = _export_single(layer)
    nodes = [n for n in m.graph.node if n.op_type == "NVFP4Linear"]
    assert len(nodes) == 1 and nodes[0].domain == "trt.plugins"
    assert len(nodes[0].input) == (5 if bias else 4)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs["in_features"] == 64 and attrs["out_features"] == 32 and attrs["has_bias"] == int(bias)
    assert attrs["mode"] == b"w4a4"
    assert np.float32(attrs["input_global_scale_inv"]) == layer.input_global_scale_inv.item()
    inits = {i.name: i for i in m.graph.initializer}
    w = onnx.numpy_helper.to_array(inits[nodes[0].input[1]])
    assert w.dtype == np.int8 and np.array_equal(w.view(np.uint8), layer.weight_packed.numpy())


def test_onnx_export_runs_in_ort():
    pytest.importorskip("onnxruntime")
    from plugins.library import find_ort_library

    try:
        find_ort_library()
    except FileNotFoundError as e:
        pytest.skip(f"ORT custom-op library not built: {e}")
    from plugins.ort import make_session

    layer = _layer(per_channel=True)
    m = _export_single(layer)
    x = _x(m=7, seed=3)
    y = make_session(m.SerializeToString()).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(y, nvfp4_linear_exact(x, layer).numpy(), rtol=1e-5, atol=1e-5)
