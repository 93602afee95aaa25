"""The TensorRT plugin library inside the real TensorRT plugin registry, from Python.

Uses the lean runtime bindings (`tensorrt_lean_bindings`, from PyPI, no GPU needed): load the built
library with IPluginRegistry::loadLibrary, find the creator by the contract's (name, version,
namespace), create plugins from node attributes converted as TensorRT's ONNX parser does, and check
that bad fields are rejected with a message through the registry's error recorder.
(The bindings cannot call a C++ plugin's build/runtime methods; tests/test_plugin_lean_runtime.py
runs the C++ program that does.)
"""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from plugins.library import find_plugin_library
from plugins.tensorrt_registry import (
    create_plugin,
    creator_field_names,
    import_tensorrt,
    load_creator,
    op_contract,
    parser_fields,
)

trt = import_tensorrt("lean")
if trt is None:
    pytest.skip("tensorrt_lean_bindings not installed (pip install tensorrt-lean-cu13-bindings "
                "tensorrt-lean-cu13-libs)", allow_module_level=True)
try:
    PLUGIN_LIB = find_plugin_library()
except FileNotFoundError as e:
    pytest.skip(f"TensorRT plugin not built (needs CUDA and TensorRT headers): {e}", allow_module_level=True)

GOOD = dict(in_features=64, out_features=32, group_size=16, mode="w4a4",
            input_global_scale=2.0 / 2688, input_global_scale_inv=1344.0, has_bias=0)


class Recorder(trt.IErrorRecorder):
    """Collects what is reported to the plugin registry's error recorder."""

    def __init__(self):
        trt.IErrorRecorder.__init__(self)
        self.errors: list[str] = []

    def num_errors(self):
        return len(self.errors)

    def get_error_code(self, i):
        return trt.ErrorCodeTRT.INVALID_ARGUMENT

    def get_error_desc(self, i):
        return self.errors[i]

    def has_overflowed(self):
        return False

    def clear(self):
        self.errors.clear()

    def report_error(self, code, desc):
        self.errors.append(desc)
        return False


@pytest.fixture(scope="module")
def recorder():
    rec = Recorder()
    trt.get_plugin_registry().error_recorder = rec
    yield rec
    trt.get_plugin_registry().error_recorder = None


@pytest.fixture(scope="module")
def creator(recorder):
    return load_creator(trt, PLUGIN_LIB)


def test_creator_identity_and_fields(creator):
    contract = op_contract()
    assert (creator.name, creator.plugin_version, creator.plugin_namespace) == (
        contract["name"], contract["plugin_version"], contract["plugin_namespace"])
    expected = [(name, spec["field"][1:]) for name, spec in contract["attributes"].items()]
    assert creator_field_names(creator) == expected


@pytest.mark.parametrize("mode", ["w4a4", "w4a16"])
@pytest.mark.parametrize("has_bias", [0, 1])
def test_create_plugin_from_parser_fields(creator, mode, has_bias):
    plugin = create_plugin(trt, creator, dict(GOOD, mode=mode, has_bias=has_bias), name="lin0")
    assert plugin is not None
    core = plugin.get_capability_interface(trt.PluginCapabilityType.CORE)
    assert (core.plugin_name, core.plugin_version, core.plugin_namespace) == ("NVFP4Linear", "1", "")
    build = plugin.get_capability_interface(trt.PluginCapabilityType.BUILD)
    assert build is not None and build.num_outputs == 1
    assert plugin.get_capability_interface(trt.PluginCapabilityType.RUNTIME) is not None
    # A runtime-phase plugin (what deserialization creates) from the same fields.
    assert create_plugin(trt, creator, dict(GOOD, mode=mode, has_bias=has_bias), phase="RUNTIME") is not None


