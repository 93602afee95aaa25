"""scripts/inspect_checkpoint.py: table, --json schema and values, bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from export.checkpoint import open_checkpoint
from export.cli import inspect_checkpoint
from export.nvfp4 import e2m1_decode, unpack_fp4

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "inspect_checkpoint.py"


def _run_in_process(capsys, *args):
    rc = inspect_checkpoint.main([str(a) for a in args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out.out, out.err)


def test_json_output(tiny_checkpoint, capsys):
    fmt, path = tiny_checkpoint
    r = _run_in_process(capsys, path, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)  # exactly one JSON object
    assert set(info) == {"format", "layers", "excluded"}
    assert info["format"] == fmt and info["excluded"] == ["lm_head"]
    ck = open_checkpoint(path)
    assert [row["name"] for row in info["layers"]] == ck.quantized_names
    for row in info["layers"]:
        assert set(row) == {"name", "in_features", "out_features", "weight_global_scale",
                            "input_global_scale", "dequant_l2"}
        layer = ck.layer(row["name"])
        assert (row["in_features"], row["out_features"]) == (layer.in_features, layer.out_features)
        assert row["weight_global_scale"] == layer.weight_global_scale.item()
        assert row["input_global_scale"] == layer.input_global_scale.item()
        # independent float64 Frobenius norm: sum over elements of (e2m1 * fp8 * g)^2
        vals = e2m1_decode(unpack_fp4(layer.weight_packed)).double()
        sc = layer.weight_scale.double().repeat_interleave(16, dim=1)
        expected = torch.sqrt(((vals * sc * layer.weight_global_scale.double()) ** 2).sum()).item()
        assert abs(row["dequant_l2"] - expected) <= 1e-12 * expected


def test_table_and_w4a16(make_tiny_checkpoint, capsys):
    path = make_tiny_checkpoint("quark", w4a16=True)
    r = _run_in_process(capsys, path)
    assert r.returncode == 0, r.stderr
    assert "quark NVFP4 checkpoint" in r.stdout and "model.layers.1.mlp.down_proj" in r.stdout
    assert "excluded (1): lm_head" in r.stdout and "(0 W4A4, 14 W4A16)" in r.stdout
    info = json.loads(_run_in_process(capsys, path, "--json").stdout)
    assert all(row["input_global_scale"] is None for row in info["layers"])


def test_bad_checkpoint_exit_2(tmp_path, make_tiny_checkpoint):
    # A real subprocess: exit status 2 and one line on stderr, no traceback.
    path = make_tiny_checkpoint("modelopt")
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(path, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[:-100])
    r = subprocess.run([sys.executable, str(SCRIPT), str(bad), "--json"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "model.safetensors" in r.stderr
