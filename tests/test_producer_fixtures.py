"""The checkpoint readers and the project's quantizer against checkpoints written by the REAL tools.

tests/fixtures/producers/{quark,modelopt,compressed-tensors}/ hold what AMD Quark, NVIDIA ModelOpt
and llm-compressor exported for one seeded tiny Llama (source-llama/), plus each tool's own
dequantization of every quantized weight (tool_dequant.safetensors) and provenance.json.
scripts/dev/make_producer_fixtures.py made them (see scripts/dev/README.md); these tests need
none of the tools, only the committed files.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from export.checkpoint import open_checkpoint
from export.nvfp4 import dequantize_weight, quantize_weight, unpack_fp4

REPO = Path(__file__).resolve().parents[1]
PRODUCERS = REPO / "tests" / "fixtures" / "producers"
SOURCE = PRODUCERS / "source-llama"
FORMATS = ("quark", "modelopt", "compressed-tensors")  # = fixture folder names
TOOLS = {"quark": "amd-quark", "modelopt": "nvidia-modelopt", "compressed-tensors": "llmcompressor"}
FIXTURE_LIMIT = 2_000_000

# compressed-tensors dequantizes with scale / weight_global_scale (one rounding); the reader keeps
# the dequant-direction global 1/weight_global_scale (one rounding) and multiplies (one more), as
# vLLM does. Two float32 roundings apart: rtol 2^-22. Quark and ModelOpt multiply like the reader:
# bit-exact.
DEQUANT_RTOL = {"quark": 0.0, "modelopt": 0.0, "compressed-tensors": 2.0**-22}


def natural_key(name: str):
    import re

    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def fixture_dir(fmt: str) -> Path:
    d = PRODUCERS / fmt
    assert (d / "config.json").is_file(), f"{d} is missing; see scripts/dev/README.md"
    return d


def tool_dequant(fmt: str) -> dict[str, torch.Tensor]:
    return load_file(str(fixture_dir(fmt) / "tool_dequant.safetensors"))


def tensor_layout(folder: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (safetensors dtype, shape) of the checkpoint's tensors (not tool_dequant)."""
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        if f.name == "tool_dequant.safetensors":
            continue
        with safe_open(str(f), "pt") as h:
            for k in h.keys():
                s = h.get_slice(k)
                out[k] = (s.get_dtype(), tuple(s.get_shape()))
    return out


def key_differences(tool, ours, path: str) -> list[str]:
    """Every place where the two JSON trees have different keys (values may differ). Lists of
    objects are compared element by element; lists of plain values are values."""
    diffs = []
    if isinstance(tool, dict) and isinstance(ours, dict):
        for k in sorted(set(tool) | set(ours)):
            if k not in ours:
                diffs.append(f"{path}.{k}: only in the tool's")
            elif k not in tool:
                diffs.append(f"{path}.{k}: only in ours")
            else:
                diffs += key_differences(tool[k], ours[k], f"{path}.{k}")
    elif isinstance(tool, list) and isinstance(ours, list) and any(isinstance(x, dict) for x in tool + ours):
        if len(tool) != len(ours):
            diffs.append(f"{path}: {len(tool)} entries in the tool's, {len(ours)} in ours")
        for i, (a, b) in enumerate(zip(tool, ours)):
            diffs += key_differences(a, b, f"{path}[{i}]")
    elif isinstance(tool, (dict, list)) != isinstance(ours, (dict, list)):
        diffs.append(f"{path}: the tool's is {type(tool).__name__}, ours {type(ours).__name__}")
    return diffs


def _tool_excludes(fmt: str, folder: Path) -> list[str]:
    config = json.loads((folder / "config.json").read_text())
    if fmt == "modelopt":
        return json.loads((folder / "hf_quant_config.json").read_text())["quantization"]["exclude_modules"]
    return config["quantization_config"]["exclude" if fmt == "quark" else "ignore"]


# ------------------------------------------------------------------------------ the fixtures

@pytest.mark.parametrize("fmt", FORMATS)
def test_fixture_is_complete_and_small(fmt):
    d = fixture_dir(fmt)
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["tool"] == TOOLS[fmt] and prov["tool_version"] and prov["torch"] and prov["command"]
    assert prov["calibration"]["token_ids"] and prov["seed"]
    assert sum(p.stat().st_size for p in d.iterdir()) < FIXTURE_LIMIT
    assert not any(p.name.startswith(("tokenizer", "special_tokens", "generation")) for p in d.iterdir())


# ------------------------------------------------------------------------------ the reader

