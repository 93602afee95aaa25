"""Deployment artifacts around TensorRT: plugin libraries, plan files, engine builds.

Everything a deploy command reads is checked here first, so that bad input ends in one line
(`DeployError`) instead of a TensorRT or Triton stack trace later. The engine build itself needs the
full TensorRT Python package (`import tensorrt`: builder + ONNX parser); the lean runtime that PyPI
offers everywhere (`tensorrt_lean_bindings`) cannot build, so `build_engine` raises
`TensorRTUnavailable` where the builder is missing.
"""
from __future__ import annotations

import mmap
import os
import shlex
import struct
from dataclasses import dataclass
from pathlib import Path

from export.errors import DeployError, TensorRTUnavailable
from export.inputs import regular_file
from export.outputs import Staging, check_outputs
from export.sidecar import describe_ops, load_sidecar, plugin_ops
from plugins.tensorrt_registry import import_tensorrt as import_tensorrt_module
from plugins.tensorrt_registry import missing_creators

# A serialized TensorRT engine starts with these four bytes (what torch-tensorrt and Ultralytics
# test before handing bytes to `deserialize_cuda_engine`).
PLAN_MAGIC = b"ftrt"
# TensorRT's dynamic-library entry point (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins).
PLUGIN_ENTRY_POINT = "getCreators"
# Larger than any plugin library this project builds for every architecture (~40 MB).
MAX_PLUGIN_LIBRARY_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimization profile: input name -> (min, opt, max) shapes."""

    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]

    @classmethod
    def from_sidecar(cls, side: dict) -> "Profile":
        return cls({s["name"]: (tuple(s["min"]), tuple(s["opt"]), tuple(s["max"])) for s in side["inputs"]})

    def trtexec_flags(self) -> list[str]:
        def spec(i):
            return ",".join(f"{name}:{'x'.join(str(d) for d in dims[i])}" for name, dims in self.shapes.items())
        return [f"--minShapes={spec(0)}", f"--optShapes={spec(1)}", f"--maxShapes={spec(2)}"]


# --------------------------------------------------------------------------------------------
# Plugin library and plan checks
# --------------------------------------------------------------------------------------------


def elf_dynamic_symbols(path: str | os.PathLike) -> set[str]:
    """Names of the symbols an ELF64 little-endian shared library defines in `.dynsym`.

    Reading the ELF instead of dlopen()ing it keeps the check free of the library's own
    dependencies (libnvinfer, libcudart), which a CPU-only checker may not have. The file is
    mapped, not read, so its size costs no memory.
    """
    path = regular_file(path, "plugin library", error=DeployError, max_bytes=MAX_PLUGIN_LIBRARY_BYTES)
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size < 64:
            raise DeployError(f"{path}: not an ELF shared library")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _dynamic_symbols(path, data)


def _dynamic_symbols(path: Path, data) -> set[str]:
    if data[:4] != b"\x7fELF":
        raise DeployError(f"{path}: not an ELF shared library")
    if data[4] != 2 or data[5] != 1:
        raise DeployError(f"{path}: expected a 64-bit little-endian ELF library")
    try:
        (e_shoff,) = struct.unpack_from("<Q", data, 0x28)
        e_shentsize, e_shnum = struct.unpack_from("<HH", data, 0x3A)
        if e_shentsize < 64 or e_shnum > 65535:
            raise ValueError
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)]
        names = set()
        for sec in sections:
            if sec[1] != 11:  # SHT_DYNSYM
                continue
            offset, size, link, entsize = sec[4], sec[5], sec[6], sec[9] or 24
            if offset + size > len(data):
                raise ValueError
            str_off = sections[link][4]
            for k in range(size // entsize):
                st_name, st_info, _, st_shndx, _, _ = struct.unpack_from("<IBBHQQ", data, offset + k * entsize)
                if st_shndx == 0 or (st_info >> 4) not in (1, 2):  # undefined, or not GLOBAL/WEAK
                    continue
                end = data.find(b"\0", str_off + st_name)
                if end < 0:
                    raise ValueError
                names.add(data[str_off + st_name:end].decode("ascii", "replace"))
    except (struct.error, IndexError, ValueError):
        raise DeployError(f"{path}: truncated or malformed ELF file") from None
    return names


def check_plugin_library(path: str | os.PathLike) -> Path:
    """An existing ELF library that exports `getCreators`; returns its absolute path."""
    path = Path(path)
    if PLUGIN_ENTRY_POINT not in elf_dynamic_symbols(path):
        raise DeployError(f"{path}: does not export {PLUGIN_ENTRY_POINT} (not a TensorRT plugin library; "
                          f"expected build/libnvfp4_trt_plugin.so)")
    return path.resolve()


def check_registered_ops(trt, plugin_library, side: dict) -> None:
    """After `plugin_library` was loaded into `trt`'s plugin registry: every custom op the
    sidecar's graph uses (`plugin.ops`) has a creator; else one DeployError line naming them."""
    missing = missing_creators(trt, plugin_ops(side))
    if missing:
        raise DeployError(f"{plugin_library}: registers no creator for {describe_ops(missing)}, which the graph "
                          f"uses; build the plugin library from the same version of this project as the export")


