"""Every IPluginV3One* method of the plugin, called by a C++ program inside the real TensorRT lean
runtime (trt_plugin_src/tests/leanRuntimePluginTest.cpp, linked against libnvinfer_lean.so from the
tensorrt-lean wheel): loadLibrary, creator, output types/shapes, format combinations, configure,
workspace, serialize round trip, clone, attachToContext, bad fields and shapes (the error must
reach TensorRT's error recorder), and enqueue against the CPU formula where a GPU is present.
"""
from __future__ import annotations

import subprocess

import pytest

from plugins.library import BUILD_DIR, find_plugin_library

TEST_PROGRAM = BUILD_DIR / "leanRuntimePluginTest"

if not TEST_PROGRAM.is_file():
    pytest.skip(f"{TEST_PROGRAM} not built (needs CUDA, TensorRT headers and the tensorrt-lean-cu13-libs wheel)",
                allow_module_level=True)
try:
    PLUGIN_LIB = find_plugin_library()
except FileNotFoundError as e:
    pytest.skip(str(e), allow_module_level=True)


def run_program(*args: str) -> str:
    result = subprocess.run([str(TEST_PROGRAM), str(PLUGIN_LIB), *args], capture_output=True, text=True,
                            timeout=300)
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert result.returncode == 0 and not failures, (
        f"exit {result.returncode}\n" + "\n".join(failures) + "\n" + result.stdout[-4000:] + result.stderr[-2000:])
    return result.stdout


LINEAR_CHECKS = ("IPluginRegistry::loadLibrary", "getOutputShapes [batch, seq, 64] -> [batch, seq, 32]",
                 "supportsFormatCombination over all", "configurePlugin rejects weight [32, 16]",
                 "getFieldsToSerialize == the build-time fields", "createPlugin(kRUNTIME) from the serialized",
                 "clone() is a distinct plugin", "attachToContext returns a clone",
                 "createPlugin rejects K % 16 != 0", "createPlugin rejects mode w8a8",
                 "createPlugin rejects group_size 32", "createPlugin rejects missing in_features",
                 "createPlugin rejects in_features as kFLOAT32", "onShapeChange rejects")
MOE_CHECKS = ("getCreator(\"NVFP4MoE\", \"1\", \"\")", "NVFP4MoE getOutputShapes [batch, seq, 64]",
              "NVFP4MoE supportsFormatCombination over 216", "NVFP4MoE configurePlugin rejects router_logits",
              "NVFP4MoE getWorkspaceSize covers the profile max", "NVFP4MoE getFieldsToSerialize == the build-time",
              "NVFP4MoE createPlugin(kRUNTIME) from the serialized", "NVFP4MoE clone() is a distinct plugin",
              "NVFP4MoE attachToContext returns a clone", "NVFP4MoE onShapeChange rejects",
              "NVFP4MoE createPlugin rejects a duplicate mode", "NVFP4MoE createPlugin rejects an unknown field",
              "NVFP4MoE createPlugin rejects 3 values for 4 experts", "NVFP4MoE createPlugin rejects top_k 40")


@pytest.mark.parametrize("op_type, names, at_least, enqueue", [
    ("NVFP4Linear", LINEAR_CHECKS, 50, ("SKIP enqueue", "PASS enqueue matches the CPU formula")),
    ("NVFP4MoE", MOE_CHECKS, 40, ("SKIP NVFP4MoE enqueue", "PASS NVFP4MoE enqueue matches the CPU formula")),
])
def test_every_plugin_method_in_the_lean_runtime(op_type, names, at_least, enqueue):
    out = run_program()
    passed = [line for line in out.splitlines() if line.startswith("PASS")]
    ours = [line for line in passed if ("NVFP4MoE" in line) == (op_type == "NVFP4MoE")]
    for name in names:  # the checks that must have run (not only "no failure")
        assert any(name in line for line in ours), f"check {name!r} did not run:\n{out}"
    assert len(ours) >= at_least, out
    assert any(marker in out for marker in enqueue)


def test_static_registration_without_load_library():
    """dlopen() alone (trtexec --staticPlugins, Triton plugins=, LD_PRELOAD, Polygraphy --plugins)
    registers the creator; a later loadLibrary leaves exactly one creator."""
    out = run_program("--static-registration")
    assert "PASS static registration: creator found without loadLibrary" in out
    assert "PASS exactly one NVFP4Linear creator registered" in out


def _python_with_lean(code: str, **env_extra: str) -> subprocess.CompletedProcess:
    import os
    import sys

    try:
        import tensorrt_lean_libs
    except ImportError:
        pytest.skip("tensorrt_lean_libs not installed")
    env = dict(os.environ, **env_extra)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [list(tensorrt_lean_libs.__path__)[0]] + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)


FIND_CREATOR = ("import tensorrt_lean_bindings as trt; "
                "print(sorted(c.name for c in trt.get_plugin_registry().all_creators if c.name == 'NVFP4Linear'))")


def test_ctypes_load_after_tensorrt_registers():
    """What Polygraphy's --plugins / LoadPlugins does: ctypes.CDLL(lib) after importing TensorRT."""
    code = f"import ctypes, tensorrt_lean_bindings; ctypes.CDLL({str(PLUGIN_LIB)!r}); {FIND_CREATOR}"
    result = _python_with_lean(code)
    assert result.returncode == 0 and "['NVFP4Linear']" in result.stdout, result.stdout + result.stderr


def test_ld_preload_registers():
    """LD_PRELOAD before TensorRT is loaded: the library loads TensorRT itself and registers."""
    result = _python_with_lean(FIND_CREATOR, LD_PRELOAD=str(PLUGIN_LIB))
    assert result.returncode == 0 and "['NVFP4Linear']" in result.stdout, result.stdout + result.stderr


def test_static_registration_registers_both_creators():
    out = run_program("--static-registration")
    assert "PASS static registration: the NVFP4MoE creator is registered too" in out
    code = ("import ctypes, tensorrt_lean_bindings as trt; ctypes.CDLL(" + repr(str(PLUGIN_LIB)) + "); "
            "print(sorted(c.name for c in trt.get_plugin_registry().all_creators if c.name.startswith('NVFP4')))")
    result = _python_with_lean(code)
    assert result.returncode == 0 and "['NVFP4Linear', 'NVFP4MoE']" in result.stdout, result.stdout + result.stderr
