"""NVFP4 math in export/nvfp4.py: hand-computed vectors plus an independent ml_dtypes check."""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch

from export.nvfp4 import (
    E2M1_VALUES,
    dequantize_weight,
    e2m1_decode,
    e2m1_encode,
    e2m1_round,
    fake_quantize_activation,
    pack_fp4,
    quantize_activation,
    quantize_weight,
    unpack_fp4,
)

NAN, INF = float("nan"), float("inf")


# --- E2M1 rounding -----------------------------------------------------------------------------

# (input, expected) pairs computed by hand from the E2M1 grid [0, .5, 1, 1.5, 2, 3, 4, 6].
ROUNDING_CASES = [
    (0.0, 0.0), (0.1, 0.0), (0.25, 0.0),  # tie 0.25 -> 0 (code 0 even)
    (0.26, 0.5), (0.74, 0.5), (0.75, 1.0),  # tie 0.75 -> 1 (code 2 even)
    (1.25, 1.0),  # tie -> 1 (code 2)
    (1.3, 1.5), (1.75, 2.0),  # tie -> 2 (code 4)
    (2.5, 2.0),  # tie -> 2 (code 4)
    (2.6, 3.0), (3.5, 4.0),  # tie -> 4 (code 6)
    (5.0, 4.0),  # tie -> 4 (code 6)
    (5.01, 6.0), (6.0, 6.0), (6.5, 6.0), (1e30, 6.0), (INF, 6.0),  # saturation
    (-0.75, -1.0), (-2.5, -2.0), (-5.0, -4.0), (-7.0, -6.0), (-INF, -6.0),
]


@pytest.mark.parametrize("value,expected", ROUNDING_CASES)
def test_e2m1_round_hand_vectors(value, expected):
    assert e2m1_round(torch.tensor([value])).item() == expected


def test_e2m1_round_nan_stays_nan_and_dtype_kept():
    assert math.isnan(e2m1_round(torch.tensor([NAN])).item())
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        out = e2m1_round(torch.tensor([0.75, -3.4], dtype=dtype))
        assert out.dtype == dtype and out.tolist() == [1.0, -3.0]


def test_e2m1_round_matches_ml_dtypes_on_random_values():
    # ml_dtypes.float4_e2m1fn is an independent RNE + saturating implementation (finite inputs).
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20000, generator=gen) * 3, (torch.arange(-28, 29) * 0.25)])
    expected = x.numpy().astype(ml_dtypes.float4_e2m1fn).astype(np.float32)
    np.testing.assert_array_equal(e2m1_round(x).numpy(), expected)


def test_encode_decode_all_codes():
    codes = torch.arange(16, dtype=torch.uint8)
    values = e2m1_decode(codes)
    assert values.tolist()[:8] == E2M1_VALUES.tolist()
    assert values.tolist()[8:] == [-v for v in E2M1_VALUES.tolist()]
    # Every code but negative zero (8) round-trips; -0.0 is not < 0, so it encodes as 0.
    back = e2m1_encode(values)
    assert back[:8].tolist() == list(range(8)) and back[9:].tolist() == list(range(9, 16))
    assert e2m1_encode(torch.tensor([-0.1])).item() == 8  # negative, rounds to zero: sign kept


def test_encode_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        e2m1_encode(torch.tensor([1.0, NAN]))


# --- packing -----------------------------------------------------------------------------------

def test_pack_low_nibble_first():
    codes = torch.tensor([[1, 2, 0xF, 0x8]], dtype=torch.uint8)
    packed = pack_fp4(codes)
    assert packed.dtype == torch.uint8
    assert packed.tolist() == [[0x21, 0x8F]]
    assert unpack_fp4(packed).tolist() == codes.tolist()
    # int8 views of the same bytes (the ONNX input type) unpack identically.
    assert unpack_fp4(packed.view(torch.int8)).tolist() == codes.tolist()


def test_pack_round_trip_random_and_odd_rejected():
    codes = torch.randint(0, 16, (3, 5, 32), dtype=torch.uint8)
    assert torch.equal(unpack_fp4(pack_fp4(codes)), codes)
    with pytest.raises(ValueError):
        pack_fp4(torch.zeros(3, dtype=torch.uint8))