@pytest.mark.parametrize("fmt", FORMATS)
def test_reader_detects_format_and_layers(fmt):
    d = fixture_dir(fmt)
    ck = open_checkpoint(d)
    assert ck.format == fmt
    # The tool's own list of what it quantized: the names it dequantized.
    assert ck.quantized_names == sorted(tool_dequant(fmt), key=natural_key)
    assert "lm_head" in ck.excluded and "lm_head" not in ck.quantized_names
    # Excluded = the tool's exclude/ignore entries that are 2-D weights in the checkpoint.
    layout = tensor_layout(d)
    expected = {n for n in _tool_excludes(fmt, d) if len(layout.get(f"{n}.weight", ("", ()))[1]) == 2}
    assert set(ck.excluded) == expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_dequantized_weights_match_the_tools_own_dequantization(fmt):
    ck = open_checkpoint(fixture_dir(fmt))
    theirs = tool_dequant(fmt)
    for name in ck.quantized_names:
        layer = ck.layer(name)
        ours = dequantize_weight(layer.weight_packed, layer.weight_scale, layer.weight_global_scale,
                                 dtype=torch.float32)
        ref = theirs[name]
        assert ours.shape == ref.shape and ref.abs().max() > 0, name
        if DEQUANT_RTOL[fmt] == 0.0:
            assert torch.equal(ours, ref), f"{name}: max |diff| {(ours - ref).abs().max().item()}"
        else:
            torch.testing.assert_close(ours, ref, rtol=DEQUANT_RTOL[fmt], atol=0.0, msg=name)


@pytest.mark.parametrize("fmt", FORMATS)
def test_scale_directions(fmt):
    """The stored globals become the dequant-direction values and vLLM's G (docs/op-contract.md)."""
    ck = open_checkpoint(fixture_dir(fmt))
    for name in ck.quantized_names:
        layer = ck.layer(name)
        t = lambda suffix: ck.tensor(f"{name}.{suffix}").reshape(()).float()  # noqa: E731
        assert layer.w4a4, name
        if fmt == "compressed-tensors":  # stored as divisors (quant direction)
            assert torch.equal(layer.input_global_scale_inv, t("input_global_scale"))
            torch.testing.assert_close(layer.weight_global_scale, 1.0 / t("weight_global_scale"), rtol=0, atol=0)
            torch.testing.assert_close(layer.input_global_scale, 1.0 / t("input_global_scale"), rtol=0, atol=0)
        else:  # stored as multipliers (dequant direction)
            stored_in = t("input_scale_2" if fmt == "quark" else "input_scale")
            assert torch.equal(layer.weight_global_scale.reshape(()), t("weight_scale_2"))
            assert torch.equal(layer.input_global_scale, stored_in)
            assert torch.equal(layer.input_global_scale_inv, 1.0 / stored_in)


