"""Verification (plugins.verify, the verify command and export --verify) on the embedded example and
the producer fixtures: every format and dtype passes; a graph whose weights or scales differ from
the checkpoint by one FP8 step, or a runtime that is off by more than the bound, fails and is named;
bad input exits 2. The real trained model is in test_verify_real_model.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import ml_dtypes
import numpy as np
import onnx
import pytest

from plugins.cli import verify as verify_cli
from plugins.tensorrt_registry import import_tensorrt
from plugins.verify import references, tolerance
from plugins.verify.graph import checked_nodes
from plugins.verify.layers import check_layers, random_ids, verify_layers

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tiny-llama-nvfp4"
PRODUCERS = ROOT / "tests" / "fixtures" / "producers"
FP8_STEP = 9.0 / 8.0  # one step of the FP8-E4M3 mantissa at 1.0


def need_ort_library():
    from plugins.library import find_ort_library

    try:
        return find_ort_library()
    except FileNotFoundError as e:
        pytest.skip(f"ORT custom-op library not built: {e}")


@pytest.fixture
def run(capsys):
    """run(args...) -> (returncode, stdout, stderr) of the verify command, in process."""
    def call(*args) -> SimpleNamespace:
        capsys.readouterr()
        code = verify_cli.main([str(a) for a in args])
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)
    return call


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """(checkpoint, format, dtype) -> exported ONNX path, each made once."""
    from export.onnx_export import export_model

    out = tmp_path_factory.mktemp("verify")
    cache = {}

    def export(model_dir: Path, fmt: str = "plugin", dtype: str = "float32") -> Path:
        key = (model_dir, fmt, dtype)
        if key not in cache:
            if not (model_dir / "config.json").is_file():
                pytest.skip(f"{model_dir} is absent")
            path = out / f"{model_dir.name}-{fmt}-{dtype}.onnx"
            export_model(model_dir, path, fmt=fmt, dtype=dtype, progress=False)
            cache[key] = path
        return cache[key]

    return export


# --- perturbing a graph by one FP8 step (also used by the real-model tests) ------------------------

def perturb(src: Path, dst: Path, node_name: str, what: str) -> None:
    """Copy the exported graph `src` to `dst` with one scale of layer `node_name` moved by one FP8
    step: "weight_scale" (its largest block scale, one FP8 code up), "weight_global_scale" (x 9/8)
    or "input_scale" (the activation global scale x 9/8, and G = 1/it with it)."""
    model = onnx.load(str(src))
    inits = {i.name: i for i in model.graph.initializer}

    def edit(name, fn):
        array = onnx.numpy_helper.to_array(inits[name]) if inits[name].data_type not in (
            onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT4E2M1) else None
        if array is None:  # FP8: the raw bytes
            raw = np.frombuffer(inits[name].raw_data, dtype=np.uint8).copy()
            fn(raw)
            inits[name].raw_data = raw.tobytes()
        else:
            array = array.copy()
            fn(array)
            inits[name].CopyFrom(onnx.numpy_helper.from_array(array, name))

    if what == "weight_scale":
        def step(raw):
            codes = raw.view(np.uint8).reshape(-1)
            i = int(np.argmax(codes.view(ml_dtypes.float8_e4m3fn).astype(np.float32)))
            code = int(codes[i])
            codes[i] = code + 1 if (code & 0x7F) < 0x7E else code - 1
        edit(f"{node_name}.weight_scale", step)
    elif what == "weight_global_scale":
        edit(f"{node_name}.weight_global_scale", lambda a: a.__imul__(np.float32(FP8_STEP)))
    elif what == "input_scale":
        node = next((n for n in model.graph.node if n.name == node_name), None)
        if node is not None:  # plugin graph: the node's attributes
            attrs = {a.name: a for a in node.attribute}
            attrs["input_global_scale"].f = float(np.float32(attrs["input_global_scale"].f * FP8_STEP))
            attrs["input_global_scale_inv"].f = float(np.float32(1.0) / np.float32(attrs["input_global_scale"].f))
        else:  # qdq graph: the scalar initializer of TRT_FP4DynamicQuantize
            edit(f"{node_name}.input_global_scale", lambda a: a.__imul__(np.float32(FP8_STEP)))
    else:
        raise ValueError(what)
    onnx.save(model, str(dst))
    shutil.copy(str(src) + ".json", str(dst) + ".json")


# --- passing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, dtype", [("plugin", "float32"), ("plugin", "float16"), ("plugin", "bfloat16"),
                                        ("qdq", "float32"), ("qdq", "float16"), ("qdq", "bfloat16")])
def test_example_passes(run, exports, tmp_path, fmt, dtype):
    if fmt == "plugin":
        need_ort_library()
    report = tmp_path / "report.json"
    r = run(exports(EXAMPLE, fmt, dtype), "--model", EXAMPLE, "--runner", "cpu", "--report", report)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "verify: PASSED" in r.stdout and "14 nodes x 3 runs, 0 failed" in r.stdout
    data = json.loads(report.read_text())
    assert data["passed"] and data["dtype"] == dtype and data["format"] == fmt and data["accuracy"] is None
    (layers,) = data["layers"]
    assert len(layers["results"]) == 14 * 3 and all(row["ok"] for row in layers["results"])
    assert {row["case"] for row in layers["results"]} == {"prefill", "decode", "full"}
    if fmt == "plugin":  # the CPU op computes the contract's formula exactly
        assert max(row["max_abs"] for row in layers["results"]) == 0.0
    assert all(k["ok"] for k in layers["kv_cache"]) and len(layers["kv_cache"]) == 14


@pytest.mark.parametrize("producer", ["modelopt", "quark", "compressed-tensors"])
def test_producer_fixtures_pass(run, exports, producer):
    need_ort_library()
    model = PRODUCERS / producer
    r = run(exports(model), "--model", model, "--runner", "cpu")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def test_export_verify_uses_the_same_check(tmp_path, capsys):
    need_ort_library()
    assert verify_cli.check_export(*_exported(tmp_path), out=print)
    text = capsys.readouterr().out
    assert "layer by layer" in text and "verify: PASSED" in text


def test_export_verify_runtime_failure_is_one_line(tmp_path):
    """A graph the runtime refuses (here a node with group_size 32) ends --verify with one line
    (an ExportError: exit 2 through the command's handler)."""
    need_ort_library()
    path, model_dir = _exported(tmp_path)
    model = onnx.load(str(path))
    node = next(n for n in model.graph.node if n.op_type == "NVFP4Linear")
    next(a for a in node.attribute if a.name == "group_size").i = 32
    onnx.save(model, str(path))
    from export.errors import ExportError

    with pytest.raises(ExportError, match=r"^--verify: running .* failed: ") as failure:
        verify_cli.check_export(path, model_dir)
    assert "\n" not in str(failure.value)


def _exported(tmp_path):
    from export.onnx_export import export_model

    out = tmp_path / "m.onnx"
    export_model(EXAMPLE, out, dtype="bfloat16", progress=False)
    return out, EXAMPLE


# --- failing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["plugin", "qdq"])
@pytest.mark.parametrize("what", ["weight_scale", "weight_global_scale", "input_scale"])
def test_one_fp8_step_fails_and_names_the_layer(run, exports, tmp_path, fmt, what):
    if fmt == "plugin":
        need_ort_library()
    layer = "model.layers.1.self_attn.o_proj"
    bad = tmp_path / "bad.onnx"
    perturb(exports(EXAMPLE, fmt, "float16"), bad, layer, what)
    report = tmp_path / "bad.json"
    r = run(bad, "--model", EXAMPLE, "--runner", "cpu", "--report", report)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr
    assert "verify: FAILED" in r.stdout and f"1 failed: {layer}" in r.stdout
    rows = json.loads(report.read_text())["layers"][0]["results"]
    assert {row["node"] for row in rows if not row["ok"]} == {layer}


def test_runtime_outside_the_bound_fails_within_passes(exports):
    """Without a checkpoint the reference takes the graph's weights: a runtime whose output of one
    node is off by 2 bounds fails there, one off by half a bound passes."""
    need_ort_library()
    from plugins.verify.runtimes import cpu_runtime

    path = exports(EXAMPLE)
    side = json.loads(Path(str(path) + ".json").read_text())
    target = "model.layers.0.mlp.up_proj"
    output = next(cn.output for cn in checked_nodes(__import__("onnx_ir").load(str(path))) if cn.name == target)

    def shifted(factor):
        def make(p, extra):
            inner = cpu_runtime(side)(p, extra)

            class Shifted:
                name = "shifted"

                def run(self, feeds):
                    got = inner.run(feeds)
                    y = got[output]
                    ulp = tolerance.ulp(y, "float32")
                    # the bound at this element is at least one ulp of y
                    got[output] = (y + factor * ulp * (np.arange(y.size).reshape(y.shape) == 0)).astype(np.float32)
                    return got
            return Shifted()
        return make

    ids = random_ids(side)
    assert check_layers(path, side, shifted(0.5), ids).ok
    bad = check_layers(path, side, shifted(3e6), ids)
    assert not bad.ok and {r.node for r in bad.results if not r.ok} == {target}


def test_cache_read_wrong_fails_at_the_first_layer(exports):
    """A runtime whose decode step sees its cache shifted by one position (a classic off-by-one)
    differs from the full pass at the first attention: the KV-cache comparison fails there."""
    need_ort_library()
    from plugins.verify.runtimes import cpu_runtime

    path = exports(EXAMPLE)
    side = json.loads(Path(str(path) + ".json").read_text())

    def make(p, extra):
        inner = cpu_runtime(side)(p, extra)

        class StaleCache:
            name = "stale-cache"

            def run(self, feeds):
                if feeds["input_ids"].shape[1] == 1:  # decode: drop the newest cached token, repeat the oldest
                    feeds = {k: (np.concatenate([v[:, :, :1], v[:, :, :-1]], axis=2) if k.startswith("past_") else v)
                             for k, v in feeds.items()}
                return inner.run(feeds)
        return StaleCache()

    report = check_layers(path, side, make, random_ids(side, tokens=9))
    assert all(r.ok for r in report.results)  # every node still computes its formula
    bad = [k["node"] for k in report.kv_cache if not k["ok"]]
    assert not report.ok and bad == ["model.layers.0.self_attn.o_proj"], report.table()


# --- pieces --------------------------------------------------------------------------------------

def test_bfloat16_emulation_equals_the_native_kernel():
    """The ORT op's bfloat16 kernel and the float32 emulation of the same one-node graph agree bit
    for bit (the contract computes in float32 and rounds once)."""
    need_ort_library()
    import onnx_ir as ir
    import torch

    from plugins.verify.graph import emulate_16bit_in_float32
    from plugins.ort import make_session
    from tests.test_ort_op import activation, build_model, make_layer

    layer = make_layer(48, 64, bias=True, dtype=torch.bfloat16)
    native = build_model(layer, torch.bfloat16)
    model = ir.from_proto(onnx.load_from_string(native))
    emulate_16bit_in_float32(model, "bfloat16")
    emulated = ir.to_proto(model).SerializeToString()
    x = activation((5, 64), torch.bfloat16, scale=3.0).float().numpy()
    (a,) = make_session(native).run(None, {"x": x})
    (b,) = make_session(emulated).run(None, {"x": x})
    assert np.array_equal(a, b)


def test_registry_takes_another_op_with_one_line():
    """A custom-domain op registered with one line is checked, with the default bound."""
    from onnx import TensorProto, helper

    node = helper.make_node("Twice", ["x"], ["y"], domain="test.ops", name="twice")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    import onnx_ir as ir

    references.REFERENCES["Twice"] = lambda node, inputs: inputs[0] * 2
    try:
        (cn,) = checked_nodes(ir.from_proto(helper.make_model(graph)))
        checked = references.check(cn.node, [np.array([1.0, -3.0], np.float32)])
        assert np.array_equal(checked.output, [2.0, -6.0]) and np.all(checked.bound > 0)
    finally:
        del references.REFERENCES["Twice"]


def test_qdq_rewrite_leaves_what_the_check_needs(exports):
    import onnx_ir as ir

    nodes = checked_nodes(ir.load(str(exports(EXAMPLE, "qdq", "float16"))))
    assert len(nodes) == 14 and {n.node.op_type for n in nodes} == {references.QDQ_LINEAR}
    assert nodes[0].name == "model.layers.0.self_attn.q_proj" and nodes[0].output.endswith("/matmul_out0")


def test_reference_runtime_takes_ops_for_plugin_nodes(exports):
    """onnx.reference runs a plugin graph when given an op for its nodes (how a graph whose op the
    ORT library lacks can still be run on CPU)."""
    from onnx.reference.op_run import OpRun

    from export.checkpoint import open_checkpoint
    from export.qdq import reference_ops
    from plugins.verify.runtimes import ReferenceRuntime

    class NVFP4Linear(OpRun):
        op_domain = "trt.plugins"

        def _run(self, *inputs, **_attributes):
            return (references.nvfp4_linear(self.onnx_node, list(inputs)).output,)

    path = exports(EXAMPLE)
    side = json.loads(Path(str(path) + ".json").read_text())
    def make(graph, extra):
        return ReferenceRuntime(graph, extra, "float32", ops=[NVFP4Linear, *reference_ops()])

    report = check_layers(path, side, make, random_ids(side, tokens=9), open_checkpoint(EXAMPLE))
    assert report.ok and report.runtime == "onnx-reference", report.table()


def test_accuracy_metrics():
    from plugins.verify.accuracy import Scores, _log_softmax
    from plugins.verify.tolerance import model_thresholds

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7))
    a, b = Scores("a", _log_softmax(logits)), Scores("b", _log_softmax(logits + rng.normal(size=logits.shape)))
    targets = rng.integers(0, 7, size=(2, 5))
    uniform = Scores("u", _log_softmax(np.zeros((2, 5, 7))))
    assert uniform.perplexity(targets) == pytest.approx(7.0)
    assert a.kl_from(a) == 0.0 and a.top1_agreement(a) == 1.0
    assert b.kl_from(a) > 0 and 0.0 <= b.top1_agreement(a) <= 1.0
    assert np.allclose(a.nll(targets), -np.take_along_axis(a.logp, targets[..., None], -1)[..., 0])
    t = model_thresholds({"kl": 0.1, "top1_disagreement": 0.0, "nll_shift": 0.01})
    assert t == {"kl": pytest.approx(0.4), "top1_disagreement": 0.02, "nll_shift": pytest.approx(0.04)}


