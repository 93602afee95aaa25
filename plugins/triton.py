"""Triton Inference Server glue: model configuration, repository layout, request building.

The config is written as protobuf text (`config.pbtxt`) for Triton's TensorRT backend
(`platform: "tensorrt_plan"`). With `max_batch_size > 0` Triton expects the first dimension of
every engine input and output to be the batch dimension and leaves it out of `dims`
(triton-inference-server/tensorrt_backend, src/tensorrt_utils.cc). The tests parse what we write
with Triton's own `model_config.proto` (shipped in tritonclient).

Request building works with either `tritonclient.http` or `tritonclient.grpc` (same InferInput /
InferRequestedOutput API) and needs no server.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np

from export.dtypes import DTYPES, numpy_dtype
from export.errors import DeployError
from export.sidecar import describe_ops, plugin_ops
from export.outputs import Staging, check_outputs
from plugins.tensorrt_build import check_plan_file, check_plugin_library

BATCH_DIM = "batch"


def triton_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise DeployError(f"dtype {dtype!r} has no Triton equivalent (expected one of {sorted(DTYPES)})")
    return DTYPES[dtype].triton


def batchable(side: dict) -> bool:
    """Triton can batch only if every input and output has the dynamic batch dim first."""
    specs = side["inputs"] + side["outputs"]
    return all(len(s["shape"]) > 0 and s["shape"][0] == BATCH_DIM for s in specs)


def profile_max_batch(side: dict) -> int:
    """Largest batch every input's optimization profile accepts."""
    return min(s["max"][0] for s in side["inputs"])


def _dims(shape: list, drop_batch: bool) -> list[int]:
    dims = [d if isinstance(d, int) else -1 for d in shape]
    return dims[1:] if drop_batch else dims


def model_config_text(name: str, side: dict, *, max_batch_size: int | None = None, instances: int = 1,
                      dynamic_batching: bool = True) -> str:
    """config.pbtxt for the engine built from an exported ONNX described by its sidecar."""
    can_batch = batchable(side)
    if max_batch_size is None:
        max_batch_size = profile_max_batch(side) if can_batch else 0
    if max_batch_size < 0:
        raise DeployError(f"--max-batch-size must be >= 0, got {max_batch_size}")
    if max_batch_size > 0 and not can_batch:
        raise DeployError(f"model {name!r}: max_batch_size {max_batch_size} needs every input/output to start with "
                          f"the dynamic '{BATCH_DIM}' dim; use --max-batch-size 0")
    if max_batch_size > profile_max_batch(side):
        raise DeployError(f"model {name!r}: max_batch_size {max_batch_size} exceeds the engine profile's max batch "
                          f"{profile_max_batch(side)} (sidecar 'max')")
    if instances < 1:
        raise DeployError(f"--instances must be >= 1, got {instances}")
    drop = max_batch_size > 0

    def tensor_block(specs):
        items = []
        for s in specs:
            dims = ", ".join(str(d) for d in _dims(s["shape"], drop))
            items.append(f'  {{\n    name: "{s["name"]}"\n    data_type: TYPE_{triton_dtype(s["dtype"])}\n    dims: [ {dims} ]\n  }}')
        return "[\n" + ",\n".join(items) + "\n]"

    lines = [
        f'name: "{name}"',
        'platform: "tensorrt_plan"',
        f"max_batch_size: {max_batch_size}",
        f"input {tensor_block(side['inputs'])}",
        f"output {tensor_block(side['outputs'])}",
    ]
    if drop and dynamic_batching:
        # Triton only batches requests whose non-batch shapes agree, so prefill and decode
        # requests with different cache lengths are never mixed.
        lines.append("dynamic_batching { }")
    # The engine has one optimization profile (index 0), built from the sidecar's min/opt/max.
    lines.append(f'instance_group [\n  {{\n    count: {instances}\n    kind: KIND_GPU\n    profile: [ "0" ]\n  }}\n]')
    return "\n".join(lines) + "\n"


