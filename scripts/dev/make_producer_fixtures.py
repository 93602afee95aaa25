#!/usr/bin/env python3
"""Make the real-producer test fixtures under tests/fixtures/producers/ (tiny Llama) and
tests/fixtures/producers-moe/<family>/ (tiny Qwen3-MoE and Mixtral, `--family qwen3_moe|mixtral`).

A tiny seeded random model (`source`) is quantized to NVFP4 W4A4 by each real tool, with the
tool's own public API, and the folder the tool exported is committed as it was written (less
tokenizer/generation files). Next to it go `tool_dequant.safetensors` (every quantized weight
dequantized to float32 by the TOOL'S OWN dequantization code) and `provenance.json`.

Each tool sub-command must run inside that tool's own virtual environment (see
scripts/dev/README.md, which makes them under $VENVS); the `source` sub-command runs in any python
with torch + transformers:

    python3 scripts/dev/make_producer_fixtures.py source
    $VENVS/modelopt/bin/python scripts/dev/make_producer_fixtures.py modelopt
    $VENVS/quark/bin/python    scripts/dev/make_producer_fixtures.py quark
    $VENVS/llmc/bin/python     scripts/dev/make_producer_fixtures.py compressed-tensors
    ... and the same four with `--family qwen3_moe` or `--family mixtral` for the MoE fixtures.

The tool sub-commands use nothing of the project's but export.outputs (standard library only, to
swap a finished fixture in), so the fixtures are independent of the readers they test; `source`
uses export.tiny_models.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the export/ package

from export.outputs import Staging  # noqa: E402
FAMILY = "llama"  # set by --family
FIXTURES = REPO / "tests" / "fixtures" / "producers"
SOURCE_DIR = FIXTURES / "source-llama"


def select_family(family: str) -> None:
    """Llama fixtures live in producers/ (source-llama/, <tool>/); each MoE family's in
    producers-moe/<family>/ (source/, <tool>/)."""
    global FAMILY, FIXTURES, SOURCE_DIR
    FAMILY = family
    if family == "llama":
        FIXTURES = REPO / "tests" / "fixtures" / "producers"
        SOURCE_DIR = FIXTURES / "source-llama"
    else:
        FIXTURES = REPO / "tests" / "fixtures" / "producers-moe" / family
        SOURCE_DIR = FIXTURES / "source"

MODEL_SEED = 0
CALIB_SEED = 1234
CALIB_SAMPLES = 4
CALIB_SEQ_LEN = 32
# The source model is bf16, like the checkpoints these tools are normally run on.
SOURCE_DTYPE = torch.bfloat16
# Only these files of a tool's export are kept; tokenizer and generation files are not needed.
KEEP_SUFFIXES = (".safetensors", ".safetensors.index.json")
KEEP_NAMES = ("config.json", "hf_quant_config.json")


# ----------------------------------------------------------------------------- shared helpers

def source_vocab_size() -> int:
    return int(json.loads((SOURCE_DIR / "config.json").read_text())["vocab_size"])


def make_source() -> None:
    """Write the seeded random tiny Llama every tool quantizes (and the parity test re-uses).

    Built by the project's export.tiny_models (the only project import here, and only in this
    sub-command, which runs in the project's python), so tests and fixtures share one recipe."""
    from export.tiny_models import make_tiny_hf_model

    from safetensors.torch import load_file, save_file

    with tempfile.TemporaryDirectory(dir=FIXTURES) as tmp:
        make_tiny_hf_model(FAMILY, tmp, seed=MODEL_SEED, dtype=SOURCE_DTYPE)
        _keep_only_checkpoint_files(Path(tmp))
        prov = {
            "what": f"seeded random tiny {FAMILY}, the source model every producer fixture beside it quantizes",
            "built_with": f'export.tiny_models.make_tiny_hf_model("{FAMILY}", out_dir, seed={MODEL_SEED}, '
            f"dtype=torch.{str(SOURCE_DTYPE).removeprefix('torch.')})",
            "seed": MODEL_SEED,
            "dtype": str(SOURCE_DTYPE).removeprefix("torch."),
            "torch": torch.__version__,
            "transformers": metadata.version("transformers"),
            "command": "python3 scripts/dev/make_producer_fixtures.py source"
            + ("" if FAMILY == "llama" else f" --family {FAMILY}"),
        }
        if FAMILY == "llama":
            weights_file = Path(tmp) / "model.safetensors"
            tensors = load_file(str(weights_file))
            name = f"{EDGE_LAYER}.weight"
            tensors[name] = inject_edge_blocks(tensors[name]).to(SOURCE_DTYPE)
            save_file(tensors, str(weights_file), metadata={"format": "pt"})
            prov["edge_blocks"] = (f"{EDGE_LAYER}.weight rescaled and given hand-set blocks in rows 0-7 "
                                   "(see inject_edge_blocks in scripts/dev/make_producer_fixtures.py)")
        (Path(tmp) / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
        _replace_dir(Path(tmp), SOURCE_DIR)
    print(f"wrote {SOURCE_DIR}")


# One unfused linear gets blocks that exercise the edge cases of NVFP4 weight quantization, so that
# the fixtures record how each real tool handles them.
EDGE_LAYER = "model.layers.0.self_attn.o_proj"
_TIES = [6, -6, 0.25, -0.25, 0.75, -0.75, 1.25, -1.25, 1.75, -1.75, 2.5, -2.5, 3.5, -3.5, 5, -5]


def inject_edge_blocks(w: torch.Tensor) -> torch.Tensor:
    """Rescale w so that its amax is 21*2^-10 (weight global scale amax/2688 = 2^-17 exactly,
    and 2688/amax = 2^17 exactly) and overwrite block 0 (columns 0-15) of rows 0-7.

    Block values are written as t * s * 2^-17: s is the block's intended FP8 scale, t the value
    on the E2M1 grid; every value is exact in bf16."""
    g = 2.0**-17
    amax = 21 * 2.0**-10
    w = w.double() * (0.9 * amax / w.double().abs().max())
    w[0, 0] = amax  # raw block scale 448: the FP8 maximum

    def block(row: int, s: float, t: list[float]) -> None:
        w[row, :16] = torch.tensor(t, dtype=torch.float64) * s * g

    w[1, :16] = 0.0  # an all-zero block
    block(2, 64, _TIES)  # every E2M1 rounding tie, at a normal FP8 scale
    # raw scale 6.375*64/6 = 68 ties to 64 in FP8 (RNE), so +-6.375 must saturate to +-6
    block(3, 64, [6.375, -6.375, 6, 5.5, 4.5, 0.1, -0.1, 3, 2, 1, 0.5, 0, -0.0, 1.5, -3, 4])
    block(4, 2.0**-7, _TIES)  # an FP8-subnormal block scale (2^-7)
    # raw scale 1.5*2^-9 ties between the subnormals 2^-9 and 2^-8 (RNE: 2^-8); 4.5 -> 4
    block(5, 2.0**-8, [4.5, -4.5, 1, -1, 0.5, -0.5, 0.25, -0.25, 2, -2, 3, -3, 0.75, -0.75, 1.5, -1.5])
    # raw scale 2^-11: below half the smallest FP8 subnormal (2^-9), so a plain cast gives 0
    block(6, 2.0**-9, [1.5, -1.5, 1, -1, 0.5, -0.5, 0.25, -0.25, 0.75, -0.75, 1.25, -1.25, 0, 0, 1, 1])
    # raw scale 2^-10: exactly half of 2^-9 (RNE ties to 0)
    block(7, 2.0**-9, [3, -3, 2, -2, 1, -1, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.25, 0.75, 1.25, 1.75])
    return w


def load_source():
    from transformers import AutoModelForCausalLM

    if not (SOURCE_DIR / "config.json").exists():
        sys.exit(f"error: {SOURCE_DIR} is missing; run the `source` sub-command first")
    return AutoModelForCausalLM.from_pretrained(SOURCE_DIR, dtype=SOURCE_DTYPE).eval()


def calibration_tokens() -> torch.Tensor:
    """Random token ids (no hub data set): [CALIB_SAMPLES, CALIB_SEQ_LEN] int64."""
    gen = torch.Generator().manual_seed(CALIB_SEED)
    return torch.randint(0, source_vocab_size(), (CALIB_SAMPLES, CALIB_SEQ_LEN), generator=gen)


def calibration_description() -> dict:
    return {
        "kind": "random token ids, torch.randint(0, vocab, generator=torch.Generator().manual_seed(seed))",
        "seed": CALIB_SEED,
        "samples": CALIB_SAMPLES,
        "seq_len": CALIB_SEQ_LEN,
        "token_ids": calibration_tokens().tolist(),
    }


def _keep_only_checkpoint_files(folder: Path) -> None:
    for p in list(folder.iterdir()):
        if p.is_dir():
            shutil.rmtree(p)
        elif not (p.name in KEEP_NAMES or p.name.endswith(KEEP_SUFFIXES)):
            p.unlink()


def _replace_dir(src: Path, dst: Path) -> None:
    """Swap the finished folder in for dst, whole (export/outputs.py): no half-written fixture."""
    with Staging([dst], directory=True) as staging:
        shutil.copytree(src, staging.path(), dirs_exist_ok=True)
        staging.publish()


def _finish_fixture(tool: str, export_dir: Path, dequant: dict[str, torch.Tensor], prov: dict) -> None:
    from safetensors.torch import save_file

    _keep_only_checkpoint_files(export_dir)
    save_file({k: v.float().contiguous() for k, v in sorted(dequant.items())},
              str(export_dir / "tool_dequant.safetensors"))
    base = {
        "tool": tool,
        "torch": torch.__version__,
        "transformers": metadata.version("transformers"),
        "source_model": f"{SOURCE_DIR.relative_to(REPO)} (see its provenance.json)",
        "seed": {"model": MODEL_SEED, "calibration": CALIB_SEED},
        "calibration": calibration_description(),
        "tool_dequant": "tool_dequant.safetensors: every quantized linear's weight, dequantized "
        "to float32 by the tool's own code (see 'dequant_code')",
    }
    base.update(prov)
    base["command"] += "" if FAMILY == "llama" else f" --family {FAMILY}"
    dst = FIXTURES / tool_folder(tool)
    (export_dir / "provenance.json").write_text(json.dumps(base, indent=2) + "\n")
    size = sum(p.stat().st_size for p in export_dir.iterdir())
    limit = 2_000_000 if FAMILY == "llama" else 1_000_000
    if size >= limit:
        sys.exit(f"error: the {tool} export is {size} bytes, the fixture limit is {limit} bytes; {dst} left as it was")
    _replace_dir(export_dir, dst)
    print(f"wrote {dst} ({size / 1e6:.2f} MB)")


def tool_folder(tool: str) -> str:
    return {"nvidia-modelopt": "modelopt", "amd-quark": "quark", "llmcompressor": "compressed-tensors"}[tool]


def _read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


# ----------------------------------------------------------------------------- NVIDIA ModelOpt

def make_modelopt() -> None:
    import modelopt.torch.quantization as mtq
    from modelopt.torch.export import export_hf_checkpoint
    from modelopt.torch.quantization.qtensor.nvfp4_tensor import NVFP4QTensor

    model = load_source()
    calib = calibration_tokens()

    def forward_loop(m):
        with torch.no_grad():
            for row in calib:
                m(input_ids=row[None])

    # NVFP4_DEFAULT_CFG already disables *lm_head* (ModelOpt's default exclusions).
    model = mtq.quantize(model, mtq.NVFP4_DEFAULT_CFG, forward_loop)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export"
        export_hf_checkpoint(model, export_dir=str(out))
        tensors = _read_safetensors(out)
        dequant = {}
        for name, packed in tensors.items():
            if not name.endswith(".weight") or packed.dtype != torch.uint8:
                continue
            layer = name.removesuffix(".weight")
            shape = torch.Size([packed.shape[0], packed.shape[1] * 2])
            qt = NVFP4QTensor(shape, torch.float32, packed)
            dequant[layer] = qt.dequantize(
                dtype=torch.float32,
                scale=tensors[f"{layer}.weight_scale"],
                double_scale=tensors[f"{layer}.weight_scale_2"],
                block_sizes={-1: 16},
            )
        _finish_fixture("nvidia-modelopt", out, dequant, {
            "tool_version": metadata.version("nvidia-modelopt"),
            "recipe": "modelopt.torch.quantization.quantize(model, NVFP4_DEFAULT_CFG, forward_loop) "
            "+ modelopt.torch.export.export_hf_checkpoint(model, export_dir)",
            "dequant_code": "modelopt.torch.quantization.qtensor.nvfp4_tensor.NVFP4QTensor"
            "(shape, float32, weight).dequantize(dtype=float32, scale=weight_scale, "
            "double_scale=weight_scale_2, block_sizes={-1: 16})",
            "command": "python scripts/dev/make_producer_fixtures.py modelopt",
        })


# ----------------------------------------------------------------------------- AMD Quark

def make_quark() -> None:
    from quark.torch import LLMTemplate, ModelQuantizer, export_safetensors, import_model_from_safetensors
    from quark.torch.export.nn.modules.qparamslinear import QParamsLinear
    from torch.utils.data import DataLoader

    from quark.torch.utils.llm.model_preparation import preprocess_for_quantization

    model = load_source()
    exclude = ["lm_head"]
    if FAMILY != "llama":
        # Without this Quark quantizes only attention and exports the experts in bf16: it turns
        # transformers' fused 3-D experts into one nn.Linear per expert (its LLM CLI calls it too).
        preprocess_for_quantization(model)
        exclude.append("*.gate")  # the router, as Quark's own MoE templates exclude it
    # Quark's own template for the family + its "nvfp4" scheme (FP4Block16ScaleE4M3Scheme); it
    # shares the global scale across q/k/v and gate/up by default (shared_scale_groups).
    config = LLMTemplate.get(FAMILY).get_config(scheme="nvfp4", exclude_layers=exclude)
    quantizer = ModelQuantizer(config)
    model = quantizer.quantize_model(model, DataLoader(calibration_tokens(), batch_size=1))
    model = quantizer.freeze(model)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export"
        export_safetensors(model, str(out))
        # Quark's own dequantization: re-import the export (QParamsLinear modules) and ask each
        # module for its dequantized weight (SequentialRealQuantizer on the packed tensors).
        skeleton = load_source()
        if FAMILY != "llama":
            preprocess_for_quantization(skeleton)
        reloaded = import_model_from_safetensors(skeleton, str(out))
        dequant = {}
        with torch.no_grad():
            for name, module in reloaded.named_modules():
                if isinstance(module, QParamsLinear) and module.weight.dtype == torch.uint8:
                    dequant[name] = module._get_qweight(module.weight).float()
        _finish_fixture("amd-quark", out, dequant, {
            "tool_version": metadata.version("amd-quark"),
            "recipe": ("" if FAMILY == "llama" else "quark.torch.utils.llm.model_preparation."
                       "preprocess_for_quantization(model); ")
            + f'quark.torch.LLMTemplate.get("{FAMILY}").get_config(scheme="nvfp4", '
            f"exclude_layers={json.dumps(exclude)}); ModelQuantizer(config).quantize_model(model, dataloader); "
            "quantizer.freeze(model); quark.torch.export_safetensors(model, export_dir)",
            "dequant_code": "quark.torch.import_model_from_safetensors(source_model, export_dir) (the source "
            "model preprocessed like the quantized one), then "
            "QParamsLinear._get_qweight(module.weight) for each quantized linear (Quark's "
            "SequentialRealQuantizer dequantization of the packed weight)",
            "command": "python scripts/dev/make_producer_fixtures.py quark",
        })


# ----------------------------------------------------------------------------- llm-compressor

def make_compressed_tensors() -> None:
    from compressed_tensors.compressors.nvfp4.helpers import unpack_fp4_from_uint8
    from compressed_tensors.quantization import QuantizationConfig
    from compressed_tensors.quantization.lifecycle.forward import dequantize
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier

    model = load_source()
    calib = calibration_tokens()
    # A local, already tokenized data set: nothing is downloaded.
    dataset = Dataset.from_dict({
        "input_ids": calib.tolist(),
        "attention_mask": torch.ones_like(calib).tolist(),
    })
    # MoE: oneshot unfuses the experts itself; the router is ignored as llm-compressor's MoE
    # examples do (it is not a Linear in transformers 5, so this changes nothing but the config).
    ignore = ["lm_head"] if FAMILY == "llama" else ["lm_head", "re:.*\\.gate$"]
    recipe = QuantizationModifier(targets="Linear", scheme="NVFP4", ignore=ignore)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export"
        oneshot(model=model, dataset=dataset, recipe=recipe, processor=_local_tokenizer(), num_calibration_samples=CALIB_SAMPLES,
                max_seq_length=CALIB_SEQ_LEN, shuffle_calibration_samples=False)
        model.save_pretrained(str(out), save_compressed=True)

        # compressed-tensors' own decompression: the two functions NVFP4PackedCompressor.decompress
        # calls (unpack_fp4_from_uint8, then dequantize with the group's QuantizationArgs and the
        # stored weight_global_scale), asked for float32 instead of the decompressor's bf16 default.
        qconfig = QuantizationConfig.model_validate(
            json.loads((out / "config.json").read_text())["quantization_config"])
        tensors = _read_safetensors(out)
        dequant = {}
        for name, packed in tensors.items():
            if not name.endswith(".weight_packed"):
                continue
            layer = name.removesuffix(".weight_packed")
            args = _ct_weight_args(qconfig, layer)
            m, n = packed.shape
            unpacked = unpack_fp4_from_uint8(packed, m, n * 2, dtype=torch.float32)
            dequant[layer] = dequantize(
                x_q=unpacked,
                scale=tensors[f"{layer}.weight_scale"].to(torch.float32),
                args=args,
                global_scale=tensors[f"{layer}.weight_global_scale"],
                dtype=torch.float32,
            )
        _finish_fixture("llmcompressor", out, dequant, {
            "tool_version": metadata.version("llmcompressor"),
            "compressed_tensors_version": metadata.version("compressed-tensors"),
            "recipe": 'llmcompressor.oneshot(model, dataset=<local datasets.Dataset of the token ids>, '
            f'recipe=QuantizationModifier(targets="Linear", scheme="NVFP4", ignore={json.dumps(ignore)})); '
            "model.save_pretrained(export_dir, save_compressed=True)",
            "dequant_code": "compressed_tensors.compressors.nvfp4.helpers.unpack_fp4_from_uint8(packed, "
            "m, 2n, dtype=float32) then compressed_tensors.quantization.lifecycle.forward.dequantize("
            "x_q, scale=weight_scale.float(), args=<group weights args>, global_scale="
            "weight_global_scale, dtype=float32): what NVFP4PackedCompressor.decompress runs, in float32",
            "command": "python scripts/dev/make_producer_fixtures.py compressed-tensors",
        })


def _local_tokenizer():
    """oneshot insists on a processor when given a data set; ours is already tokenized, so a
    word-level tokenizer over the 256 ids, built in memory (no hub), is enough."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(source_vocab_size())}
    tok = Tokenizer(WordLevel(vocab, unk_token="t0"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", pad_token="t0")


def _ct_weight_args(qconfig, layer: str):
    """The weights QuantizationArgs of the config group whose targets cover this linear."""
    import re

    for group in qconfig.config_groups.values():
        for target in group.targets:
            if target == "Linear" or (target.startswith("re:") and re.match(target[3:], layer)) \
                    or target == layer:
                return group.weights
    raise KeyError(f"no config group targets {layer}")


# ----------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["source", "modelopt", "quark", "compressed-tensors"])
    parser.add_argument("--family", choices=["llama", "qwen3_moe", "mixtral"], default="llama")
    args = parser.parse_args()
    select_family(args.family)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(MODEL_SEED)
    {
        "source": make_source,
        "modelopt": make_modelopt,
        "quark": make_quark,
        "compressed-tensors": make_compressed_tensors,
    }[args.what]()


if __name__ == "__main__":
    main()
