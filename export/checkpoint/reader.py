"""Open an NVFP4 checkpoint folder of any supported layout and describe its layers canonically."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from export.checkpoint.compressed_tensors import CompressedTensorsScheme
from export.checkpoint.modelopt import HF_QUANT_CONFIG, ModelOptScheme
from export.checkpoint.quark import QuarkScheme
from export.checkpoint.scheme import NVFP4Scheme
from export.checkpoint.store import TensorStore
from export.errors import CheckpointError
from export.layer import GROUP_SIZE, NVFP4LinearWeights

FORMATS = ("quark", "modelopt", "compressed-tensors")


def natural_key(name: str) -> list:
    """Sort key that puts model.layers.2 before model.layers.10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise CheckpointError(f"cannot be read ({e.strerror})", file=str(path)) from None
    except ValueError as e:
        raise CheckpointError(f"is not valid JSON ({e})", file=str(path)) from None
    if not isinstance(data, dict):
        raise CheckpointError("expected a JSON object", file=str(path))
    return data


def detect_scheme(directory: Path, config: dict) -> NVFP4Scheme:
    """The layout from hf_quant_config.json or config.json's `quantization_config`."""
    config_path = str(directory / "config.json")
    hf_quant = directory / HF_QUANT_CONFIG
    if hf_quant.exists():
        return ModelOptScheme.from_hf_quant_config(_read_json(hf_quant), str(hf_quant))
    qc = config.get("quantization_config")
    if not isinstance(qc, dict):
        raise CheckpointError("no quantization_config (and no hf_quant_config.json): not an NVFP4 checkpoint",
                              file=config_path)
    method = qc.get("quant_method")
    if method == "quark":
        return QuarkScheme.from_config(qc, config_path)
    if method == "modelopt":
        return ModelOptScheme.from_config(qc, config_path)
    if method == "compressed-tensors":
        return CompressedTensorsScheme.from_config(qc, config_path)
    raise CheckpointError(f"quantization_config.quant_method {method!r} is not supported "
                          "(expected 'quark', 'modelopt' or 'compressed-tensors')", file=config_path)


