"""NVIDIA ModelOpt HF export: `hf_quant_config.json` (and `quant_method: "modelopt"` in config.json).

Tensors per linear: `weight` uint8, `weight_scale` fp8, `weight_scale_2` fp32 (dequant), and
`input_scale` fp32 (dequant, amax/(6*448)) unless weight-only. vLLM: G = 1/input_scale.
`NVFP4_AWQ` adds `pre_quant_scale`, which the NVFP4Linear op has no input for.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from export.checkpoint.patterns import pattern_list
from export.checkpoint.scheme import NVFP4Scheme
from export.errors import CheckpointError, quote

W4A4_ALGOS = ("NVFP4", "NVFP4_AWQ")
W4A16_ALGOS = ("W4A16_NVFP4",)
HF_QUANT_CONFIG = "hf_quant_config.json"
GROUP_SIZE = 16


@dataclass
class ModelOptScheme(NVFP4Scheme):
    format = "modelopt"
    weight_global_suffix = "weight_scale_2"
    input_global_suffix = "input_scale"
    unsupported_suffixes = ("pre_quant_scale",)

    quant_algo: str = "NVFP4"
    # MIXED_PRECISION: module name -> its quant_algo; only listed modules are quantized.
    per_layer_algo: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_hf_quant_config(cls, data: dict, file: str) -> ModelOptScheme:
        q = data.get("quantization")
        if not isinstance(q, dict):
            raise CheckpointError(f"expected a 'quantization' object, got {quote(q)}", file=file)
        return cls._from_fields(q, "exclude_modules", file, HF_QUANT_CONFIG, "quantization.")

    @classmethod
    def from_config(cls, qc: dict, file: str) -> ModelOptScheme:
        key = "ignore" if qc.get("ignore") else "exclude_modules"
        return cls._from_fields(qc, key, file, "config.json", "quantization_config.")

    @classmethod
    def _from_fields(cls, q: dict, exclude_key: str, file: str, source: str, where: str) -> ModelOptScheme:
        def error(message):
            return CheckpointError(message, file=file)

        algo, group_size = q.get("quant_algo"), q.get("group_size", GROUP_SIZE)
        exclude = pattern_list(q.get(exclude_key), where + exclude_key, error)
        if group_size != GROUP_SIZE or isinstance(group_size, bool):
            raise error(f"{where}group_size {quote(group_size)} is not supported (expected {GROUP_SIZE})")
        if algo == "MIXED_PRECISION":
            layers = q.get("quantized_layers")
            if not isinstance(layers, dict) or not layers:
                raise error(f"{where}quantized_layers must be a non-empty object for MIXED_PRECISION, "
                            f"got {quote(layers)}")
            per_layer = {}
            for name, spec in layers.items():
                a = spec.get("quant_algo") if isinstance(spec, dict) else None
                if a not in W4A4_ALGOS + W4A16_ALGOS:
                    raise error(f"{where}quantized_layers[{quote(name)}] has quant_algo {quote(a)}; only NVFP4 "
                                "and W4A16_NVFP4 layers are supported")
                g = spec.get("group_size", GROUP_SIZE)
                if g != GROUP_SIZE or isinstance(g, bool):
                    raise error(f"{where}quantized_layers[{quote(name)}] group_size must be {GROUP_SIZE}, "
                                f"got {quote(g)}")
                per_layer[name] = a
            return cls(exclude=exclude, input_quantized=True, config_file=source,
                       quant_algo=algo, per_layer_algo=per_layer)
        if algo not in W4A4_ALGOS + W4A16_ALGOS:
            raise error(f"{where}quant_algo {quote(algo)} is not supported (expected one of "
                        f"{', '.join(W4A4_ALGOS + W4A16_ALGOS)}, MIXED_PRECISION)")
        return cls(exclude=exclude, input_quantized=algo in W4A4_ALGOS, config_file=source, quant_algo=algo)

    def is_excluded(self, name: str) -> bool:
        if self.per_layer_algo and name not in self.per_layer_algo:
            return True
        return super().is_excluded(name)

    def activation_quantized(self, name: str) -> bool:
        if self.per_layer_algo:
            return self.per_layer_algo.get(name) in W4A4_ALGOS
        return self.input_quantized

    def config_entries(self) -> dict[str, dict]:
        algo = "NVFP4" if self.input_quantized else "W4A16_NVFP4"
        # The producer is this project, not ModelOpt: say so where ModelOpt writes its version.
        producer = {"name": "modelopt", "version": "0.47.0+nvfp4-export"}
        hf_quant = {
            "producer": producer,
            "quantization": {"quant_algo": algo, "kv_cache_quant_algo": None,
                             "group_size": GROUP_SIZE, "exclude_modules": list(self.exclude)},
        }
        # config.json form as ModelOpt's convert_hf_quant_config_format writes it.
        spec = {"dynamic": False, "num_bits": 4, "type": "float", "group_size": GROUP_SIZE}
        qc = {
            "config_groups": {"group_0": {"input_activations": dict(spec) if self.input_quantized else None,
                                          "weights": dict(spec), "targets": ["Linear"]}},
            "ignore": list(self.exclude),
            "quant_algo": algo,
            "producer": producer,
            "quant_method": "modelopt",
        }
        return {HF_QUANT_CONFIG: hf_quant, "config.json": qc}
