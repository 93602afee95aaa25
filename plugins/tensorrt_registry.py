"""The plugin library's creators (NVFP4Linear, NVFP4MoE) in a TensorRT plugin registry (full
`tensorrt` or the lean runtime).

The lean runtime (`pip install tensorrt-lean-cu13-libs tensorrt-lean-cu13-bindings`, module
`tensorrt_lean_bindings`) installs everywhere and its plugin registry works without a GPU, so the
plugin library can be loaded and its creator exercised on a CPU-only machine. The full `tensorrt`
package (builder + ONNX parser) exposes the same registry API.

    trt = import_tensorrt()                       # full if installed, else lean; None if neither
    creator = load_creator(trt)                   # loads build/libnvfp4_trt_plugin.so, finds the creator
    plugin = create_plugin(trt, creator, attrs)   # fields converted as TensorRT's ONNX parser does
    moe = load_creator(trt, op_type="NVFP4MoE")   # the other op of the library (same functions)
"""
from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from export.contract import op_contract
from plugins.library import find_plugin_library


def import_tensorrt(prefer: str = "any") -> ModuleType | None:
    """The TensorRT Python module: "full" (`tensorrt`), "lean" (`tensorrt_lean_bindings`) or
    "any" (full first). None if the requested one is not installed."""
    names = {"full": ["tensorrt"], "lean": ["tensorrt_lean_bindings"],
             "any": ["tensorrt", "tensorrt_lean_bindings"]}[prefer]
    for name in names:
        try:
            return __import__(name)
        except ImportError:
            continue
    return None


def registry(trt: ModuleType):
    return trt.get_plugin_registry()


def load_library(trt: ModuleType, library: str | os.PathLike | None = None):
    """IPluginRegistry::loadLibrary on the plugin library (getCreators entry point). Returns the
    library handle; raises RuntimeError with one line if TensorRT refuses it."""
    path = Path(find_plugin_library(library))
    handle = registry(trt).load_library(str(path))
    if handle is None:
        raise RuntimeError(f"{path}: TensorRT's plugin registry could not load the library")
    return handle


def find_creator(trt: ModuleType, op_type: str = "NVFP4Linear"):
    """The registered creator of `op_type` (name, version, namespace from its contract YAML), or None.
    Looks in `all_creators` first: `get_creator` reports "Cannot find plugin" to the registry's
    error recorder when the creator is absent."""
    c = op_contract(op_type)
    wanted = (c["name"], c["plugin_version"], c["plugin_namespace"])
    for creator in registry(trt).all_creators:
        if (getattr(creator, "name", None), getattr(creator, "plugin_version", None),
                getattr(creator, "plugin_namespace", None)) == wanted:
            return registry(trt).get_creator(*wanted)
    return None


def missing_creators(trt: ModuleType, ops: list[dict]) -> list[dict]:
    """The ops (the sidecar's `plugin.ops` entries: name, version, namespace) that no creator in the
    registry provides."""
    have = {(getattr(c, "name", None), getattr(c, "plugin_version", None), getattr(c, "plugin_namespace", None))
            for c in registry(trt).all_creators}
    return [op for op in ops if (op["name"], op["version"], op["namespace"]) not in have]


def load_creator(trt: ModuleType, library: str | os.PathLike | None = None, *, op_type: str = "NVFP4Linear"):
    creator = find_creator(trt, op_type)
    if creator is None:
        load_library(trt, library)
        creator = find_creator(trt, op_type)
    if creator is None:
        c = op_contract(op_type)
        raise RuntimeError(f"no creator {c['name']!r} version {c['plugin_version']!r} namespace "
                           f"{c['plugin_namespace']!r} after loading the plugin library")
    return creator


def parser_fields(trt: ModuleType, attributes: dict[str, Any], field_types: dict[str, str] | None = None,
                  op_type: str = "NVFP4Linear"):
    """A PluginFieldCollection built the way TensorRT's ONNX parser converts node attributes:
    INT -> kINT32 (int32), FLOAT -> kFLOAT32 (float32), STRING -> kCHAR (NUL-terminated), FLOATS ->
    kFLOAT32 with one element per value. `field_types` overrides the type of some fields (to test
    rejection), e.g. {"in_features": "FLOAT32"}."""
    onnx_types = {name: spec["onnx"] for name, spec in op_contract(op_type)["attributes"].items()}
    fields = []
    for name, value in attributes.items():
        kind = (field_types or {}).get(name) or {"INT": "INT32", "FLOAT": "FLOAT32", "FLOATS": "FLOAT32",
                                                 "STRING": "CHAR"}.get(onnx_types.get(name, ""), "INT32")
        if kind == "CHAR":
            data = np.frombuffer(str(value).encode() + b"\0", dtype=np.int8).copy()
        elif kind == "FLOAT32":
            data = np.array(value, dtype=np.float32).reshape(-1)
        else:
            data = np.array(value, dtype=np.int32).reshape(-1)
        fields.append(trt.PluginField(name, data, getattr(trt.PluginFieldType, kind)))
    return trt.PluginFieldCollection(fields)


def create_plugin(trt: ModuleType, creator, attributes: dict[str, Any], *, name: str = "NVFP4Linear",
                  phase: str = "BUILD", field_types: dict[str, str] | None = None):
    """creator.create_plugin(name, parser-style fields, TensorRTPhase.<phase>); None if rejected
    (the plugin reports why through TensorRT's logger / error recorder)."""
    fc = parser_fields(trt, attributes, field_types, op_type=creator.name)
    return creator.create_plugin(name, fc, getattr(trt.TensorRTPhase, phase))


def creator_field_names(creator) -> list[tuple[str, str]]:
    """getFieldNames() as (name, PluginFieldType name without the k prefix), in order."""
    return [(f.name, f.type.name) for f in creator.field_names]
