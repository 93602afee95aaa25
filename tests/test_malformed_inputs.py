"""Malformed and hostile input to every user command: one line naming the culprit, exit 2, nothing changed.

Each case copies the pieces it needs into a fresh folder (a checkpoint of each layout, a Hugging
Face source model, an exported ONNX with its sidecar, a stub plugin library, a fake plan), breaks
one thing, runs the command in-process through its real entry point (`main(argv)`, the handler
every command runs in), and asserts: exit status 2, exactly one line on stderr that starts with
`error:` and names the culprit, and a file tree identical (by content hash) to the one before.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

from export.cli import inspect_checkpoint as inspect_cli
from export.cli import quantize as quantize_cli
from plugins.cli import build_engine as build_engine_cli
from plugins.cli import export as export_cli
from plugins.cli import make_triton_repo as triton_repo_cli
from plugins.cli import triton_client as triton_client_cli
from tests.test_triton_repo import fake_plan, make_plugin_stub_library

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tiny-llama-nvfp4"
COMMANDS = {"export": export_cli.main, "quantize": quantize_cli.main, "inspect": inspect_cli.main,
            "build_engine": build_engine_cli.main, "make_triton_repo": triton_repo_cli.main,
            "triton_client": triton_client_cli.main}


# --- the workspace each case starts from -----------------------------------------------------------

@pytest.fixture(scope="module")
def templates(tmp_path_factory, make_tiny_checkpoint, make_tiny_hf):
    d = tmp_path_factory.mktemp("malformed-templates")
    onnx_path = d / "m.onnx"
    assert export_cli.main([str(EXAMPLE), str(onnx_path), "--quiet"]) == 0
    return {
        "modelopt": EXAMPLE,
        "compressed-tensors": make_tiny_checkpoint("compressed-tensors"),
        "quark": make_tiny_checkpoint("quark"),
        "hf": make_tiny_hf("llama"),
        "onnx": onnx_path,
        "plugin": make_plugin_stub_library(d),
        "plan": fake_plan(d),
    }


class Workspace:
    """Copies of the templates under `root`; paths of what a case may break."""

    def __init__(self, root: Path, templates: dict):
        self.root = root
        self.ckpt = root / "ckpt"
        shutil.copytree(templates["modelopt"], self.ckpt)
        self.hf = root / "hf"
        shutil.copytree(templates["hf"], self.hf)
        self.out = root / "out"
        self.out.mkdir()
        self.onnx = root / "exp" / "m.onnx"
        self.onnx.parent.mkdir()
        for suffix in ("", ".json"):
            shutil.copyfile(str(templates["onnx"]) + suffix, str(self.onnx) + suffix)
        self.sidecar = Path(str(self.onnx) + ".json")
        self.plugin = root / "libnvfp4_stub.so"
        shutil.copyfile(templates["plugin"], self.plugin)
        self.plan = root / "model.plan"
        shutil.copyfile(templates["plan"], self.plan)
        self._templates = templates

    def checkpoint(self, fmt: str) -> Path:
        """The tiny checkpoint in another layout (copied on first use)."""
        path = self.root / f"ckpt-{fmt}"
        if not path.exists():
            shutil.copytree(self._templates[fmt], path)
        return path


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def edit_tensors(folder: Path, change: Callable[[dict], None]) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under root: its kind, and for regular files the SHA-256 of the content
    (special files are never opened)."""
    digest = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            key = str(path.relative_to(root))
            if stat.S_ISREG(st.st_mode):
                digest[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                digest[key] = stat.filemode(st.st_mode)[0]
    return digest


# --- the cases -------------------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    command: str
    argv: Callable[[Workspace], list]
    needle: str  # must appear in the one line
    setup: Callable[[Workspace], None] | None = None
    patch: Callable[[pytest.MonkeyPatch, Workspace], None] | None = None
    marks: list = field(default_factory=list)


def _set(path_of, key, value):
    """A setup that sets (or with value None, deletes) a top-level JSON field."""
    def setup(ws):
        def change(d):
            if value is None:
                d.pop(key, None)
            else:
                d[key] = value
        edit_json(path_of(ws), change)
    return setup


def _config(ws):
    return ws.ckpt / "config.json"


def _hf_quant(ws):
    return ws.ckpt / "hf_quant_config.json"


def _quantization(key, value):
    return lambda ws: edit_json(_hf_quant(ws), lambda d: d["quantization"].__setitem__(key, value))


def _qc(fmt, change):
    """A setup editing the quantization_config of the `fmt` checkpoint copy."""
    return lambda ws: edit_json(ws.checkpoint(fmt) / "config.json", lambda d: change(d["quantization_config"]))


def _tensor(name, value):
    def setup(ws):
        edit_tensors(ws.ckpt, lambda t: t.__setitem__(name, value(t[name]) if callable(value) else value))
    return setup


def _fifo(path_of):
    def setup(ws):
        path = path_of(ws)
        path.unlink(missing_ok=True)
        os.mkfifo(path)
    return setup


def _os_error(code, where="mkdir"):
    """Patch: the filesystem refuses (read-only, permission, disk full) where outputs are written."""
    def patch(monkeypatch, ws):
        if where == "mkdir":
            original = Path.mkdir

            def mkdir(self, *a, **k):
                if self.parent in (ws.out, ws.root, ws.onnx.parent):
                    raise OSError(code, os.strerror(code), str(self))
                return original(self, *a, **k)
            monkeypatch.setattr(Path, "mkdir", mkdir)
        else:
            from export import onnx_export

            def save_model(model_ir, path, **k):
                path.write_bytes(b"partial")
                raise OSError(code, os.strerror(code))
            monkeypatch.setattr(onnx_export, "save_model", save_model)
    return patch


def _export(ws, *extra, src=None, out=None):
    return [src or ws.ckpt, out or ws.out / "m.onnx", "--quiet", *extra]


def _dense_layer(ws):
    """model.layers.0.mlp.down_proj stored as a dense float32 weight while the config quantizes it."""
    def change(t):
        for suffix in ("weight_scale", "weight_scale_2", "input_scale"):
            t.pop(f"model.layers.0.mlp.down_proj.{suffix}")
        t["model.layers.0.mlp.down_proj.weight"] = torch.zeros(64, 128)
    edit_tensors(ws.ckpt, change)


def _all_dense(ws):
    def change(t):
        for name in list(t):
            module, _, suffix = name.rpartition(".")
            if suffix in ("weight_scale", "weight_scale_2", "input_scale"):
                del t[name]
            elif suffix == "weight" and t[name].dtype == torch.uint8:
                n, half = t[name].shape
                t[name] = torch.zeros(n, half * 2)
    edit_tensors(ws.ckpt, change)


def _truncate(path_of, size):
    def setup(ws):
        with open(path_of(ws), "r+b") as f:
            f.truncate(size)
    return setup


def _sparse_big(path_of, size):
    def setup(ws):
        with open(path_of(ws), "wb") as f:
            f.truncate(size)
    return setup


def _index(weight_map):
    def setup(ws):
        (ws.ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return setup


def _sidecar(change):
    return lambda ws: edit_json(ws.sidecar, change)


def _engine(ws, *extra):
    return [ws.onnx, "--plugin", ws.plugin, "--print-trtexec", *extra]


def _repo(ws, *extra, plan=None, out=None):
    return [plan or ws.plan, "--onnx", ws.onnx, "--plugin", ws.plugin, "-o", out or ws.out / "repo", *extra]


def _client(ws, *extra):
    return ["--sidecar", ws.sidecar, *extra]


L0 = "model.layers.0.self_attn.q_proj"

CASES = [
    # ---- export: outputs (nothing of the user's is replaced) -------------------------------------
    Case("out-exists", "export", _export, "m.onnx: already exists",
         setup=lambda ws: (ws.out / "m.onnx").write_text("mine")),
    Case("sidecar-exists", "export", _export, "m.onnx.json: already exists",
         setup=lambda ws: (ws.out / "m.onnx.json").write_text("{}")),
    Case("data-exists", "export", _export, "m.onnx.data: already exists",
         setup=lambda ws: (ws.out / "m.onnx.data").write_bytes(b"mine")),
    Case("out-folder-missing", "export", lambda ws: _export(ws, out=ws.root / "nope" / "m.onnx"), "does not exist"),
    Case("out-under-a-file", "export", lambda ws: _export(ws, out=ws.plan / "m.onnx"), "model.plan is not a folder"),
    Case("out-not-onnx", "export", lambda ws: _export(ws, out=ws.out / "m.txt"), "must end in .onnx"),
    Case("out-is-a-folder", "export", lambda ws: _export(ws, "--force", out=ws.out / "d.onnx"),
         "exists and is a folder", setup=lambda ws: (ws.out / "d.onnx").mkdir()),
    Case("out-inside-checkpoint", "export", lambda ws: _export(ws, "--force", out=ws.ckpt / "m.onnx"),
         "the output lies inside the input"),
    Case("out-is-checkpoint-config", "export", lambda ws: _export(ws, "--force", out=ws.ckpt / "x.onnx"),
         "lies inside the input"),
    Case("read-only-filesystem", "export", _export, "Read-only file system", patch=_os_error(errno.EROFS)),
    Case("permission-denied", "export", _export, "Permission denied", patch=_os_error(errno.EACCES)),
    Case("disk-full", "export", _export, "m.onnx: cannot write (No space left on device)",
         patch=_os_error(errno.ENOSPC, where="save")),
    # ---- export: the checkpoint folder and its JSON ---------------------------------------------
    Case("model-dir-missing", "export", lambda ws: _export(ws, src=ws.root / "nope"), "nope: is not a directory"),
    Case("model-dir-is-file", "export", lambda ws: _export(ws, src=ws.plan), "is not a directory"),
    Case("config-missing", "export", _export, "missing config.json", setup=lambda ws: _config(ws).unlink()),
    Case("config-fifo", "export", _export, "config.json: is a FIFO", setup=_fifo(_config)),
    Case("config-not-json", "export", _export, "config.json: is not valid JSON",
         setup=lambda ws: _config(ws).write_text("{nope")),
    Case("config-a-list", "export", _export, "expected a JSON object",
         setup=lambda ws: _config(ws).write_text("[1, 2]")),
    Case("config-not-utf8", "export", _export, "config.json: is not UTF-8",
         setup=lambda ws: _config(ws).write_bytes(b"\xff\xfe{}")),
    Case("config-huge", "export", _export, "more than the", setup=_sparse_big(_config, 65 * 1024**2)),
    Case("architectures-string", "export", _export, "'architectures' must name one of",
         setup=_set(_config, "architectures", "LlamaForCausalLM")),
    Case("architecture-unsupported", "export", _export, "'GPT2LMHeadModel' is not supported",
         setup=_set(_config, "architectures", ["GPT2LMHeadModel"])),
    Case("layers-absurd", "export", _export, "'num_hidden_layers'",
         setup=_set(_config, "num_hidden_layers", 10**9)),
    Case("layers-string", "export", _export, "'num_hidden_layers' must be an integer",
         setup=_set(_config, "num_hidden_layers", "2")),
    Case("layers-disagree", "export", _export, "tensors hold decoder layers 0..1",
         setup=_set(_config, "num_hidden_layers", 3)),
    Case("max-positions-negative", "export", _export, "'max_position_embeddings'",
         setup=_set(_config, "max_position_embeddings", -5)),
    Case("hidden-zero", "export", _export, "'hidden_size'", setup=_set(_config, "hidden_size", 0)),
    Case("hidden-bool", "export", _export, "'hidden_size'", setup=_set(_config, "hidden_size", True)),
    Case("vocab-disagrees", "export", _export, "vocab_size x hidden_size is 1000 x 64",
         setup=_set(_config, "vocab_size", 1000)),
    Case("head-dim-absurd", "export", _export, "num_attention_heads x head_dim is 4000000000",
         setup=_set(_config, "head_dim", 10**9)),
    Case("intermediate-disagrees", "quantize", lambda ws: [ws.hf, ws.out / "q", "--format", "quark"],
         "intermediate_size is 256 but tensor 'model.layers.0.mlp.gate_proj.weight' has shape [128, 64]",
         setup=_set(lambda ws: ws.hf / "config.json", "intermediate_size", 256)),
    Case("eps-negative", "export", _export, "'rms_norm_eps'", setup=_set(_config, "rms_norm_eps", -1e-6)),
    Case("sliding-window-negative", "export", _export, "'sliding_window'",
         setup=_set(_config, "sliding_window", -3)),
    Case("tie-embeddings-string", "export", _export, "'tie_word_embeddings'",
         setup=_set(_config, "tie_word_embeddings", "no")),
    Case("layer-types-short", "export", _export, "'layer_types'",
         setup=_set(_config, "layer_types", ["full_attention"])),
    # ---- export: quantization configs of every layout -------------------------------------------
    Case("hf-quant-not-json", "export", _export, "hf_quant_config.json: is not valid JSON",
         setup=lambda ws: _hf_quant(ws).write_text("nope")),
    Case("hf-quant-fifo", "export", _export, "hf_quant_config.json: is a FIFO", setup=_fifo(_hf_quant)),
    Case("quantization-not-object", "export", _export, "expected a 'quantization' object",
         setup=_set(_hf_quant, "quantization", [1])),
    Case("exclude-string", "export", _export, "exclude_modules must be a list",
         setup=_quantization("exclude_modules", "lm_head")),
    Case("exclude-bad-regex", "export", _export, "'re:[' is not a valid regular expression",
         setup=_quantization("exclude_modules", ["re:["])),
    Case("exclude-number", "export", _export, "exclude_modules must be a list",
         setup=_quantization("exclude_modules", [3])),
    Case("quant-algo-fp8", "export", _export, "quant_algo 'FP8' is not supported",
         setup=_quantization("quant_algo", "FP8")),
    Case("group-size-32", "export", _export, "group_size 32", setup=_quantization("group_size", 32)),
    Case("group-size-string", "export", _export, "group_size '16'", setup=_quantization("group_size", "16")),
    Case("mixed-layers-list", "export", _export, "quantized_layers must be a non-empty object",
         setup=lambda ws: edit_json(_hf_quant(ws), lambda d: d["quantization"].update(
             quant_algo="MIXED_PRECISION", quantized_layers=["x"]))),
    Case("ct-config-groups-list", "export", lambda ws: _export(ws, src=ws.checkpoint("compressed-tensors")),
         "config_groups must be a non-empty object",
         setup=_qc("compressed-tensors", lambda q: q.__setitem__("config_groups", [1]))),
    Case("ct-group-not-object", "export", lambda ws: _export(ws, src=ws.checkpoint("compressed-tensors")),
         "config_groups['group_0'] must be an object",
         setup=_qc("compressed-tensors", lambda q: q["config_groups"].__setitem__("group_0", "x"))),
    Case("ct-ignore-string", "export", lambda ws: _export(ws, src=ws.checkpoint("compressed-tensors")),
         "quantization_config.ignore must be a list",
         setup=_qc("compressed-tensors", lambda q: q.__setitem__("ignore", "lm_head"))),
    Case("ct-targets-number", "export", lambda ws: _export(ws, src=ws.checkpoint("compressed-tensors")),
         ".targets must be a list",
         setup=_qc("compressed-tensors", lambda q: q["config_groups"]["group_0"].__setitem__("targets", 7))),
    Case("quark-layer-config-list", "export", lambda ws: _export(ws, src=ws.checkpoint("quark")),
         "layer_quant_config must be an object",
         setup=_qc("quark", lambda q: q.__setitem__("layer_quant_config", ["x"]))),
    Case("quark-exclude-dict", "export", lambda ws: _export(ws, src=ws.checkpoint("quark")),
         "quantization_config.exclude must be a list",
         setup=_qc("quark", lambda q: q.__setitem__("exclude", {"lm_head": 1}))),
    Case("quant-method-number", "export", lambda ws: _export(ws, src=ws.checkpoint("quark")),
         "quant_method must be a string", setup=_qc("quark", lambda q: q.__setitem__("quant_method", 42))),
    # ---- export: tensors that cannot be right ---------------------------------------------------
    Case("weight-global-zero", "export", _export, "global scale must be finite and > 0",
         setup=_tensor(f"{L0}.weight_scale_2", torch.tensor(0.0))),
    Case("weight-global-nan", "export", _export, "global scale must be finite and > 0",
         setup=_tensor(f"{L0}.weight_scale_2", torch.tensor(float("nan")))),
    Case("input-scale-denormal", "export", _export, f"{L0}.input_scale",
         setup=_tensor(f"{L0}.input_scale", torch.tensor(1e-45))),
    Case("alpha-overflow", "export", _export, "alpha",
         setup=lambda ws: (_tensor(f"{L0}.input_scale", torch.tensor(1e30))(ws),
                           _tensor(f"{L0}.weight_scale_2", torch.tensor(1e30))(ws))),
    Case("block-scales-nan", "export", _export, "block scales contain NaN",
         setup=_tensor(f"{L0}.weight_scale", lambda t: torch.full_like(t.float(), float("nan")).to(t.dtype))),
    Case("weight-float", "export", _export, "expected uint8 [N, K/2]",
         setup=_tensor(f"{L0}.weight", lambda t: t.float())),
    Case("scale-shape", "export", _export, "expected float8_e4m3fn [64, 4]",
         setup=_tensor(f"{L0}.weight_scale", lambda t: t[:, :2].contiguous())),
    Case("claims-nvfp4-but-dense", "export", _export, "declares NVFP4 but no tensor is NVFP4", setup=_all_dense),
    Case("one-layer-dense", "export", _export, "the config and the tensors disagree", setup=_dense_layer),
    Case("safetensors-truncated", "export", _export, "not a readable safetensors file",
         setup=_truncate(lambda ws: ws.ckpt / "model.safetensors", 1000)),
    Case("safetensors-fifo", "export", _export, "model.safetensors: is a FIFO",
         setup=_fifo(lambda ws: ws.ckpt / "model.safetensors")),
    Case("index-escapes-folder", "export", _export, "expected a *.safetensors file name",
         setup=_index({"lm_head.weight": "../model.safetensors"})),
    Case("index-wrong-type", "export", _export, "expected a 'weight_map' object", setup=_index([1, 2])),
    # ---- export: arguments ----------------------------------------------------------------------
    Case("opset-99", "export", lambda ws: _export(ws, "--opset", "99"), "--opset 99"),
    Case("dtype-int8", "export", lambda ws: _export(ws, "--dtype", "int8"), "invalid choice: 'int8'"),
    Case("unknown-flag", "export", lambda ws: _export(ws, "--bogus"), "unrecognized arguments: --bogus"),
    Case("missing-output-arg", "export", lambda ws: [ws.ckpt], "the following arguments are required: out"),
    Case("verify-without-ort-library", "export",
         lambda ws: _export(ws, "--verify", "--ort-library", ws.root / "nope.so"), "--verify: "),
    # ---- quantize -------------------------------------------------------------------------------
    Case("quantize-out-is-src", "quantize", lambda ws: [ws.hf, ws.hf, "--format", "modelopt", "--force"],
         "the output is the input"),
    Case("quantize-out-inside-src", "quantize", lambda ws: [ws.hf, ws.hf / "q", "--format", "modelopt"],
         "the output lies inside the input"),
    Case("quantize-out-contains-src", "quantize", lambda ws: [ws.hf, ws.root, "--format", "modelopt", "--force"],
         "the output contains the input"),
    Case("quantize-out-exists", "quantize", lambda ws: [ws.hf, ws.out, "--format", "modelopt"],
         "out: already exists (pass --force"),
    Case("quantize-bad-regex", "quantize", lambda ws: [ws.hf, ws.out / "q", "--format", "quark", "--exclude", "re:["],
         "'re:[' is not a valid regular expression"),
    Case("quantize-exclude-everything", "quantize",
         lambda ws: [ws.hf, ws.out / "q", "--format", "quark", "--exclude", "*"], "no linear layer is left"),
    Case("quantize-calib-zero", "quantize",
         lambda ws: [ws.hf, ws.out / "q", "--format", "quark", "--calib-batches", "0"], "--calib-batches must be >= 1"),
    Case("quantize-already-quantized", "quantize", lambda ws: [ws.ckpt, ws.out / "q", "--format", "quark"],
         "is already quantized"),
    Case("quantize-layers-absurd", "quantize", lambda ws: [ws.hf, ws.out / "q", "--format", "quark"],
         "'num_hidden_layers'", setup=_set(lambda ws: ws.hf / "config.json", "num_hidden_layers", 10**9)),
    Case("quantize-config-fifo", "quantize", lambda ws: [ws.hf, ws.out / "q", "--format", "quark"],
         "config.json: is a FIFO", setup=_fifo(lambda ws: ws.hf / "config.json")),
    Case("quantize-weight-nan", "quantize", lambda ws: [ws.hf, ws.out / "q", "--format", "quark", "--w4a16"],
         "has NaN or Inf values",
         setup=lambda ws: edit_tensors(ws.hf, lambda t: t[f"{L0}.weight"].__setitem__((0, 0), float("nan")))),
    Case("quantize-format-gguf", "quantize", lambda ws: [ws.hf, ws.out / "q", "--format", "gguf"],
         "invalid choice: 'gguf'"),
    # ---- inspect --------------------------------------------------------------------------------
    Case("inspect-not-a-checkpoint", "inspect", lambda ws: [ws.out], "missing config.json"),
    Case("inspect-dense", "inspect", lambda ws: [ws.ckpt], "no tensor is NVFP4", setup=_all_dense),
    Case("inspect-weight-global-inf", "inspect", lambda ws: [ws.ckpt], "global scale must be finite",
         setup=_tensor(f"{L0}.weight_scale_2", torch.tensor(float("inf")))),
    # ---- build_engine ---------------------------------------------------------------------------
    Case("engine-onnx-missing", "build_engine", lambda ws: [ws.root / "x.onnx", "--print-trtexec"],
         "x.onnx: ONNX file not found"),
    Case("engine-onnx-fifo", "build_engine", _engine, "m.onnx: is a FIFO", setup=_fifo(lambda ws: ws.onnx)),
    Case("engine-sidecar-missing", "build_engine", _engine, "sidecar JSON not found",
         setup=lambda ws: ws.sidecar.unlink()),
    Case("engine-sidecar-not-json", "build_engine", _engine, "m.onnx.json: is not valid JSON",
         setup=lambda ws: ws.sidecar.write_text("{")),
    Case("engine-sidecar-layers-string", "build_engine", _engine, "num_layers: expected an integer",
         setup=_sidecar(lambda d: d.__setitem__("num_layers", "2"))),
    Case("engine-sidecar-layers-absurd", "build_engine", _engine, "inputs: expected 2000000003 entries",
         setup=_sidecar(lambda d: d.__setitem__("num_layers", 10**9))),
    Case("engine-sidecar-min-above-max", "build_engine", _engine, "expected min <= opt <= max",
         setup=_sidecar(lambda d: d["inputs"][0].__setitem__("min", [9, 1]))),
    Case("engine-sidecar-dtype", "build_engine", _engine, "dtype: expected one of",
         setup=_sidecar(lambda d: d.__setitem__("dtype", "int4"))),
    Case("engine-sidecar-profile-type", "build_engine", _engine, "'input_ids' max: expected a list of int",
         setup=_sidecar(lambda d: d["inputs"][0].__setitem__("max", "8x4096"))),
    Case("engine-sidecar-name", "build_engine", _engine, "inputs[0].name: expected 'input_ids'",
         setup=_sidecar(lambda d: d["inputs"][0].__setitem__("name", "tokens"))),
    Case("engine-sidecar-huge-echo", "build_engine", _engine, "characters)",
         setup=_sidecar(lambda d: d.__setitem__("format", "x" * 100000))),
    Case("engine-sidecar-ops-type", "build_engine", _engine, "plugin.ops: expected a list of objects",
         setup=_sidecar(lambda d: d["plugin"].__setitem__("ops", "NVFP4Linear"))),
    Case("engine-sidecar-op-name", "build_engine", _engine, "plugin.ops[0]: expected an object with string name",
         setup=_sidecar(lambda d: d["plugin"]["ops"][0].__setitem__("name", 5))),
    Case("engine-sidecar-op-twice", "build_engine", _engine, "plugin.ops: expected each op once",
         setup=_sidecar(lambda d: d["plugin"]["ops"].append(dict(d["plugin"]["ops"][0])))),
    Case("engine-sidecar-op-identity", "build_engine", _engine, "name, version, namespace of plugin.ops[0]",
         setup=_sidecar(lambda d: d["plugin"]["ops"][0].__setitem__("version", "2"))),
    # The graph has NVFP4Linear nodes only: a sidecar that also asks for NVFP4MoE describes another graph.
    Case("engine-sidecar-ops-not-the-graphs", "build_engine", _engine, "plugin.ops names ['NVFP4Linear', 'NVFP4MoE']",
         setup=_sidecar(lambda d: d["plugin"]["ops"].append({"name": "NVFP4MoE", "version": "1", "namespace": ""}))),
    Case("engine-plugin-not-elf", "build_engine", _engine, "not an ELF shared library",
         setup=lambda ws: ws.plugin.write_bytes(b"\0" * 100)),
    Case("engine-plugin-device", "build_engine", lambda ws: [ws.onnx, "--plugin", "/dev/zero", "--print-trtexec"],
         "/dev/zero: is a character device"),
    Case("engine-plugin-no-entry", "build_engine", _engine, "does not export getCreators",
         setup=lambda ws: shutil.copyfile(make_plugin_stub_library(ws.out, export_entry_point=False), ws.plugin)),
    Case("engine-plan-is-onnx", "build_engine", lambda ws: [ws.onnx, "--plugin", ws.plugin, "-o", ws.onnx, "--force"],
         "the output is the input"),
    Case("engine-plan-exists", "build_engine", lambda ws: [ws.onnx, "--plugin", ws.plugin, "-o", ws.plan],
         "model.plan: already exists"),
    Case("engine-workspace-negative", "build_engine", lambda ws: _engine(ws, "--workspace-mib", "-1"),
         "--workspace-mib must be > 0"),
    # ---- make_triton_repo -----------------------------------------------------------------------
    Case("repo-plan-not-plan", "make_triton_repo", _repo, "not a TensorRT plan",
         setup=lambda ws: ws.plan.write_bytes(b"\0" * 64)),
    Case("repo-plan-is-onnx", "make_triton_repo", lambda ws: _repo(ws, plan=ws.onnx), "looks like an ONNX model"),
    Case("repo-plan-empty", "make_triton_repo", _repo, "plan file is empty", setup=lambda ws: ws.plan.write_bytes(b"")),
    Case("repo-plan-fifo", "make_triton_repo", _repo, "model.plan: is a FIFO", setup=_fifo(lambda ws: ws.plan)),
    Case("repo-out-exists", "make_triton_repo", lambda ws: _repo(ws, out=ws.out), "out: already exists"),
    Case("repo-out-holds-inputs", "make_triton_repo", lambda ws: _repo(ws, "--force", out=ws.root),
         "the output contains the input"),
    Case("repo-bad-name", "make_triton_repo", lambda ws: _repo(ws, "--name", "../x"), "model name '../x'"),
    Case("repo-instances-zero", "make_triton_repo", lambda ws: _repo(ws, "--instances", "0"), "--instances must be >= 1"),
    Case("repo-batch-too-large", "make_triton_repo", lambda ws: _repo(ws, "--max-batch-size", "100"),
         "exceeds the engine profile's max batch"),
    Case("repo-sidecar-kv-heads", "make_triton_repo", _repo, "past_key_values.0.key",
         setup=_sidecar(lambda d: d.__setitem__("num_kv_heads", 3))),
    # ---- triton_client --------------------------------------------------------------------------
    Case("client-sidecar-missing", "triton_client", lambda ws: ["--sidecar", ws.root / "x.json", "--prompt-ids", "1"],
         "x.json: sidecar JSON not found"),
    Case("client-prompt-without-tokenizer", "triton_client", lambda ws: _client(ws, "--prompt", "hi"),
         "--prompt needs --tokenizer"),
    Case("client-tokenizer-missing", "triton_client",
         lambda ws: _client(ws, "--prompt", "hi", "--tokenizer", ws.out), "no usable tokenizer in this folder"),
    Case("client-tokenizer-not-a-folder", "triton_client",
         lambda ws: _client(ws, "--prompt", "hi", "--tokenizer", ws.plan), "--tokenizer must be a folder"),
    Case("client-prompt-ids-text", "triton_client", lambda ws: _client(ws, "--prompt-ids", "a,b"),
         "expected comma-separated integers"),
    Case("client-prompt-ids-vocab", "triton_client", lambda ws: _client(ws, "--prompt-ids", "1,999999"),
         "prompt ids must be in [0, 256)"),
    Case("client-new-tokens-negative", "triton_client", lambda ws: _client(ws, "--prompt-ids", "1",
                                                                          "--max-new-tokens", "-1"),
         "--max-new-tokens must be in"),
    Case("client-no-prompt", "triton_client", _client, "give --prompt-ids or --prompt"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input(case, templates, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ws = Workspace(tmp_path, templates)
    if case.setup:
        case.setup(ws)
    argv = [str(a) for a in case.argv(ws)]
    before = tree_digest(tmp_path)
    if case.patch:
        case.patch(monkeypatch, ws)
    capsys.readouterr()
    status = COMMANDS[case.command](argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert status == 2, f"exit {status}; stderr: {err[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert case.needle in lines[0], lines[0]
    assert len(lines[0]) < 1000, lines[0]
    monkeypatch.undo()
    assert tree_digest(tmp_path) == before


def test_enough_cases_per_command():
    per_command = {c: sum(case.command == c for case in CASES) for c in COMMANDS}
    assert len(CASES) >= 60 and min(per_command.values()) >= 3, per_command
