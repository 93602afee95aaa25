"""AMD Quark native export (`quant_method: "quark"`), scheme "nvfp4" (FP4Block16ScaleE4M3).

Tensors per linear: `weight` uint8, `weight_scale` fp8 (`weight_quantizer.0.scale`),
`weight_scale_2` fp32 (`weight_quantizer.1.scale`, dequant) and `input_scale_2` fp32
(`input_quantizer.1.scale`, dequant) unless weight-only. vLLM: G = 1/input_scale_2.
The config holds `global_quant_config`, `layer_quant_config` (fnmatch patterns), `exclude`.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from export.checkpoint.patterns import pattern_list
from export.checkpoint.scheme import NVFP4Scheme
from export.errors import CheckpointError, quote

GROUP_SIZE = 16


# Spec fields as Quark 0.13 serializes them (checked against a real Quark export).
def _stage(**kw) -> dict:
    spec = {"block_size": None, "ch_axis": None, "dtype": None, "enable_buffer_reuse": False,
            "group_size": None, "is_dynamic": False, "is_scale_quant": False, "max_input_numel": 4194304,
            "mx_element_dtype": None, "observer_cls": None, "qscheme": None, "round_method": "half_even",
            "scale_calculation_mode": None, "scale_format": None, "scale_type": "float32",
            "symmetric": None, "zero_point_type": "int32"}
    spec.update(kw)
    return spec


def _fp4_stage(dynamic: bool) -> dict:
    return _stage(ch_axis=-1, dtype="fp4", group_size=GROUP_SIZE, is_dynamic=dynamic,
                  observer_cls="PerBlockMXObserver", qscheme="per_group", scale_format="float32")


def _fp8_stage() -> dict:
    return _stage(dtype="fp8_e4m3", is_scale_quant=True, observer_cls="PerTensorMinMaxObserver",
                  qscheme="per_tensor", symmetric=True)


def _layer_config(w4a16: bool) -> dict:
    return {
        "weight": [_fp4_stage(False), _fp8_stage()],
        "input_tensors": None if w4a16 else [_fp4_stage(True), _fp8_stage()],
        "output_tensors": None,
        "bias": None,
        "target_device": None,
    }


def _is_nvfp4_spec(specs, dynamic_first: bool) -> bool:
    """vLLM's QuarkConfig._is_nvfp4 test for one of `weight` / `input_tensors`."""
    if not isinstance(specs, list) or len(specs) != 2:
        return False
    s0, s1 = specs
    return (isinstance(s0, dict) and isinstance(s1, dict)
            and s0.get("dtype") == "fp4" and s0.get("qscheme") == "per_group"
            and s0.get("group_size") == GROUP_SIZE and bool(s0.get("is_dynamic")) == dynamic_first
            and s1.get("dtype") == "fp8_e4m3" and s1.get("qscheme") == "per_tensor"
            and not s1.get("is_dynamic"))


@dataclass
class QuarkScheme(NVFP4Scheme):
    format = "quark"
    weight_global_suffix = "weight_scale_2"
    input_global_suffix = "input_scale_2"

    global_config: dict | None = None
    layer_configs: dict[str, dict] = field(default_factory=dict)
    file: str = ""

    @classmethod
    def from_config(cls, qc: dict, file: str) -> QuarkScheme:
        def error(message):
            return CheckpointError(message, file=file)

        layer_configs = qc.get("layer_quant_config") or {}
        if not isinstance(layer_configs, dict):
            raise error(f"quantization_config.layer_quant_config must be an object, got {quote(layer_configs)}")
        exclude = pattern_list(qc.get("exclude"), "quantization_config.exclude", error)
        scheme = cls(exclude=exclude, global_config=qc.get("global_quant_config"), layer_configs=layer_configs,
                     file=file)
        if scheme.global_config is not None:
            scheme.input_quantized = scheme._check(scheme.global_config, "global_quant_config")
        return scheme

    def _check(self, cfg: dict, where: str) -> bool:
        """True for W4A4, False for W4A16; raises for any other quantization."""
        if not isinstance(cfg, dict) or not _is_nvfp4_spec(cfg.get("weight"), dynamic_first=False):
            raise CheckpointError(f"quantization_config.{where}.weight is not the NVFP4 scheme "
                                  "(fp4 per_group 16 static + fp8_e4m3 per_tensor static)", file=self.file)
        inp = cfg.get("input_tensors")
        if inp is None:
            return False
        if not _is_nvfp4_spec(inp, dynamic_first=True):
            raise CheckpointError(f"quantization_config.{where}.input_tensors is not the NVFP4 scheme "
                                  "(fp4 per_group 16 dynamic + fp8_e4m3 per_tensor static) nor null",
                                  file=self.file)
        return True

    def expects_quantized(self, name: str) -> bool:
        if self.is_excluded(name):
            return False
        return self.global_config is not None or any(fnmatch.fnmatchcase(name, p) for p in self.layer_configs)

    def activation_quantized(self, name: str) -> bool:
        for pattern, cfg in self.layer_configs.items():
            if fnmatch.fnmatchcase(name, pattern):
                return self._check(cfg, f"layer_quant_config['{pattern}']")
        if self.global_config is None:
            raise CheckpointError(f"no global_quant_config or layer_quant_config entry covers '{name}'",
                                  file=self.file)
        return self.input_quantized

    def config_entries(self) -> dict[str, dict]:
        qc = {
            "algo_config": None,
            "exclude": list(self.exclude),
            "export": {"kv_cache_group": [], "min_kv_scale": 0.0, "pack_method": "reorder",
                       "weight_format": "real_quantized", "weight_merge_groups": None},
            "global_quant_config": _layer_config(w4a16=not self.input_quantized),
            "kv_cache_post_rope": False,
            "kv_cache_quant_config": {},
            "layer_quant_config": {},
            "layer_type_quant_config": {},
            "quant_method": "quark",
            "quant_mode": "eager_mode",
            "softmax_quant_spec": None,
            "version": "0.13",
        }
        return {"config.json": qc}
