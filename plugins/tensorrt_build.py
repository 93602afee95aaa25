"""Deployment artifacts around TensorRT: the export sidecar, plugin libraries, plan files, engine builds.

Everything a deploy command reads is checked here first, so that bad input ends in one line
(`DeployError`) instead of a TensorRT or Triton stack trace later. The engine build itself needs the
full TensorRT Python package (`import tensorrt`: builder + ONNX parser); the lean runtime that PyPI
offers everywhere (`tensorrt_lean_bindings`) cannot build, so `build_engine` raises
`TensorRTUnavailable` where the builder is missing.
"""
from __future__ import annotations

import json
import os
import shlex
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from export.sidecar import sidecar_path
from plugins.tensorrt_registry import import_tensorrt as import_tensorrt_module

# A serialized TensorRT engine starts with these four bytes (what torch-tensorrt and Ultralytics
# test before handing bytes to `deserialize_cuda_engine`).
PLAN_MAGIC = b"ftrt"
ONNX_TO_NAME = {1: "float32", 10: "float16", 16: "bfloat16", 7: "int64", 6: "int32", 9: "bool"}
SIDECAR_KEYS = ("format", "dtype", "num_layers", "num_kv_heads", "head_dim", "vocab_size", "inputs", "outputs")
# TensorRT's dynamic-library entry point (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins).
PLUGIN_ENTRY_POINT = "getCreators"


class DeployError(ValueError):
    """Bad deploy input; the message is one line naming the file and what was expected."""


class TensorRTUnavailable(RuntimeError):
    """The full TensorRT builder (`import tensorrt`) is not installed here."""


# --------------------------------------------------------------------------------------------
# Sidecar JSON (written by scripts/export.py next to OUT.onnx as OUT.onnx.json)
# --------------------------------------------------------------------------------------------


def load_sidecar(onnx_path: str | os.PathLike) -> dict:
    """Read and check `OUT.onnx.json` next to an existing OUT.onnx; raise DeployError otherwise."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise DeployError(f"{onnx_path}: ONNX file not found")
    path = sidecar_path(onnx_path)
    if not path.is_file():
        raise DeployError(f"{path}: sidecar JSON not found (scripts/export.py writes it next to {onnx_path.name})")
    return read_sidecar_file(path)


def read_sidecar_file(path: str | os.PathLike) -> dict:
    """Read and check a sidecar JSON by its own path (what a client machine without the ONNX has)."""
    path = Path(path)
    try:
        side = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DeployError(f"{path}: cannot read the sidecar JSON ({' '.join(str(err).split())})") from None
    if not isinstance(side, dict):
        raise DeployError(f"{path}: expected a JSON object")
    missing = [k for k in SIDECAR_KEYS if k not in side]
    if missing:
        raise DeployError(f"{path}: missing keys {missing}")
    if side["format"] not in ("plugin", "qdq"):
        raise DeployError(f"{path}: format must be 'plugin' or 'qdq', got {side['format']!r}")
    for spec in side["inputs"]:
        for key in ("name", "dtype", "shape", "min", "opt", "max"):
            if key not in spec:
                raise DeployError(f"{path}: input {spec.get('name', '?')!r} lacks {key!r}")
        rank = len(spec["shape"])
        if not all(len(spec[k]) == rank for k in ("min", "opt", "max")):
            raise DeployError(f"{path}: input {spec['name']!r}: min/opt/max must have rank {rank}")
        if not all(a <= b <= c for a, b, c in zip(spec["min"], spec["opt"], spec["max"])):
            raise DeployError(f"{path}: input {spec['name']!r}: expected min <= opt <= max, got "
                              f"{spec['min']} {spec['opt']} {spec['max']}")
    for spec in side["outputs"]:
        for key in ("name", "dtype", "shape"):
            if key not in spec:
                raise DeployError(f"{path}: output {spec.get('name', '?')!r} lacks {key!r}")
    return side


def onnx_io(onnx_path: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """(inputs, outputs) of the ONNX graph as [{name, dtype, shape}] (dim_param names kept as str)."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as err:  # protobuf DecodeError and friends
        raise DeployError(f"{onnx_path}: not a readable ONNX model ({type(err).__name__})") from None

    def describe(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else "?")
                     for d in t.shape.dim]
            out.append({"name": v.name, "dtype": ONNX_TO_NAME.get(t.elem_type, str(t.elem_type)), "shape": shape})
        return out

    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    return describe(inputs), describe(model.graph.output)


