"""The Triton model repository writer, checked with Triton's own model-config protobuf.

A toy ONNX with exactly the exported graph's I/O (input_ids, position_ids, attention_mask,
past_key_values.* -> logits, present.*) stands in for an export here, so these tests do not depend
on the exporter; test_verify.py covers the real export. The plan file is a stand-in too: the
writer copies it and checks its magic, nothing here deserializes it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]

from export.errors import DeployError
from plugins.tensorrt_build import check_plan_file, check_plugin_library
from plugins.triton import model_config_text

ONNX_TYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}


def make_toy_export(directory: Path, dtype: str = "float32", num_layers: int = 2, heads: int = 2,
                    head_dim: int = 4, vocab: int = 11, seed: int = 0) -> Path:
    """A runnable ONNX with the exported graph's I/O contract plus its sidecar JSON.

    logits[b, t] = E[input_ids[b, t]]; present.i.* = concat(past, a per-token vector reshaped to
    [heads, head_dim]) along the sequence axis - enough for greedy decoding to be checkable.
    """
    rng = np.random.default_rng(seed)
    np_dtype = np.dtype(dtype)
    t = ONNX_TYPES[dtype]
    inits = [numpy_helper.from_array(rng.standard_normal((vocab, vocab)).astype(np_dtype), "E"),
             numpy_helper.from_array(np.array([0, 0, heads, head_dim], np.int64), "kv_shape")]
    nodes = [helper.make_node("Gather", ["E", "input_ids"], ["logits"], axis=0)]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total_seq"])]
    outputs = [helper.make_tensor_value_info("logits", t, ["batch", "seq", vocab])]
    for i in range(num_layers):
        for kv in ("key", "value"):
            table = f"T{i}{kv}"
            inits.append(numpy_helper.from_array(rng.standard_normal((vocab, heads * head_dim)).astype(np_dtype), table))
            nodes += [helper.make_node("Gather", [table, "input_ids"], [f"{table}_g"], axis=0),
                      helper.make_node("Reshape", [f"{table}_g", "kv_shape"], [f"{table}_r"]),
                      helper.make_node("Transpose", [f"{table}_r"], [f"{table}_t"], perm=[0, 2, 1, 3]),
                      helper.make_node("Concat", [f"past_key_values.{i}.{kv}", f"{table}_t"], [f"present.{i}.{kv}"], axis=2)]
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kv}", t, ["batch", heads, "past_seq", head_dim]))
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{kv}", t, ["batch", heads, "total_seq", head_dim]))
    model = helper.make_model(helper.make_graph(nodes, "toy", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    path = directory / f"toy-{dtype}.onnx"
    onnx.save(model, path)

    def spec(v, lo, opt, hi):
        shape = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        return {"name": v.name, "dtype": "int64" if v.type.tensor_type.elem_type == TensorProto.INT64 else dtype,
                "shape": shape, "min": lo, "opt": opt, "max": hi}

    in_specs = [spec(inputs[0], [1, 1], [2, 8], [4, 32]), spec(inputs[1], [1, 1], [2, 8], [4, 32]),
                spec(inputs[2], [1, 1], [2, 16], [4, 64])]
    for v in inputs[3:]:
        in_specs.append(spec(v, [1, heads, 0, head_dim], [2, heads, 8, head_dim], [4, heads, 32, head_dim]))
    side = {"format": "plugin", "dtype": dtype, "architecture": "Toy", "num_layers": num_layers,
            "num_kv_heads": heads, "head_dim": head_dim, "vocab_size": vocab, "inputs": in_specs,
            "outputs": [{k: s[k] for k in ("name", "dtype", "shape")} for s in
                        (spec(v, [], [], []) for v in outputs)],
            "plugin": {"name": "NVFP4Linear", "version": "1", "namespace": "", "domain": "trt.plugins"},
            "quantized_layers": 0, "excluded_layers": [], "source_checkpoint": "toy", "checkpoint_format": "none"}
    Path(str(path) + ".json").write_text(json.dumps(side, indent=1))
    return path


def make_plugin_stub_library(directory: Path, export_entry_point: bool = True) -> Path:
    """A shared library that does (or does not) export `getCreators`, to test the ELF check alone."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a test shared library")
    name = "getCreators" if export_entry_point else "somethingElse"
    src = directory / f"{name}.c"
    src.write_text(f"int {name}(void) {{ return 0; }}\n")
    lib = directory / f"lib{name}.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def fake_plan(directory: Path) -> Path:
    plan = directory / "model.plan"
    plan.write_bytes(b"ftrt" + bytes(range(256)) * 4)
    return plan


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / args[0]), *args[1:]], capture_output=True, text=True)