class Checkpoint:
    """An opened checkpoint. Tensors stay in their files until asked for."""

    def __init__(self, directory: Path, config: dict, scheme: NVFP4Scheme, store: TensorStore):
        self.directory = directory
        self.config = config
        self.scheme = scheme
        self.format = scheme.format
        self._store = store
        self.quantized_names, self.excluded = self._classify()

    # --- which modules are NVFP4 -----------------------------------------------------------------
    def _classify(self) -> tuple[list[str], list[str]]:
        s = self.scheme
        # A module is NVFP4 if it has a block-scale tensor or a packed uint8 weight.
        candidates: dict[str, str] = {}
        for name in self._store.names():
            module, _, suffix = name.rpartition(".")
            if suffix == s.scale_suffix or (suffix == s.weight_suffix and self._store.dtype(name) == "U8"):
                candidates.setdefault(module, name)
        quantized = []
        for module, name in candidates.items():
            if s.is_excluded(module):
                raise CheckpointError(f"module '{module}' holds NVFP4 tensors but the config excludes it",
                                      file=str(self._store.file_of(name)), tensor=name)
            quantized.append(module)
        excluded = []
        qset = set(quantized)
        for name in self._store.names():
            if name.endswith(".weight"):
                module = name[: -len(".weight")]
                if module not in qset and s.is_excluded(module) and len(self._store.shape(name)) == 2:
                    excluded.append(module)
        return sorted(quantized, key=natural_key), sorted(excluded, key=natural_key)

    # --- tensors ---------------------------------------------------------------------------------
    def tensor_names(self) -> list[str]:
        return self._store.names()

    def tensor(self, name: str) -> torch.Tensor:
        return self._store.get(name)

    def _file(self, name: str) -> str:
        return str(self._store.file_of(name)) if name in self._store else str(self.directory)

    def _global(self, module: str, suffix: str) -> torch.Tensor:
        name = f"{module}.{suffix}"
        t = self._store.get(name)
        if t.dtype not in _FLOAT_DTYPES or t.numel() != 1:
            raise CheckpointError(f"expected a float32 scalar (shape [] or [1]), got {t.dtype} "
                                  f"{list(t.shape)}", file=self._file(name), tensor=name)
        v = t.reshape(()).to(torch.float32)
        if not (math.isfinite(v.item()) and v.item() > 0):
            raise CheckpointError(f"global scale must be finite and > 0, got {v.item()}",
                                  file=self._file(name), tensor=name)
        return v

    def layer(self, name: str) -> NVFP4LinearWeights:
        if name not in self.quantized_names:
            raise CheckpointError(f"'{name}' is not an NVFP4 linear of this {self.format} checkpoint",
                                  file=str(self.directory))
        s = self.scheme
        for suffix in s.unsupported_suffixes:
            if f"{name}.{suffix}" in self._store:
                raise CheckpointError(f"is not supported (the NVFP4Linear op has no per-channel input "
                                      "pre-scale)", file=self._file(f"{name}.{suffix}"), tensor=f"{name}.{suffix}")
        wname, sname = f"{name}.{s.weight_suffix}", f"{name}.{s.scale_suffix}"
        weight = self._store.get(wname)
        if weight.dtype != torch.uint8 or weight.ndim != 2:
            raise CheckpointError(f"expected uint8 [N, K/2] packed E2M1, got {weight.dtype} {list(weight.shape)}",
                                  file=self._file(wname), tensor=wname)
        n, k = weight.shape[0], weight.shape[1] * 2
        if k % GROUP_SIZE != 0 or n == 0:
            raise CheckpointError(f"in_features K={k} must be a positive multiple of {GROUP_SIZE}",
                                  file=self._file(wname), tensor=wname)
        scale = self._store.get(sname)
        if scale.dtype != torch.float8_e4m3fn or list(scale.shape) != [n, k // GROUP_SIZE]:
            raise CheckpointError(f"expected float8_e4m3fn [{n}, {k // GROUP_SIZE}], got {scale.dtype} "
                                  f"{list(scale.shape)}", file=self._file(sname), tensor=sname)
        if torch.isnan(scale.float()).any():
            raise CheckpointError("block scales contain NaN", file=self._file(sname), tensor=sname)
        weight_global = s.to_dequant(self._global(name, s.weight_global_suffix))

        input_global = input_global_inv = None
        iname = f"{name}.{s.input_global_suffix}"
        if s.activation_quantized(name):
            if iname not in self._store:
                raise CheckpointError(f"missing tensor (config {s.config_file} quantizes input activations)",
                                      file=str(self.directory), tensor=iname)
            input_global, input_global_inv = s.input_scales(self._global(name, s.input_global_suffix))

        bias = None
        bname = f"{name}.bias"
        if bname in self._store:
            bias = self._store.get(bname)
            if not bias.is_floating_point() or list(bias.shape) != [n]:
                raise CheckpointError(f"expected a float [{n}] bias, got {bias.dtype} {list(bias.shape)}",
                                      file=self._file(bname), tensor=bname)
        return NVFP4LinearWeights(
            name=name, weight_packed=weight, weight_scale=scale, weight_global_scale=weight_global,
            input_global_scale=input_global, input_global_scale_inv=input_global_inv, bias=bias,
        )

    def __repr__(self) -> str:
        return (f"Checkpoint({str(self.directory)!r}, format={self.format!r}, "
                f"quantized={len(self.quantized_names)}, excluded={len(self.excluded)})")


def open_checkpoint(model_dir) -> Checkpoint:
    directory = Path(model_dir)
    if not directory.is_dir():
        raise CheckpointError("is not a directory", file=str(directory))
    config_path = directory / "config.json"
    if not config_path.exists():
        raise CheckpointError("missing config.json", file=str(directory))
    config = _read_json(config_path)
    scheme = detect_scheme(directory, config)
    return Checkpoint(directory, config, scheme, TensorStore(directory))
