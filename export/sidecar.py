"""The sidecar JSON written next to an exported model (`OUT.onnx.json`): what a TensorRT build
(shape profiles), Triton (I/O names and types) and verification need to know without parsing the
ONNX file. Its schema is fixed by the project's interfaces (docs/export.md shows an example).

This module builds it (`build_sidecar`, written by export/onnx_export.py), reads and checks it
(`read_sidecar`, `load_sidecar`: every field's JSON type and value, before a deploy tool uses it),
and checks it against the graph it describes (`check_sidecar_matches_onnx`).

`plugin` says what a plugin-format graph needs from the plugin library: `ops`, every custom op
its nodes use (name, version, namespace: what the library must register a creator for, e.g.
NVFP4Linear and NVFP4MoE for a Mixture-of-Experts model), beside the identity of the first of
them in the keys readers before `ops` know (name, version, namespace, domain). `plugin_ops`
reads it, from sidecars without `ops` too.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from export.contract import CONTRACT_YAMLS, op_contract
from export.dtypes import ACTIVATION_DTYPES, DTYPES, name_of_onnx
from export.errors import DeployError, quote
from export.inputs import read_json_object, regular_file

FORMATS = ("plugin", "qdq")
REQUIRED_KEYS = ("format", "dtype", "num_layers", "num_kv_heads", "head_dim", "vocab_size", "inputs", "outputs")
# TensorRT dimensions are int32.
MAX_DIM = 2**31 - 1


def sidecar_path(onnx_path: str | os.PathLike) -> Path:
    p = Path(onnx_path)
    return p.with_name(p.name + ".json")


@dataclass(frozen=True)
class ShapeLimits:
    """Shape-profile suggestions: batch and total (past + new) tokens per sequence."""
    max_batch: int = 8
    max_total: int = 4096  # capped by max_position_embeddings
    opt_batch: int = 1
    opt_seq: int = 128  # a prefill chunk; decode (seq=1) lies inside the profile too
    opt_past: int = 128


def io_names(num_layers: int) -> tuple[list[str], list[str]]:
    """The graph's input and output names, in order."""
    ins = ["input_ids", "position_ids", "attention_mask"]
    outs = ["logits"]
    for i in range(num_layers):
        ins += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        outs += [f"present.{i}.key", f"present.{i}.value"]
    return ins, outs