def check_plan_file(path: str | os.PathLike) -> Path:
    """A serialized TensorRT engine: a regular file, not empty, not an ONNX model, TensorRT magic.
    (What is inside is checked by TensorRT when it deserializes the plan on the GPU.)"""
    path = regular_file(path, "plan file", error=DeployError)
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise DeployError(f"{path}: plan file is empty")
    if head[:4] != PLAN_MAGIC:
        hint = " (this looks like an ONNX model: build an engine first)" if _looks_like_onnx(path) else ""
        raise DeployError(f"{path}: not a TensorRT plan (expected the bytes {PLAN_MAGIC!r} at the start){hint}")
    return path.resolve()


def _looks_like_onnx(path: Path) -> bool:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return False
    return len(model.graph.node) > 0


# --------------------------------------------------------------------------------------------
# Building (full TensorRT only) and the equivalent trtexec command lines
# --------------------------------------------------------------------------------------------


def import_tensorrt():
    """The full TensorRT module, or TensorRTUnavailable with the reason."""
    # The builder and the ONNX parser live only in the full package.
    tensorrt = import_tensorrt_module("full")
    if tensorrt is None:
        lean = (" (only the lean runtime `tensorrt_lean_bindings` is installed; it cannot build engines)"
                if import_tensorrt_module("lean") is not None else "")
        raise TensorRTUnavailable("the TensorRT builder is not installed: `import tensorrt` failed" + lean +
                                  "; install TensorRT >= 10.1 (pip install tensorrt-cu13 from NVIDIA's index) "
                                  "or use the trtexec command printed by --print-trtexec")
    if not hasattr(tensorrt, "Builder"):
        raise TensorRTUnavailable("`import tensorrt` has no Builder (a runtime-only package); install the full TensorRT")
    return tensorrt


def build_engine(onnx_path, plugin_library, plan_path, side: dict | None = None, *,
                 workspace_bytes: int | None = None, version_compatible: bool = False,
                 log_level: str = "WARNING", force: bool = False) -> Path:
    """Parse the ONNX with the plugin loaded, build one optimization profile from the sidecar, write the plan.

    The plan appears whole or not at all (export/outputs.py); an existing plan needs `force`.
    """
    onnx_path = Path(onnx_path)
    plan_path = Path(plan_path)
    side = side if side is not None else load_sidecar(onnx_path)
    plugin_library = check_plugin_library(plugin_library)
    check_outputs([plan_path], inputs=[onnx_path, plugin_library], force=force)
    trt = import_tensorrt()
    logger = trt.Logger(getattr(trt.Logger, log_level))
    builder = trt.Builder(logger)
    # The plugin registers its creator through getCreators; loadLibrary is the call trtexec
    # --dynamicPlugins makes.
    builder.get_plugin_registry().load_library(str(plugin_library))
    check_registered_ops(trt, plugin_library, side)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        # TensorRT 10: keep the ONNX dtypes (fp16/bf16 graph stays 16-bit); TensorRT 11 is always strongly typed.
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DeployError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        config.plugins_to_serialize = [str(plugin_library)]
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in Profile.from_sidecar(side).shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    with Staging([plan_path]) as staging:
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise DeployError(f"{onnx_path}: TensorRT engine build failed (see the TensorRT log above)")
        staging.path(plan_path).write_bytes(bytes(serialized))
        staging.publish()
    return plan_path


def trtexec_commands(onnx_path, plugin_library, plan_path, side: dict) -> dict[str, str]:
    """The trtexec command lines equivalent to build_engine, for both plugin loading styles.

    TensorRT 11 trtexec is strongly typed (no --fp16/--bf16): the ONNX dtypes decide precision.
    --dynamicPlugins calls IPluginRegistry::loadLibrary (needs `getCreators`); --staticPlugins
    only dlopen()s the library, which then registers its creator from a static initializer.
    """
    plugin = str(Path(plugin_library).resolve())
    base = ["trtexec", f"--onnx={Path(onnx_path).resolve()}", f"--saveEngine={Path(plan_path).resolve()}"]
    shapes = Profile.from_sidecar(side).trtexec_flags()
    return {
        "dynamic": shlex.join(base + [f"--dynamicPlugins={plugin}"] + shapes),
        "static": shlex.join(base + [f"--staticPlugins={plugin}"] + shapes),
    }
