"""The ONNX Runtime op trt.plugins::NVFP4MoE (build/libnvfp4_ort_ops.so) against the torch reference.

One-node models built with onnx.helper from random experts quantized by export.nvfp4; the op must
equal `export.reference.nvfp4_moe_exact` up to float32 accumulation order and `exp`'s last ulp
(docs/op-contract-moe.md, "Formula"), and bit for bit where neither can matter. At the end, whole
exported real-tool checkpoints run through the op against the torch model.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

from export.contract import op_contract
from export.layer import NVFP4LinearWeights, NVFP4MoEWeights
from export.nvfp4 import quantize_weight
from export.reference import nvfp4_moe_exact
from plugins.moe_kernels import stacked_operands
from tests.ort_models import DTYPES, ONNX_TYPE, model_bytes, ort_library_or_skip

ORT_LIB = ort_library_or_skip()

from plugins.ort import make_session  # noqa: E402  (after the skip: needs onnxruntime)


def _linear(name, w, s_in, *, gscale=None):
    packed, scale, global_scale = quantize_weight(w, gscale)
    w4a4 = s_in is not None
    s = torch.tensor(s_in, dtype=torch.float32) if w4a4 else None
    return NVFP4LinearWeights(name=name, weight_packed=packed, weight_scale=scale, weight_global_scale=global_scale,
                              input_global_scale=s, input_global_scale_inv=(1.0 / s) if w4a4 else None)


def make_moe(E, H, I, top_k, *, w4a4=True, normalize=True, seed=0) -> NVFP4MoEWeights:
    """E random experts; each expert has its own weight global scales (gate and up differ) and its
    own activation scales (gate and up share one, as they quantize the same x)."""
    g = torch.Generator().manual_seed(seed)
    gate, up, down = [], [], []
    for e in range(E):
        s13 = float(torch.empty(()).uniform_(1.0, 6.0, generator=g)) / 2688 if w4a4 else None
        s2 = float(torch.empty(()).uniform_(0.2, 3.0, generator=g)) / 2688 if w4a4 else None
        gate.append(_linear(f"e{e}.gate", torch.randn(I, H, generator=g) * 0.2, s13))
        up.append(_linear(f"e{e}.up", torch.randn(I, H, generator=g) * 0.5, s13))
        down.append(_linear(f"e{e}.down", torch.randn(H, I, generator=g) * 0.3, s2))
    return NVFP4MoEWeights(name="mlp", router_weight=torch.randn(E, H, generator=g), gate=tuple(gate), up=tuple(up),
                           down=tuple(down), top_k=top_k, normalize_topk=normalize)


def stacked_inputs(moe: NVFP4MoEWeights) -> dict[str, np.ndarray]:
    """Inputs 2-7 of the node (docs/op-contract-moe.md) as numpy arrays."""
    return {name: t.numpy() for name, t in stacked_operands(moe)[0].items()}


def node_attributes(moe: NVFP4MoEWeights, **override):
    attrs = dict(stacked_operands(moe)[1], plugin_version="1", plugin_namespace="")  # the exporter's
    attrs.update(override)
    return {key: value for key, value in attrs.items() if value is not None}


def build_model(moe: NVFP4MoEWeights, dtype, *, x_dims=None, logits_dims=None, initializers=None, **override) -> bytes:
    """x and router_logits (float32 graph inputs, cast to `dtype`) -> NVFP4MoE -> y cast back to
    float32, so that numpy can feed and read every activation type."""
    t = ONNX_TYPE[dtype]
    dims = x_dims or ["m", moe.hidden_size]
    names = list(op_contract("NVFP4MoE")["inputs"])
    arrays = initializers or stacked_inputs(moe)
    inits = [helper.make_tensor(name, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape), a.tobytes(), raw=True)
             for name, a in arrays.items()]
    nodes = [
        helper.make_node("Cast", ["x"], ["xt"], to=t),
        helper.make_node("Cast", ["logits"], ["lt"], to=t),
        helper.make_node("NVFP4MoE", ["xt", "lt", *arrays], ["yt"], domain="trt.plugins", name="moe0",
                         **node_attributes(moe, **override)),
        helper.make_node("Cast", ["yt"], ["y"], to=TensorProto.FLOAT),
    ]
    assert [spec["name"] for spec in names][2:] == list(arrays)
    return model_bytes(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, logits_dims or dims[:-1] + [moe.num_experts])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], inits)


def run(model: bytes, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    (y,) = make_session(model, ORT_LIB).run(None, {"x": x.float().numpy(), "logits": logits.float().numpy()})
    return torch.from_numpy(y)


def inputs(M, moe: NVFP4MoEWeights, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(M, moe.hidden_size, generator=g) * 1.5).to(dtype)
    logits = (torch.randn(M, moe.num_experts, generator=g) * 2.0).to(dtype)
    return x, logits


def assert_close(y: torch.Tensor, ref: torch.Tensor, dtype) -> None:
    """Equal up to a few units in the last place of `dtype`, measured against each row's largest
    magnitude (the combine adds k expert outputs: cancellation makes small elements noisy); NaN
    exactly where the reference has NaN."""
    ref = ref.float()
    assert torch.equal(torch.isnan(y), torch.isnan(ref)), "NaN rows differ"
    finite = ~torch.isnan(ref)
    scale = ref.nan_to_num(0).abs().amax(dim=-1, keepdim=True).clamp(min=torch.finfo(dtype).tiny)
    eps = torch.finfo(dtype).eps
    err = ((y - ref).abs() / scale)[finite]
    assert err.numel() == 0 or err.max() <= 4 * eps, f"max error {err.max():.3g} x row max (limit {4 * eps:.3g})"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("mode", ["w4a4", "w4a16"])
@pytest.mark.parametrize("E, top_k, normalize", [(8, 2, True), (16, 4, False), (128, 8, True), (6, 1, False)])
def test_matches_reference(dtype, mode, E, top_k, normalize):
    moe = make_moe(E, 64, 32, top_k, w4a4=mode == "w4a4", normalize=normalize, seed=E + top_k)
    x, logits = inputs(13, moe, dtype)
    y = run(build_model(moe, dtype), x, logits)
    assert y.shape == x.shape and not torch.isnan(y).any()
    assert_close(y, nvfp4_moe_exact(x, logits, moe), dtype)


@pytest.mark.parametrize("M", [0, 1, 2, 7])
def test_token_counts_and_leading_dims(M):
    moe = make_moe(4, 48, 16, 2, seed=3)  # H = 16 * 3, I = 16: odd numbers of blocks
    x, logits = inputs(M * 3, moe, torch.float16)
    x3, l3 = x.reshape(M, 3, 48), logits.reshape(M, 3, 4)
    y = run(build_model(moe, torch.float16, x_dims=["b", "s", 48]), x3, l3)
    assert y.shape == (M, 3, 48)
    assert_close(y, nvfp4_moe_exact(x3, l3, moe), torch.float16)


@pytest.mark.parametrize("mode", ["w4a4", "w4a16"])
def test_routing_edge_cases(mode):
    """Ties in the logits (to the lower index), all tokens to one expert (the others get none),
    NaN / +Inf / -Inf logits (NaN rows as the contract says), and activations with zero blocks,
    NaN, Inf and values that saturate the FP8 block scale."""
    moe = make_moe(8, 64, 32, 3, w4a4=mode == "w4a4", seed=11)
    x, logits = inputs(12, moe, torch.float32, seed=5)
    logits[0] = 1.0  # eight-way tie: experts 0, 1, 2
    logits[1] = torch.tensor([0.0, 3.0, 3.0, 1.0, 3.0, 3.0, -2.0, 0.0])  # 1, 2, 4
    logits[2:5] = torch.tensor([-5.0, -5.0, -5.0, -5.0, -5.0, 9.0, 8.0, 7.0])  # all to experts 5, 6, 7
    logits[5, 3] = float("nan")
    logits[6, 2] = float("inf")
    logits[7, :4] = -float("inf")
    logits[8] = -float("inf")  # every logit -Inf: exp(-Inf - -Inf) is NaN
    x[9, :16] = 0.0
    x[10, 5] = float("nan")
    x[11] *= 1e4
    y = run(build_model(moe, torch.float32), x, logits)
    ref = nvfp4_moe_exact(x, logits, moe)
    assert torch.isnan(y[[5, 6, 8, 10]]).all() and not torch.isnan(y[[0, 1, 2, 3, 4, 7, 9, 11]]).any()
    assert_close(y, ref, torch.float32)


def test_all_tokens_to_one_expert_equals_that_expert():
    """top-1 with normalisation: weight exactly 1, so y is expert 5's output for every token."""
    moe = make_moe(8, 32, 16, 1, seed=2)
    x, logits = inputs(9, moe, torch.float32)
    logits[:, 5] = 50.0
    y = run(build_model(moe, torch.float32), x, logits)
    only5 = NVFP4MoEWeights(name="one", router_weight=moe.router_weight[5:6], gate=moe.gate[5:6], up=moe.up[5:6],
                            down=moe.down[5:6], top_k=1, normalize_topk=True)
    assert torch.equal(y, nvfp4_moe_exact(x, logits[:, 5:6], only5))


