"""The layer-by-layer check, the verification's default judgement.

Every checked node's input and output are returned by the runtime under test (graph.mark_outputs);
each node's reference is computed from the runtime's own input to that node (teacher forcing), so
rounding noise cannot accumulate through the layers and the bound (tolerance.py) follows from the
op's formula alone. Three runs:

  prefill   B rows of S tokens, the second row left-padded, empty KV cache;
  decode    one more token per row, continuing from the runtime's own prefill cache;
  full      the same S + 1 tokens in one pass, no cache.

Each is checked node by node (one reference call per node over the rows of all three runs). In
addition, the decode step is compared with the full pass at the last position ("KV cache vs full
sequence"), node input by node input. It is judged where the comparison is sharp (sharp_nodes): the
first layer's projections and its attention output, the first tensor that reads the cache. There
the two runs differ only by float
rounding (KV_RTOL ulps); a cache read wrong (positions, mask, layout) is off by the tensor's own
scale. Deeper, one W4A4 rounding flip (a whole FP4 grid step) spreads through the layers at a level
set by the model, so those nodes are reported, not judged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import ml_dtypes
import numpy as np
import onnx_ir as ir

from plugins.verify import references
from plugins.verify.graph import checked_nodes, initializer_array, values_by_name
from export.dtypes import numpy_dtype, torch_dtype

# KV cache vs full sequence, judged nodes: max |decode - full| / max |full| of the node's input must
# be within this many units of T's relative rounding (eps_T): the attention over the cache and over
# the recomputed sequence sum in different orders (measured on the real test model: up to ~2 eps in
# float32 and float16).
KV_RTOL_EPS = 16


@dataclass
class NodeResult:
    node: str
    op_type: str
    case: str
    elements: int
    max_abs: float
    max_rel: float  # max |a - r| / rms(r)
    max_ratio: float  # max |a - r| / bound: <= 1 passes
    over: int  # elements beyond the bound
    nonfinite_mismatch: int  # NaN/Inf where the reference has none, or the other way round

    @property
    def ok(self) -> bool:
        return self.over == 0 and self.nonfinite_mismatch == 0


@dataclass
class LayerReport:
    onnx: str
    runtime: str
    dtype: str
    format: str
    weights: str = "checkpoint"  # where the references' weights come from: "checkpoint" or "graph"
    results: list[NodeResult] = field(default_factory=list)
    kv_cache: list[dict] = field(default_factory=list)  # {"node", "input_rel", "output_rel", "judged", "bound", "ok"}
    tokens: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results) and all(k["ok"] for k in self.kv_cache)

    def worst(self, count: int = 8) -> list[NodeResult]:
        return sorted(self.results, key=lambda r: (-r.over, -r.max_ratio))[:count]

    def table(self, count: int = 8) -> str:
        nodes = {r.node for r in self.results}
        failed = sorted({r.node for r in self.results if not r.ok})
        lines = [f"layer by layer ({self.runtime}, {self.dtype} {self.format} graph; reference: weights from the {self.weights}, "
                 f"on each node's own input): {len(nodes)} nodes x {len({r.case for r in self.results})} runs, "
                 f"{len(failed)} failed" + (f": {', '.join(failed[:6])}{' ...' if len(failed) > 6 else ''}" if failed else ""),
                 f"  worst {min(count, len(self.results))} (|a-r|/bound <= 1 passes; rel = |a-r|/rms(r)):",
                 f"  {'node':44} {'run':8} {'max abs':>10} {'max rel':>10} {'/bound':>8} {'over':>6}  ok"]
        for r in self.worst(count):
            lines.append(f"  {r.node[-44:]:44} {r.case:8} {r.max_abs:10.3e} {r.max_rel:10.3e} {r.max_ratio:8.3f} "
                         f"{r.over + r.nonfinite_mismatch:6d}  {'yes' if r.ok else 'NO'}")
        if self.kv_cache:
            judged = [k for k in self.kv_cache if k["judged"]]
            bad = [k for k in judged if not k["ok"]]
            top = max(self.kv_cache, key=lambda k: k["output_rel"])
            lines.append(f"  KV cache vs full sequence: {len(judged)} judged node inputs (first layer), max rel "
                         f"{max(k['input_rel'] for k in judged):.2e} <= {judged[0]['bound']:.2e}: "
                         + ("ok" if not bad else f"{len(bad)} differ, first {bad[0]['node']} (rel {bad[0]['input_rel']:.2e})")
                         + f"; deeper, reported: max output rel {top['output_rel']:.2e} ({top['node']})")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"onnx": self.onnx, "runtime": self.runtime, "dtype": self.dtype, "format": self.format,
                "passed": self.ok, "tokens": self.tokens, "weights": self.weights,
                "results": [dict(asdict(r), ok=r.ok) for r in self.results], "kv_cache": self.kv_cache}


def compare(actual: np.ndarray, checked: references.Checked) -> dict:
    a = np.asarray(actual).astype(np.float64)
    r = np.asarray(checked.output).astype(np.float64)
    if a.shape != r.shape:
        raise ValueError(f"output shape {list(a.shape)}, reference {list(r.shape)}")
    finite = np.isfinite(a) & np.isfinite(r)
    same_nonfinite = ~finite & ((np.isnan(a) & np.isnan(r)) | (a == r))
    d = np.where(finite, np.abs(a - r), 0.0)
    bound = np.broadcast_to(np.asarray(checked.bound, dtype=np.float64), d.shape)
    rms = float(np.sqrt(np.mean(np.square(r[finite])))) if finite.any() else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(finite, d / bound, 0.0)
    return {"elements": int(a.size), "max_abs": float(d.max(initial=0.0)),
            "max_rel": float(d.max(initial=0.0) / rms) if rms > 0 else 0.0,
            "max_ratio": float(np.nan_to_num(ratio, nan=np.inf).max(initial=0.0)),
            "over": int(np.count_nonzero(d > bound)), "nonfinite_mismatch": int(np.count_nonzero(~finite & ~same_nonfinite))}


def make_runs(side: dict, ids: np.ndarray, pad: int = 2) -> dict[str, dict]:
    """Feeds for prefill and full (decode's cache comes from the runtime's prefill). ids [B, S+1]."""
    b, total = ids.shape
    mask = np.ones((b, total), dtype=np.int64)
    pad = min(pad, total - 2) if b > 1 else 0
    mask[1:, :pad] = 0
    positions = np.clip(np.cumsum(mask, axis=1) - 1, 0, None).astype(np.int64)
    empty = np.zeros((b, side["num_kv_heads"], 0, side["head_dim"]), dtype=numpy_dtype(side["dtype"]))

    def feed(sl):
        f = {"input_ids": np.ascontiguousarray(ids[:, sl]), "position_ids": np.ascontiguousarray(positions[:, sl]),
             "attention_mask": np.ascontiguousarray(mask[:, : sl.stop])}
        for i in range(side["num_layers"]):
            f[f"past_key_values.{i}.key"] = empty
            f[f"past_key_values.{i}.value"] = empty
        return f

    return {"prefill": feed(slice(0, total - 1)), "full": feed(slice(0, total)),
            "decode": {"input_ids": ids[:, -1:].copy(), "position_ids": positions[:, -1:].copy(), "attention_mask": mask}}


def random_ids(side: dict, seed: int = 0, batch: int = 2, tokens: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, side["vocab_size"], size=(batch, tokens), dtype=np.int64)


def expected_nodes(nodes, values, checkpoint, dtype: str) -> dict:
    """node name -> (reference node, its input arrays with None where the runtime supplies the
    input (activations, router logits), where its weights come from): the
    checkpoint's layer or MoE block of that name when there is one (so the graph's weights and
    scales are checked too), else the graph's own. Nodes that are not checkpoint layers (e.g. the
    per-expert linears a qdq graph expands an MoE block into, gate and up rows fused) are allowed
    only beside checkpoint layers without a node of their name; otherwise a layer missing from
    either side raises ValueError."""
    from export.checkpoint.moe import find_expert_blocks, read_moe_block
    from export.onnx_reference import attributes_of

    layers = set(checkpoint.quantized_names) if checkpoint is not None else set()
    names = {cn.name for cn in nodes}
    blocks = {}  # node name ("<block>.experts", the NVFP4MoE module's path) -> the checkpoint's MoE block
    if checkpoint is not None:
        blocks = {f"{name}.experts": b for name, b in find_expert_blocks(checkpoint).items()
                  if f"{name}.experts" in names}
        experts = {b.linear_name(e, role) for b in blocks.values() for e in range(b.num_experts)
                   for role in ("gate", "up", "down")}
        missing, extra = sorted(layers - names - experts), sorted(names - layers - set(blocks))
        if bool(missing) != bool(extra):
            what = f"NVFP4 layer {missing[0]!r} of the checkpoint has no node" if missing else \
                f"node {extra[0]!r} is not an NVFP4 layer of the checkpoint"
            raise ValueError(f"{what} ({len(missing)} missing, {len(extra)} unknown)")
    expected = {}
    for cn in nodes:
        if cn.name in layers:
            node, arrays = references.node_from_layer(checkpoint.layer(cn.name), cn.node.op_type, cn.inputs[0], torch_dtype(dtype))
            expected[cn.name] = (node, [None, *arrays], "checkpoint")
        elif cn.name in blocks and cn.node.op_type == "NVFP4MoE":
            attrs = attributes_of(cn.node)
            moe = read_moe_block(checkpoint, blocks[cn.name], top_k=attrs["top_k"],
                                 normalize_topk=bool(attrs["normalize_topk"]))
            node, arrays = references.node_from_moe_block(moe, cn.node.op_type, *cn.inputs[:2])
            expected[cn.name] = (node, [None, None, *arrays], "checkpoint")
        else:
            arrays = [initializer_array(values[name]) if name and values[name].const_value is not None else None
                      for name in cn.inputs]
            expected[cn.name] = (cn.node, arrays, "graph")
    return expected


def check_layers(onnx_path, side: dict, make_runtime, ids: np.ndarray, checkpoint=None) -> LayerReport:
    """Run the three runs (make_runs) on `make_runtime(graph, extra_outputs)` and check every
    node that has a registered reference against the checkpoint's layer (or, without a checkpoint,
    the graph's own weights). Raises ValueError when the graph has no such node or its layers
    differ from the checkpoint's."""
    model = ir.load(str(onnx_path))
    nodes = checked_nodes(model)
    if not nodes:
        raise ValueError(f"{onnx_path}: no node with a registered reference (e.g. NVFP4Linear); nothing to check")
    values = values_by_name(model)
    expected = expected_nodes(nodes, values, checkpoint, side["dtype"])
    # The inputs the runtime computes (activations, an MoE block's router logits); the rest are initializers.
    runtime_inputs = {cn.name: [i for i, name in enumerate(cn.inputs) if name and values[name].const_value is None]
                      for cn in nodes}
    sharp = sharp_nodes(model, nodes)
    del values
    extra = sorted({cn.inputs[i] for cn in nodes for i in runtime_inputs[cn.name]} | {cn.output for cn in nodes})
    runtime = make_runtime(model, extra)  # the runtime takes over the loaded graph
    del model
    report = LayerReport(str(onnx_path), runtime.name, side["dtype"], side["format"],
                         weights=_weights_source(expected),
                         tokens={"batch": int(ids.shape[0]), "prefill": int(ids.shape[1] - 1)})
    runs = make_runs(side, ids)
    got = {}
    for case in ("prefill", "decode", "full"):
        feeds = runs[case]
        if case == "decode":
            for i in range(side["num_layers"]):
                for kv in ("key", "value"):
                    feeds[f"past_key_values.{i}.{kv}"] = got["prefill"][f"present.{i}.{kv}"]
        out = runtime.run(feeds)
        got[case] = {k: out[k] for k in extra + [k for k in out if k.startswith("present.")]}
    del runtime
    cases = ("prefill", "decode", "full")
    for cn in nodes:
        node, arrays, _ = expected[cn.name]
        inputs = list(arrays)
        # One reference call over the rows of all runs (decoding a layer's weights once).
        for i in runtime_inputs[cn.name]:
            parts = [got[c][cn.inputs[i]] for c in cases]
            inputs[i] = np.concatenate([a.reshape(-1, a.shape[-1]) for a in parts])
        xs = [got[c][cn.inputs[0]] for c in cases]
        k = xs[0].shape[-1]
        checked = references.check(node, inputs)
        start = 0
        for case, x in zip(cases, xs):
            rows = x.size // k
            y = got[case][cn.output]
            part = references.Checked(checked.output[start:start + rows].reshape(y.shape),
                                      _rows(checked.bound, start, rows, y.shape))
            report.results.append(NodeResult(cn.name, cn.node.op_type, case, **compare(y, part)))
            start += rows
    eps = float(ml_dtypes.finfo(numpy_dtype(side["dtype"])).eps)
    for cn in nodes:
        rel = {}
        for what, name in (("input", cn.inputs[0]), ("output", cn.output)):
            dec = got["decode"][name].astype(np.float64)
            full = got["full"][name][:, -1:].astype(np.float64)
            scale = float(np.abs(full).max()) or 1.0
            rel[what] = float(np.abs(dec - full).max()) / scale
        judged = cn.name in sharp
        bound = KV_RTOL_EPS * eps
        report.kv_cache.append({"node": cn.name, "input_rel": rel["input"], "output_rel": rel["output"],
                                "judged": judged, "bound": bound,
                                "ok": bool(not judged or (np.isfinite(rel["input"]) and rel["input"] <= bound))})
    return report


