"""NVFP4 number format: E2M1 codes, nibble packing, block quantization with FP8-E4M3 scales.

Conventions (docs/op-contract.md; what each producer writes: scripts/dev/README.md):
- E2M1 code: bit 3 = sign, bits 0..2 index the magnitudes [0, 0.5, 1, 1.5, 2, 3, 4, 6].
- Packing along the last axis, element 2j in the LOW nibble of byte j (every producer agrees, and
  ONNX's FLOAT4E2M1 stores the first element in the 4 low bits too).
- Blocks of 16 along K, each with a float8_e4m3fn scale; one float32 global scale per tensor.
  All scales here are in the dequant direction (value = code * block_scale * global_scale)
  except the activation scale G = input_global_scale_inv, which multiplies x before quantizing.
- Rounding onto the E2M1 grid is round-to-nearest-even with saturation at +-6
  (ties: 0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4, 5->4), as vLLM's `cast_to_fp4` and
  ModelOpt's `_cast_fp4` round.
"""
from __future__ import annotations

import torch

from export.layer import GROUP_SIZE

E2M1_MAX = 6.0
FP8_E4M3_MAX = 448.0
FP8_E4M3_MIN_SUBNORMAL = 2.0**-9
E2M1_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float32)
# Signed decode table indexed by the full 4-bit code (codes 8..15 are the negatives).
_E2M1_SIGNED = torch.cat([E2M1_VALUES, -E2M1_VALUES])

# Magnitude thresholds between neighbouring grid points. At a tie the magnitude goes to the
# neighbour with the even code: "up" at 0.75, 1.75 and 3.5, "down" at 0.25, 1.25, 2.5 and 5.
_ROUND_UP_AT_TIE = (0.75, 1.75, 3.5)
_ROUND_DOWN_AT_TIE = (0.25, 1.25, 2.5, 5.0)


def _check_blocked(k: int, what: str) -> None:
    if k % GROUP_SIZE != 0 or k <= 0:
        raise ValueError(f"{what}: last dimension K={k} must be a positive multiple of {GROUP_SIZE}")


def _magnitude_index(a: torch.Tensor) -> torch.Tensor:
    """Index 0..7 into E2M1_VALUES for non-negative magnitudes `a` (NaN gives 0)."""
    idx = torch.zeros(a.shape, dtype=torch.uint8, device=a.device)
    for t in _ROUND_DOWN_AT_TIE:
        idx += (a > t).to(torch.uint8)
    for t in _ROUND_UP_AT_TIE:
        idx += (a >= t).to(torch.uint8)
    return idx


def e2m1_round(x: torch.Tensor) -> torch.Tensor:
    """Round onto the E2M1 grid (RNE, ties to the even code, saturate at +-6); NaN stays NaN.

    Returns a tensor of x's dtype (float inputs) whose values are E2M1 grid points.
    """
    xf = x.float()
    mag = E2M1_VALUES.to(x.device)[_magnitude_index(xf.abs()).long()]
    out = torch.where(xf < 0, -mag, mag)
    out = torch.where(torch.isnan(xf), xf, out)
    return out.to(x.dtype) if x.is_floating_point() else out


def e2m1_encode(x: torch.Tensor) -> torch.Tensor:
    """uint8 E2M1 codes 0..15 of x rounded as `e2m1_round` does. Negative values (even those
    rounding to zero) get the sign bit, as ModelOpt's `_cast_fp4` does. NaN has no code."""
    xf = x.float()
    if torch.isnan(xf).any():
        raise ValueError("e2m1_encode: NaN has no E2M1 code")
    return _magnitude_index(xf.abs()) | ((xf < 0).to(torch.uint8) << 3)


def e2m1_decode(codes: torch.Tensor) -> torch.Tensor:
    """float32 values of uint8 E2M1 codes (only the low 4 bits are read)."""
    return _E2M1_SIGNED.to(codes.device)[(codes.to(torch.uint8) & 0x0F).long()]