@pytest.mark.parametrize("change, field_types, expected", [
    ({"group_size": 32}, None, "field 'group_size' must be 16, got 32"),
    ({"mode": "w8a8"}, None, "field 'mode' must be \"w4a4\" or \"w4a16\", got \"w8a8\""),
    ({"in_features": 40}, None, "field 'in_features' must be a positive multiple of 16, got 40"),
    ({"out_features": -3}, None, "field 'out_features' must be positive, got -3"),
    ({"has_bias": 3}, None, "field 'has_bias' must be 0 or 1, got 3"),
    ({"input_global_scale": 0.0}, None, "field 'input_global_scale' must be finite and > 0"),
    ({"input_global_scale_inv": float("inf")}, None, "field 'input_global_scale_inv' must be finite and > 0"),
    ({"in_features": None}, None, "missing field 'in_features' (kINT32)"),
    ({"mode": None}, None, "missing field 'mode' (kCHAR)"),
    ({}, {"in_features": "FLOAT32"}, "field 'in_features' must be one kINT32 value, got type kFLOAT32"),
    ({}, {"input_global_scale_inv": "INT32"}, "field 'input_global_scale_inv' must be one kFLOAT32 value"),
])
def test_bad_fields_rejected(creator, recorder, change, field_types, expected):
    recorder.clear()
    attrs = {k: v for k, v in dict(GOOD, **change).items() if v is not None}
    assert create_plugin(trt, creator, attrs, name="lin7", field_types=field_types) is None
    ours = [e for e in recorder.errors if "NVFP4Linear plugin 'lin7'" in e]
    assert ours and expected in ours[-1], recorder.errors
    assert "\n" not in ours[-1]


def test_corrupt_runtime_fields_rejected(creator, recorder):
    recorder.clear()
    assert create_plugin(trt, creator, dict(GOOD, group_size=8), name="lin8", phase="RUNTIME") is None
    assert any("corrupt serialized fields in the engine: field 'group_size' must be 16" in e
               for e in recorder.errors), recorder.errors


def test_library_exports_only_entry_points():
    """Linked with --no-undefined and a version script: the TensorRT entry points only, no libnvinfer
    dependency (TensorRT is found at run time), no libcudart dependency (static)."""
    nm = subprocess.run(["nm", "-D", "--defined-only", str(PLUGIN_LIB)], capture_output=True, text=True)
    if nm.returncode != 0:
        pytest.skip(f"nm unavailable: {nm.stderr.strip()}")
    exported = sorted(line.split()[-1] for line in nm.stdout.splitlines() if " T " in line)
    assert exported == ["getCreators", "setLoggerFinder"]
    ldd = subprocess.run(["ldd", str(PLUGIN_LIB)], capture_output=True, text=True)
    assert ldd.returncode == 0 and "not found" not in ldd.stdout, ldd.stdout
    assert "libnvinfer" not in ldd.stdout and "libcudart" not in ldd.stdout, ldd.stdout


# ---- NVFP4MoE: the library's second creator ----

E4 = [0.5, 1.0, 1.5, 2.0]
GOOD_MOE = dict(num_experts=4, top_k=2, hidden_size=64, intermediate_size=32, group_size=16, mode="w4a4",
                activation="silu", normalize_topk=1, w13_input_global_scale=[s / 2688 for s in E4],
                w13_input_global_scale_inv=[2688 / s for s in E4], w2_input_global_scale=[s / 448 for s in E4],
                w2_input_global_scale_inv=[448 / s for s in E4])


@pytest.fixture(scope="module")
def moe_creator(recorder):
    return load_creator(trt, PLUGIN_LIB, op_type="NVFP4MoE")


def test_moe_creator_identity_and_fields(moe_creator):
    contract = op_contract("NVFP4MoE")
    assert (moe_creator.name, moe_creator.plugin_version, moe_creator.plugin_namespace) == (
        contract["name"], contract["plugin_version"], contract["plugin_namespace"])
    expected = [(name, spec["field"][1:]) for name, spec in contract["attributes"].items()]
    assert creator_field_names(moe_creator) == expected


@pytest.mark.parametrize("mode", ["w4a4", "w4a16"])
@pytest.mark.parametrize("phase", ["BUILD", "RUNTIME"])
def test_moe_create_plugin_from_parser_fields(moe_creator, mode, phase):
    plugin = create_plugin(trt, moe_creator, dict(GOOD_MOE, mode=mode), name="moe0", phase=phase)
    assert plugin is not None
    core = plugin.get_capability_interface(trt.PluginCapabilityType.CORE)
    assert (core.plugin_name, core.plugin_version, core.plugin_namespace) == ("NVFP4MoE", "1", "")
    assert plugin.get_capability_interface(trt.PluginCapabilityType.RUNTIME) is not None


