"""Quantize an fp32/bf16/fp16 Hugging Face checkpoint folder to NVFP4 in any of the three layouts.

Weights: ModelOpt's math (`export.nvfp4.quantize_weight`), with the weight global scale in the
layout's own convention (amax/2688 stored for ModelOpt/Quark, 2688/amax for compressed-tensors;
the dequant value is derived from the stored one exactly as the readers do).
Activations (W4A4): "max" calibration of each linear's input amax on given or seeded random
token batches run through the transformers model (forward pre-hooks on nn.Linear), then
input scale = amax/2688 (ModelOpt/Quark, dequant) or 2688/amax (compressed-tensors, quant).
Every linear keeps its own scales: nothing is shared or max-merged across q/k/v or gate/up.
Mixture-of-Experts experts (one stored linear per expert and projection) are quantized the same
way; their calibration is export/quantize_moe.py's.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from export.checkpoint.hf_config import check_model_config
from export.checkpoint.patterns import matches_any, pattern_list
from export.checkpoint.store import INDEX_NAME, TensorStore
from export.checkpoint.writer import layer_tensors, make_scheme, write_checkpoint
from export.errors import CheckpointError, UserError, first_line
from export.inputs import read_json_object
from export.layer import GROUP_SIZE, NVFP4LinearWeights
from export.nvfp4 import E2M1_MAX, FP8_E4M3_MAX, quantize_weight
from export.outputs import check_outputs
from export.quantize_moe import expert_amax_hooks, expert_linears, router_names

DEFAULT_EXCLUDE = ("lm_head",)
_SKIP_FILES = {"config.json", "hf_quant_config.json", INDEX_NAME}
_AMAX_DENOM = E2M1_MAX * FP8_E4M3_MAX  # 2688


@dataclass
class QuantizeResult:
    out_dir: Path
    format: str
    layers: dict[str, NVFP4LinearWeights] = field(default_factory=dict)  # as written, dequant direction
    excluded: list[str] = field(default_factory=list)
    input_amax: dict[str, float] = field(default_factory=dict)


def _load_model(src: Path, *, weights: bool):
    """The transformers model of src: with its weights (float32, for calibration) or, to list
    the linears before anything is read, an empty one on the meta device."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()
    try:
        if weights:
            model = transformers.AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
        else:
            config = transformers.AutoConfig.from_pretrained(str(src))
            with torch.device("meta"):
                model = transformers.AutoModelForCausalLM.from_config(config)
    except Exception as e:  # transformers raises many types; report one line
        raise CheckpointError(f"transformers cannot load this model ({first_line(e)})", file=str(src)) from None
    finally:
        transformers.utils.logging.set_verbosity(verbosity)
    return model.eval()


def random_calibration_batches(vocab_size: int, batches: int, seed: int, batch_size: int = 2,
                               seq_len: int = 32) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab_size, (batch_size, seq_len), generator=gen) for _ in range(batches)]


