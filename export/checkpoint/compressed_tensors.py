"""compressed-tensors / llm-compressor, `format: "nvfp4-pack-quantized"`.

Tensors per linear: `weight_packed` uint8, `weight_scale` fp8, `weight_global_scale` and
`input_global_scale` fp32 stored in the QUANT direction (448*6/amax, divisors). vLLM:
weight dequant global = 1/weight_global_scale, G = input_global_scale as stored.
`ignore` entries are exact names or `re:` regexes; `config_groups` name the quantized targets.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from export.checkpoint.patterns import matches_any, pattern_list
from export.checkpoint.scheme import NVFP4Scheme
from export.errors import CheckpointError, quote

FORMAT = "nvfp4-pack-quantized"
GROUP_SIZE = 16


# Fields as compressed-tensors 0.19 serializes the NVFP4 preset (checked against an llm-compressor export).
def _spec(dynamic) -> dict:
    return {"actorder": None, "block_structure": None, "dynamic": dynamic, "group_size": GROUP_SIZE,
            "num_bits": 4, "observer": "static_minmax" if dynamic == "local" else "memoryless_minmax",
            "observer_kwargs": {}, "scale_dtype": "torch.float8_e4m3fn", "strategy": "tensor_group",
            "symmetric": True, "type": "float", "zp_dtype": None}


def _is_fp4_group(spec) -> bool:
    return (isinstance(spec, dict) and spec.get("num_bits") == 4 and spec.get("type") == "float"
            and spec.get("group_size") == GROUP_SIZE and spec.get("strategy") in ("tensor_group", "group"))


@dataclass
class CompressedTensorsScheme(NVFP4Scheme):
    format = "compressed-tensors"
    weight_suffix = "weight_packed"
    weight_global_suffix = "weight_global_scale"
    input_global_suffix = "input_global_scale"
    reciprocal_globals = True

    targets: list[str] = field(default_factory=lambda: ["Linear"])

    @classmethod
    def from_config(cls, qc: dict, file: str) -> CompressedTensorsScheme:
        def error(message):
            return CheckpointError(message, file=file)

        groups = qc.get("config_groups")
        if not isinstance(groups, dict) or not groups:
            raise error(f"quantization_config.config_groups must be a non-empty object, got {quote(groups)}")
        top_format = qc.get("format")
        input_quantized, targets = set(), []
        for gname, g in groups.items():
            where = f"quantization_config.config_groups[{quote(gname)}]"
            if not isinstance(g, dict):
                raise error(f"{where} must be an object, got {quote(g)}")
            fmt = g.get("format") or top_format
            if fmt != FORMAT:
                raise error(f"{where} has format {quote(fmt)}; only '{FORMAT}' is supported")
            if not _is_fp4_group(g.get("weights")):
                raise error(f"{where}.weights is not NVFP4 (num_bits 4, type float, group_size {GROUP_SIZE})")
            inp = g.get("input_activations")
            if inp is not None and not _is_fp4_group(inp):
                raise error(f"{where}.input_activations is neither NVFP4 nor null")
            targets += pattern_list(g.get("targets"), f"{where}.targets", error)
            input_quantized.add(inp is not None)
        if len(input_quantized) != 1:
            raise error("config_groups mix NVFP4 (W4A4) and NVFP4A16 groups; not supported")
        return cls(exclude=pattern_list(qc.get("ignore"), "quantization_config.ignore", error),
                   input_quantized=input_quantized.pop(), targets=targets)

    def expects_quantized(self, name: str) -> bool:
        if self.is_excluded(name):
            return False
        # Targets are module class names ("Linear": every linear) or module-name patterns.
        return "Linear" in self.targets or matches_any(name, [t for t in self.targets if t != "Linear"])

    def config_entries(self) -> dict[str, dict]:
        qc = {
            "quant_method": "compressed-tensors",
            "format": FORMAT,
            "config_groups": {"group_0": {
                "targets": ["Linear"],
                "weights": _spec(False),
                "input_activations": _spec("local") if self.input_quantized else None,
                "output_activations": None,
                "format": FORMAT,
            }},
            "ignore": list(self.exclude),
            "quantization_status": "compressed",
            "global_compression_ratio": None,
            "kv_cache_scheme": None,
            "sparsity_config": {},
            "transform_config": {},
            "version": "0.19.0",
        }
        return {"config.json": qc}