def _moe_rejected(moe_creator, recorder, attrs, expected, field_types=None, phase="BUILD"):
    recorder.clear()
    assert create_plugin(trt, moe_creator, attrs, name="moe7", field_types=field_types, phase=phase) is None
    ours = [e for e in recorder.errors if "NVFP4MoE plugin 'moe7'" in e]
    assert ours and expected in ours[-1], recorder.errors
    assert "\n" not in ours[-1] and len(ours[-1]) < 600, ours[-1]


@pytest.mark.parametrize("change, field_types, expected", [
    ({"group_size": 32}, None, "field 'group_size' must be 16, got 32"),
    ({"mode": "w8a8"}, None, "field 'mode' must be \"w4a4\" or \"w4a16\", got \"w8a8\""),
    ({"activation": "gelu" * 100}, None, "field 'activation' must be \"silu\", got \"" + "gelu" * 16 + "... (400 bytes)\""),
    ({"top_k": 5}, None, "field 'top_k' must be in [1, num_experts=4], got 5"),
    ({"top_k": 33, "num_experts": 40} | {k: [1.0] * 40 for k in GOOD_MOE if k.endswith("scale") or k.endswith("inv")},
     None, "field 'top_k' = 33 exceeds the CUDA kernels' limit of 32"),
    ({"hidden_size": 40}, None, "field 'hidden_size' must be a positive multiple of 16, got 40"),
    ({"normalize_topk": 2}, None, "field 'normalize_topk' must be 0 or 1, got 2"),
    ({"w13_input_global_scale": [1.0] * 3}, None, "field 'w13_input_global_scale' must have num_experts=4 values, got 3"),
    ({"w2_input_global_scale_inv": [1.0, float("inf"), 1.0, 1.0]}, None,
     "field 'w2_input_global_scale_inv' must be finite and > 0 for mode \"w4a4\", got inf for expert 1"),
    ({"num_experts": None}, None, "missing field 'num_experts' (kINT32)"),
    ({"w2_input_global_scale": None}, None, "missing field 'w2_input_global_scale' (kFLOAT32)"),
    ({}, {"top_k": "FLOAT32"}, "field 'top_k' must be one kINT32 value, got type kFLOAT32 with length 1"),
    ({}, {"w13_input_global_scale": "INT32"}, "field 'w13_input_global_scale' must be a list of kFLOAT32 values"),
    ({"mode": 7}, {"mode": "INT32"}, "field 'mode' must be one kCHAR string, got type kINT32"),
    ({"bogus_field": 3}, None, "unknown field \"bogus_field\"; expected num_experts, top_k"),
    ({"x" * 300: 3}, None, "unknown field \"" + "x" * 64 + "... (300 bytes)\""),
])
def test_moe_bad_fields_rejected(moe_creator, recorder, change, field_types, expected):
    attrs = {k: v for k, v in dict(GOOD_MOE, **change).items() if v is not None}
    _moe_rejected(moe_creator, recorder, attrs, expected, field_types)


def test_moe_duplicate_field_and_corrupt_runtime_fields_rejected(moe_creator, recorder):
    fc = parser_fields(trt, GOOD_MOE, op_type="NVFP4MoE")
    fields = list(fc) + [trt.PluginField("top_k", np.array([1], dtype=np.int32), trt.PluginFieldType.INT32)]
    recorder.clear()
    assert moe_creator.create_plugin("moe7", trt.PluginFieldCollection(fields), trt.TensorRTPhase.BUILD) is None
    assert any("NVFP4MoE plugin 'moe7': field 'top_k' is given twice" in e for e in recorder.errors), recorder.errors
    _moe_rejected(moe_creator, recorder, dict(GOOD_MOE, num_experts=3), "corrupt serialized fields in the engine: "
                  "field 'w13_input_global_scale' must have num_experts=3 values, got 4", phase="RUNTIME")