def parse_config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    return {"onnx": make_toy_export(d), "plugin": make_plugin_stub_library(d), "plan": fake_plan(d), "dir": d}


def onnx_io_shapes(path: Path):
    m = onnx.load(str(path))

    def desc(vs):
        return {v.name: (v.type.tensor_type.elem_type, [d.dim_value if d.HasField("dim_value") else -1
                                                       for d in v.type.tensor_type.shape.dim]) for v in vs}
    return desc(m.graph.input), desc(m.graph.output)


TRITON_OF_ONNX = {TensorProto.FLOAT: "TYPE_FP32", TensorProto.FLOAT16: "TYPE_FP16", TensorProto.INT64: "TYPE_INT64"}


def check_against_onnx(cfg, onnx_path: Path, batched: bool):
    from tritonclient.grpc import model_config_pb2

    ins, outs = onnx_io_shapes(onnx_path)
    for declared, graph in ((cfg.input, ins), (cfg.output, outs)):
        assert {t.name for t in declared} == set(graph)
        for t in declared:
            elem, dims = graph[t.name]
            assert model_config_pb2.DataType.Name(t.data_type) == TRITON_OF_ONNX[elem]
            assert list(t.dims) == (dims[1:] if batched else dims), t.name


def test_repository_matches_onnx_and_triton_proto(toy, tmp_path):
    repo = tmp_path / "repo"
    r = run_script("make_triton_repo.py", str(toy["plan"]), "--onnx", str(toy["onnx"]), "--plugin", str(toy["plugin"]),
                   "-o", str(repo), "--name", "toy", "--instances", "2")
    assert r.returncode == 0, r.stderr
    cfg = parse_config(repo / "toy" / "config.pbtxt")
    from tritonclient.grpc import model_config_pb2

    assert cfg.name == "toy" and cfg.platform == "tensorrt_plan"
    assert cfg.max_batch_size == 4  # the sidecar profile's max batch
    assert cfg.HasField("dynamic_batching")
    check_against_onnx(cfg, toy["onnx"], batched=True)
    (group,) = cfg.instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU and group.count == 2
    assert list(group.profile) == ["0"]
    assert (repo / "toy" / "1" / "model.plan").read_bytes() == toy["plan"].read_bytes()
    launch = (repo / "launch.sh").read_text()
    lib = str(toy["plugin"].resolve())
    assert f"--backend-config=tensorrt,plugins={lib}" in launch and f"LD_PRELOAD={lib} exec tritonserver" in launch
    assert f"--model-repository={repo.resolve()}" in launch
    assert "tritonserver" in (repo / "README.md").read_text()
    for text in (launch, (repo / "README.md").read_text()):  # what the library must register
        assert "registers NVFP4Linear (version 1), the graph's custom ops" in " ".join(text.replace("#", "").split())