def launch_commands(repository: Path, plugin: Path, *, exec_prefix: str = "") -> dict[str, str]:
    """The two tritonserver command lines that load the plugin (shell-quoted). `exec_prefix="exec "`
    gives the forms a script ends with."""
    repo, lib = shlex.quote(str(repository.resolve())), shlex.quote(str(plugin.resolve()))
    server = f"{exec_prefix}tritonserver --model-repository={repo}"
    return {
        "backend_config": f"{server} --backend-config=tensorrt,plugins={lib}",
        # The assignment comes first: `LD_PRELOAD=... exec tritonserver` exports it to the program
        # exec replaces the shell with (`exec LD_PRELOAD=...` would look for a program of that name).
        "ld_preload": f"LD_PRELOAD={lib} {server}",
    }


def write_repository(plan: str | os.PathLike, side: dict, plugin: str | os.PathLike, out_dir: str | os.PathLike, *,
                     name: str = "nvfp4_llm", max_batch_size: int | None = None, instances: int = 1,
                     dynamic_batching: bool = True, inputs: tuple = (), force: bool = False) -> Path:
    """Write `out_dir/{name}/config.pbtxt`, `out_dir/{name}/1/model.plan`, `out_dir/launch.sh`, `out_dir/README.md`.

    The repository appears whole or not at all (export/outputs.py). An existing `out_dir` is
    replaced only with `force`; never when it is, holds or lies inside one of `inputs` (the
    plan, ONNX, sidecar and plugin are always among them).
    """
    plan = check_plan_file(plan)
    plugin = check_plugin_library(plugin)
    out_dir = Path(out_dir)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", name):
        raise DeployError(f"model name {name!r}: expected up to 128 letters, digits, '_', '.', '-' (it names a folder)")
    config = model_config_text(name, side, max_batch_size=max_batch_size, instances=instances,
                               dynamic_batching=dynamic_batching)
    check_outputs([out_dir], inputs=[plan, plugin, *inputs], force=force, directory=True)
    with Staging([out_dir], directory=True) as staging:
        tmp = staging.path()
        (tmp / name / "1").mkdir(parents=True)
        (tmp / name / "config.pbtxt").write_text(config)
        shutil.copyfile(plan, tmp / name / "1" / "model.plan")
        cmds = launch_commands(out_dir, plugin)
        (tmp / "launch.sh").write_text(_launch_script(launch_commands(out_dir, plugin, exec_prefix="exec "), side))
        (tmp / "launch.sh").chmod(0o755)
        (tmp / "README.md").write_text(_readme(name, cmds, side))
        staging.publish()
    return out_dir


def _required_ops(side: dict) -> str:
    ops = plugin_ops(side)
    return f"registers {describe_ops(ops)}, the graph's custom ops" if ops else "is unused by this qdq graph"


def _launch_script(cmds: dict[str, str], side: dict) -> str:
    return f"""#!/bin/sh
# Start Triton with the project's TensorRT plugin library loaded; it {_required_ops(side)}.
# The TensorRT backend only dlopen()s the library, whose static initializer registers the plugin
# creators. Build the plugin against the TensorRT version inside the Triton container.
#   ./launch.sh [--ld-preload] [more tritonserver options]
set -e
if [ "${{1:-}}" = "--ld-preload" ]; then
  shift
  {cmds['ld_preload']} "$@"
fi
{cmds['backend_config']} "$@"
"""


def _readme(name: str, cmds: dict[str, str], side: dict) -> str:
    ios = "\n".join(f"- `{s['name']}` {s['dtype']} {s['shape']}" for s in side["inputs"] + side["outputs"])
    return f"""# Triton model repository for `{name}`

Generated by `scripts/make_triton_repo.py`. The engine (`{name}/1/model.plan`) must run on the same
TensorRT version and GPU architecture it was built with, and the plugin library must be loaded (it
{_required_ops(side)}).

Start the server (either form):

```
{cmds['backend_config']}
{cmds['ld_preload']}
```

Then run greedy generation: `python scripts/triton_client.py --url localhost:8000 --model {name} --sidecar OUT.onnx.json --prompt-ids 1,2,3`.

Tensors (batch first; with max_batch_size > 0 the batch dim is not listed in config.pbtxt):
{ios}
"""


# --------------------------------------------------------------------------------------------
# Requests (no server needed to build them)
# --------------------------------------------------------------------------------------------


