"""scripts/verify.py: Polygraphy comparison of exported graphs with the torch reference.

The embedded example and the three producer fixtures are exported with scripts/export.py and
compared on CPU (ONNX Runtime + the project's custom-op library); a graph with a corrupted NVFP4
weight must fail. Exports are float32 (tight tolerances) plus one float16 case.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plugins.polygraphy_runners import TOLERANCES, error_stats, kv_cache_feeds  # noqa: E402

EXAMPLE = ROOT / "examples" / "tiny-llama-nvfp4"
PRODUCERS = ROOT / "tests" / "fixtures" / "producers"
ORT_LIB = ROOT / "build" / "libnvfp4_ort_ops.so"


_SCRIPTS = {}


def script(name: str):
    """scripts/<name> imported once, so each run skips the torch/Polygraphy import (CI has 2 cores)."""
    if name not in _SCRIPTS:
        spec = importlib.util.spec_from_file_location(f"script_{name[:-3]}", ROOT / "scripts" / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _SCRIPTS[name] = module
    return _SCRIPTS[name]


@pytest.fixture
def run(capsys):
    """run("verify.py", args...) -> (returncode, stdout, stderr) of the script's main(argv), in process."""
    def call(name: str, *args) -> SimpleNamespace:
        capsys.readouterr()
        code = script(name).main([str(a) for a in args])
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)
    return call


def need_ort_library():
    if not ORT_LIB.is_file() and not os.environ.get("NVFP4_ORT_LIB"):
        pytest.skip("build/libnvfp4_ort_ops.so not built (cmake -S . -B build && cmake --build build)")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """(checkpoint, format, dtype) -> exported ONNX path, each made once by scripts/export.py."""
    out = tmp_path_factory.mktemp("verify")
    cache = {}

    def export(model_dir: Path, fmt: str = "plugin", dtype: str = "float32") -> Path:
        key = (model_dir, fmt, dtype)
        if key not in cache:
            if not (model_dir / "config.json").is_file():
                pytest.skip(f"{model_dir} is absent")
            path = out / f"{model_dir.name}-{fmt}-{dtype}.onnx"
            code = script("export.py").main([str(model_dir), str(path), "--format", fmt, "--dtype", dtype, "--quiet"])
            assert code == 0, f"scripts/export.py {model_dir} failed"
            cache[key] = path
        return cache[key]

    return export


def assert_passed(r, runner: str = "onnxrt"):
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert f"Accuracy Summary | {runner}" in r.stdout and "Passed: 3/3 iterations" in r.stdout
    assert "verify: PASSED" in r.stdout


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_example_passes_against_onnxruntime(run, exports, tmp_path, dtype):
    need_ort_library()
    onnx_path = exports(EXAMPLE, dtype=dtype)
    report = tmp_path / "report.json"
    r = run("verify.py", onnx_path, "--model", EXAMPLE, "--runner", "onnxrt", "--report", report)
    assert_passed(r)
    data = json.loads(report.read_text())
    assert data["passed"] and data["dtype"] == dtype and data["runners"] == ["onnxrt-cpu"]
    outputs = {row["output"] for row in data["rows"]}
    assert outputs == {"logits"} | {f"present.{i}.{kv}" for i in range(2) for kv in ("key", "value")}
    assert len(data["rows"]) == 3 * len(outputs) and all(row["passed"] for row in data["rows"])
    if dtype == "float32":  # accumulation-order agreement, far inside the bound; same greedy tokens
        bound = TOLERANCES["float32"][0][1]
        assert max(row["stats"]["max_rel"] for row in data["rows"]) < bound / 10
        assert all(row["stats"]["top1"] == 1.0 for row in data["rows"] if row["output"] == "logits")


@pytest.mark.parametrize("producer", ["modelopt", "quark", "compressed-tensors"])
def test_producer_fixtures_pass(run, exports, producer):
    need_ort_library()
    model = PRODUCERS / producer
    r = run("verify.py", exports(model), "--model", model, "--runner", "onnxrt")
    assert_passed(r)


def corrupt_first_nvfp4_weight(src: Path, dst: Path) -> str:
    model = onnx.load(str(src))
    node = next(n for n in model.graph.node if n.op_type == "NVFP4Linear")
    init = next(i for i in model.graph.initializer if i.name == node.input[1])
    raw = bytearray(init.raw_data)
    for k in range(0, len(raw), 7):  # flip bits in every 7th byte of the packed E2M1 codes
        raw[k] ^= 0x5A
    init.raw_data = bytes(raw)
    onnx.save(model, str(dst))
    shutil.copy(str(src) + ".json", str(dst) + ".json")
    return init.name