def test_ulp():
    assert tolerance.ulp(np.array([1.0]), "bfloat16")[0] == 2.0 ** -7
    assert tolerance.ulp(np.array([1.5]), "float16")[0] == 2.0 ** -10
    assert tolerance.ulp(np.array([3.0]), "float32")[0] == 2.0 ** -22
    assert tolerance.ulp(np.array([0.0]), "float32")[0] == 2.0 ** -149


# --- bad input -----------------------------------------------------------------------------------

def test_bad_inputs_exit_2(run, exports, tmp_path):
    onnx_path = exports(EXAMPLE)
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(onnx_path, lonely)
    r = run(lonely, "--model", EXAMPLE)
    assert r.returncode == 2 and "sidecar" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run(onnx_path, "--model", EXAMPLE, "--engine", onnx_path)  # an ONNX is not a plan
    assert r.returncode == 2 and "not a TensorRT plan" in r.stderr and "ONNX" in r.stderr
    empty = tmp_path / "empty.plan"
    empty.write_bytes(b"")
    r = run(onnx_path, "--model", EXAMPLE, "--engine", empty)
    assert r.returncode == 2 and "empty" in r.stderr
    r = run(onnx_path, "--model", EXAMPLE, "--text", ROOT / "README.md")
    assert r.returncode == 2 and "no tokenizer" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_checkpoint_that_does_not_match_the_graph_exits_2(run, exports, tmp_path, make_tiny_checkpoint):
    onnx_path = tmp_path / "g.onnx"
    shutil.copy(exports(EXAMPLE), onnx_path)
    side = json.loads(Path(str(exports(EXAMPLE)) + ".json").read_text())
    side["vocab_size"] += 1  # the graph claims another model than --model holds
    Path(str(onnx_path) + ".json").write_text(json.dumps(side))
    r = run(onnx_path, "--model", EXAMPLE)
    assert r.returncode == 2 and "vocab_size" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # Same shapes, other quantized layers: the check names the first layer without a node.
    need_ort_library()
    other = make_tiny_checkpoint("modelopt", exclude=("lm_head", "model.layers.0.mlp.down_proj"))
    with pytest.raises(ValueError, match="is not an NVFP4 layer of the checkpoint"):
        verify_layers(exports(EXAMPLE), other)


@pytest.mark.skipif(import_tensorrt("full") is not None,
                    reason="the full TensorRT builder is installed here")
def test_trt_runner_without_tensorrt_exits_2(run, exports):
    r = run(exports(EXAMPLE), "--model", EXAMPLE, "--runner", "trt")
    assert r.returncode == 2 and "import tensorrt" in r.stderr
