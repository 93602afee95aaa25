"""The op contracts as data: trt_plugin_src/nvfp4Linear/NVFP4Linear_PluginConfig.yaml and
trt_plugin_src/nvfp4MoE/NVFP4MoE_PluginConfig.yaml, the single sources of truth that
docs/op-contract.md and docs/op-contract-moe.md explain. The exporter builds nodes from them,
the sidecar names the plugin from them, and the tests check the C++ creators and the ONNX Runtime ops
against them. Torch-free, so deploy tools that never touch a model can read it too."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

_PLUGIN_SRC = Path(__file__).resolve().parent.parent / "trt_plugin_src"
CONTRACT_YAMLS = {
    "NVFP4Linear": _PLUGIN_SRC / "nvfp4Linear" / "NVFP4Linear_PluginConfig.yaml",
    "NVFP4MoE": _PLUGIN_SRC / "nvfp4MoE" / "NVFP4MoE_PluginConfig.yaml",
}
CONTRACT_YAML = CONTRACT_YAMLS["NVFP4Linear"]


@functools.lru_cache(maxsize=None)
def op_contract(name: str = "NVFP4Linear") -> dict[str, Any]:
    """An op contract YAML as a dict (read once); `name` is the op type."""
    with open(CONTRACT_YAMLS[name], encoding="utf-8") as f:
        return yaml.safe_load(f)
