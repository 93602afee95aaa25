"""The two torch references in export/reference.py against hand-computed values and float64."""
from __future__ import annotations

import math

import pytest
import torch

from export.layer import NVFP4LinearWeights
from export.nvfp4 import dequantize_weight, quantize_activation, quantize_weight
from export.reference import nvfp4_linear_emulation, nvfp4_linear_exact


def make_layer(n=32, k=64, *, seed=0, w4a4=True, per_channel=False, bias=False, amax_x=4.0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=gen) * 0.05
    if per_channel:
        g = w.abs().amax(dim=1) / 2688.0
        packed, scale, g = quantize_weight(w, g)
    else:
        packed, scale, g = quantize_weight(w)
    s_in = torch.tensor(amax_x / 2688.0) if w4a4 else None
    return NVFP4LinearWeights(
        name="layer",
        weight_packed=packed,
        weight_scale=scale,
        weight_global_scale=g,
        input_global_scale=s_in,
        input_global_scale_inv=(1.0 / s_in) if w4a4 else None,
        bias=(torch.randn(n, generator=gen) if bias else None),
    )


def float64_reference(x, layer):
    """Independent float64 form: (q*s/G) . (w_hat*g_w), using input_global_scale for 1/G."""
    x2 = x.reshape(-1, layer.in_features)
    w = dequantize_weight(layer.weight_packed, layer.weight_scale, torch.ones(()), torch.float64)
    g_w = layer.weight_global_scale.double()
    w = w * (g_w.reshape(-1, 1) if g_w.ndim == 1 else g_w)
    if layer.w4a4:
        q, s = quantize_activation(x2, layer.input_global_scale_inv)
        a = q.double() * s.double().repeat_interleave(16, dim=1) * layer.input_global_scale.double()
    else:
        a = x2.double()
    y = a @ w.t()
    if layer.bias is not None:
        y = y + layer.bias.double()
    return y.reshape(*x.shape[:-1], layer.out_features)


def test_exact_hand_computed():
    # N=1, K=16. Weight: codes for [6, -1, 0.5, 0...], block scale 2, global 0.5 -> w = [6,-1,.5]
    w = torch.zeros(1, 16)
    w[0, :3] = torch.tensor([6.0, -1.0, 0.5])
    packed, scale, g = quantize_weight(w, torch.tensor(0.5))
    assert scale.float().item() == 2.0
    # Activation: G = 1 (input_global_scale 1); amax 12 -> s = 2, q = x/2 = [6, 1, 3].
    layer = NVFP4LinearWeights("l", packed, scale, g, torch.tensor(1.0), torch.tensor(1.0),
                               bias=torch.tensor([0.25]))
    x = torch.zeros(1, 16)
    x[0, :3] = torch.tensor([12.0, 2.0, 6.0])
    # y = 6*2*6*2*0.5 + 1*2*(-1)*2*0.5 + 3*2*(0.5)*2*0.5 ... with alpha = 1*0.5 applied once:
    # sum(x_hat*w_hat) = 12*12 + 2*(-2) + 6*1 = 146; y = 0.5*146 + 0.25 = 73.25
    assert nvfp4_linear_exact(x, layer).item() == 73.25
    assert nvfp4_linear_emulation(x, layer).item() == 73.25


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("w4a4", [True, False])
def test_exact_matches_float64(per_channel, w4a4):
    layer = make_layer(w4a4=w4a4, per_channel=per_channel, bias=True)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 5, 64, generator=gen)
    y = nvfp4_linear_exact(x, layer)
    assert y.shape == (2, 5, 32) and y.dtype == torch.float32
    torch.testing.assert_close(y.double(), float64_reference(x, layer), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float16, 2e-3)]
)
@pytest.mark.parametrize("w4a4", [True, False])
def test_emulation_agrees_with_exact_within_dtype_rounding(dtype, tol, w4a4):
    layer = make_layer(n=48, k=128, w4a4=w4a4, per_channel=True, bias=True, seed=1)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(7, 128, generator=gen).to(dtype)
    emu = nvfp4_linear_emulation(x, layer)
    ex = nvfp4_linear_exact(x, layer)
    assert emu.dtype == ex.dtype == dtype
    scale = float64_reference(x.float(), layer).abs().max().item()
    assert (emu.double() - ex.double()).abs().max().item() <= tol * scale


def test_w4a4_differs_from_w4a16():
    # A guard that the activation really is quantized in w4a4.
    l4 = make_layer(w4a4=True)
    l16 = NVFP4LinearWeights(l4.name, l4.weight_packed, l4.weight_scale, l4.weight_global_scale, None, None)
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(7))
    assert not torch.allclose(nvfp4_linear_exact(x, l4), nvfp4_linear_exact(x, l16))
    torch.testing.assert_close(nvfp4_linear_exact(x, l16).double(), float64_reference(x, l16))


def test_emulation_fp32_is_vllm_formula():
    # vLLM: out = (q*(s/G)).to(dtype) @ (e2m1*(fp32(scale)*g)).to(dtype).T, bias after.
    layer = make_layer(bias=True, seed=3)
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(8)).to(torch.bfloat16)
    q, s = quantize_activation(x.reshape(-1, 64), layer.input_global_scale_inv)
    x_dq = (q.reshape(4, 4, 16) * (s.unsqueeze(-1) / layer.input_global_scale_inv)).reshape(4, 64)
    w_dq = dequantize_weight(layer.weight_packed, layer.weight_scale, layer.weight_global_scale, torch.bfloat16)
    expected = torch.matmul(x_dq.to(torch.bfloat16), w_dq.t()) + layer.bias.to(torch.bfloat16)
    assert torch.equal(nvfp4_linear_emulation(x, layer), expected)


@pytest.mark.parametrize("ref", [nvfp4_linear_exact, nvfp4_linear_emulation])
def test_nan_row_and_inf_saturation(ref):
    layer = make_layer(seed=4)
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(9))
    x[0, 5] = float("nan")
    x[1, 20] = float("inf")
    y = ref(x, layer)
    assert torch.isnan(y[0]).all()
    assert torch.isfinite(y[1:]).all()
    # Inf saturates to 6*448 in dequant units: same result as feeding exactly that value.
    x_sat = x[1:2].clone()
    x_sat[0, 20] = 6 * 448 * layer.input_global_scale.item()
    x_sat[0, 16:32] = torch.where(torch.arange(16) == 4, x_sat[0, 16:32], torch.zeros(16))
    x_inf = x[1:2].clone()
    x_inf[0, 16:32] = torch.where(torch.arange(16) == 4, x_inf[0, 16:32], torch.zeros(16))
    torch.testing.assert_close(ref(x_inf, layer), ref(x_sat, layer), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("ref", [nvfp4_linear_exact, nvfp4_linear_emulation])
def test_zero_input_gives_bias(ref):
    layer = make_layer(bias=True)
    y = ref(torch.zeros(2, 64), layer)
    assert torch.equal(y, layer.bias.expand(2, -1))


def test_shape_checks():
    layer = make_layer()
    with pytest.raises(ValueError, match="in_features=64"):
        nvfp4_linear_exact(torch.zeros(2, 48), layer)
    assert nvfp4_linear_emulation(torch.zeros(64), layer).shape == (32,)
    assert math.isfinite(nvfp4_linear_exact(torch.ones(64), layer).sum().item())