def _weights_source(expected: dict) -> str:
    sources = [source for *_, source in expected.values()]
    if len(set(sources)) == 1:
        return sources[0]
    return f"checkpoint ({sources.count('checkpoint')} nodes) or graph ({sources.count('graph')})"


def _rows(bound, start: int, rows: int, shape):
    b = np.asarray(bound)
    if b.ndim == 0:
        return b
    return b.reshape(-1, b.shape[-1])[start:start + rows].reshape(shape)


def sharp_nodes(model: ir.Model, nodes) -> set[str]:
    """Names of the checked nodes whose input lies at most one checked node deep: its value is
    computed from inputs that are the same in both runs, through at most one checked node, whose own
    input is then the same too, so only float rounding separates the two runs."""
    checked_outputs = {cn.output: cn for cn in nodes}
    depth: dict[str, int] = {}  # tensor -> checked nodes on the longest path that produced it
    for node in model.graph:
        d = max((depth.get(v.name, 0) for v in node.inputs if v is not None), default=0)
        for v in node.outputs:
            depth[v.name] = d + 1 if v.name in checked_outputs else d
    return {cn.name for cn in nodes if depth.get(cn.inputs[0], 0) <= 1}


def verify_layers(onnx_path, checkpoint_dir=None, *, library=None, ids: np.ndarray | None = None,
                  seed: int = 0) -> LayerReport:
    """The layer-by-layer check of an exported graph on the CPU runtime of its format, against the
    checkpoint in `checkpoint_dir` (or the graph's own weights when None)."""
    from export.checkpoint import open_checkpoint
    from export.sidecar import load_sidecar
    from plugins.verify.runtimes import cpu_runtime

    side = load_sidecar(onnx_path)
    checkpoint = open_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    if ids is None:
        ids = random_ids(side, seed, tokens=9)
    return check_layers(onnx_path, side, cpu_runtime(side, library), ids, checkpoint)
