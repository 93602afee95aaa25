"""Open an NVFP4 checkpoint folder of any supported layout and describe its layers canonically."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import torch

from export.checkpoint.compressed_tensors import CompressedTensorsScheme
from export.checkpoint.modelopt import HF_QUANT_CONFIG, ModelOptScheme
from export.checkpoint.quark import QuarkScheme
from export.checkpoint.scheme import NVFP4Scheme
from export.checkpoint.store import TensorStore
from export.errors import CheckpointError, quote
from export.inputs import read_json_object
from export.layer import GROUP_SIZE, NVFP4LinearWeights

FORMATS = ("quark", "modelopt", "compressed-tensors")


def natural_key(name: str) -> list:
    """Sort key that puts model.layers.2 before model.layers.10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _read_json(path: Path) -> dict:
    return read_json_object(path, path.name, error=CheckpointError)


def _positive_finite(v: float) -> bool:
    return math.isfinite(v) and v > 0


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
    if not isinstance(method, str):
        raise CheckpointError(f"quantization_config.quant_method must be a string, got {quote(method)}",
                              file=config_path)
    if method == "quark":
        return QuarkScheme.from_config(qc, config_path)
    if method == "modelopt":
        return ModelOptScheme.from_config(qc, config_path)
    if method == "compressed-tensors":
        return CompressedTensorsScheme.from_config(qc, config_path)
    raise CheckpointError(f"quantization_config.quant_method {quote(method)} is not supported "
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
        if not quantized:
            raise CheckpointError(f"the quantization config ({s.config_file}, {s.format}) declares NVFP4 but no "
                                  f"tensor is NVFP4 (no '*.{s.scale_suffix}' and no uint8 '*.{s.weight_suffix}'): "
                                  "nothing to export", file=str(self.directory))
        return sorted(quantized, key=natural_key), sorted(excluded, key=natural_key)

    # --- tensors ---------------------------------------------------------------------------------
    def tensor_names(self) -> list[str]:
        return self._store.names()

    def tensor(self, name: str) -> torch.Tensor:
        return self._store.get(name)

    def shape(self, name: str) -> list[int]:
        """A stored tensor's shape, read from the file header only."""
        return self._store.shape(name)

    def _file(self, name: str) -> str:
        return str(self._store.file_of(name)) if name in self._store else str(self.directory)

    def _global(self, module: str, suffix: str) -> torch.Tensor:
        name = f"{module}.{suffix}"
        t = self._store.get(name)
        if t.dtype not in _FLOAT_DTYPES or t.numel() != 1:
            raise CheckpointError(f"expected a float32 scalar (shape [] or [1]), got {t.dtype} "
                                  f"{list(t.shape)}", file=self._file(name), tensor=name)
        v = t.reshape(()).to(torch.float32)
        if not _positive_finite(v.item()):
            raise CheckpointError(f"global scale must be finite and > 0, got {v.item()}",
                                  file=self._file(name), tensor=name)
        return v

    def _derived(self, name: str, suffix: str, label: str, value: torch.Tensor) -> None:
        """A scale computed from stored ones (a reciprocal, a product) must be finite and > 0 too."""
        if not _positive_finite(float(value)):
            tensor = f"{name}.{suffix}"
            raise CheckpointError(f"global scale {float(self._store.get(tensor).float().reshape(-1)[0]):.9g} gives "
                                  f"{label} = {float(value)} (expected finite and > 0 in float32)",
                                  file=self._file(tensor), tensor=tensor)

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
        for tensor in (wname, sname):
            if tensor not in self._store:
                raise CheckpointError("missing tensor", file=str(self.directory), tensor=tensor)
        # Types and shapes from the headers first: nothing is read before they are right.
        wshape, sshape = self._store.shape(wname), self._store.shape(sname)
        if self._store.dtype(wname) != "U8" or len(wshape) != 2:
            raise CheckpointError(f"expected uint8 [N, K/2] packed E2M1, got {self._store.dtype(wname)} {wshape}",
                                  file=self._file(wname), tensor=wname)
        n, k = wshape[0], wshape[1] * 2
        if k % GROUP_SIZE != 0 or n == 0 or k == 0:
            raise CheckpointError(f"in_features K={k} must be a positive multiple of {GROUP_SIZE} and "
                                  f"out_features N={n} positive", file=self._file(wname), tensor=wname)
        if self._store.dtype(sname) != "F8_E4M3" or sshape != [n, k // GROUP_SIZE]:
            raise CheckpointError(f"expected float8_e4m3fn [{n}, {k // GROUP_SIZE}], got {self._store.dtype(sname)} "
                                  f"{sshape}", file=self._file(sname), tensor=sname)
        weight = self._store.get(wname)
        scale = self._store.get(sname)
        if torch.isnan(scale.float()).any():
            raise CheckpointError("block scales contain NaN", file=self._file(sname), tensor=sname)
        weight_global = s.to_dequant(self._global(name, s.weight_global_suffix))
        self._derived(name, s.weight_global_suffix, "the dequant weight global scale", weight_global)

        input_global = input_global_inv = None
        iname = f"{name}.{s.input_global_suffix}"
        if s.activation_quantized(name):
            if iname not in self._store:
                raise CheckpointError(f"missing tensor (config {s.config_file} quantizes input activations)",
                                      file=str(self.directory), tensor=iname)
            input_global, input_global_inv = s.input_scales(self._global(name, s.input_global_suffix))
            for label, value in (("the input global scale", input_global),
                                 ("the activation quantization scale G", input_global_inv),
                                 ("1/G", 1.0 / input_global_inv),
                                 ("alpha = input global scale x weight global scale", input_global * weight_global)):
                self._derived(name, s.input_global_suffix, label, value)

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
    if not os.path.lexists(config_path):
        raise CheckpointError("missing config.json", file=str(directory))
    config = _read_json(config_path)
    scheme = detect_scheme(directory, config)
    return Checkpoint(directory, config, scheme, TensorStore(directory))