def pack_fp4(codes: torch.Tensor) -> torch.Tensor:
    """Pack codes [..., K] (K even) into uint8 [..., K/2]: element 2j low nibble, 2j+1 high."""
    if codes.shape[-1] % 2 != 0:
        raise ValueError(f"pack_fp4: last dimension {codes.shape[-1]} must be even")
    c = codes.to(torch.uint8) & 0x0F
    return c[..., 0::2] | (c[..., 1::2] << 4)


def unpack_fp4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack_fp4`: uint8 [..., K/2] -> uint8 codes [..., K]."""
    p = packed.view(torch.uint8) if packed.dtype == torch.int8 else packed.to(torch.uint8)
    return torch.stack((p & 0x0F, p >> 4), dim=-1).reshape(*p.shape[:-1], p.shape[-1] * 2)


def _as_fp32_scale(s, device) -> torch.Tensor:
    return torch.as_tensor(s, dtype=torch.float32, device=device)


# How each producer keeps a block scale from being zero (a zero block, or one so small that
# its scale underflows FP8), read off checkpoints the tools wrote (tests/fixtures/producers):
#   modelopt: zero -> 1.0 before the cast, then clamp to [2^-9, 448] (`_cast_per_block_scale_to_fp8`)
#   quark: a scale that is zero after the FP8 cast -> 1.0
#   compressed-tensors: a scale that is zero after the FP8 cast -> FP8 eps (0.125)
ZERO_BLOCK_SCALE_POLICIES = ("modelopt", "quark", "compressed-tensors")


def quantize_weight(w: torch.Tensor, weight_global_scale=None, *, producer: str = "modelopt"):
    """Quantize a weight [N, K] the way ModelOpt's NVFP4QTensor does.

    weight_global_scale (dequant direction) defaults to amax(|w|) / (6*448); a scalar or [N].
    Block scale = fp8(amax_block / (6*global)); `producer` picks how a zero or underflowing block
    scale is replaced (ZERO_BLOCK_SCALE_POLICIES). ModelOpt's 2^-9 floor keeps a tiny block's
    values (nonzero codes); the others zero them. The project's quantizer uses "modelopt" for
    every layout; the other policies reproduce those tools bit for bit.
    Codes = RNE(w / (fp32(block_scale)*global)). Returns (packed uint8 [N, K/2],
    float8_e4m3fn [N, K/16], float32 global scale ([] or [N])).
    """
    if producer not in ZERO_BLOCK_SCALE_POLICIES:
        raise ValueError(f"quantize_weight: producer must be one of {ZERO_BLOCK_SCALE_POLICIES}, got {producer!r}")
    if w.ndim != 2:
        raise ValueError(f"quantize_weight: expected a 2-D weight [N, K], got shape {tuple(w.shape)}")
    n, k = w.shape
    _check_blocked(k, "quantize_weight")
    wf = w.float()
    if not torch.isfinite(wf).all():
        raise ValueError("quantize_weight: the weight has NaN or Inf values")
    if weight_global_scale is None:
        amax = wf.abs().amax()
        # An all-zero weight has no natural scale; any positive one gives zero codes.
        g = torch.where(amax > 0, amax / (E2M1_MAX * FP8_E4M3_MAX), torch.ones((), dtype=torch.float32))
    else:
        g = _as_fp32_scale(weight_global_scale, w.device)
        if not (torch.isfinite(g).all() and (g > 0).all()):
            raise ValueError("quantize_weight: weight_global_scale must be finite and > 0")
    g_col = g.reshape(-1, 1) if g.ndim == 1 else g  # [N,1] per channel, or scalar

    blocks = wf.reshape(n, k // GROUP_SIZE, GROUP_SIZE)
    block_scale = blocks.abs().amax(dim=-1) / (E2M1_MAX * g_col)
    if producer == "modelopt":
        block_scale = torch.where(block_scale == 0, torch.ones_like(block_scale), block_scale)
        scale_fp8 = block_scale.clamp(min=FP8_E4M3_MIN_SUBNORMAL, max=FP8_E4M3_MAX).to(torch.float8_e4m3fn)
    else:
        cast = block_scale.clamp(max=FP8_E4M3_MAX).to(torch.float8_e4m3fn).float()
        fill = 1.0 if producer == "quark" else torch.finfo(torch.float8_e4m3fn).eps
        scale_fp8 = torch.where(cast == 0, torch.full_like(cast, fill), cast).to(torch.float8_e4m3fn)

    denom = (scale_fp8.float() * g_col).unsqueeze(-1)
    scaled = torch.where(denom == 0, torch.zeros_like(blocks), blocks / denom)
    codes = e2m1_encode(scaled.reshape(n, k))
    return pack_fp4(codes), scale_fp8, g.clone()


def dequantize_weight(packed: torch.Tensor, scale: torch.Tensor, global_scale, dtype=torch.float32):
    """e2m1 * (fp32(scale) * global), formed in float32 then cast to dtype (vLLM's
    `dequantize_to_dtype`, multiply form); with dtype=float64 every step is float64 (exact).
    global_scale is a scalar or [N]."""
    codes = unpack_fp4(packed)
    n, k = codes.shape
    _check_blocked(k, "dequantize_weight")
    work = torch.float64 if dtype == torch.float64 else torch.float32
    g = torch.as_tensor(global_scale, device=packed.device).to(torch.float32).to(work)
    g_col = g.reshape(-1, 1) if g.ndim == 1 else g
    sf = scale.view(torch.float8_e4m3fn) if scale.dtype in (torch.int8, torch.uint8) else scale
    block = (sf.to(work) * g_col).unsqueeze(-1)  # [N, K/16, 1]
    vals = e2m1_decode(codes).to(work).reshape(n, k // GROUP_SIZE, GROUP_SIZE)
    return (vals * block).reshape(n, k).to(dtype)


def _reciprocal(t: torch.Tensor) -> torch.Tensor:
    # vLLM's get_reciprocal: 1/t, and 0 where t == 0.
    return torch.where(t == 0, torch.zeros_like(t), 1.0 / t)


def quantize_activation(x: torch.Tensor, input_global_scale_inv):
    """Dynamic NVFP4 quantization of x [M, K], bit-exact to vLLM's `ref_nvfp4_quant`.

    G = input_global_scale_inv (quant direction). Per block of 16 along K, in float32:
      s = fp8(clamp(G * (amax * (1/6)), -448, 448));  o = reciprocal(s * reciprocal(G))
      q = rne4(clamp(x * o, -6, 6))
    A zero block gives s = 0 and q = 0; +-Inf gives s = 448 and saturates; NaN gives a NaN block.
    Returns (q: float32 [M, K] on the E2M1 grid, s: float32 [M, K/16]).
    """
    if x.ndim != 2:
        raise ValueError(f"quantize_activation: expected x of shape [M, K], got {tuple(x.shape)}")
    m, k = x.shape
    _check_blocked(k, "quantize_activation")
    g = _as_fp32_scale(input_global_scale_inv, x.device)
    blocks = x.reshape(m, k // GROUP_SIZE, GROUP_SIZE)
    # torch.max propagates NaN, as vLLM's reference does.
    vec_max = torch.max(torch.abs(blocks), dim=-1, keepdim=True)[0].to(torch.float32)
    scale = g * (vec_max * (1.0 / E2M1_MAX))
    scale = torch.clamp(scale, min=-FP8_E4M3_MAX, max=FP8_E4M3_MAX)
    scale = scale.to(torch.float8_e4m3fn).to(torch.float32)
    output_scale = _reciprocal(scale * _reciprocal(g))
    scaled = blocks.to(torch.float32) * output_scale
    q = e2m1_round(torch.clamp(scaled, -E2M1_MAX, E2M1_MAX).reshape(m, k))
    return q, scale.squeeze(-1)


def fake_quantize_activation(x: torch.Tensor, input_global_scale_inv) -> torch.Tensor:
    """x quantized and dequantized as vLLM's emulation does: (q * (s / G)).to(x.dtype).
    x has shape [..., K]."""
    k = x.shape[-1]
    _check_blocked(k, "fake_quantize_activation")
    x2 = x.reshape(-1, k)
    g = _as_fp32_scale(input_global_scale_inv, x.device)
    q, s = quantize_activation(x2, g)
    deq = q.reshape(x2.shape[0], k // GROUP_SIZE, GROUP_SIZE) * (s.unsqueeze(-1) / g)
    return deq.reshape(x.shape).to(x.dtype)
