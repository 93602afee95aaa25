"""The MoE readers, exporter and quantizer against tiny Qwen3-MoE and Mixtral checkpoints written
by the REAL tools (tests/fixtures/producers-moe/<family>/<tool>/, made by
scripts/dev/make_producer_fixtures.py --family ...; see scripts/dev/README.md). Needs none of the
tools, only the committed files."""
from __future__ import annotations

import json
import re
from pathlib import Path

import onnx
import pytest
import torch
from safetensors.torch import load_file

from export.checkpoint import open_checkpoint
from export.cli import inspect_checkpoint as inspect_cli
from export.checkpoint.moe import find_expert_blocks, read_moe_block, routing_from_config
from export.nvfp4 import dequantize_weight
from export.onnx_export import export_model
from export.quantize import quantize_checkpoint
from export.tiny_models import MOE_FAMILIES
from tests.test_moe_export import assert_exported_model_matches, check_moe_nodes
from tests.test_producer_fixtures import DEQUANT_RTOL, TOOLS, natural_key, tensor_layout

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "tests" / "fixtures" / "producers-moe"
FORMATS = ("modelopt", "quark", "compressed-tensors")
CASES = [(f, t) for f in MOE_FAMILIES for t in FORMATS]
FIXTURE_LIMIT = 1_000_000
# Where each tool puts a block's experts, and how it names them (facts of the committed exports).
NAMING = {
    ("qwen3_moe", "modelopt"): ("mlp", "gate_proj"), ("qwen3_moe", "quark"): ("mlp", "gate_proj"),
    ("qwen3_moe", "compressed-tensors"): ("mlp", "gate_proj"),
    ("mixtral", "modelopt"): ("block_sparse_moe", "w1"), ("mixtral", "quark"): ("mlp", "gate_proj"),
    ("mixtral", "compressed-tensors"): ("block_sparse_moe", "gate_proj"),
}


def fixture(family: str, fmt: str) -> Path:
    d = ROOT / family / fmt
    assert (d / "config.json").is_file(), f"{d} is missing; see scripts/dev/README.md"
    return d


@pytest.mark.parametrize("family,fmt", CASES)
def test_fixture_is_complete_and_small(family, fmt):
    d = fixture(family, fmt)
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["tool"] == TOOLS[fmt] and prov["tool_version"] and prov["command"].endswith(f"--family {family}")
    assert sum(p.stat().st_size for p in d.iterdir()) < FIXTURE_LIMIT


@pytest.mark.parametrize("family,fmt", CASES)
def test_reader_equals_the_tools_dequantization(family, fmt):
    d = fixture(family, fmt)
    ck = open_checkpoint(d)
    theirs = load_file(str(d / "tool_dequant.safetensors"))
    assert ck.format == fmt and ck.quantized_names == sorted(theirs, key=natural_key)
    top_k, normalize = routing_from_config(ck.config)
    blocks = find_expert_blocks(ck)
    where, naming = NAMING[(family, fmt)]
    assert sorted(blocks) == [f"model.layers.{i}.{where}" for i in range(2)]
    source = load_file(str(ROOT / family / "source" / "model.safetensors"))
    source_block = "block_sparse_moe" if family == "mixtral" else "mlp"
    for i, (name, block) in enumerate(sorted(blocks.items())):
        assert block.naming == naming and all(block.quantized)
        moe = read_moe_block(ck, block, top_k=top_k, normalize_topk=normalize)
        # The router is not quantized and comes back bit for bit (bf16, as the source has it).
        router = source[f"model.layers.{i}.{source_block}.gate.weight"]
        assert moe.router_weight.dtype == router.dtype and torch.equal(moe.router_weight, router)
        for lin in moe.gate + moe.up + moe.down:
            ours = dequantize_weight(lin.weight_packed, lin.weight_scale, lin.weight_global_scale)
            ref = theirs[lin.name]
            if DEQUANT_RTOL[fmt] == 0.0:
                assert torch.equal(ours, ref), lin.name
            else:
                torch.testing.assert_close(ours, ref, rtol=DEQUANT_RTOL[fmt], atol=0.0, msg=lin.name)
        # Gate and up of an expert quantize the same input: every tool stores the same scale.
        assert all(torch.equal(g.input_global_scale, u.input_global_scale) for g, u in zip(moe.gate, moe.up))