def test_corrupted_weight_fails(run, exports, tmp_path):
    need_ort_library()
    bad = tmp_path / "bad.onnx"
    corrupt_first_nvfp4_weight(exports(EXAMPLE), bad)
    report = tmp_path / "bad.json"
    r = run("verify.py", bad, "--model", EXAMPLE, "--runner", "onnxrt", "--report", report)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr
    assert "verify: FAILED" in r.stdout
    data = json.loads(report.read_text())
    assert not data["passed"] and any(not row["passed"] for row in data["rows"] if row["output"] == "logits")


def test_qdq_graph_runs_on_onnx_reference(run, exports):
    model = PRODUCERS / "modelopt"
    r = run("verify.py", exports(model, fmt="qdq"), "--model", model, "--runner", "onnxrt")
    assert_passed(r, runner="onnx-reference")


def test_bad_inputs_exit_2(run, exports, tmp_path):
    onnx_path = exports(EXAMPLE)
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(onnx_path, lonely)
    r = run("verify.py", lonely, "--model", EXAMPLE)
    assert r.returncode == 2 and "sidecar" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("verify.py", onnx_path, "--model", EXAMPLE, "--engine", onnx_path)  # an ONNX is not a plan
    assert r.returncode == 2 and "not a TensorRT plan" in r.stderr and "ONNX" in r.stderr
    empty = tmp_path / "empty.plan"
    empty.write_bytes(b"")
    r = run("verify.py", onnx_path, "--model", EXAMPLE, "--engine", empty)
    assert r.returncode == 2 and "empty" in r.stderr


def test_checkpoint_that_does_not_match_the_graph_exits_2(run, exports, tmp_path):
    onnx_path = tmp_path / "g.onnx"
    shutil.copy(exports(EXAMPLE), onnx_path)
    side = json.loads(Path(str(exports(EXAMPLE)) + ".json").read_text())
    side["vocab_size"] += 1  # the graph claims another model than --model holds
    Path(str(onnx_path) + ".json").write_text(json.dumps(side))
    r = run("verify.py", onnx_path, "--model", EXAMPLE)
    assert r.returncode == 2 and "vocab_size" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="the full TensorRT builder is installed here")
def test_trt_runner_without_tensorrt_exits_2(run, exports):
    r = run("verify.py", exports(EXAMPLE), "--model", EXAMPLE, "--runner", "trt")
    assert r.returncode == 2 and "import tensorrt" in r.stderr


def test_data_loader_covers_empty_and_filled_cache_within_profile(exports):
    side = json.loads(Path(str(exports(EXAMPLE)) + ".json").read_text())
    feeds = kv_cache_feeds(side)
    specs = {s["name"]: s for s in side["inputs"]}
    pasts = []
    for feed in feeds:
        assert set(feed) == set(specs)
        for name, array in feed.items():
            spec = specs[name]
            assert array.dtype == np.dtype(spec["dtype"]) and array.ndim == len(spec["shape"])
            assert all(lo <= d <= hi for d, lo, hi in zip(array.shape, spec["min"], spec["max"])), name
        b, s = feed["input_ids"].shape
        past = feed["past_key_values.0.key"].shape[2]
        pasts.append(past)
        assert feed["attention_mask"].shape == (b, past + s)
        assert (feed["attention_mask"][:, past:] == 1).all()  # every query attends to itself
        assert feed["input_ids"].max() < side["vocab_size"]
        real = feed["attention_mask"].sum(1) - s  # positions continue after the real cached tokens
        assert (feed["position_ids"][:, 0] == real).all()
    assert 0 in pasts and max(pasts) > 0
    assert any((f["attention_mask"] == 0).any() for f in feeds)  # a padded row in the cache


def test_error_stats_scale_by_reference_rms():
    ref = np.array([3.0, -4.0, 0.0, 0.0], np.float32)
    s = error_stats(ref + np.array([0.5, 0.0, 0.0, 0.0], np.float32), ref)
    assert s["max_abs"] == 0.5 and s["ref_rms"] == 2.5 and s["max_rel"] == pytest.approx(0.2)
    assert s["median_abs"] == 0.0 and s["nonfinite"] == 0
    assert error_stats(np.array([np.nan, 1.0]), np.array([1.0, 1.0]))["nonfinite"] == 1