def build_infer_inputs(client_module, feeds: dict[str, np.ndarray], side: dict) -> list:
    """InferInput objects for `feeds`, checked against the sidecar's inputs (names, dtypes, ranks)."""
    expected = {s["name"]: s for s in side["inputs"]}
    if set(feeds) != set(expected):
        raise DeployError(f"request inputs {sorted(feeds)} do not match the model's {sorted(expected)}")
    inputs = []
    for name, spec in expected.items():
        array = np.ascontiguousarray(feeds[name])
        if array.dtype != numpy_dtype(spec["dtype"]) or array.ndim != len(spec["shape"]):
            raise DeployError(f"request input {name!r}: got {array.dtype}{list(array.shape)}, "
                              f"expected {spec['dtype']} of rank {len(spec['shape'])}")
        for dim, (lo, hi) in enumerate(zip(spec["min"], spec["max"])):
            if not lo <= array.shape[dim] <= hi:
                raise DeployError(f"request input {name!r}: dim {dim} = {array.shape[dim]} is outside the engine "
                                  f"profile [{lo}, {hi}]")
        inp = client_module.InferInput(name, list(array.shape), triton_dtype(spec["dtype"]))
        inp.set_data_from_numpy(array)
        inputs.append(inp)
    return inputs


def build_requested_outputs(client_module, side: dict) -> list:
    return [client_module.InferRequestedOutput(s["name"]) for s in side["outputs"]]


def prefill_feeds(prompt_ids: np.ndarray, side: dict) -> dict[str, np.ndarray]:
    """Inputs of the first step: the whole prompt, an empty KV cache (past_seq = 0)."""
    ids = np.asarray(prompt_ids, dtype=np.int64)
    if ids.ndim == 1:
        ids = ids[None, :]
    batch, seq = ids.shape
    empty = {i: np.zeros((batch, side["num_kv_heads"], 0, side["head_dim"]), dtype=numpy_dtype(side["dtype"]))
             for i in range(side["num_layers"])}
    feeds = {
        "input_ids": ids,
        "position_ids": np.broadcast_to(np.arange(seq, dtype=np.int64), (batch, seq)).copy(),
        "attention_mask": np.ones((batch, seq), dtype=np.int64),
    }
    for i in range(side["num_layers"]):
        feeds[f"past_key_values.{i}.key"] = empty[i]
        feeds[f"past_key_values.{i}.value"] = empty[i]
    return feeds


def decode_feeds(next_ids: np.ndarray, outputs: dict[str, np.ndarray], previous: dict[str, np.ndarray],
                 side: dict) -> dict[str, np.ndarray]:
    """Inputs of a decode step: one new token per row, the previous step's present.* as the cache."""
    ids = np.asarray(next_ids, dtype=np.int64).reshape(-1, 1)
    past_len = outputs["present.0.key"].shape[2]
    mask = np.concatenate([previous["attention_mask"], np.ones((ids.shape[0], 1), dtype=np.int64)], axis=1)
    feeds = {
        "input_ids": ids,
        "position_ids": np.full((ids.shape[0], 1), past_len, dtype=np.int64),
        "attention_mask": mask,
    }
    for i in range(side["num_layers"]):
        for kv in ("key", "value"):
            feeds[f"past_key_values.{i}.{kv}"] = outputs[f"present.{i}.{kv}"]
    return feeds


def greedy_generate(infer, prompt_ids: np.ndarray, side: dict, max_new_tokens: int) -> np.ndarray:
    """Greedy decoding with the KV-cache graph.

    `infer(feeds) -> {output name: array}` performs one request (a Triton client call in
    scripts/triton_client.py, or any local runner in tests). Returns the generated ids [batch, new].
    """
    feeds = prefill_feeds(prompt_ids, side)
    generated = []
    for _ in range(max_new_tokens):
        outputs = infer(feeds)
        next_ids = np.asarray(outputs["logits"][:, -1, :], dtype=np.float32).argmax(axis=-1)
        generated.append(next_ids)
        feeds = decode_feeds(next_ids, outputs, feeds, side)
    return np.stack(generated, axis=1) if generated else np.zeros((feeds["input_ids"].shape[0], 0), np.int64)