@pytest.mark.parametrize("family,fmt", CASES)
def test_fixture_exports_and_runs(family, fmt, tmp_path):
    """Plugin format: one NVFP4MoE node per block whose inputs are the checkpoint's tensors, and
    the graph (ONNX Runtime with the project's ops) passes the layer check and equals the torch model."""
    d = fixture(family, fmt)
    res = export_model(d, tmp_path / "m.onnx", fmt="plugin", dtype="float32", progress=False)
    model = onnx.load(str(res.onnx_path))
    assert check_moe_nodes(model, open_checkpoint(d), "float32") == 2
    assert_exported_model_matches(res.onnx_path, d)


_RENAME = [(r"\.(mlp|block_sparse_moe)\.", ".moe."), (r"\.w1\.", ".gate_proj."), (r"\.w3\.", ".up_proj."),
           (r"\.w2\.", ".down_proj.")]


def _canonical(name: str) -> str:
    for pattern, repl in _RENAME:
        name = re.sub(pattern, repl, name)
    return name


@pytest.mark.parametrize("family,fmt", CASES)
def test_quantizer_writes_the_tools_tensor_layout(family, fmt, tmp_path):
    """scripts/quantize.py's MoE output has the tool's tensors (dtypes, shapes). Names are the
    source's (Mixtral: block_sparse_moe.experts.E.w1/w3/w2, as ModelOpt keeps them; Quark and
    llm-compressor rename them), so they are compared modulo the expert naming."""
    quantize_checkpoint(ROOT / family / "source", tmp_path / "ours", fmt)
    tool = {_canonical(k): v for k, v in tensor_layout(fixture(family, fmt)).items()}
    ours = {_canonical(k): v for k, v in tensor_layout(tmp_path / "ours").items()}
    assert sorted(ours) == sorted(tool), (sorted(set(tool) - set(ours))[:5], sorted(set(ours) - set(tool))[:5])
    wrong = {n: (tool[n], ours[n]) for n in tool if tool[n] != ours[n]}
    assert not wrong, f"(dtype, shape) tool vs ours: {wrong}"
    ck = open_checkpoint(tmp_path / "ours")
    assert [b.num_experts for b in find_expert_blocks(ck).values()] == [json.loads(
        (ROOT / family / "source" / "config.json").read_text())["num_local_experts"]] * 2


@pytest.mark.parametrize("family,fmt", [("mixtral", "quark"), ("qwen3_moe", "compressed-tensors")])
def test_inspect_lists_experts_compactly(family, fmt, capsys):
    d = fixture(family, fmt)
    assert inspect_cli.main([str(d), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    experts = {"qwen3_moe": 8, "mixtral": 4}[family]
    where, naming = NAMING[(family, fmt)]
    assert info["moe_blocks"] == [
        {"name": f"model.layers.{i}.{where}", "num_experts": experts,
         "projections": ["w1", "w3", "w2"] if naming == "w1" else ["gate_proj", "up_proj", "down_proj"],
         "top_k": 2, "normalize_topk": True, "quantized_experts": list(range(experts))} for i in range(2)]
    assert inspect_cli.main([str(d)]) == 0
    table = capsys.readouterr().out
    assert ".experts." not in table  # one line per block instead of 3·E rows
    assert f"model.layers.1.{where}: {experts} experts" in table and f"NVFP4 experts: 0-{experts - 1}" in table


def test_quantizer_calibrates_every_expert(tmp_path):
    """Every calibration token goes through every expert: gate/up of all experts of a layer share the
    block input's scale, down gets each expert's own; routers are listed as excluded."""
    result = quantize_checkpoint(ROOT / "qwen3_moe" / "source", tmp_path / "ours", "modelopt")
    ck = open_checkpoint(tmp_path / "ours")
    hf_quant = json.loads((tmp_path / "ours" / "hf_quant_config.json").read_text())
    assert {"model.layers.0.mlp.gate", "model.layers.1.mlp.gate"} <= set(hf_quant["quantization"]["exclude_modules"])
    top_k, normalize = routing_from_config(ck.config)
    for block in find_expert_blocks(ck).values():
        moe = read_moe_block(ck, block, top_k=top_k, normalize_topk=normalize)
        gate_up = {lin.input_global_scale.item() for lin in moe.gate + moe.up}
        assert len(gate_up) == 1
        down = [lin.input_global_scale.item() for lin in moe.down]
        assert len(set(down)) == moe.num_experts  # one per expert, nothing merged
        for lin in moe.gate + moe.up + moe.down:
            assert result.input_amax[lin.name] > 0
