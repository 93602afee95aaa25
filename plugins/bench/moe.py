"""Benchmark of one NVFP4MoE block on the GPU against bf16 (scripts/bench/bench_moe.py): prints a
table, writes OUT_DIR/moe-<card>.json and .md (`-quick` with --quick).

A Qwen3-30B-A3B-shaped block by default (E = 128 experts, top-8, hidden 2048, moe_intermediate
768) at M = 1 ... 256 tokens. Every variant runs the whole block from router logits to y.
Timing: CUDA graphs (plugins.bench.gemm.time_graph); one replay runs R calls on R different random
token batches, each call with the next of 4 copies of the weights (so a call never finds its
weights in the L2 from the call before, as in a model, where a layer's weights were last read a
whole forward pass ago); per-call time = median replay time / R. Variants:
  nvfp4 w4a4 / w4a16   plugins.moe_kernels.nvfp4_moe (the TensorRT plugin's kernels);
  bf16 grouped         softmax top-k, sort by expert, torch._grouped_mm for gate/up and down,
                       SiLU gating, weighted index_add (where torch._grouped_mm runs);
  bf16 loop            the experts each call hits, one cuBLAS matmul chain per expert, routing
                       known when the graph is captured (the loop's best case);
bf16 = the faster of the two, per M. Floors: only the experts a call hits are read, at the
device-to-device copy bandwidth (plugins.bench.gemm.measure_bandwidth: bytes read + written)
measured at the start and the end of the same run. The NVFP4 output of the smallest M is checked
against export.reference.nvfp4_moe_exact.
Exit status: 0 all good; 1 results written but a check failed; 2 no CUDA GPU or kernel library.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from export.errors import first_line
from export.outputs import replace_file
from plugins.bench.gemm import measure_bandwidth, sanitize_card_name, time_graph, warm_up_clocks
from plugins.bench.record import report_json

DEFAULT_TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
QUICK_TOKENS = (1, 8, 64, 256)
WEIGHT_COPIES = 4  # x 21 MB (NVFP4, the experts one decode call hits) > the L2
CHECK_TOLERANCE = 2.0**-6  # max |y - exact| / max |exact|; real bugs give O(1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experts", type=int, default=128)
    p.add_argument("--top-k", type=int, default=8)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--intermediate", type=int, default=768)
    p.add_argument("--tokens", default=",".join(map(str, DEFAULT_TOKENS)), help="comma-separated M values")
    p.add_argument("--quick", action="store_true", help=f"M = {', '.join(map(str, QUICK_TOKENS))}, fewer replays")
    p.add_argument("--replays", type=int, default=30, help="timed graph replays per variant and M (at most)")
    p.add_argument("--out-dir", type=Path, default=Path("docs/perf"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.tokens = QUICK_TOKENS if args.quick else tuple(int(t) for t in args.tokens.split(","))
    args.replays = min(args.replays, 10) if args.quick else args.replays
    return args


class Layer:
    """Random NVFP4 experts (stacked as the op takes them) and bf16 experts of the same shapes."""

    def __init__(self, E: int, H: int, I: int, gen, device="cuda"):  # noqa: E741
        self.E, self.H, self.I = E, H, I

        def byte(*shape):
            return torch.randint(0, 256, shape, device=device, dtype=torch.uint8, generator=gen)

        def scale(*shape):  # block scales 0.5 .. 2 (E4M3 0x30 .. 0x40)
            return torch.randint(0x30, 0x41, shape, device=device, dtype=torch.uint8, generator=gen)

        # Global scales that give outputs of order 1.
        self.tensors = dict(
            w13_weight=byte(E, 2 * I, H // 2), w13_weight_scale=scale(E, 2 * I, H // 16),
            w13_weight_global_scale=torch.full((E, 2 * I), 1.0 / (4 * H ** 0.5), device=device),
            w2_weight=byte(E, H, I // 2), w2_weight_scale=scale(E, H, I // 16),
            w2_weight_global_scale=torch.full((E, H), 1.0 / (4 * I ** 0.5), device=device))
        self.bf16_w13 = torch.randn(E, 2 * I, H, device=device, dtype=torch.bfloat16, generator=gen) * H ** -0.5
        self.bf16_w2 = torch.randn(E, H, I, device=device, dtype=torch.bfloat16, generator=gen) * I ** -0.5

    def attributes(self, top_k: int, mode: str) -> dict:
        s = [4.0 / 2688] * self.E if mode == "w4a4" else [1.0] * self.E
        return dict(num_experts=self.E, top_k=top_k, hidden_size=self.H, intermediate_size=self.I, mode=mode,
                    normalize_topk=1, w13_input_global_scale=s, w13_input_global_scale_inv=[1 / v for v in s],
                    w2_input_global_scale=s, w2_input_global_scale_inv=[1 / v for v in s])

    def expert_bytes(self, nvfp4: bool) -> float:
        weights = 3 * self.H * self.I
        return weights * (0.5 + 1 / 16) + (2 * self.I + self.H) * 4 if nvfp4 else weights * 2.0


def route(logits: torch.Tensor, top_k: int):
    probs = torch.softmax(logits.float(), dim=-1)
    weights, experts = probs.topk(top_k, dim=-1)
    return experts, weights / weights.sum(dim=-1, keepdim=True)


def bf16_grouped(layer: Layer, x, logits, top_k: int, out):
    """The bf16 block with torch._grouped_mm (no host synchronisation: capturable)."""
    experts, weights = route(logits, top_k)
    flat = experts.reshape(-1)
    order = torch.argsort(flat, stable=True)
    tokens = order // top_k
    counts = torch.zeros(layer.E, dtype=torch.int32, device=x.device).scatter_add_(
        0, flat, torch.ones_like(flat, dtype=torch.int32))
    offs = torch.cumsum(counts, 0, dtype=torch.int32)
    gu = torch._grouped_mm(x[tokens], layer.bf16_w13.transpose(-2, -1), offs=offs)
    h = torch.nn.functional.silu(gu[:, :layer.I]) * gu[:, layer.I:]
    d = torch._grouped_mm(h, layer.bf16_w2.transpose(-2, -1), offs=offs)
    out.zero_().index_add_(0, tokens, (d.float() * weights.reshape(-1)[order, None]).to(out.dtype))


def bf16_loop(layer: Layer, x, logits, top_k: int, out):
    """A call of the bf16 block as a loop over the experts this batch hits: gather, gate/up matmul,
    SiLU gating, down matmul, weighted index_add (the routing is computed now, on the host: the
    loop's best case). Returns the call."""
    experts, weights = route(logits, top_k)
    plan = []
    for e in torch.unique(experts).tolist():
        rows, slot = torch.nonzero(experts == e, as_tuple=True)
        plan.append((e, rows, weights[rows, slot].to(torch.bfloat16)[:, None]))

    def call():
        out.zero_()
        for e, rows, w in plan:
            gu = x.index_select(0, rows) @ layer.bf16_w13[e].t()
            h = torch.nn.functional.silu(gu[:, :layer.I]) * gu[:, layer.I:]
            out.index_add_(0, rows, (h @ layer.bf16_w2[e].t()) * w)
    return call


def check_nvfp4(layer: Layer, x, logits, attrs: dict, y) -> float:
    """max |y - exact| / max |exact| of one NVFP4 output (export.reference.nvfp4_moe_exact, CPU)."""
    from export.moe import unstack_moe
    from export.reference import nvfp4_moe_exact

    moe = unstack_moe([t.cpu() for t in layer.tensors.values()], **attrs)
    ref = nvfp4_moe_exact(x.cpu(), logits.cpu(), moe).float()
    return float((y.float().cpu() - ref).abs().max() / ref.abs().max().clamp(min=1e-30))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_moe: no CUDA device")
        return 2
    try:
        from plugins import moe_kernels
        moe_kernels.library()
    except (OSError, AttributeError) as e:
        print(f"bench_moe: kernels library not usable: {e}")
        return 2
    card = torch.cuda.get_device_name()
    gen = torch.Generator(device="cuda").manual_seed(args.seed)
    E, k, H, I = args.experts, args.top_k, args.hidden, args.intermediate
    layers = [Layer(E, H, I, gen) for _ in range(WEIGHT_COPIES)]
    warm_up_clocks()
    bw_start = measure_bandwidth(1 << 30)
    copy_start = max(bw_start["memcpy"], bw_start["kernel"])
    header = (f"NVFP4MoE block E={E} top-{k} H={H} I={I} on {card}, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}; "
              f"copy {copy_start:.3f} TB/s")
    print(header, flush=True)
    print(f"{'M':>4} {'experts':>7} {'w4a4 us':>8} {'w4a16 us':>8} {'bf16 grp':>8} {'bf16 loop':>9} "
          f"{'bf16/w4a4':>9} {'floor us':>8} {'w4a4 % copy':>11}", flush=True)
    rows, errors = [], []
    for M in args.tokens:
        calls = 16 if M <= 8 else 8  # a multiple of WEIGHT_COPIES
        batches = [(torch.randn(M, H, device="cuda", generator=gen).to(torch.bfloat16),
                    torch.randn(M, E, device="cuda", generator=gen).to(torch.bfloat16)) for _ in range(calls)]
        hit = statistics.mean(len(torch.unique(route(lg, k)[0])) for _, lg in batches)
        row = dict(M=M, experts_hit=hit, calls_per_replay=calls)
        outs = [torch.empty(M, H, device="cuda", dtype=torch.bfloat16) for _ in batches]
        for mode in ("w4a4", "w4a16"):
            attrs = layers[0].attributes(k, mode)
            ws = torch.empty(max(256, moe_kernels.workspace_size(M, E, k, H, I, mode, torch.bfloat16)),
                             dtype=torch.uint8, device="cuda")
            row[f"nvfp4_{mode}_us"] = time_graph(
                [lambda x=x, lg=lg, o=o, w=layers[r % WEIGHT_COPIES].tensors:
                 moe_kernels.nvfp4_moe(x, lg, **w, **attrs, out=o, workspace=ws)
                 for r, ((x, lg), o) in enumerate(zip(batches, outs))], 3, args.replays).us
            if M == min(args.tokens):
                err = check_nvfp4(layers[0], *batches[0], attrs, outs[0])
                row[f"nvfp4_{mode}_check"] = err
                if not err <= CHECK_TOLERANCE:
                    errors.append(f"M={M} {mode}: max error {err:.3g} x max |exact|")
        try:
            row["bf16_grouped_us"] = time_graph(
                [lambda x=x, lg=lg, o=o, lay=layers[r % WEIGHT_COPIES]: bf16_grouped(lay, x, lg, k, o)
                 for r, ((x, lg), o) in enumerate(zip(batches, outs))], 3, args.replays).us
        except (RuntimeError, AttributeError) as e:  # torch._grouped_mm absent or not for this GPU
            row["bf16_grouped_us"] = None
            row["bf16_grouped_error"] = first_line(e)[:200]
        row["bf16_loop_us"] = time_graph(
            [bf16_loop(layers[r % WEIGHT_COPIES], x, lg, k, o) for r, ((x, lg), o) in enumerate(zip(batches, outs))],
            3, args.replays).us
        bf16 = min(v for v in (row["bf16_grouped_us"], row["bf16_loop_us"]) if v is not None)
        row.update(bf16_us=bf16, bf16_over_w4a4=bf16 / row["nvfp4_w4a4_us"],
                   floor_nvfp4_us=hit * layers[0].expert_bytes(True) / (copy_start * 1e6),
                   floor_bf16_us=hit * layers[0].expert_bytes(False) / (copy_start * 1e6))
        row["w4a4_pct_copy"] = 100 * row["floor_nvfp4_us"] / row["nvfp4_w4a4_us"]
        rows.append(row)
        grp = f"{row['bf16_grouped_us']:8.1f}" if row["bf16_grouped_us"] is not None else f"{'n/a':>8}"
        print(f"{M:>4} {hit:>7.1f} {row['nvfp4_w4a4_us']:>8.1f} {row['nvfp4_w4a16_us']:>8.1f} {grp} "
              f"{row['bf16_loop_us']:>9.1f} {row['bf16_over_w4a4']:>9.2f} {row['floor_nvfp4_us']:>8.1f} "
              f"{row['w4a4_pct_copy']:>10.0f}%", flush=True)
        del batches, outs
        torch.cuda.empty_cache()
    bw_end = measure_bandwidth(1 << 30)
    copy_end = max(bw_end["memcpy"], bw_end["kernel"])
    report = dict(card=card, date=time.strftime("%Y-%m-%d", time.gmtime()), torch=torch.__version__,
                  shape=dict(experts=E, top_k=k, hidden=H, intermediate=I), copy_TBps_start=copy_start,
                  copy_TBps_end=copy_end, method=__doc__, rows=rows, errors=errors)
    stem = f"moe-{sanitize_card_name(card)}" + ("-quick" if args.quick else "")
    replace_file(args.out_dir / f"{stem}.json", report_json(report))
    md = [f"# {header}", "", f"Copy bandwidth at the end: {copy_end:.3f} TB/s. Method: plugins/bench/moe.py.", "",
          "| M | experts hit | NVFP4 w4a4 µs | NVFP4 w4a16 µs | bf16 grouped µs | bf16 loop µs | bf16 / w4a4 | "
          "floor µs (NVFP4) | floor µs (bf16) | w4a4 % of copy bw |", "|" + "---|" * 10]
    for r in rows:
        grp = f"{r['bf16_grouped_us']:.1f}" if r["bf16_grouped_us"] is not None else "n/a"
        md.append(f"| {r['M']} | {r['experts_hit']:.1f} | {r['nvfp4_w4a4_us']:.1f} | {r['nvfp4_w4a16_us']:.1f} | "
                  f"{grp} | {r['bf16_loop_us']:.1f} | {r['bf16_over_w4a4']:.2f} | {r['floor_nvfp4_us']:.1f} | "
                  f"{r['floor_bf16_us']:.1f} | {r['w4a4_pct_copy']:.0f} % |")
    md += [""] + [f"Check failed: {e}" for e in errors]
    replace_file(args.out_dir / f"{stem}.md", "\n".join(md) + "\n")
    print(f"copy {copy_end:.3f} TB/s at the end; wrote {args.out_dir / stem}.json and .md"
          + ("".join(f"\nCHECK FAILED: {e}" for e in errors)), flush=True)
    return 1 if errors else 0
