"""The ONNX Runtime custom-op library (build/libnvfp4_ort_ops.so) against the torch references.

One-node models `trt.plugins::NVFP4Linear` built with onnx.helper from weights quantized by
export.nvfp4; the op must match `nvfp4_linear_exact` (same formula: float32 differs only by the
order of the float64 sum) and `nvfp4_linear_emulation` within the rounding of the activation type.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

from export.layer import NVFP4LinearWeights
from export.nvfp4 import quantize_weight
from export.reference import nvfp4_linear_emulation, nvfp4_linear_exact
from tests.ort_models import DTYPES, ONNX_TYPE, model_bytes, ort_library_or_skip

ORT_LIB = ort_library_or_skip()

from plugins.ort import make_session  # noqa: E402  (after the skip: needs onnxruntime)


def make_layer(n, k, *, w4a4=True, bias=False, per_channel=False, dtype=torch.float32, seed=0,
               weight=None, x_amax=4.0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) if weight is None else weight
    wgs = None
    if per_channel:
        wgs = (w.abs().amax(dim=1) / 2688.0).clamp(min=1e-12) * (1 + torch.rand(n, generator=g))
    packed, scale, global_scale = quantize_weight(w, wgs)
    isg = torch.tensor(x_amax / 2688.0, dtype=torch.float32) if w4a4 else None
    return NVFP4LinearWeights(
        name="layer", weight_packed=packed, weight_scale=scale, weight_global_scale=global_scale,
        input_global_scale=isg, input_global_scale_inv=(1.0 / isg) if w4a4 else None,
        bias=(torch.randn(n, generator=g).to(dtype) if bias else None),
    )


def node_attrs(layer, **override):
    attrs = dict(
        in_features=layer.in_features, out_features=layer.out_features, group_size=16,
        mode=layer.mode,
        input_global_scale=float(layer.input_global_scale) if layer.w4a4 else 1.0,
        input_global_scale_inv=float(layer.input_global_scale_inv) if layer.w4a4 else 1.0,
        has_bias=int(layer.bias is not None), plugin_version="1", plugin_namespace="",
    )
    attrs.update(override)
    return {key: value for key, value in attrs.items() if value is not None}


def build_model(layer, dtype, x_rank=2, *, gscale_shape=None, x_dims=None, **attr_override) -> bytes:
    """x (float32 graph input, cast to `dtype`) -> NVFP4Linear -> y cast back to float32, so that
    numpy can feed and read every activation type. Inputs exact in `dtype` make the casts exact."""
    t = ONNX_TYPE[dtype]
    n, k = layer.out_features, layer.in_features
    gs = layer.weight_global_scale.reshape(-1 if layer.weight_global_scale.numel() > 1 else 1)
    if gscale_shape is not None:
        gs = gs.reshape(gscale_shape)
    inits = [
        helper.make_tensor("weight", TensorProto.INT8, list(layer.weight_packed.shape),
                           layer.weight_packed.view(torch.int8).numpy().tobytes(), raw=True),
        helper.make_tensor("weight_scale", TensorProto.INT8, list(layer.weight_scale.shape),
                           layer.weight_scale.view(torch.int8).numpy().tobytes(), raw=True),
        helper.make_tensor("weight_global_scale", TensorProto.FLOAT, list(gs.shape),
                           gs.float().numpy().tobytes(), raw=True),
    ]
    inputs = ["xt", "weight", "weight_scale", "weight_global_scale"]
    if layer.bias is not None:
        raw = layer.bias.to(dtype).view(torch.int16 if dtype != torch.float32 else torch.float32)
        inits.append(helper.make_tensor("bias", t, [n], raw.numpy().tobytes(), raw=True))
        inputs.append("bias")
    dims = x_dims or ["batch", "seq"][: x_rank - 1] + [k]
    nodes = [
        helper.make_node("Cast", ["x"], ["xt"], to=t),
        helper.make_node("NVFP4Linear", inputs, ["yt"], domain="trt.plugins", name="lin0",
                         **node_attrs(layer, **attr_override)),
        helper.make_node("Cast", ["yt"], ["y"], to=TensorProto.FLOAT),
    ]
    return model_bytes(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims[:-1] + [n])], inits)


def run(model: bytes, x: torch.Tensor) -> torch.Tensor:
    session = make_session(model, ORT_LIB)
    (y,) = session.run(None, {"x": x.float().numpy()})
    return torch.from_numpy(y)


def ulp_close(actual: torch.Tensor, expected: torch.Tensor, dtype) -> None:
    """Equal up to one unit in the last place of `dtype` (the float64 sum order may differ)."""
    expected = expected.float()
    finfo = torch.finfo(dtype)
    tol = expected.abs().clamp(min=finfo.tiny) * finfo.eps + finfo.tiny
    both_nan = torch.isnan(actual) & torch.isnan(expected)
    ok = both_nan | ((actual - expected).abs() <= tol) | (actual == expected)
    assert ok.all(), f"max diff {(actual - expected).abs()[~ok].max()} at {(~ok).nonzero()[:5].tolist()}"


def activation(shape, dtype, seed=1, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("mode", ["w4a4", "w4a16"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_matches_references(dtype, mode, bias):
    for per_channel, x_shape in ((False, (5, 64)), (True, (2, 3, 64))):
        layer = make_layer(24, 64, w4a4=(mode == "w4a4"), bias=bias, per_channel=per_channel, dtype=dtype)
        x = activation(x_shape, dtype, scale=1.5)
        y = run(build_model(layer, dtype, x_rank=len(x_shape)), x)
        assert y.shape == (*x_shape[:-1], 24)
        ulp_close(y, nvfp4_linear_exact(x, layer), dtype)
        emu = nvfp4_linear_emulation(x, layer).float()
        rel = ((y - emu).norm() / emu.norm()).item()
        assert rel < {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 2e-2}[dtype], rel


def test_scalar_weight_global_scale_and_large_k():
    layer = make_layer(8, 4096, seed=3)
    x = activation((3, 4096), torch.float32, seed=4)
    y = run(build_model(layer, torch.float32, gscale_shape=[]), x)  # 0-D scale accepted too
    ulp_close(y, nvfp4_linear_exact(x, layer), torch.float32)


def test_edge_cases_w4a4():
    """Zero blocks, NaN/Inf activations, saturation at +-6 * 448, FP8 subnormal scales (weight and
    activation), exact E2M1 ties."""
    k = 64
    w = torch.randn(6, k, generator=torch.Generator().manual_seed(5))
    w[0] = 0.0  # all-zero row: scales set to 1.0, codes 0
    layer = make_layer(6, k, weight=w, x_amax=2.0)
    # FP8 subnormal weight block scales (codes 1..7 = k * 2^-9), and the largest one (448).
    layer.weight_scale.view(torch.uint8)[1] = torch.tensor([0x01, 0x03, 0x07, 0x7E], dtype=torch.uint8)
    x = activation((8, k), torch.float32, seed=6)
    x[0] = 0.0  # zero blocks: s_B = 0, q = 0
    x[1, 16:32] = 0.0
    x[2, 5] = float("nan")  # NaN: the whole row is NaN
    x[3, 7] = float("inf")  # Inf: s_B = 448, saturates to 6 * 448
    x[4, 40] = -float("inf")
    x[5] *= 1e4  # far beyond amax: block scales clamp to 448, values saturate at +-6
    x[6] *= 1e-6  # tiny: subnormal activation block scales
    grid = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0])  # E2M1 ties at s_B = 1
    x[7, :16] = torch.cat([grid, -grid]) * float(layer.input_global_scale) * 6 / 6
    y = run(build_model(layer, torch.float32), x)
    ref = nvfp4_linear_exact(x, layer)
    assert torch.isnan(y[2]).all() and not torch.isnan(y[[0, 1, 3, 4, 5, 6, 7]]).any()
    assert (y[0] == 0).all()
    ulp_close(y, ref, torch.float32)


def test_edge_cases_w4a16_nan_inf():
    layer = make_layer(4, 32, w4a4=False)
    x = activation((3, 32), torch.float32)
    x[1, 3] = float("nan")
    x[2, 0] = float("inf")
    y = run(build_model(layer, torch.float32), x)
    ulp_close(y, nvfp4_linear_exact(x, layer), torch.float32)
    assert torch.isnan(y[1]).all()


def session_error(model: bytes, x_shape=(2, 32)) -> str:
    with pytest.raises(Exception) as info:
        session = make_session(model, ORT_LIB)
        session.run(None, {"x": np.zeros(x_shape, np.float32)})
    message = str(info.value)
    assert "NVFP4Linear node 'lin0'" in message, message
    return message


@pytest.mark.parametrize("override, expected", [
    ({"group_size": 32}, "attribute 'group_size' must be 16, got 32"),
    ({"mode": "w8a8"}, "attribute 'mode' must be \"w4a4\" or \"w4a16\", got \"w8a8\""),
    ({"in_features": 40}, "attribute 'in_features' must be a positive multiple of 16, got 40"),
    ({"out_features": 0}, "attribute 'out_features' must be positive"),
    ({"input_global_scale": 0.0}, "attribute 'input_global_scale' must be finite and > 0"),
    ({"input_global_scale_inv": float("inf")}, "attribute 'input_global_scale_inv' must be finite and > 0"),
    ({"has_bias": 2}, "attribute 'has_bias' must be 0 or 1"),
    ({"has_bias": 1}, "has_bias=1 but the node has 4 inputs"),
    ({"in_features": 48}, "input 'weight' must have shape [out_features, in_features/2] = [8, 24], got [8, 16]"),
    ({"out_features": 4}, "input 'weight' must have shape [out_features, in_features/2] = [4, 16], got [8, 16]"),
    ({"group_size": None}, "attribute 'group_size' is missing or not an INT"),
    ({"mode": None}, "attribute 'mode' is missing or not a STRING"),
    ({"input_global_scale": 3}, "attribute 'input_global_scale' is missing or not a FLOAT"),
])
def test_bad_attributes_rejected(override, expected):
    layer = make_layer(8, 32)
    message = session_error(build_model(layer, torch.float32, **override))
    assert expected in message, message
    assert "\n" not in message.strip().splitlines()[-1]


def test_bad_shapes_rejected():
    layer = make_layer(8, 32, per_channel=True)
    message = session_error(build_model(layer, torch.float32, gscale_shape=[2, 4]))
    assert "input 'weight_global_scale' must have shape [1] or [out_features] = [8]" in message
    message = session_error(build_model(layer, torch.float32, x_dims=["batch", "k"]), x_shape=(2, 48))
    assert "input 'x' must have rank >= 1 and last dimension in_features=32, got shape [2, 48]" in message


def test_empty_batch():
    layer = make_layer(8, 32)
    y = run(build_model(layer, torch.float32), torch.zeros(0, 32))
    assert y.shape == (0, 8)


def test_library_exports_only_register_custom_ops():
    """No link against libonnxruntime (ORT passes its API to RegisterCustomOps); one exported symbol."""
    import subprocess

    nm = subprocess.run(["nm", "-D", "--defined-only", str(ORT_LIB)], capture_output=True, text=True)
    if nm.returncode != 0:
        pytest.skip(f"nm unavailable: {nm.stderr.strip()}")
    assert [line.split()[-1] for line in nm.stdout.splitlines() if " T " in line] == ["RegisterCustomOps"]
    ldd = subprocess.run(["ldd", str(ORT_LIB)], capture_output=True, text=True)
    assert ldd.returncode == 0 and "onnxruntime" not in ldd.stdout and "not found" not in ldd.stdout, ldd.stdout


@pytest.mark.parametrize("g_inv", [1.0, 81.3, 1344.0, 3.7e-3, 2.5e5])
def test_activation_quantization_bit_exact(g_inv):
    """With an identity weight and alpha = 1, y = x̂ = q * s_B exactly: the op's activation
    quantization (trt_plugin_src/common/nvfp4Math.h) must equal export.nvfp4.quantize_activation bit
    for bit, over magnitudes that give normal, subnormal, zero and saturated (448) FP8 block scales,
    E2M1 ties, NaN and Inf."""
    from export.nvfp4 import quantize_activation

    k = 64
    codes = torch.zeros(k, k, dtype=torch.uint8)
    codes[torch.arange(k), torch.arange(k)] = 2  # E2M1 code 2 = 1.0
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).contiguous()
    scale = torch.full((k, k // 16), 1.0).to(torch.float8_e4m3fn)
    one = torch.tensor(1.0)
    layer = NVFP4LinearWeights(name="identity", weight_packed=packed, weight_scale=scale, weight_global_scale=one,
                               input_global_scale=one, input_global_scale_inv=torch.tensor(g_inv))
    g = torch.Generator().manual_seed(7)
    x = torch.randn(400, k, generator=g) * torch.logspace(-8, 6, 400).unsqueeze(1)
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0])
    x[0, :16] = torch.cat([ties, -ties])  # ties when s_B * (1/G) = 1 ...
    x[0, 16:32] = torch.cat([ties, -ties]) * 2 ** -7
    x[1] = 0.0
    x[2, 3] = float("nan")
    x[3, 17] = float("inf")
    y = run(build_model(layer, torch.float32), x)
    q, s = quantize_activation(x, torch.tensor(g_inv, dtype=torch.float32))
    expected = (q.reshape(400, k // 16, 16) * s.unsqueeze(-1)).reshape(400, k)
    assert torch.equal(torch.isnan(y), torch.isnan(expected).any(dim=1, keepdim=True).expand_as(y))
    finite_rows = ~torch.isnan(expected).any(dim=1)
    assert torch.equal(y[finite_rows], expected[finite_rows])
