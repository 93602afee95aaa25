"""scripts/build_engine.py: trtexec command lines, input checks, and the real build where TensorRT is installed."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from export.errors import DeployError
from export.sidecar import plugin_entry
from plugins.tensorrt_build import check_registered_ops, elf_dynamic_symbols
from plugins.tensorrt_registry import import_tensorrt
from tests.test_triton_repo import make_plugin_stub_library, make_toy_export, run_script

ROOT = Path(__file__).resolve().parents[1]
HAVE_TENSORRT = import_tensorrt("full") is not None


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("build")
    return {"onnx": make_toy_export(d, num_layers=1), "plugin": make_plugin_stub_library(d), "dir": d}


def parse_shapes(flag_value: str) -> dict[str, list[int]]:
    out = {}
    for item in flag_value.split(","):
        name, dims = item.rsplit(":", 1)
        out[name] = [int(d) for d in dims.split("x")]
    return out


def test_print_trtexec_has_both_plugin_styles_and_sidecar_profile(toy):
    plan = toy["dir"] / "m.plan"
    r = run_script("build_engine.py", str(toy["onnx"]), "--plugin", str(toy["plugin"]), "-o", str(plan), "--print-trtexec")
    assert r.returncode == 0, r.stderr
    commands = [shlex.split(line) for line in r.stdout.splitlines() if line.startswith("trtexec")]
    assert len(commands) == 2
    side = json.loads(Path(str(toy["onnx"]) + ".json").read_text())
    lib = str(toy["plugin"].resolve())
    styles = set()
    for argv in commands:
        flags = dict(a[2:].split("=", 1) for a in argv[1:])
        assert flags["onnx"] == str(toy["onnx"].resolve()) and flags["saveEngine"] == str(plan.resolve())
        styles |= {k for k in ("dynamicPlugins", "staticPlugins") if flags.get(k) == lib}
        for key, which in (("minShapes", "min"), ("optShapes", "opt"), ("maxShapes", "max")):
            assert parse_shapes(flags[key]) == {s["name"]: s[which] for s in side["inputs"]}
        assert not {"fp16", "bf16", "int8", "best"} & set(flags)  # TensorRT 11 trtexec is strongly typed
    assert styles == {"dynamicPlugins", "staticPlugins"}
    # The toy sidecar predates plugin.ops: its one op is the top-level identity.
    assert "# the graph's custom ops, which the plugin library must register: NVFP4Linear (version 1)" in r.stdout
    assert not plan.exists()


@pytest.mark.skipif(HAVE_TENSORRT, reason="the full TensorRT builder is installed here")
def test_build_without_tensorrt_builder_says_so_and_exits_2(toy):
    plan = toy["dir"] / "none.plan"
    r = run_script("build_engine.py", str(toy["onnx"]), "--plugin", str(toy["plugin"]), "-o", str(plan))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "import tensorrt" in r.stderr
    assert not plan.exists()


def test_bad_inputs_exit_2(toy, tmp_path):
    no_entry = make_plugin_stub_library(tmp_path, export_entry_point=False)
    r = run_script("build_engine.py", str(toy["onnx"]), "--plugin", str(no_entry), "--print-trtexec")
    assert r.returncode == 2 and "getCreators" in r.stderr
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(toy["onnx"].read_bytes())
    r = run_script("build_engine.py", str(lonely), "--plugin", str(toy["plugin"]), "--print-trtexec")
    assert r.returncode == 2 and "sidecar" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    side = json.loads(Path(str(toy["onnx"]) + ".json").read_text())
    side["outputs"][0]["dtype"] = "float16"  # a sidecar that disagrees with the graph
    Path(str(lonely) + ".json").write_text(json.dumps(side))
    r = run_script("build_engine.py", str(lonely), "--plugin", str(toy["plugin"]), "--print-trtexec")
    assert r.returncode == 2 and "output 'logits' is float16" in r.stderr and "but the ONNX graph has" in r.stderr


def test_registered_ops_are_checked_in_the_plugin_registry(lean_plugin_registry):
    """What build_engine (and the TensorRT verify runtime) check once the library is loaded: a
    creator for every op of the sidecar's plugin.ops. Here in the lean runtime's registry."""
    trt, lib = lean_plugin_registry
    side = {"plugin": plugin_entry({"NVFP4Linear", "NVFP4MoE"})}
    check_registered_ops(trt, lib, side)
    side["plugin"]["ops"][1]["version"] = "2"
    with pytest.raises(DeployError, match=r"registers no creator for NVFP4MoE \(version 2\), which the graph uses"):
        check_registered_ops(trt, lib, side)
    check_registered_ops(trt, lib, {"plugin": None})  # a qdq graph needs nothing


def test_elf_symbol_reader(toy, tmp_path):
    assert "getCreators" in elf_dynamic_symbols(toy["plugin"])
    not_elf = tmp_path / "x.so"
    not_elf.write_bytes(b"hello")
    with pytest.raises(DeployError, match="not an ELF"):
        elf_dynamic_symbols(not_elf)


@pytest.mark.skipif(not HAVE_TENSORRT, reason="needs the full TensorRT builder (`import tensorrt`) and a GPU; "
                                               "only the lean runtime installs from PyPI here")
def test_real_build_runs_and_matches_torch_reference(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("TensorRT is installed but no CUDA GPU is visible")
    plugin = ROOT / "build" / "libnvfp4_trt_plugin.so"
    example = ROOT / "examples" / "tiny-llama-nvfp4"
    if not plugin.is_file() or not (example / "config.json").is_file():
        pytest.skip("needs build/libnvfp4_trt_plugin.so and examples/tiny-llama-nvfp4")
    onnx_path = tmp_path / "tiny.onnx"
    r = run_script("export.py", str(example), str(onnx_path), "--dtype", "float32")
    assert r.returncode == 0, r.stderr
    plan = tmp_path / "tiny.plan"
    r = run_script("build_engine.py", str(onnx_path), "--plugin", str(plugin), "-o", str(plan))
    assert r.returncode == 0, r.stderr
    # One engine run per data-loader case, compared with the exact torch reference.
    r = run_script("verify.py", str(onnx_path), "--model", str(example), "--engine", str(plan), "--runner", "trt",
                   "--plugin", str(plugin))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASSED" in r.stdout


def test_print_trtexec_needs_no_built_library(toy, tmp_path, monkeypatch, capsys):
    """On a fresh machine (nothing built yet) the command lines are printed with the library's
    future path; only an existing file is checked."""
    from plugins.cli import build_engine as build_engine_cli

    future = tmp_path / "build" / "libnvfp4_trt_plugin.so"
    monkeypatch.setenv("NVFP4_PLUGIN_LIB", str(future))
    assert build_engine_cli.main([str(toy["onnx"]), "--print-trtexec"]) == 0
    out, err = capsys.readouterr()
    assert f"--dynamicPlugins={future}" in out and f"--staticPlugins={future}" in out
    assert "not built yet" in err