def check_sidecar_matches_onnx(onnx_path, side: dict) -> None:
    """The sidecar must describe exactly the graph's inputs/outputs (names, dtypes, ranks)."""
    inputs, outputs = onnx_io(onnx_path)
    for kind, graph, declared in (("input", inputs, side["inputs"]), ("output", outputs, side["outputs"])):
        g = {v["name"]: v for v in graph}
        d = {v["name"]: v for v in declared}
        if set(g) != set(d):
            raise DeployError(f"{sidecar_path(onnx_path)}: {kind}s {sorted(d)} do not match the ONNX graph's {sorted(g)}")
        for name, spec in d.items():
            if spec["dtype"] != g[name]["dtype"] or len(spec["shape"]) != len(g[name]["shape"]):
                raise DeployError(f"{sidecar_path(onnx_path)}: {kind} {name!r} is {spec['dtype']}{spec['shape']} "
                                  f"but the ONNX graph has {g[name]['dtype']}{g[name]['shape']}")


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
    dependencies (libnvinfer, libcudart), which a CPU-only checker may not have.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        raise DeployError(f"{path}: not an ELF shared library")
    if data[4] != 2 or data[5] != 1:
        raise DeployError(f"{path}: expected a 64-bit little-endian ELF library")
    try:
        (e_shoff,) = struct.unpack_from("<Q", data, 0x28)
        e_shentsize, e_shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)]
        names = set()
        for sec in sections:
            if sec[1] != 11:  # SHT_DYNSYM
                continue
            offset, size, link, entsize = sec[4], sec[5], sec[6], sec[9] or 24
            str_off = sections[link][4]
            for k in range(size // entsize):
                st_name, st_info, _, st_shndx, _, _ = struct.unpack_from("<IBBHQQ", data, offset + k * entsize)
                if st_shndx == 0 or (st_info >> 4) not in (1, 2):  # undefined, or not GLOBAL/WEAK
                    continue
                end = data.index(b"\0", str_off + st_name)
                names.add(data[str_off + st_name:end].decode("ascii", "replace"))
    except (struct.error, IndexError, ValueError):
        raise DeployError(f"{path}: truncated or malformed ELF file") from None
    return names


def check_plugin_library(path: str | os.PathLike) -> Path:
    """An existing ELF library that exports `getCreators`; returns its absolute path."""
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"{path}: plugin library not found")
    if PLUGIN_ENTRY_POINT not in elf_dynamic_symbols(path):
        raise DeployError(f"{path}: does not export {PLUGIN_ENTRY_POINT} (not a TensorRT plugin library; "
                          f"expected build/libnvfp4_trt_plugin.so)")
    return path.resolve()


def check_plan_file(path: str | os.PathLike) -> Path:
    """A serialized TensorRT engine: present, not empty, not an ONNX model, TensorRT magic."""
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"{path}: plan file not found")
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
                 workspace_bytes: int | None = None, version_compatible: bool = False, log_level: str = "WARNING") -> Path:
    """Parse the ONNX with the plugin loaded, build one optimization profile from the sidecar, write the plan.

    The plan is written to a temporary name and renamed, so a failed build leaves nothing behind.
    """
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    side = side if side is not None else load_sidecar(onnx_path)
    plugin_library = check_plugin_library(plugin_library)
    logger = trt.Logger(getattr(trt.Logger, log_level))
    builder = trt.Builder(logger)
    # The plugin registers its creator through getCreators; loadLibrary is the call trtexec
    # --dynamicPlugins makes.
    builder.get_plugin_registry().load_library(str(plugin_library))
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
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DeployError(f"{onnx_path}: TensorRT engine build failed (see the TensorRT log above)")
    return write_atomically(Path(plan_path), bytes(serialized))


def write_atomically(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
