"""The NVFP4Linear op contract as data: trt_plugin_src/nvfp4Linear/NVFP4Linear_PluginConfig.yaml,
the single source of truth that docs/op-contract.md explains. The exporter builds nodes from it,
the sidecar names the plugin from it, and the tests check the C++ creator and the ONNX Runtime op
against it. Torch-free, so deploy tools that never touch a model can read it too."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

CONTRACT_YAML = Path(__file__).resolve().parent.parent / "trt_plugin_src" / "nvfp4Linear" / "NVFP4Linear_PluginConfig.yaml"


@functools.lru_cache(maxsize=None)
def op_contract() -> dict[str, Any]:
    """The op contract YAML as a dict (read once)."""
    with open(CONTRACT_YAML, encoding="utf-8") as f:
        return yaml.safe_load(f)
