"""export.checkpoint readers on hand-written checkpoints (explicit tensor names per layout)."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from export.checkpoint import CheckpointError, open_checkpoint
from export.checkpoint.patterns import matches
from export.nvfp4 import pack_fp4

N, K = 32, 64
NAME = "model.layers.0.mlp.up_proj"


def _weight_tensors(seed=0):
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (N, K), generator=gen, dtype=torch.uint8)
    scale = (torch.rand(N, K // 16, generator=gen) * 8 + 0.01).to(torch.float8_e4m3fn)
    return pack_fp4(codes), scale


def _config(qc=None):
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": K}
    if qc is not None:
        cfg["quantization_config"] = qc
    return cfg


MODELOPT_HF = {"producer": {"name": "modelopt", "version": "0.29"},
               "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": None, "group_size": 16,
                                "exclude_modules": ["lm_head", "model.layers.*.mlp.down*"]}}
FP4_W = {"dtype": "fp4", "qscheme": "per_group", "group_size": 16, "is_dynamic": False, "ch_axis": -1}
FP4_I = dict(FP4_W, is_dynamic=True)
FP8_T = {"dtype": "fp8_e4m3", "qscheme": "per_tensor", "is_dynamic": False}
QUARK_QC = {"quant_method": "quark", "global_quant_config": {"weight": [FP4_W, FP8_T], "input_tensors": [FP4_I, FP8_T]},
            "layer_quant_config": {}, "exclude": ["lm_head", "model.layers.*.mlp.down*"],
            "export": {"pack_method": "reorder"}}
CT_SPEC = {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16, "symmetric": True}
CT_QC = {"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized",
         "config_groups": {"group_0": {"targets": ["Linear"], "weights": dict(CT_SPEC, dynamic=False),
                                       "input_activations": dict(CT_SPEC, dynamic="local")}},
         "ignore": ["lm_head", "re:.*mlp\\.down.*"]}


def write_ckpt(path, fmt, *, w4a16=False, extra=None, drop=(), qc=None, bias=False):
    """A checkpoint with one NVFP4 linear NAME plus unquantized lm_head, down_proj and a norm.
    Stored globals: weight 0.25 (CT: 4.0), input 0.125 (CT: 8.0)."""
    path.mkdir(parents=True, exist_ok=True)
    packed, scale = _weight_tensors()
    p = NAME + "."
    t = {"lm_head.weight": torch.randn(16, K), "model.layers.0.mlp.down_proj.weight": torch.randn(K, 16),
         "model.norm.weight": torch.ones(K), p + "weight_scale": scale}
    if fmt == "compressed-tensors":
        t.update({p + "weight_packed": packed, p + "weight_global_scale": torch.tensor([4.0])})
        if not w4a16:
            t[p + "input_global_scale"] = torch.tensor([8.0])
        qc = qc or json.loads(json.dumps(CT_QC))
        if w4a16:
            qc["config_groups"]["group_0"]["input_activations"] = None
    else:
        t.update({p + "weight": packed, p + "weight_scale_2": torch.tensor(0.25)})
        if not w4a16:
            t[p + ("input_scale" if fmt == "modelopt" else "input_scale_2")] = torch.tensor(0.125)
        if fmt == "quark":
            qc = qc or json.loads(json.dumps(QUARK_QC))
            if w4a16:
                qc["global_quant_config"]["input_tensors"] = None
        else:
            hf = json.loads(json.dumps(MODELOPT_HF))
            if w4a16:
                hf["quantization"]["quant_algo"] = "W4A16_NVFP4"
            (path / "hf_quant_config.json").write_text(json.dumps(hf))
    if bias:
        t[p + "bias"] = torch.randn(N).to(torch.bfloat16)
    t.update(extra or {})
    for d in drop:
        del t[d]
    save_file(t, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(_config(qc)))
    return path, packed, scale


@pytest.mark.parametrize("fmt", ["modelopt", "quark", "compressed-tensors"])
def test_reads_each_layout_into_canonical_scales(tmp_path, fmt):
    path, packed, scale = write_ckpt(tmp_path / fmt, fmt, bias=True)
    ck = open_checkpoint(path)
    assert ck.format == fmt
    assert ck.quantized_names == [NAME]
    assert ck.excluded == ["lm_head", "model.layers.0.mlp.down_proj"]
    assert ck.config["model_type"] == "llama" and ck.directory == path
    layer = ck.layer(NAME)
    assert torch.equal(layer.weight_packed, packed) and layer.weight_packed.dtype == torch.uint8
    assert torch.equal(layer.weight_scale.view(torch.uint8), scale.view(torch.uint8))
    assert (layer.out_features, layer.in_features) == (N, K)
    # Dequant direction everywhere; G exactly as vLLM: 1/0.125 (ModelOpt, Quark) or 8 as stored (CT).
    assert layer.weight_global_scale.shape == () and layer.weight_global_scale.item() == 0.25
    assert layer.input_global_scale.item() == 0.125 and layer.input_global_scale_inv.item() == 8.0
    assert layer.mode == "w4a4" and layer.bias.dtype == torch.bfloat16
    assert torch.equal(ck.tensor("model.norm.weight"), torch.ones(K))
    assert set(ck.tensor_names()) >= {"lm_head.weight", "model.norm.weight"}


@pytest.mark.parametrize("fmt", ["modelopt", "quark", "compressed-tensors"])
def test_w4a16_has_no_input_scale(tmp_path, fmt):
    ck = open_checkpoint(write_ckpt(tmp_path / fmt, fmt, w4a16=True)[0])
    layer = ck.layer(NAME)
    assert layer.input_global_scale is None and layer.input_global_scale_inv is None
    assert layer.mode == "w4a16"


def test_ct_reciprocal_global_is_float32_division(tmp_path):
    stored = torch.tensor([3.0])
    path, *_ = write_ckpt(tmp_path / "ct", "compressed-tensors",
                          extra={NAME + ".weight_global_scale": stored, NAME + ".input_global_scale": torch.tensor([7.0])})
    layer = open_checkpoint(path).layer(NAME)
    assert layer.weight_global_scale.item() == (torch.tensor(1.0) / torch.tensor(3.0)).item()
    assert layer.input_global_scale_inv.item() == 7.0
    assert layer.input_global_scale.item() == (torch.tensor(1.0) / torch.tensor(7.0)).item()


def test_modelopt_from_config_json_only(tmp_path):
    path, *_ = write_ckpt(tmp_path / "m", "modelopt")
    (path / "hf_quant_config.json").unlink()
    qc = {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16,
          "ignore": ["lm_head", "model.layers.0.mlp.down_proj"]}
    (path / "config.json").write_text(json.dumps(_config(qc)))
    ck = open_checkpoint(path)
    assert ck.format == "modelopt" and ck.layer(NAME).input_global_scale_inv.item() == 8.0


def test_modelopt_mixed_precision(tmp_path):
    path, *_ = write_ckpt(tmp_path / "m", "modelopt")
    hf = {"quantization": {"quant_algo": "MIXED_PRECISION", "group_size": 16,
                           "quantized_layers": {NAME: {"quant_algo": "W4A16_NVFP4", "group_size": 16}}}}
    (path / "hf_quant_config.json").write_text(json.dumps(hf))
    ck = open_checkpoint(path)
    assert ck.quantized_names == [NAME] and ck.layer(NAME).mode == "w4a16"
    assert "lm_head" in ck.excluded


def test_quark_layer_config_override(tmp_path):
    qc = json.loads(json.dumps(QUARK_QC))
    qc["layer_quant_config"] = {"*up_proj": {"weight": [FP4_W, FP8_T], "input_tensors": None}}
    ck = open_checkpoint(write_ckpt(tmp_path / "q", "quark", qc=qc)[0])
    assert ck.layer(NAME).mode == "w4a16"


def test_sharded_checkpoint_with_index(tmp_path):
    path, packed, _ = write_ckpt(tmp_path / "s", "modelopt")
    from safetensors import safe_open
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    (path / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for fname, ns in shards.items():
        save_file({n: tensors[n] for n in ns}, str(path / fname))
        weight_map.update({n: fname for n in ns})
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    ck = open_checkpoint(path)
    assert torch.equal(ck.layer(NAME).weight_packed, packed)
    # An index naming a shard that is not there is reported with the shard's name.
    weight_map["model.norm.weight"] = "model-00003-of-00003.safetensors"
    (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match="model-00003-of-00003.safetensors.*does not exist"):
        open_checkpoint(path)


def _one_line_error(path, match):
    with pytest.raises(CheckpointError, match=match) as info:
        ck = open_checkpoint(path)
        for name in ck.quantized_names:
            ck.layer(name)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_truncated_and_corrupt_safetensors(tmp_path):
    path, *_ = write_ckpt(tmp_path / "t", "quark")
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) - 10])
    msg = _one_line_error(path, "not a readable safetensors file")
    assert "model.safetensors" in msg
    (path / "model.safetensors").write_bytes(b"\x00" * 5)
    _one_line_error(path, "not a readable safetensors file")


BAD_CASES = {
    "missing global": dict(drop=[NAME + ".weight_scale_2"], match=r"weight_scale_2'.*missing tensor"),
    "missing input scale": dict(drop=[NAME + ".input_scale"], match=r"input_scale'.*missing tensor.*quantizes input"),
    "float weight": dict(extra={NAME + ".weight": torch.zeros(N, K // 2, dtype=torch.float16)},
                         match=r"weight'.*expected uint8"),
    "K not multiple of 16": dict(extra={NAME + ".weight": torch.zeros(N, 12, dtype=torch.uint8),
                                        NAME + ".weight_scale": torch.zeros(N, 1).to(torch.float8_e4m3fn)},
                                 match="K=24 must be a positive multiple of 16"),
    "scale shape": dict(extra={NAME + ".weight_scale": torch.zeros(N, 3).to(torch.float8_e4m3fn)},
                        match=r"weight_scale'.*expected float8_e4m3fn \[32, 4\]"),
    "scale dtype": dict(extra={NAME + ".weight_scale": torch.zeros(N, 4)}, match="expected float8_e4m3fn"),
    "NaN global": dict(extra={NAME + ".weight_scale_2": torch.tensor(float("nan"))}, match="finite and > 0"),
    "Inf global": dict(extra={NAME + ".input_scale": torch.tensor(float("inf"))}, match="finite and > 0"),
    "zero global": dict(extra={NAME + ".weight_scale_2": torch.tensor(0.0)}, match="finite and > 0"),
    "negative global": dict(extra={NAME + ".input_scale": torch.tensor(-1.0)}, match="finite and > 0"),
    "vector global": dict(extra={NAME + ".weight_scale_2": torch.ones(2)}, match="expected a float32 scalar"),
    "int global": dict(extra={NAME + ".weight_scale_2": torch.tensor(1)}, match="expected a float32 scalar"),
    "AWQ pre_quant_scale": dict(extra={NAME + ".pre_quant_scale": torch.ones(K)}, match="pre_quant_scale.*not supported"),
    "excluded but quantized": dict(extra={"lm_head.weight_scale": torch.ones(16, 4).to(torch.float8_e4m3fn)},
                                   match="holds NVFP4 tensors but the config excludes it"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_tensors_give_one_line_errors(tmp_path, case):
    spec = dict(BAD_CASES[case])
    match = spec.pop("match")
    path, *_ = write_ckpt(tmp_path / "b", "modelopt", **spec)
    msg = _one_line_error(path, match)
    assert "model.safetensors" in msg or str(path) in msg


@pytest.mark.parametrize("qc,match", [
    ({"quant_method": "gptq"}, "quant_method 'gptq' is not supported"),
    (dict(CT_QC, format="float-quantized"), "only 'nvfp4-pack-quantized'"),
    (dict(QUARK_QC, global_quant_config={"weight": [FP8_T], "input_tensors": None}), "not the NVFP4 scheme"),
    ({"quant_method": "modelopt", "quant_algo": "FP8"}, "quant_algo 'FP8' is not supported"),
])
def test_unsupported_configs(tmp_path, qc, match):
    path, *_ = write_ckpt(tmp_path / "c", "quark", qc=qc)
    with pytest.raises(CheckpointError, match=match):
        open_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is not a directory"):
        open_checkpoint(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps(_config()))
    with pytest.raises(CheckpointError, match="no quantization_config"):
        open_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        open_checkpoint(tmp_path)


def test_layer_of_unknown_name(tmp_path):
    ck = open_checkpoint(write_ckpt(tmp_path / "u", "modelopt")[0])
    with pytest.raises(CheckpointError, match="not an NVFP4 linear"):
        ck.layer("lm_head")


@pytest.mark.parametrize("name,pattern,expected", [
    ("lm_head", "lm_head", True),
    ("model.layers.0.mlp.down_proj", "model.layers.*.mlp.down*", True),
    ("model.layers.0.mlp.down_proj", "re:.*mlp\\.down.*", True),
    ("model.layers.0.mlp.down_proj", "re:mlp", False),  # re.match anchors at the start
    ("model.layers.0.mlp.down_proj", "model.layers.0.mlp", True),  # parent module
    ("model.layers.0.mlp_x", "model.layers.0.mlp", False),
    ("model.layers.10.mlp.up_proj", "model.layers.1.*", False),
])
def test_exclude_patterns(name, pattern, expected):
    assert matches(name, pattern) is expected
