"""Triton request building and greedy KV-cache generation, tested without a server.

No Triton server runs here (tritonserver is not on PyPI); a local ONNX Runtime session of a toy
graph with the export's I/O contract plays the server's part for the generation loop.
"""
from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import numpy_helper

from export.errors import DeployError
from plugins.triton import (
    build_infer_inputs,
    build_requested_outputs,
    decode_feeds,
    greedy_generate,
    prefill_feeds,
)
from tests.test_triton_repo import make_toy_export, run_script


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("client")
    path = make_toy_export(d, num_layers=2)
    return path, json.loads(Path(str(path) + ".json").read_text())


def raw_bytes(inp, module):
    if module is httpclient:
        return inp._get_binary_data()
    return inp._get_content()


@pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_prefill_request_names_shapes_dtypes(toy, module):
    _, side = toy
    feeds = prefill_feeds(np.array([[3, 1, 4], [1, 5, 9]]), side)
    inputs = build_infer_inputs(module, feeds, side)
    by_name = {i.name(): i for i in inputs}
    assert set(by_name) == {s["name"] for s in side["inputs"]}
    assert by_name["input_ids"].datatype() == "INT64" and by_name["input_ids"].shape() == [2, 3]
    assert by_name["position_ids"].shape() == [2, 3]
    assert raw_bytes(by_name["position_ids"], module) == np.array([[0, 1, 2], [0, 1, 2]], np.int64).tobytes()
    assert by_name["attention_mask"].shape() == [2, 3]
    kv = by_name["past_key_values.1.value"]
    assert kv.datatype() == "FP32" and kv.shape() == [2, side["num_kv_heads"], 0, side["head_dim"]]
    assert raw_bytes(by_name["input_ids"], module) == np.array([[3, 1, 4], [1, 5, 9]], np.int64).tobytes()
    outs = build_requested_outputs(module, side)
    assert [o.name() for o in outs] == [s["name"] for s in side["outputs"]]


def test_decode_request_feeds_presents_back(toy):
    _, side = toy
    prefill = prefill_feeds(np.array([7, 2]), side)
    heads, dim = side["num_kv_heads"], side["head_dim"]
    presents = {f"present.{i}.{kv}": np.full((1, heads, 2, dim), i, np.float32)
                for i in range(side["num_layers"]) for kv in ("key", "value")}
    step = decode_feeds(np.array([5]), {"logits": None, **presents}, prefill, side)
    inputs = {i.name(): i for i in build_infer_inputs(httpclient, step, side)}
    assert inputs["input_ids"].shape() == [1, 1] and inputs["position_ids"].shape() == [1, 1]
    assert raw_bytes(inputs["position_ids"], httpclient) == np.array([[2]], np.int64).tobytes()
    assert inputs["attention_mask"].shape() == [1, 3]
    assert inputs["past_key_values.1.key"].shape() == [1, heads, 2, dim]
    assert raw_bytes(inputs["past_key_values.1.key"], httpclient) == presents["present.1.key"].tobytes()


def test_bf16_inputs_use_ml_dtypes(toy):
    _, side = toy
    side = json.loads(json.dumps(side))
    for s in side["inputs"] + side["outputs"]:
        if s["dtype"] == "float32":
            s["dtype"] = "bfloat16"
    side["dtype"] = "bfloat16"
    feeds = prefill_feeds(np.array([1, 2]), side)
    assert feeds["past_key_values.0.key"].dtype == ml_dtypes.bfloat16
    by_name = {i.name(): i for i in build_infer_inputs(grpcclient, feeds, side)}
    assert by_name["past_key_values.0.key"].datatype() == "BF16"


def test_mismatched_requests_are_refused(toy):
    _, side = toy
    feeds = prefill_feeds(np.array([1, 2, 3]), side)
    with pytest.raises(DeployError, match="do not match"):
        build_infer_inputs(httpclient, {k: v for k, v in feeds.items() if k != "attention_mask"}, side)
    with pytest.raises(DeployError, match="expected int64"):
        build_infer_inputs(httpclient, {**feeds, "input_ids": feeds["input_ids"].astype(np.int32)}, side)
    with pytest.raises(DeployError, match="outside the engine profile"):
        build_infer_inputs(httpclient, prefill_feeds(np.zeros(40, np.int64), side), side)


def test_greedy_generation_with_kv_cache_against_local_runtime(toy):
    path, side = toy
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    seen = []

    def infer(feeds):
        # What the Triton server would receive: check the request builds, then run it locally.
        build_infer_inputs(grpcclient, feeds, side)
        seen.append({k: v.shape for k, v in feeds.items()})
        return dict(zip(names, sess.run(None, feeds)))

    prompt = np.array([[3, 1, 4]])
    new = greedy_generate(infer, prompt, side, max_new_tokens=4)
    # The toy's logits for a token t are row E[t], so greedy decoding follows t -> argmax E[t].
    table = numpy_helper.to_array(next(i for i in onnx.load(str(path)).graph.initializer if i.name == "E"))
    expected, t = [], 4
    for _ in range(4):
        t = int(table[t].argmax())
        expected.append(t)
    assert new.tolist() == [expected]
    heads, dim = side["num_kv_heads"], side["head_dim"]
    assert seen[0]["past_key_values.0.key"] == (1, heads, 0, dim) and seen[0]["input_ids"] == (1, 3)
    assert [s["past_key_values.1.value"][2] for s in seen] == [0, 3, 4, 5]
    assert [s["attention_mask"][1] for s in seen] == [3, 4, 5, 6]


def test_client_script_without_server_fails_cleanly(toy, tmp_path):
    path, _ = toy
    sidecar = str(path) + ".json"
    r = run_script("triton_client.py", "--url", "localhost:9", "--sidecar", sidecar, "--prompt-ids", "1,2")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = run_script("triton_client.py", "--sidecar", sidecar, "--prompt-ids", "1,99")
    assert r.returncode == 2 and "prompt ids" in r.stderr
    r = run_script("triton_client.py", "--sidecar", str(tmp_path / "none.json"), "--prompt-ids", "1")
    assert r.returncode == 2 and "sidecar" in r.stderr