def _unit_linear(name, n, k, cols, global_scale, s_in):
    """A linear whose row r has the single weight 1.0 (E2M1 code 2, block scale 1) at column
    cols[r] (rows without an entry are zero)."""
    codes = torch.zeros(n, k, dtype=torch.uint8)
    for r, c in enumerate(cols):
        codes[r, c] = 2
    s = torch.tensor(s_in, dtype=torch.float32)
    return NVFP4LinearWeights(name=name, weight_packed=codes[:, 0::2] | (codes[:, 1::2] << 4),
                              weight_scale=torch.ones(n, k // 16).to(torch.float8_e4m3fn),
                              weight_global_scale=torch.tensor(global_scale, dtype=torch.float32),
                              input_global_scale=s, input_global_scale_inv=1.0 / s)


@pytest.mark.parametrize("g_inv", [1.0, 81.3, 1344.0, 2.5e5])
def test_activation_quantization_bit_exact(g_inv):
    """Experts whose every step is exact: up and down are identities, the gate reads a constant
    block scaled so that g is about 20 (silu(g) == g in float32 above 17.4), top-1 weight 1. Then
    y = x̂₂·α₂ with x̂₂ the quantization of h = g·x̂₁·α₁ by the expert's own G₂, and x̂₁ that of x by
    its own G₁: the op must equal the reference bit for bit, over inputs that give zero, FP8
    subnormal, normal and saturated (448) block scales and E2M1 ties."""
    E, H, I = 3, 32, 16
    v = 6.0 / g_inv  # the gate's input block: constant v, so that x̂ is about 6 * (1 + e) there
    gate, up, down = [], [], []
    for e in range(E):
        s13, s2 = 1.0 / (g_inv * (1 + e)), 1.0 / (g_inv * (3 - e))
        gate.append(_unit_linear(f"e{e}.gate", I, H, [I + j for j in range(I)], 20.0 / v / 6.0, s13))
        up.append(_unit_linear(f"e{e}.up", I, H, list(range(I)), 1.0, s13))
        down.append(_unit_linear(f"e{e}.down", H, I, list(range(I)), 1.0, s2))
    moe = NVFP4MoEWeights(name="exact", router_weight=torch.zeros(E, H), gate=tuple(gate), up=tuple(up),
                          down=tuple(down), top_k=1, normalize_topk=True)
    g = torch.Generator().manual_seed(7)
    M = 300
    x = torch.randn(M, H, generator=g) * torch.logspace(-7, 5, M).unsqueeze(1) / g_inv
    x[:, I:] = v
    x[0, :I] = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0] * 2) / g_inv
    x[1, :I] = 0.0
    logits = torch.full((M, E), -1.0)
    logits[torch.arange(M), torch.arange(M) % E] = 1.0
    y = run(build_model(moe, torch.float32), x, logits)
    ref = nvfp4_moe_exact(x, logits, moe)
    assert (ref[:, :I] != 0).sum() > M and (ref[:, I:] == 0).all()
    assert torch.equal(y, ref)