def io_spec(*, dtype: str, num_layers: int, num_kv_heads: int, head_dim: int, vocab_size: int,
            max_position_embeddings: int, limits: ShapeLimits = ShapeLimits()) -> tuple[list, list]:
    """(inputs, outputs) entries of the sidecar, in the graph's I/O order."""
    total = max(2, min(limits.max_total, max_position_embeddings))
    b_max, b_opt = limits.max_batch, min(limits.opt_batch, limits.max_batch)
    s_opt = min(limits.opt_seq, total // 2)
    p_opt = min(limits.opt_past, total - s_opt)
    kv, hd = num_kv_heads, head_dim

    def entry(name, dt, shape, mn, opt, mx):
        return {"name": name, "dtype": dt, "shape": shape, "min": mn, "opt": opt, "max": mx}

    inputs = [
        entry("input_ids", "int64", ["batch", "sequence"], [1, 1], [b_opt, s_opt], [b_max, total]),
        entry("position_ids", "int64", ["batch", "sequence"], [1, 1], [b_opt, s_opt], [b_max, total]),
        entry("attention_mask", "int64", ["batch", "total_sequence"], [1, 1], [b_opt, p_opt + s_opt], [b_max, total]),
    ]
    outputs = [{"name": "logits", "dtype": dtype, "shape": ["batch", "sequence", vocab_size]}]
    for i in range(num_layers):
        for kind in ("key", "value"):
            inputs.append(entry(f"past_key_values.{i}.{kind}", dtype, ["batch", kv, "past_sequence", hd],
                                [1, kv, 0, hd], [b_opt, kv, p_opt, hd], [b_max, kv, total - 1, hd]))
    for i in range(num_layers):
        for kind in ("key", "value"):
            outputs.append({"name": f"present.{i}.{kind}", "dtype": dtype,
                            "shape": ["batch", kv, "total_sequence", hd]})
    return inputs, outputs


def plugin_entry(op_types) -> dict:
    """The sidecar's `plugin` object for a graph whose custom nodes have these op types (contract
    names, e.g. {"NVFP4Linear", "NVFP4MoE"}); `ops` in the contracts' order."""
    unknown = set(op_types) - set(CONTRACT_YAMLS)
    if unknown:
        raise ValueError(f"no op contract for {sorted(unknown)}")
    ops = [{"name": c["name"], "version": str(c["plugin_version"]), "namespace": str(c["plugin_namespace"])}
           for c in (op_contract(t) for t in CONTRACT_YAMLS if t in set(op_types))]
    first = op_contract(ops[0]["name"] if ops else "NVFP4Linear")
    return {"name": first["name"], "version": str(first["plugin_version"]),
            "namespace": str(first["plugin_namespace"]), "domain": first["domain"], "ops": ops}


def graph_ops(model) -> set[str]:
    """Op types of the nodes in the op contracts' domain (an onnx.ModelProto or onnx_ir.Model)."""
    import onnx

    domains = {op_contract(t)["domain"] for t in CONTRACT_YAMLS}
    nodes = model.graph.node if isinstance(model, onnx.ModelProto) else model.graph
    return {n.op_type for n in nodes if n.domain in domains}


def plugin_ops(side: dict) -> list[dict]:
    """What the plugin library must register for this sidecar's graph: [{name, version,
    namespace}], [] for a qdq graph. A sidecar written before `ops` existed names one op: its
    top-level identity."""
    plugin = side.get("plugin")
    if plugin is None:
        return []
    if "ops" in plugin:
        return [dict(op) for op in plugin["ops"]]
    return [{k: plugin[k] for k in ("name", "version", "namespace")}]


def describe_ops(ops: list[dict]) -> str:
    """'NVFP4Linear and NVFP4MoE (version 1)' for messages and generated files."""
    if not ops:
        return "no op"
    names = [op["name"] for op in ops]
    text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"{text} (version {', '.join(sorted({op['version'] for op in ops}))})"


def build_sidecar(*, fmt: str, dtype: str, architecture: str, num_layers: int, num_kv_heads: int,
                  head_dim: int, vocab_size: int, max_position_embeddings: int, quantized_layers: int,
                  excluded_layers: list[str], source_checkpoint: str, checkpoint_format: str,
                  ops=("NVFP4Linear",), limits: ShapeLimits = ShapeLimits()) -> dict:
    """`ops`: the op types of the graph's custom nodes (graph_ops), named in `plugin.ops`."""
    inputs, outputs = io_spec(dtype=dtype, num_layers=num_layers, num_kv_heads=num_kv_heads,
                              head_dim=head_dim, vocab_size=vocab_size,
                              max_position_embeddings=max_position_embeddings, limits=limits)
    plugin = plugin_entry(ops) if fmt == "plugin" else None
    return {
        "format": fmt, "dtype": dtype, "architecture": architecture, "num_layers": num_layers,
        "num_kv_heads": num_kv_heads, "head_dim": head_dim, "vocab_size": vocab_size,
        "inputs": inputs, "outputs": outputs, "plugin": plugin,
        "quantized_layers": quantized_layers, "excluded_layers": list(excluded_layers),
        "source_checkpoint": source_checkpoint, "checkpoint_format": checkpoint_format,
    }


# --- reading --------------------------------------------------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Checker:
    """Field checks that raise one DeployError line naming the file and the field."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, expected: str, got) -> None:
        raise DeployError(f"{self.path}: {where}: expected {expected}, got {quote(got)}")

    def int_in(self, where: str, v, lo: int, hi: int = MAX_DIM) -> int:
        if not _is_int(v) or not lo <= v <= hi:
            self.fail(where, f"an integer in [{lo}, {hi}]", v)
        return v

    def string(self, where: str, v, choices=None) -> str:
        if not isinstance(v, str) or (choices is not None and v not in choices):
            self.fail(where, f"one of {', '.join(choices)}" if choices else "a string", v)
        return v

    def items(self, where: str, v, kind: type, count: int | None = None) -> list:
        if not isinstance(v, list) or not all(isinstance(x, kind) for x in v):
            self.fail(where, f"a list of {'objects' if kind is dict else kind.__name__}", v)
        if count is not None and len(v) != count:
            self.fail(where, f"{count} entries", f"{len(v)} entries")
        return v

    def plugin_ops(self, plugin: dict) -> None:
        ops = self.items("plugin.ops", plugin["ops"], dict)
        for i, op in enumerate(ops):
            if not all(isinstance(op.get(k), str) for k in ("name", "version", "namespace")) or not op["name"]:
                self.fail(f"plugin.ops[{i}]", "an object with string name (not empty), version, namespace", op)
        names = [op["name"] for op in ops]
        if len(set(names)) != len(names):
            self.fail("plugin.ops", "each op once", names)
        if ops and {k: plugin[k] for k in ("name", "version", "namespace")} != ops[0]:
            self.fail("plugin", f"name, version, namespace of plugin.ops[0] ({ops[0]['name']!r})",
                      {k: plugin[k] for k in ("name", "version", "namespace")})

    def tensor(self, where: str, spec: dict, name: str, profile: bool) -> None:
        if spec.get("name") != name:
            self.fail(f"{where}.name", repr(name), spec.get("name"))
        self.string(f"{where} {name!r} dtype", spec.get("dtype"), tuple(DTYPES))
        shape = spec.get("shape")
        if not isinstance(shape, list) or not all(
                (_is_int(d) and 0 <= d <= MAX_DIM) or (isinstance(d, str) and d) for d in shape):
            self.fail(f"{where} {name!r} shape", "a list of dimension sizes or names", shape)
        if not profile:
            return
        dims = {}
        for key in ("min", "opt", "max"):
            dims[key] = self.items(f"{where} {name!r} {key}", spec.get(key), int, len(shape))
            for d in dims[key]:
                self.int_in(f"{where} {name!r} {key}", d, 0)
        for i, (lo, opt, hi) in enumerate(zip(dims["min"], dims["opt"], dims["max"])):
            if not lo <= opt <= hi:
                raise DeployError(f"{self.path}: {where} {name!r}: expected min <= opt <= max, got "
                                  f"{dims['min']} {dims['opt']} {dims['max']}")
            if _is_int(shape[i]) and not lo == opt == hi == shape[i]:
                raise DeployError(f"{self.path}: {where} {name!r}: dimension {i} is fixed at {shape[i]} "
                                  f"but its profile is {lo}..{hi}")


def validate_sidecar(side: dict, path: str | os.PathLike) -> dict:
    """`side` if every field has the type and value the deploy tools rely on; else DeployError."""
    c = _Checker(Path(path))
    missing = [k for k in REQUIRED_KEYS if k not in side]
    if missing:
        raise DeployError(f"{path}: missing keys {missing} (is it the sidecar scripts/export.py writes?)")
    c.string("format", side["format"], FORMATS)
    dtype = c.string("dtype", side["dtype"], ACTIVATION_DTYPES)
    layers = c.int_in("num_layers", side["num_layers"], 1)
    kv = c.int_in("num_kv_heads", side["num_kv_heads"], 1)
    hd = c.int_in("head_dim", side["head_dim"], 1)
    c.int_in("vocab_size", side["vocab_size"], 1)
    inputs = c.items("inputs", side["inputs"], dict, 3 + 2 * layers)
    outputs = c.items("outputs", side["outputs"], dict, 1 + 2 * layers)
    in_names, out_names = io_names(layers)
    for i, (spec, name) in enumerate(zip(inputs, in_names)):
        c.tensor(f"inputs[{i}]", spec, name, profile=True)
    for i, (spec, name) in enumerate(zip(outputs, out_names)):
        c.tensor(f"outputs[{i}]", spec, name, profile=False)
    for i, spec in enumerate(inputs[3:], 3):
        shape = spec["shape"]
        if spec["dtype"] != dtype or len(shape) != 4 or [shape[1], shape[3]] != [kv, hd]:
            c.fail(f"inputs[{i}] {spec['name']!r}", f"{dtype} [batch, {kv}, past_sequence, {hd}]",
                   f"{spec['dtype']} {spec['shape']}")
    plugin = side.get("plugin")
    if plugin is not None and (not isinstance(plugin, dict) or not all(
            isinstance(plugin.get(k), str) for k in ("name", "version", "namespace", "domain"))):
        c.fail("plugin", "null or an object with string name, version, namespace, domain", plugin)
    if side["format"] == "plugin" and plugin is None:
        c.fail("plugin", "the plugin identity for format 'plugin'", plugin)
    if plugin is not None and "ops" in plugin:
        c.plugin_ops(plugin)
    for key in ("architecture", "source_checkpoint", "checkpoint_format"):
        if key in side and not isinstance(side[key], str):
            c.fail(key, "a string", side[key])
    if "quantized_layers" in side:
        c.int_in("quantized_layers", side["quantized_layers"], 0)
    if "excluded_layers" in side:
        c.items("excluded_layers", side["excluded_layers"], str)
    return side


def read_sidecar(path: str | os.PathLike) -> dict:
    """Read and check a sidecar by its own path (what a client machine without the ONNX has)."""
    return validate_sidecar(read_json_object(path, "sidecar JSON", error=DeployError), path)


def load_sidecar(onnx_path: str | os.PathLike) -> dict:
    """Read and check `OUT.onnx.json` next to an existing OUT.onnx."""
    onnx_path = regular_file(onnx_path, "ONNX file", error=DeployError)
    path = sidecar_path(onnx_path)
    if not os.path.lexists(path):
        raise DeployError(f"{path}: sidecar JSON not found (scripts/export.py writes it next to {onnx_path.name})")
    return read_sidecar(path)


def _load_graph(onnx_path: str | os.PathLike):
    """The ONNX model without its external data (the weights are not needed to check the sidecar)."""
    import onnx

    path = regular_file(onnx_path, "ONNX file", error=DeployError)
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf DecodeError and friends
        raise DeployError(f"{path}: not a readable ONNX model ({type(err).__name__})") from None


def onnx_io(onnx_path: str | os.PathLike, model=None) -> tuple[list[dict], list[dict]]:
    """(inputs, outputs) of the ONNX graph as [{name, dtype, shape}] (dim_param names kept as str)."""
    model = model if model is not None else _load_graph(onnx_path)

    def describe(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else "?")
                     for d in t.shape.dim]
            out.append({"name": v.name, "dtype": name_of_onnx(t.elem_type), "shape": shape})
        return out

    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    return describe(inputs), describe(model.graph.output)


def check_sidecar_matches_onnx(onnx_path, side: dict) -> None:
    """The sidecar must describe exactly the graph's inputs/outputs (names, dtypes, ranks) and,
    where it lists them (`plugin.ops`), the custom ops its nodes use."""
    model = _load_graph(onnx_path)
    inputs, outputs = onnx_io(onnx_path, model)
    plugin = side.get("plugin")
    if plugin is not None and "ops" in plugin:
        listed, used = {op["name"] for op in plugin["ops"]}, graph_ops(model)
        if listed != used:
            raise DeployError(f"{sidecar_path(onnx_path)}: plugin.ops names {quote(sorted(listed), 200)} but the ONNX "
                              f"graph's custom nodes are {quote(sorted(used), 200)}")
    for kind, graph, declared in (("input", inputs, side["inputs"]), ("output", outputs, side["outputs"])):
        g = {v["name"]: v for v in graph}
        d = {v["name"]: v for v in declared}
        if set(g) != set(d):
            raise DeployError(f"{sidecar_path(onnx_path)}: {kind}s {quote(sorted(d), 200)} do not match "
                              f"the ONNX graph's {quote(sorted(g), 200)}")
        for name, spec in d.items():
            if spec["dtype"] != g[name]["dtype"] or len(spec["shape"]) != len(g[name]["shape"]):
                raise DeployError(f"{sidecar_path(onnx_path)}: {kind} {name!r} is {spec['dtype']}{spec['shape']} "
                                  f"but the ONNX graph has {g[name]['dtype']}{g[name]['shape']}")
