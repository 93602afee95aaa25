"""Export speed and memory benchmark (not a test): a synthetic ~1 B-parameter NVFP4 Llama
(scripts/bench/bench_export.py).

Writes a Llama-3.2-1B-shaped ModelOpt NVFP4 checkpoint (hidden 2048, 16 layers, 32/8 heads,
intermediate 8192, vocab 128256, tied bf16 embeddings; random packed weights and FP8 scales, so
it is fast to make) into a temporary folder, runs `scripts/export.py` on it in a child process and
prints wall time and the child's peak RSS (os.wait4's rusage of that child) against the goals:
<= 60 s and <= 2x the checkpoint's bytes. Results: docs/export.md, "Speed and memory".
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from export.dtypes import ACTIVATION_DTYPES
from export.sidecar import FORMATS
from plugins.library import REPO_ROOT

SHAPE = dict(hidden=2048, layers=16, heads=32, kv_heads=8, head_dim=64, intermediate=8192, vocab=128256)


def make_checkpoint(folder: Path, seed: int = 0) -> int:
    """Write the synthetic checkpoint; returns its tensor bytes."""
    import torch

    from export.checkpoint.writer import layer_tensors, make_scheme, write_checkpoint
    from export.layer import NVFP4LinearWeights

    s = SHAPE
    gen = torch.Generator().manual_seed(seed)
    scheme = make_scheme("modelopt", exclude=["lm_head"])
    tensors: dict[str, torch.Tensor] = {}

    def nvfp4(name, n, k):
        packed = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, generator=gen)
        # FP8 block scales spread over a realistic range (0.25 .. 2), dequant direction.
        scale = (0.25 + 1.75 * torch.rand(n, k // 16, generator=gen)).to(torch.float8_e4m3fn)
        layer = NVFP4LinearWeights(name, packed, scale, torch.tensor(1e-3), torch.tensor(0.01), torch.tensor(100.0))
        tensors.update(layer_tensors(scheme, layer))

    h, d, kv, i = s["hidden"], s["head_dim"], s["kv_heads"], s["intermediate"]
    tensors["model.embed_tokens.weight"] = (0.02 * torch.randn(s["vocab"], h, generator=gen)).to(torch.bfloat16)
    tensors["model.norm.weight"] = torch.ones(h, dtype=torch.bfloat16)
    for layer in range(s["layers"]):
        p = f"model.layers.{layer}"
        nvfp4(f"{p}.self_attn.q_proj", s["heads"] * d, h)
        nvfp4(f"{p}.self_attn.k_proj", kv * d, h)
        nvfp4(f"{p}.self_attn.v_proj", kv * d, h)
        nvfp4(f"{p}.self_attn.o_proj", h, s["heads"] * d)
        nvfp4(f"{p}.mlp.gate_proj", i, h)
        nvfp4(f"{p}.mlp.up_proj", i, h)
        nvfp4(f"{p}.mlp.down_proj", h, i)
        tensors[f"{p}.input_layernorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
        tensors[f"{p}.post_attention_layernorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h,
        "intermediate_size": i, "num_hidden_layers": s["layers"], "num_attention_heads": s["heads"],
        "num_key_value_heads": kv, "head_dim": d, "vocab_size": s["vocab"], "rms_norm_eps": 1e-5,
        "max_position_embeddings": 131072, "tie_word_embeddings": True, "hidden_act": "silu",
        "rope_theta": 500000.0, "torch_dtype": "bfloat16",
        "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    }
    write_checkpoint(folder, scheme, config, tensors, max_shard_bytes=2 * 1024**3)
    return sum(t.numel() * t.element_size() for t in tensors.values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="NVFP4 export benchmark (synthetic ~1 B Llama)")
    ap.add_argument("--dtype", default="bfloat16", choices=ACTIVATION_DTYPES)
    ap.add_argument("--format", default="plugin", choices=FORMATS)
    ap.add_argument("--keep", default=None, help="make the checkpoint/output here and keep them")
    ap.add_argument("--make-checkpoint", default=None, help=argparse.SUPPRESS)  # internal: child mode
    args = ap.parse_args(argv)
    if args.make_checkpoint:
        print(make_checkpoint(Path(args.make_checkpoint)))
        return 0

    tmp_ctx = tempfile.TemporaryDirectory(prefix="nvfp4-bench-") if args.keep is None else None
    work = Path(args.keep or tmp_ctx.name).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ckpt, out = work / "ckpt", work / "model.onnx"
    try:
        t0 = time.perf_counter()
        if not (ckpt / "config.json").exists():
            # In a child too: this process must stay small, since a child started while it holds
            # the generated tensors would count them in its own peak RSS (measured: 2.19x vs 1.40x).
            made = subprocess.run([sys.executable, "-m", "plugins.bench.export_speed", "--make-checkpoint", str(ckpt)],
                                  cwd=REPO_ROOT, capture_output=True, text=True, check=True)
            ckpt_bytes = int(made.stdout.split()[-1])
        else:
            ckpt_bytes = sum(f.stat().st_size for f in ckpt.glob("*.safetensors"))
        print(f"checkpoint: {ckpt_bytes / 1e9:.3f} GB of tensors, made in {time.perf_counter() - t0:.1f} s")

        cmd = [sys.executable, str(REPO_ROOT / "scripts" / "export.py"), str(ckpt), str(out),
               "--format", args.format, "--dtype", args.dtype, "--force", "--quiet"]
        t0 = time.perf_counter()
        # os.wait4 gives this child's own rusage (RUSAGE_CHILDREN would mix in the checkpoint maker).
        with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
            child = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, text=True)
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - t0
            out_f.seek(0)
            err_f.seek(0)
            proc = subprocess.CompletedProcess(cmd, child.returncode, out_f.read(), err_f.read())
        peak_kib = usage.ru_maxrss
        print(proc.stdout.strip())
        if proc.returncode != 0:
            print(proc.stderr.strip()[-3000:], file=sys.stderr)
            print(f"export failed with status {proc.returncode}", file=sys.stderr)
            return 1
        peak = peak_kib * 1024
        written = sum(p.stat().st_size for p in work.glob("model.onnx*"))
        print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, load avg {os.getloadavg()}")
        print(f"export wall time: {wall:.1f} s (goal <= 60 s) {'OK' if wall <= 60 else 'MISSED'}")
        print(f"export peak RSS: {peak / 1e9:.3f} GB = {peak / ckpt_bytes:.2f}x checkpoint (goal <= 2x) "
              f"{'OK' if peak <= 2 * ckpt_bytes else 'MISSED'}"
              )
        print(f"written: {written / 1e9:.3f} GB")
        return 0
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()


if __name__ == "__main__":
    sys.exit(main())