# --- weight quantization (ModelOpt math) ---------------------------------------------------------

def test_quantize_weight_hand_vector():
    # Global 1, block amax 6 -> block scale fp8(6/6) = 1: the weight is rounded directly (ties).
    w = torch.tensor([[6.0, -3.0, 0.75, 0.25, 1.25, -5.0, 2.5, 1.75] + [0.0] * 8])
    packed, scale, g = quantize_weight(w, torch.tensor(1.0))
    assert g.item() == 1.0
    assert scale.dtype == torch.float8_e4m3fn and scale.float().tolist() == [[1.0]]
    assert packed.shape == (1, 8)
    assert e2m1_decode(unpack_fp4(packed))[0, :8].tolist() == [6.0, -3.0, 1.0, 0.0, 1.0, -4.0, 2.0, 2.0]
    # Default global scale: amax / (6 * 448), so the block holding the amax gets scale 448.
    _, scale, g = quantize_weight(w * 3.0)
    assert g.item() == pytest.approx(18.0 / 2688.0, rel=1e-7)
    assert scale.float().tolist() == [[448.0]]


def test_quantize_weight_exact_grid_round_trip_per_channel():
    # A weight built from grid values, block scales and per-channel globals comes back exactly.
    gen = torch.Generator().manual_seed(1)
    n, k = 8, 64
    codes = torch.randint(0, 16, (n, k), generator=gen, dtype=torch.uint8)
    codes[:, ::16] = 7  # every block holds a 6 so that its amax pins the block scale
    block = torch.tensor([1.0, 0.5, 2.0, 0.125, 0.0078125, 448.0, 3.0, 0.25])[:n, None].repeat(1, k // 16)
    g = torch.tensor([0.5, 1.0, 2.0, 0.25, 1.0, 1.0, 4.0, 0.125])
    w = dequantize_weight(pack_fp4(codes), block.to(torch.float8_e4m3fn), g)
    packed, scale, g_out = quantize_weight(w, g)
    assert torch.equal(g_out, g)
    assert torch.equal(scale.float(), block)
    assert torch.equal(dequantize_weight(packed, scale, g_out), w)


def test_quantize_weight_zero_block_and_tiny_scale():
    w = torch.zeros(2, 32)
    w[0, 16:] = torch.linspace(-1, 1, 16)
    w[1, 0] = 1e-12  # its block scale would underflow in FP8: clamped to 2^-9 (ModelOpt)
    packed, scale, g = quantize_weight(w)
    assert scale[0, 0].float().item() == 1.0  # zero block: scale set to 1.0 (ModelOpt)
    assert (unpack_fp4(packed)[0, :16] == 0).all()
    deq = dequantize_weight(packed, scale, g)
    assert scale[1, 0].float().item() == 2.0**-9
    assert torch.isfinite(deq).all() and deq[1, 0].item() == 0.0
    assert (deq[0, 16:] - w[0, 16:]).abs().max() <= 1.0 / 6  # half a grid step at the top


def test_quantize_weight_all_zero_and_bad_input():
    packed, scale, g = quantize_weight(torch.zeros(4, 16))
    assert g.item() > 0 and (packed == 0).all()
    with pytest.raises(ValueError, match="multiple of 16"):
        quantize_weight(torch.ones(4, 24))
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize_weight(torch.tensor([[NAN] + [1.0] * 15]))
    with pytest.raises(ValueError, match="> 0"):
        quantize_weight(torch.ones(2, 16), torch.tensor(0.0))


def test_dequantize_weight_dtype_and_error_bound():
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(32, 128, generator=gen)
    packed, scale, g = quantize_weight(w)
    deq = dequantize_weight(packed, scale, g)
    # Each element is within half the largest grid step (1 of 6 units) of its block scale.
    block_step = (scale.float() * g).repeat_interleave(16, dim=1)
    assert ((deq - w).abs() <= block_step * 1.0 + 1e-7).all()
    assert dequantize_weight(packed, scale, g, dtype=torch.bfloat16).dtype == torch.bfloat16


# --- activation quantization (vLLM ref_nvfp4_quant) ------------------------------------------------

def _block(values):
    return torch.tensor([values + [0.0] * (16 - len(values))], dtype=torch.float32)


def test_activation_hand_vector_unit_scale_ties():
    # G = 1, amax 6 -> s = fp8(6 * fp32(1/6)) = 1, o = 1: x is rounded directly.
    x = _block([6.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.75, -5.0])
    q, s = quantize_activation(x, 1.0)
    assert s.tolist() == [[1.0]]
    assert q[0, :10].tolist() == [6.0, 0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, -1.0, -4.0]


def test_activation_saturates_when_fp8_scale_rounds_down():
    # amax 6.3 -> 6.3/6 = 1.05 -> fp8 1.0 (step 0.125), so 6.3 * 1 clamps to 6.
    q, s = quantize_activation(_block([6.3, -6.3, 3.2]), 1.0)
    assert s.item() == 1.0 and q[0, :3].tolist() == [6.0, -6.0, 3.0]


def test_activation_fp8_subnormal_scale():
    # G = 1, amax 0.018: s = 0.003 -> FP8 subnormal 2 * 2^-9 = 0.00390625, o = 256.
    q, s = quantize_activation(_block([0.018, 0.0029296875, -0.009]), 1.0)
    assert s.item() == 0.00390625
    # 0.018*256 = 4.608 -> 4; 0.75 tie -> 1; -2.304 -> -2
    assert q[0, :3].tolist() == [4.0, 1.0, -2.0]


def test_activation_scale_underflow_and_zero_block_give_zero():
    x = torch.cat([_block([1e-5, -1e-5]), torch.zeros(1, 16)], dim=1)
    q, s = quantize_activation(x, 1.0)  # 1e-5/6 < 2^-10: FP8 rounds it to 0
    assert s.tolist() == [[0.0, 0.0]] and (q == 0).all()


def test_activation_nan_and_inf():
    x = torch.cat([_block([1.0, NAN]), _block([INF, 2.0, -INF]), _block([3.0])], dim=1)
    q, s = quantize_activation(x, 10.0)
    assert torch.isnan(q[0, :16]).all() and math.isnan(s[0, 0].item())
    # Inf block: s = 448, +-Inf saturate to +-6, 2 * (1/(448/10)) = 0.0446 -> 0.
    assert s[0, 1].item() == 448.0
    assert q[0, 16:19].tolist() == [6.0, 0.0, -6.0]
    # The other block is untouched: s = fp8(10*3/6)=5, o=1/(5*0.1) -> 3*2 = 6.
    assert s[0, 2].item() == 5.0 and q[0, 32].item() == 6.0


def _numpy_ref_quant(x: np.ndarray, g: float):
    """Independent float32 transcription of the op contract using ml_dtypes casts."""
    f32 = np.float32
    m, k = x.shape
    xb = x.reshape(m, k // 16, 16).astype(f32)
    a = np.abs(xb).max(axis=-1, keepdims=True)
    s = np.clip(f32(g) * (a * f32(1.0 / 6.0)), -448, 448).astype(f32)
    s = s.astype(ml_dtypes.float8_e4m3fn).astype(f32)
    r = (s * (f32(1.0) / f32(g))).astype(f32)
    o = np.where(r == 0, f32(0), f32(1.0) / np.where(r == 0, f32(1), r)).astype(f32)
    q = np.clip(xb * o, -6, 6).astype(ml_dtypes.float4_e2m1fn).astype(f32)
    return q.reshape(m, k), s[..., 0]


@pytest.mark.parametrize("g", [1.0, 2688.0 / 3.7, 0.37, 1e4])
def test_activation_matches_independent_numpy(g):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(16, 256, generator=gen) * torch.logspace(-3, 1, 256)
    x[0, :16] = 0.0
    q, s = quantize_activation(x, g)
    q_ref, s_ref = _numpy_ref_quant(x.numpy(), g)
    np.testing.assert_array_equal(s.numpy(), s_ref)
    np.testing.assert_array_equal(q.numpy(), q_ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fake_quantize_activation(dtype):
    gen = torch.Generator().manual_seed(4)
    x = (torch.randn(2, 3, 64, generator=gen) * 2).to(dtype)
    g = torch.tensor(2688.0 / 8.0)
    xh = fake_quantize_activation(x, g)
    assert xh.shape == x.shape and xh.dtype == dtype
    q, s = quantize_activation(x.reshape(-1, 64), g)
    expected = (q.reshape(6, 4, 16) * (s.unsqueeze(-1) / g)).reshape(2, 3, 64).to(dtype)
    assert torch.equal(xh, expected)
    # Quantization error is bounded by the block scale (dequant direction s/G).
    step = (s / g).repeat_interleave(16, dim=1).reshape(2, 3, 64)
    assert ((xh.float() - x.float()).abs() <= step * 1.0 + 1e-2 * x.float().abs()).all()


def test_k_not_multiple_of_16_rejected():
    with pytest.raises(ValueError, match="multiple of 16"):
        quantize_activation(torch.ones(2, 20), 1.0)
    with pytest.raises(ValueError, match="multiple of 16"):
        fake_quantize_activation(torch.ones(20), 1.0)


@pytest.mark.parametrize("producer,zero_fill,tiny_fill,tiny_value", [
    ("modelopt", 1.0, 2.0**-9, 1.5), ("quark", 1.0, 1.0, 0.0), ("compressed-tensors", 0.125, 0.125, 0.0)])
def test_zero_and_underflowing_block_scales_per_producer(producer, zero_fill, tiny_fill, tiny_value):
    # g = 1/6 makes the exact block scale equal the block amax. Block 0 is all zero; block 1 has
    # amax 2^-11, a quarter of FP8's smallest subnormal (rounds to 0); block 2 amax 6 -> scale 6.
    w = torch.zeros(1, 48)
    w[0, 16] = 2.0**-11
    w[0, 32:35] = torch.tensor([6.0, -3.0, 1.0])
    packed, scale, _ = quantize_weight(w, torch.tensor(1.0 / 6.0), producer=producer)
    assert scale.float().tolist() == [[zero_fill, tiny_fill, 6.0]]
    values = e2m1_decode(unpack_fp4(packed)[0])
    assert (values[:16] == 0).all()
    # ModelOpt's 2^-9 floor keeps the tiny value: 2^-11 / (2^-9 / 6) = 1.5; the others zero it.
    assert values[16].item() == tiny_value and (values[17:32] == 0).all()
    assert values[32:35].tolist() == [6.0, -3.0, 1.0]
    with pytest.raises(ValueError, match="producer"):
        quantize_weight(w, producer="gptq")


# --- 16-bit tensor-core operands ------------------------------------------------------------------

def _all_finite_fp8_values() -> torch.Tensor:
    values = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e4m3fn).float()
    return values[torch.isfinite(values)]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit_operands_are_exact(dtype):
    # The tensor-core paths multiply w' = e2m1 * s_w * 2^-7 (fp16 or bf16; the wgmma kernel's fp16
    # operand is e2m1 * s_w * 2^-14) by x-hat = q * s_B (fp16, or bf16 next to a bf16 weight
    # operand): each must be exact in its 16-bit type for every code and every finite FP8 scale, and
    # their products exact in fp32, or the paths would not compute the contract's sums.
    e2m1 = E2M1_VALUES.to(torch.float32)
    e2m1 = torch.cat([e2m1, -e2m1])
    grid = (e2m1[:, None] * _all_finite_fp8_values()[None, :]).flatten()
    scales = [2.0**-7, 2.0**-14] if dtype == torch.float16 else [2.0**-7]
    for operand in [grid] + [grid * s for s in scales]:
        assert torch.equal(operand.to(dtype).float(), operand)
    nonzero = grid[grid != 0].abs()
    assert float(nonzero.min()) == 2.0**-10 and float(nonzero.max()) == 2688.0
    # At most 2 + 4 significant bits each, so products have <= 12 (exact in fp32's 24); the smallest,
    # 2^-10 * 2^-17 (or 2^-24 with the 2^-14 operand), is a normal fp32 number.
    mantissas = (np.frexp(nonzero.numpy().astype(np.float64))[0] * 2**24).astype(np.int64)
    significant = 24 - np.log2(mantissas & -mantissas).astype(np.int64)
    assert significant.max() == 6
    assert float(nonzero.min()) ** 2 * 2.0**-14 >= 2.0**-126