def test_big_expert_count_and_top8_float16():
    """A Qwen3-MoE-like routing shape: E = 128, top-8, most experts receive no token."""
    moe = make_moe(128, 32, 16, 8, seed=9)
    x, logits = inputs(3, moe, torch.float16, seed=4)
    assert_close(run(build_model(moe, torch.float16), x, logits), nvfp4_moe_exact(x, logits, moe), torch.float16)


# ---- bad nodes: one line naming the node and what was expected ----

def session_error(model: bytes, M=2, H=32, E=4) -> str:
    with pytest.raises(Exception) as info:
        session = make_session(model, ORT_LIB)
        session.run(None, {"x": np.zeros((M, H), np.float32), "logits": np.zeros((M, E), np.float32)})
    message = str(info.value)
    assert "NVFP4MoE node 'moe0'" in message, message
    return message


@pytest.mark.parametrize("override, expected", [
    ({"group_size": 32}, "attribute 'group_size' must be 16, got 32"),
    ({"mode": "w8a8"}, "attribute 'mode' must be \"w4a4\" or \"w4a16\", got \"w8a8\""),
    ({"mode": "x" * 500}, "got \"" + "x" * 64 + "... (500 bytes)\""),
    ({"activation": "gelu"}, "attribute 'activation' must be \"silu\", got \"gelu\""),
    ({"top_k": 5}, "attribute 'top_k' must be in [1, num_experts=4], got 5"),
    ({"top_k": 0}, "attribute 'top_k' must be in [1, num_experts=4], got 0"),
    ({"num_experts": 0}, "attribute 'num_experts' must be >= 1, got 0"),
    ({"normalize_topk": 2}, "attribute 'normalize_topk' must be 0 or 1, got 2"),
    ({"hidden_size": 40}, "attribute 'hidden_size' must be a positive multiple of 16, got 40"),
    ({"intermediate_size": -16}, "attribute 'intermediate_size' must be a positive multiple of 16, got -16"),
    ({"w13_input_global_scale": [1.0] * 3}, "attribute 'w13_input_global_scale' must have num_experts=4 values, got 3"),
    ({"w2_input_global_scale_inv": [1.0, 2.0, 0.0, 1.0]},
     "attribute 'w2_input_global_scale_inv' must be finite and > 0 for mode \"w4a4\", got 0 for expert 2"),
    ({"w13_input_global_scale": [1.0, float("nan"), 1.0, 1.0]}, "must be finite and > 0 for mode \"w4a4\", got nan"),
    ({"group_size": None}, "attribute 'group_size' is missing or not an INT"),
    ({"activation": None}, "attribute 'activation' is missing or not a STRING"),
    ({"w2_input_global_scale": 3.0}, "attribute 'w2_input_global_scale' is missing or not a FLOATS"),
    ({"hidden_size": 48}, "input 'w13_weight' must have shape [num_experts, 2*intermediate_size, hidden_size/2] "
                          "= [4, 32, 24], got [4, 32, 16]"),
    ({"intermediate_size": 32}, "input 'w13_weight' must have shape"),
    ({"num_experts": 5, "w13_input_global_scale": [1.0] * 5, "w13_input_global_scale_inv": [1.0] * 5,
      "w2_input_global_scale": [1.0] * 5, "w2_input_global_scale_inv": [1.0] * 5},
     "input 'w13_weight' must have shape [num_experts, 2*intermediate_size, hidden_size/2] = [5, 32, 16]"),
])
def test_bad_attributes_rejected(override, expected):
    message = session_error(build_model(make_moe(4, 32, 16, 2), torch.float32, **override))
    assert expected in message, message
    assert "\n" not in message.strip()