def text_calibration_batches(src, text: str, *, seq_len: int = 64, batch_size: int = 2) -> list[torch.Tensor]:
    """Token batches [batch_size, seq_len] of `text`, tokenized with the tokenizer in `src` (real
    activations for the "max" calibration); a last short batch is dropped unless it is the only one."""
    import transformers

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(src))
    except Exception as e:  # noqa: BLE001 - many exception types for "no tokenizer"
        raise CheckpointError(f"calibration text needs the model's tokenizer ({first_line(e)})", file=str(src)) from None
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.int64)
    per_batch = seq_len * batch_size
    if ids.numel() < per_batch:
        if ids.numel() < 1:
            raise CheckpointError("the calibration text has no tokens", file=str(src))
        return [ids[None]]
    return list(ids[: ids.numel() // per_batch * per_batch].reshape(-1, batch_size, seq_len))


def calibrate_input_amax(model, names: list[str], batches: list[torch.Tensor], experts=None) -> dict[str, float]:
    """Max |input| seen by each named nn.Linear over the batches, and by each expert linear of
    `experts` (export.quantize_moe.expert_linears)."""
    modules = dict(model.named_modules())
    amax = {n: 0.0 for n in names}
    hooks = expert_amax_hooks(model, experts, amax) if experts else []
    names = [n for n in names if not experts or n not in experts]

    def hook_for(name):
        def hook(_module, args):
            a = float(args[0].detach().abs().amax().float())
            amax[name] = a if math.isnan(a) else max(amax[name], a)
        return hook

    for n in names:
        hooks.append(modules[n].register_forward_pre_hook(hook_for(n)))
    try:
        with torch.no_grad():
            for ids in batches:
                model(input_ids=ids, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return amax


def _global_from_amax(amax: torch.Tensor, reciprocal: bool, what: str, file: str, tensor: str) -> torch.Tensor:
    """The stored float32 global scale: amax/2688 (dequant) or 2688/amax (compressed-tensors).
    Both it and its reciprocal must be finite and > 0 in float32 (else the layer cannot be
    represented: an amax below ~1e-35 or above ~1e38)."""
    amax = amax.to(torch.float32)
    stored = (_AMAX_DENOM / amax) if reciprocal else (amax / _AMAX_DENOM)
    for v in (stored, 1.0 / stored):
        if not (math.isfinite(float(v)) and float(v) > 0):
            raise CheckpointError(f"{what} amax {float(amax):.9g} gives a global scale {float(stored):.9g} whose "
                                  "float32 reciprocal is not finite; this layer cannot be NVFP4 (exclude it with "
                                  "--exclude)", file=file, tensor=tensor)
    return stored


def quantize_checkpoint(src_dir, out_dir, fmt: str, *, w4a16: bool = False, calib_batches: int = 4,
                        seed: int = 0, exclude=DEFAULT_EXCLUDE, calib_input_ids: list[torch.Tensor] | None = None,
                        max_shard_bytes: int | None = None, force: bool = False) -> QuantizeResult:
    """Quantize the Hugging Face model in `src_dir` into `out_dir` (replaced only with `force`;
    never when it is, holds or lies inside `src_dir`). Raises a UserError (one line) for bad input."""
    src, out = Path(src_dir), Path(out_dir)
    scheme = make_scheme(fmt, exclude=pattern_list(list(exclude), "--exclude"), w4a16=w4a16)
    if calib_batches < 1 and not w4a16 and not calib_input_ids:
        raise UserError(f"--calib-batches must be >= 1, got {calib_batches}")
    if not src.is_dir():
        raise CheckpointError("is not a directory", file=str(src))
    check_outputs([out], inputs=[src], force=force, directory=True)
    config_path = src / "config.json"
    if not os.path.lexists(config_path):
        raise CheckpointError("missing config.json (expected a Hugging Face model folder)", file=str(src))
    config = read_json_object(config_path, "config.json", error=CheckpointError)
    if "quantization_config" in config or os.path.lexists(src / "hf_quant_config.json"):
        raise CheckpointError("is already quantized (has a quantization config)", file=str(config_path))
    store = TensorStore(src)
    # Sizes and types before transformers builds anything from them.
    check_model_config(config, str(config_path), store.names(), store.shape)
    skeleton = _load_model(src, weights=False)
    modules = dict(skeleton.named_modules())
    linears = [n for n, m in modules.items() if isinstance(m, torch.nn.Linear)]
    embed = skeleton.get_input_embeddings().weight
    # A tied lm_head shares the embedding and has no tensor of its own: it stays unquantized.
    tied = {n for n in linears if modules[n].weight is embed}
    experts = expert_linears(store.names())
    if experts:  # routers stay unquantized; list them as excluded, as ModelOpt and llm-compressor do
        scheme.exclude += [r for r in router_names(experts) if not matches_any(r, scheme.exclude)]
    quantized = [n for n in linears if n not in tied and not matches_any(n, scheme.exclude)]
    excluded = [n for n in linears if n not in quantized]
    experts = {n: x for n, x in experts.items() if not matches_any(n, scheme.exclude)}
    quantized += list(experts)
    if not quantized:
        raise CheckpointError(f"no linear layer is left to quantize ({len(linears)} linears, all excluded or tied); "
                              "an NVFP4 checkpoint without NVFP4 layers would be mislabelled", file=str(src))
    for n in quantized:
        wname = f"{n}.weight"
        if wname not in store:
            raise CheckpointError(f"missing tensor for nn.Linear '{n}'", file=str(src), tensor=wname)
        expected = [modules[n].out_features, modules[n].in_features] if n in modules else store.shape(wname)
        if store.shape(wname) != expected or len(expected) != 2:
            raise CheckpointError(f"expected shape {expected} (from config.json), got {store.shape(wname)}",
                                  file=str(store.file_of(wname)), tensor=wname)
        if expected[1] % GROUP_SIZE:
            raise CheckpointError(f"in_features {expected[1]} is not a multiple of {GROUP_SIZE}; exclude this "
                                  "layer (--exclude)", file=str(store.file_of(wname)), tensor=wname)
    del skeleton, modules, embed

    amax = {}
    if not w4a16:
        model = _load_model(src, weights=True)
        batches = calib_input_ids or random_calibration_batches(model.config.vocab_size, calib_batches, seed)
        amax = calibrate_input_amax(model, quantized, batches, experts)
        del model
        for n, a in amax.items():
            if not (math.isfinite(a) and a > 0):
                raise CheckpointError(f"calibration gave input amax {a} for '{n}' (expected finite and > 0)",
                                      file=str(src))

    result = QuantizeResult(out_dir=out, format=scheme.format, excluded=excluded, input_amax=amax)
    tensors: dict[str, torch.Tensor] = {}
    qset = set(quantized)
    for name in store.names():
        module, _, suffix = name.rpartition(".")
        if module in qset and suffix == "weight":
            continue  # written below in the NVFP4 layout
        tensors[name] = store.get(name)  # unquantized tensors keep the source dtype
    for n in quantized:
        w = store.get(f"{n}.weight").to(torch.float32)
        if not torch.isfinite(w).all():
            raise CheckpointError("has NaN or Inf values", file=str(store.file_of(f"{n}.weight")),
                                  tensor=f"{n}.weight")
        w_amax = w.abs().amax()
        w_stored = _global_from_amax(w_amax if w_amax > 0 else torch.tensor(_AMAX_DENOM), scheme.reciprocal_globals,
                                     "weight", str(store.file_of(f"{n}.weight")), f"{n}.weight")
        packed, scale, g = quantize_weight(w, scheme.to_dequant(w_stored))
        s_in = s_in_inv = None
        if not w4a16:
            stored_in = _global_from_amax(torch.tensor(amax[n]), scheme.reciprocal_globals,
                                          "calibrated input", str(src), f"{n} input")
            s_in, s_in_inv = scheme.input_scales(stored_in)
        bias = tensors.pop(f"{n}.bias", None)
        layer = NVFP4LinearWeights(n, packed, scale, g, s_in, s_in_inv, bias)
        stored = layer_tensors(scheme, layer)
        # Write the stored global exactly (1/(1/x) need not round back to x in float32).
        stored[f"{n}.{scheme.weight_global_suffix}"] = w_stored.reshape(stored[f"{n}.{scheme.weight_global_suffix}"].shape)
        tensors.update(stored)
        result.layers[n] = layer

    # Side files (tokenizer, generation config...) are copied; hidden files and special files are not.
    extra = {p.name: p for p in sorted(src.iterdir())
             if p.is_file() and not p.name.startswith(".") and p.name not in _SKIP_FILES
             and not p.name.endswith((".safetensors", ".bin", ".pt"))}
    ordered = dict(sorted(tensors.items()))
    write_checkpoint(out, scheme, config, ordered, extra_files=extra, max_shard_bytes=max_shard_bytes,
                     inputs=[src], force=force)
    return result