def test_launch_script_runs_both_ways(toy, tmp_path):
    """launch.sh starts tritonserver (a stand-in on PATH here) with the plugin loaded either way,
    passing extra options through."""
    repo = tmp_path / "repo"
    r = run_script("make_triton_repo.py", str(toy["plan"]), "--onnx", str(toy["onnx"]), "--plugin", str(toy["plugin"]),
                   "-o", str(repo))
    assert r.returncode == 0, r.stderr
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "tritonserver"
    fake.write_text('#!/bin/sh\necho "LD_PRELOAD=${LD_PRELOAD:-}"\nfor a in "$@"; do echo "arg $a"; done\n')
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    env.pop("LD_PRELOAD", None)
    lib = str(toy["plugin"].resolve())
    for extra, preload in (([], ""), (["--ld-preload"], lib)):
        done = subprocess.run([str(repo / "launch.sh"), *extra, "--log-verbose=1"], capture_output=True, text=True,
                              env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == f"LD_PRELOAD={preload}"
        assert f"arg --model-repository={repo.resolve()}" in lines and lines[-1] == "arg --log-verbose=1"
        assert (f"arg --backend-config=tensorrt,plugins={lib}" in lines) == (not extra)


def test_unbatched_config_keeps_batch_dim_and_fp16(tmp_path):
    onnx_path = make_toy_export(tmp_path, dtype="float16", num_layers=1)
    side = json.loads(Path(str(onnx_path) + ".json").read_text())
    cfg_path = tmp_path / "config.pbtxt"
    cfg_path.write_text(model_config_text("m", side, max_batch_size=0))
    cfg = parse_config(cfg_path)
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    check_against_onnx(cfg, onnx_path, batched=False)


def test_batch_size_beyond_profile_or_unbatchable_graph_is_refused(toy, tmp_path):
    side = json.loads(Path(str(toy["onnx"]) + ".json").read_text())
    with pytest.raises(DeployError, match="exceeds the engine profile"):
        model_config_text("m", side, max_batch_size=8)
    side["outputs"][0]["shape"] = [1, "seq", 11]  # a graph whose logits are not batched
    with pytest.raises(DeployError, match="max_batch_size"):
        model_config_text("m", side, max_batch_size=2)
    assert "max_batch_size: 0" in model_config_text("m", side)  # the default falls back to no batching


@pytest.mark.parametrize("case", ["onnx_as_plan", "empty_plan", "missing_plugin", "plugin_without_entry",
                                  "missing_sidecar", "existing_output", "too_big_batch"])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(toy, tmp_path, case):
    plan, onnx_path, plugin = toy["plan"], toy["onnx"], toy["plugin"]
    out = tmp_path / "repo"
    extra = []
    if case == "onnx_as_plan":
        plan = onnx_path
    elif case == "empty_plan":
        plan = tmp_path / "empty.plan"
        plan.write_bytes(b"")
    elif case == "missing_plugin":
        plugin = tmp_path / "nope.so"
    elif case == "plugin_without_entry":
        plugin = make_plugin_stub_library(tmp_path, export_entry_point=False)
    elif case == "missing_sidecar":
        onnx_path = tmp_path / "copy.onnx"
        shutil.copy(toy["onnx"], onnx_path)
    elif case == "existing_output":
        out.mkdir()
    elif case == "too_big_batch":
        extra = ["--max-batch-size", "64"]
    r = run_script("make_triton_repo.py", str(plan), "--onnx", str(onnx_path), "--plugin", str(plugin), "-o", str(out), *extra)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    if case == "onnx_as_plan":
        assert "ONNX" in lines[0]
    if case == "existing_output":
        assert list(out.iterdir()) == []
    else:
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".repo")]  # no temp folder left


def test_checks_accept_the_real_plugin_library_when_built():
    lib = ROOT / "build" / "libnvfp4_trt_plugin.so"
    if not lib.is_file():
        pytest.skip("build/libnvfp4_trt_plugin.so not built (cmake -S . -B build && cmake --build build)")
    assert check_plugin_library(lib) == lib.resolve()


def test_plan_check_rejects_non_plans(toy, tmp_path):
    assert check_plan_file(toy["plan"]) == toy["plan"].resolve()
    junk = tmp_path / "junk.plan"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(DeployError, match="not a TensorRT plan"):
        check_plan_file(junk)


def test_repository_for_the_exported_example(tmp_path):
    """The same checks on a real export (scripts/export.py, float16) of the embedded example."""
    from plugins.cli import export as export_cli

    example = ROOT / "examples" / "tiny-llama-nvfp4"
    if not (example / "config.json").is_file():
        pytest.skip("examples/tiny-llama-nvfp4 is absent")
    onnx_path = tmp_path / "tiny.onnx"
    assert export_cli.main([str(example), str(onnx_path), "--quiet"]) == 0
    lib = make_plugin_stub_library(tmp_path)
    repo = tmp_path / "repo"
    r = run_script("make_triton_repo.py", str(fake_plan(tmp_path)), "--onnx", str(onnx_path), "--plugin", str(lib),
                   "-o", str(repo), "--name", "tiny")
    assert r.returncode == 0, r.stderr
    cfg = parse_config(repo / "tiny" / "config.pbtxt")
    side = json.loads(Path(str(onnx_path) + ".json").read_text())
    assert cfg.max_batch_size == min(s["max"][0] for s in side["inputs"])
    check_against_onnx(cfg, onnx_path, batched=True)