def test_w4a16_needs_finite_scales_only():
    moe = make_moe(4, 32, 16, 2, w4a4=False)
    x, logits = inputs(3, moe, torch.float32)
    y = run(build_model(moe, torch.float32, w2_input_global_scale=[0.0, -1.0, 1.0, 1.0]), x, logits)
    assert_close(y, nvfp4_moe_exact(x, logits, moe), torch.float32)
    message = session_error(build_model(moe, torch.float32, w2_input_global_scale=[1.0, float("inf"), 1.0, 1.0]))
    assert "attribute 'w2_input_global_scale' must be finite, got inf for expert 1" in message


@pytest.mark.parametrize("extra", [{"topk": 2}, {"w13_input_scale": [1.0] * 4}, {"normalize_topk_prob": 1}])
def test_unknown_attribute_refused_before_the_session(extra):
    """ORT's C API cannot list a node's attributes: plugins.ort refuses those the contract does not
    name (a misspelt one would otherwise pass silently); the parser's own attributes are allowed."""
    from export.errors import DeployError

    (name,) = extra
    model = build_model(make_moe(4, 32, 16, 2), torch.float32, **extra)
    with pytest.raises(DeployError, match=f"NVFP4MoE node 'moe0': unknown attribute '{name}' "
                                          r"\(expected num_experts, top_k, .*w2_input_global_scale_inv\)"):
        make_session(model, ORT_LIB)


