"""export.quantize / scripts/quantize.py: round trip through every layout, configs, bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from export.checkpoint import FORMATS, CheckpointError, open_checkpoint
from export.cli import quantize as script
from export.errors import UserError
from export.checkpoint.reader import natural_key
from export.checkpoint.store import TensorStore
from export.nvfp4 import dequantize_weight
from export.quantize import quantize_checkpoint

REPO = Path(__file__).resolve().parents[1]
LINEARS = [f"model.layers.{i}.{m}" for i in range(2) for m in (
    "mlp.down_proj", "mlp.gate_proj", "mlp.up_proj",
    "self_attn.k_proj", "self_attn.o_proj", "self_attn.q_proj", "self_attn.v_proj")]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("w4a16", [False, True])
def test_round_trip(tmp_path, tiny_llama_dir, fmt, w4a16):
    out = tmp_path / "out"
    res = quantize_checkpoint(tiny_llama_dir, out, fmt, w4a16=w4a16, calib_batches=2, seed=1)
    ck = open_checkpoint(out)
    assert ck.format == fmt
    assert ck.quantized_names == sorted(LINEARS, key=natural_key) == sorted(res.layers, key=natural_key)
    assert ck.excluded == ["lm_head"] == res.excluded
    src = TensorStore(tiny_llama_dir)
    for name, written in res.layers.items():
        read = ck.layer(name)
        assert torch.equal(read.weight_packed, written.weight_packed)
        assert torch.equal(read.weight_scale.view(torch.uint8), written.weight_scale.view(torch.uint8))
        assert torch.equal(read.weight_global_scale, written.weight_global_scale)
        deq = dequantize_weight(read.weight_packed, read.weight_scale, read.weight_global_scale)
        assert torch.equal(deq, dequantize_weight(written.weight_packed, written.weight_scale,
                                                  written.weight_global_scale))
        # and it is an NVFP4 approximation of the source weight
        w = src.get(name + ".weight")
        assert (deq - w).abs().max() <= w.abs().max() / 6 + 1e-12
        assert read.mode == ("w4a16" if w4a16 else "w4a4")
        if not w4a16:
            assert torch.equal(read.input_global_scale, written.input_global_scale)
            assert torch.equal(read.input_global_scale_inv, written.input_global_scale_inv)
            amax = res.input_amax[name]
            assert read.input_global_scale.item() == pytest.approx(amax / 2688, rel=1e-6)
            assert read.input_global_scale_inv.item() == pytest.approx(2688 / amax, rel=1e-6)
    if not w4a16:
        # q/k/v (and gate/up) see the same input: same amax, but each keeps its own tensors.
        a = res.input_amax
        assert a["model.layers.0.self_attn.q_proj"] == a["model.layers.0.self_attn.k_proj"] > 0
        assert a["model.layers.1.mlp.gate_proj"] == a["model.layers.1.mlp.up_proj"] > 0


def test_configs_written_like_the_producers(tiny_checkpoint):
    fmt, path = tiny_checkpoint
    qc = json.loads((path / "config.json").read_text())["quantization_config"]
    if fmt == "modelopt":
        hf = json.loads((path / "hf_quant_config.json").read_text())
        assert hf["quantization"]["quant_algo"] == "NVFP4" and hf["quantization"]["group_size"] == 16
        assert hf["quantization"]["exclude_modules"] == ["lm_head"] and "kv_cache_quant_algo" in hf["quantization"]
        assert qc["quant_method"] == "modelopt" and qc["ignore"] == ["lm_head"]
    elif fmt == "quark":
        assert qc["quant_method"] == "quark" and qc["exclude"] == ["lm_head"]
        w = qc["global_quant_config"]["weight"]
        assert [s["dtype"] for s in w] == ["fp4", "fp8_e4m3"] and w[0]["group_size"] == 16
        assert qc["global_quant_config"]["input_tensors"][0]["is_dynamic"] is True
        assert "export" in qc and "layer_quant_config" in qc
    else:
        assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "nvfp4-pack-quantized"
        assert qc["ignore"] == ["lm_head"] and qc["config_groups"]["group_0"]["targets"] == ["Linear"]
    assert (path / "generation_config.json").exists()  # side files are copied
    assert not list(path.parent.glob(".*tmp*"))


def test_unquantized_dtype_follows_source_and_exclude(tmp_path, make_tiny_hf):
    src = make_tiny_hf("qwen2", dtype=torch.bfloat16)
    out = tmp_path / "q"
    res = quantize_checkpoint(src, out, "compressed-tensors", exclude=("lm_head", "re:.*mlp\\.down.*"),
                              calib_batches=1, max_shard_bytes=60_000)
    ck = open_checkpoint(out)
    assert (out / "model.safetensors.index.json").exists()  # sharded output reads back
    assert ck.tensor("model.embed_tokens.weight").dtype == torch.bfloat16
    assert ck.tensor("lm_head.weight").dtype == torch.bfloat16
    assert ck.excluded == ["lm_head", "model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    assert ck.tensor("model.layers.0.mlp.down_proj.weight").dtype == torch.bfloat16
    q = ck.layer("model.layers.0.self_attn.q_proj")  # qwen2: q/k/v bias stays, source dtype
    assert q.bias is not None and q.bias.dtype == torch.bfloat16
    assert len(res.layers) == 12


def test_tied_embeddings_stay_unquantized(tmp_path, make_tiny_hf):
    src = make_tiny_hf("qwen3")  # tied by default
    res = quantize_checkpoint(src, tmp_path / "q", "modelopt", exclude=(), calib_batches=1)
    assert "lm_head" in res.excluded and "lm_head" not in res.layers
    assert "lm_head.weight" not in open_checkpoint(tmp_path / "q").tensor_names()


def test_bad_input(tmp_path, tiny_checkpoint):
    fmt, path = tiny_checkpoint
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="already quantized"):
        quantize_checkpoint(path, tmp_path / "x", fmt)
    with pytest.raises(CheckpointError, match="missing config.json"):
        quantize_checkpoint(empty, tmp_path / "x", fmt)
    with pytest.raises(UserError, match="unknown checkpoint format"):
        quantize_checkpoint(path, tmp_path / "x", "gguf")
    assert not (tmp_path / "x").exists()


def test_existing_output_needs_force(tmp_path, tiny_llama_dir):
    out = tmp_path / "q"
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists"):
        quantize_checkpoint(tiny_llama_dir, out, "modelopt", w4a16=True)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    quantize_checkpoint(tiny_llama_dir, out, "modelopt", w4a16=True, force=True)
    assert open_checkpoint(out).format == "modelopt" and not (out / "mine.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]


def _run_script(*args):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "quantize.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_script_end_to_end_and_errors(tmp_path, tiny_llama_dir, capsys):
    out = tmp_path / "m"
    rc = script.main([str(tiny_llama_dir), str(out), "--format", "modelopt", "--calib-batches", "1", "--seed", "3"])
    assert rc == 0 and "14 NVFP4 linears" in capsys.readouterr().out
    assert open_checkpoint(out).format == "modelopt"
    assert script.main([str(tmp_path / "nope"), str(tmp_path / "o3"), "--format", "compressed-tensors"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nope: is not a directory" in err and not (tmp_path / "o3").exists()

    # K not a multiple of 16: exit 2, one line on stderr, nothing left behind.
    bad = tmp_path / "bad_src"
    import shutil
    shutil.copytree(tiny_llama_dir, bad)
    from safetensors.torch import load_file, save_file
    t = load_file(str(bad / "model.safetensors"))
    for i in range(2):  # intermediate size 120: down_proj has K = 120
        for m in ("gate_proj", "up_proj"):
            t[f"model.layers.{i}.mlp.{m}.weight"] = t[f"model.layers.{i}.mlp.{m}.weight"][:120].contiguous()
        t[f"model.layers.{i}.mlp.down_proj.weight"] = t[f"model.layers.{i}.mlp.down_proj.weight"][:, :120].contiguous()
    save_file(t, str(bad / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((bad / "config.json").read_text())
    cfg["intermediate_size"] = 120
    (bad / "config.json").write_text(json.dumps(cfg))
    r = _run_script(bad, tmp_path / "o2", "--format", "quark")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "model.layers.0.mlp.down_proj.weight" in lines[0] and "not a multiple of 16" in lines[0]
    assert not (tmp_path / "o2").exists() and not list(tmp_path.glob(".o2*"))


def test_committed_example_is_reproducible(tmp_path, make_tiny_checkpoint, tiny_llama_dir):
    example = REPO / "examples" / "tiny-llama-nvfp4"
    assert (example / "README.md").exists()
    assert sum(f.stat().st_size for f in example.iterdir()) < 1_000_000
    committed = open_checkpoint(example)
    assert committed.format == "modelopt" and committed.excluded == ["lm_head"]
    fresh = open_checkpoint(make_tiny_checkpoint("modelopt"))  # seed 0, 4 batches, like the README
    assert committed.quantized_names == fresh.quantized_names
    for name in fresh.quantized_names:
        a, b = committed.layer(name), fresh.layer(name)
        assert torch.equal(a.weight_packed, b.weight_packed)
        assert torch.equal(a.weight_scale.view(torch.uint8), b.weight_scale.view(torch.uint8))
        assert torch.equal(a.weight_global_scale, b.weight_global_scale)
        # calibration runs float32 matmuls: allow for another CPU's summation order
        torch.testing.assert_close(a.input_global_scale, b.input_global_scale, rtol=1e-5, atol=0)
    for name in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):
        assert torch.equal(committed.tensor(name), fresh.tensor(name))