@pytest.mark.parametrize("fmt", ["quark", "modelopt"])
def test_weight_quantizer_reproduces_the_tool(fmt):
    """export.nvfp4.quantize_weight(producer=fmt), given the tool's weight global scale, writes the
    tool's exact block scales and codes, edge blocks included (source-llama's layer-0 o_proj: zero
    block, E2M1 ties, FP8 tie + saturation, FP8-subnormal and underflowing scales). ModelOpt
    writes -0 as code 8, Quark and we write +0: codes are compared as values.
    (compressed-tensors forms its block scales from the bf16-rounded divisor, so its bytes are not
    reproduced exactly; its dequantized values are checked above.)"""
    ck = open_checkpoint(fixture_dir(fmt))
    source = load_file(str(SOURCE / "model.safetensors"))
    for name in ck.quantized_names:
        layer = ck.layer(name)
        w = source[f"{name}.weight"].float()
        packed, scale, _ = quantize_weight(w, layer.weight_global_scale, producer=fmt)
        n, k = w.shape
        same_scale = scale.view(torch.uint8) == layer.weight_scale.view(torch.uint8)
        assert same_scale.all(), f"{name}: block scales differ at [row, block] {(~same_scale).nonzero().tolist()}"
        ours, theirs = unpack_fp4(packed), unpack_fp4(layer.weight_packed)
        same_code = torch.where(ours == 8, 0, ours) == torch.where(theirs == 8, 0, theirs)
        bad = (~same_code.reshape(n, k // 16, 16).all(-1)).nonzero().tolist()
        assert not bad, f"{name}: codes differ in [row, block] {bad}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_inspect_checkpoint_json(fmt):
    d = fixture_dir(fmt)
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "inspect_checkpoint.py"), str(d), "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert set(info) >= {"format", "layers", "excluded"} and info["format"] == fmt
    theirs = tool_dequant(fmt)
    assert [row["name"] for row in info["layers"]] == sorted(theirs, key=natural_key)
    for row in info["layers"]:
        assert set(row) >= {"name", "in_features", "out_features", "weight_global_scale",
                            "input_global_scale", "dequant_l2"}
        ref = theirs[row["name"]]
        assert [row["out_features"], row["in_features"]] == list(ref.shape)
        assert row["input_global_scale"] is not None
        assert row["dequant_l2"] == pytest.approx(ref.double().norm().item(), rel=1e-6)
    assert "lm_head" in info["excluded"]


# ------------------------------------------------------------------------------ scripts/quantize.py

@pytest.fixture(scope="module")
def project_quantized(tmp_path_factory):
    """scripts/quantize.py on the same source model, once per format."""
    from export.cli import quantize as script

    cache: dict[str, Path] = {}

    def make(fmt: str) -> Path:
        if fmt not in cache:
            out = tmp_path_factory.mktemp(f"project-{fmt}") / "ckpt"
            assert script.main([str(SOURCE), str(out), "--format", fmt]) == 0
            cache[fmt] = out
        return cache[fmt]

    return make


@pytest.mark.parametrize("fmt", FORMATS)
def test_quantize_round_trip(fmt, project_quantized, tmp_path):
    """What the quantizer writes loads back identically, and is an NVFP4 quantization of the source."""
    from export.quantize import quantize_checkpoint

    # The function scripts/quantize.py calls, with the script's defaults: same bytes on disk.
    result = quantize_checkpoint(SOURCE, tmp_path / "ckpt", fmt)
    assert tensor_bytes(tmp_path / "ckpt") == tensor_bytes(project_quantized(fmt))
    ck = open_checkpoint(tmp_path / "ckpt")
    assert ck.format == fmt
    assert ck.quantized_names == open_checkpoint(fixture_dir(fmt)).quantized_names == sorted(result.layers, key=natural_key)
    assert ck.excluded == result.excluded == ["lm_head"]
    source = load_file(str(SOURCE / "model.safetensors"))
    for name in ck.quantized_names:
        got, written = ck.layer(name), result.layers[name]
        assert torch.equal(got.weight_packed, written.weight_packed), name
        assert torch.equal(got.weight_scale.view(torch.uint8), written.weight_scale.view(torch.uint8)), name
        for field in ("weight_global_scale", "input_global_scale", "input_global_scale_inv"):
            assert torch.equal(getattr(got, field), getattr(written, field)), (name, field)
        w = source[f"{name}.weight"].float()
        deq = dequantize_weight(got.weight_packed, got.weight_scale, got.weight_global_scale)
        assert ((deq - w).norm() / w.norm()).item() < 0.2, name  # NVFP4 noise is ~0.1
    quantized = set(ck.quantized_names)
    copied = [n for n in ck.tensor_names() if n.rpartition(".")[0] not in quantized]
    assert copied and all(torch.equal(ck.tensor(n), source[n]) for n in copied)  # unquantized: unchanged


def tensor_bytes(folder: Path) -> dict[str, bytes]:
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            for k in h.keys():
                t = h.get_tensor(k)
                out[k] = t.reshape(-1).view(torch.uint8).numpy().tobytes()
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_quantize_tensor_layout_matches_the_tool(fmt, project_quantized):
    tool, ours = tensor_layout(fixture_dir(fmt)), tensor_layout(project_quantized(fmt))
    assert sorted(ours) == sorted(tool), (sorted(set(tool) - set(ours)), sorted(set(ours) - set(tool)))
    wrong = {n: (tool[n], ours[n]) for n in tool if tool[n] != ours[n]}
    assert not wrong, f"(dtype, shape) tool vs ours: {wrong}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_quantize_config_keys_match_the_tool(fmt, project_quantized):
    tool_dir, ours_dir = fixture_dir(fmt), project_quantized(fmt)
    tool_cfg = json.loads((tool_dir / "config.json").read_text())
    ours_cfg = json.loads((ours_dir / "config.json").read_text())
    # Top level: ours keeps the source config.json as it was; the tools re-save it through their
    # transformers version, which may fold keys (rope_theta/rope_scaling into rope_parameters).
    assert set(tool_cfg) <= set(ours_cfg), sorted(set(tool_cfg) - set(ours_cfg))
    diffs = key_differences(tool_cfg["quantization_config"], ours_cfg["quantization_config"],
                            "config.json:quantization_config")
    if (tool_dir / "hf_quant_config.json").exists():
        assert (ours_dir / "hf_quant_config.json").exists()
        diffs += key_differences(json.loads((tool_dir / "hf_quant_config.json").read_text()),
                                 json.loads((ours_dir / "hf_quant_config.json").read_text()),
                                 "hf_quant_config.json")
    assert not diffs, "\n".join(diffs)