@pytest.mark.parametrize("name, shape, expected", [
    ("w13_weight_global_scale", (4, 16), "input 'w13_weight_global_scale' must have shape [num_experts, "
                                         "2*intermediate_size] = [4, 32], got [4, 16]"),
    ("w2_weight_scale", (4, 32, 2), "input 'w2_weight_scale' must have shape [num_experts, hidden_size, "
                                    "intermediate_size/16] = [4, 32, 1], got [4, 32, 2]"),
    ("w2_weight", (4, 32, 8, 1), "input 'w2_weight' must have shape"),
])
def test_bad_initializer_shapes_rejected(name, shape, expected):
    moe = make_moe(4, 32, 16, 2)
    arrays = stacked_inputs(moe)
    arrays[name] = np.zeros(shape, arrays[name].dtype)
    message = session_error(build_model(moe, torch.float32, initializers=arrays))
    assert expected in message, message


def test_bad_run_shapes_rejected():
    """x and router_logits are checked at Run: last dimensions and the same leading dimensions."""
    moe = make_moe(4, 32, 16, 2)
    session = make_session(build_model(moe, torch.float32, x_dims=["a", "b"], logits_dims=["c", "d"]), ORT_LIB)
    cases = [((2, 48), (2, 4), "input 'x' must have rank >= 1 and last dimension hidden_size=32, got shape [2, 48]"),
             ((2, 32), (3, 4), "input 'router_logits' must have the leading dimensions of x [2, 32] and last "
                               "dimension num_experts=4, got [3, 4]"),
             ((2, 32), (2, 5), "last dimension num_experts=4, got [2, 5]")]
    for x_shape, l_shape, expected in cases:
        with pytest.raises(Exception) as info:
            session.run(None, {"x": np.zeros(x_shape, np.float32), "logits": np.zeros(l_shape, np.float32)})
        assert "NVFP4MoE node 'moe0'" in str(info.value) and expected in str(info.value), str(info.value)


def test_input_types_match_yaml():
    """The op's input types are the contract's: T for x and router_logits, INT8 bytes, FLOAT scales;
    a wrong type is refused at session creation with the op named."""
    moe = make_moe(4, 32, 16, 2)
    contract = op_contract("NVFP4MoE")
    arrays = stacked_inputs(moe)
    wanted = {"int8": np.int8, "float32": np.float32}
    assert [np.dtype(wanted[s["type"]]) for s in contract["inputs"][2:]] == [a.dtype for a in arrays.values()]
    for name, wrong in (("w13_weight", np.uint8), ("w2_weight_global_scale", np.float16)):
        bad = dict(arrays, **{name: arrays[name].astype(wrong)})
        with pytest.raises(Exception) as info:
            model = build_model(moe, torch.float32, initializers={k: v for k, v in bad.items()})
            make_session(model, ORT_LIB)
        assert "NVFP4MoE" in str(info.value), str(info.value)


# ---- end to end: the exporter's NVFP4MoE nodes of real-tool checkpoints, run by this op ----

@pytest.mark.parametrize("family, tool, dtype", [("qwen3_moe", "modelopt", "float32"),
                                                 ("mixtral", "compressed-tensors", "float16"),
                                                 ("qwen3_moe", "quark", "float16")])
def test_exported_checkpoints_run_on_the_op(family, tool, dtype, tmp_path):
    """Tiny Qwen3-MoE / Mixtral checkpoints written by ModelOpt, llm-compressor and Quark, exported
    with one NVFP4MoE node per block, run through ONNX Runtime with this op and checked layer by
    layer against the checkpoint, as `export.py --verify` does."""
    from export.onnx_export import export_model
    from plugins.library import REPO_ROOT
    from plugins.verify.layers import verify_layers

    src = REPO_ROOT / "tests" / "fixtures" / "producers-moe" / family / tool
    res = export_model(src, tmp_path / "m.onnx", fmt="plugin", dtype=dtype, progress=False)
    report = verify_layers(res.onnx_path, src, library=str(ORT_LIB))
    assert report.ok, report.table()
