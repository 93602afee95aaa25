"""One source of truth per op (NVFP4Linear, and NVFP4MoE at the end), checked from every side.

The YAML (trt_plugin_src/nvfp4Linear/NVFP4Linear_PluginConfig.yaml) against:
- docs/op-contract.md (the Inputs and Attributes tables),
- the C++ creator's getFieldNames() (names, types, order), read two ways: through the lean Python
  bindings and as printed by the C++ lean-runtime test program,
- the ONNX Runtime op: which input types and how many inputs it accepts.
"""
from __future__ import annotations

import json
import re
import subprocess

import pytest
from onnx import TensorProto, helper

from plugins.library import BUILD_DIR, REPO_ROOT, find_ort_library, find_plugin_library
from plugins.tensorrt_registry import creator_field_names, import_tensorrt, load_creator, op_contract
from tests.ort_models import model_bytes

DOC = REPO_ROOT / "docs" / "op-contract.md"
MOE_DOC = REPO_ROOT / "docs" / "op-contract-moe.md"
ONNX_NAME = {"float32": "FLOAT", "int8": "INT8", "T": "T"}
FIELD_FOR_ONNX = {"INT": "kINT32", "FLOAT": "kFLOAT32", "FLOATS": "kFLOAT32", "STRING": "kCHAR"}


def contract_fields(op_type: str = "NVFP4Linear") -> list[tuple[str, str]]:
    return [(name, spec["field"]) for name, spec in op_contract(op_type)["attributes"].items()]


def markdown_table(section: str, doc=DOC) -> list[list[str]]:
    """Rows (cells without backticks) of the first table under '## <section>' in the contract doc."""
    text = doc.read_text(encoding="utf-8")
    body = text.split(f"## {section}", 1)[1]
    rows = []
    for line in body.splitlines()[1:]:
        if line.startswith("## "):
            break
        if line.startswith("|") and not re.match(r"^\|[-| ]+\|$", line):
            rows.append([cell.strip().replace("`", "") for cell in line.strip().strip("|").split("|")])
        elif rows and not line.startswith("|"):
            break
    return rows[1:]  # without the header


def test_yaml_is_self_consistent():
    c = op_contract()
    assert c["name"] == "NVFP4Linear" and c["domain"] == "trt.plugins" and c["group_size"] == 16
    assert set(c["modes"]) == {"w4a4", "w4a16"}
    for name, spec in c["attributes"].items():
        assert FIELD_FOR_ONNX[spec["onnx"]] == spec["field"], name  # the ONNX parser's conversion


def test_doc_tables_match_yaml():
    c = op_contract()
    inputs = markdown_table("Inputs")
    assert [(r[0], r[1], r[2]) for r in inputs] == [
        (str(i), spec["name"], ONNX_NAME[spec["type"]]) for i, spec in enumerate(c["inputs"])]
    attrs = markdown_table("Attributes (→ TensorRT plugin fields)")
    assert [(r[0], r[1], r[2]) for r in attrs] == [
        (name, spec["onnx"], spec["field"]) for name, spec in c["attributes"].items()]
    identity = {r[0]: r[1] for r in markdown_table("Identity")}
    assert identity["op_type"] == c["name"] and identity["domain"] == c["domain"]
    assert identity["attribute plugin_version"] == f'"{c["plugin_version"]}"'
    assert identity["attribute plugin_namespace"] == f'"{c["plugin_namespace"]}"'


@pytest.mark.parametrize("op_type", ["NVFP4Linear", "NVFP4MoE"])
def test_cpp_creator_fields_via_bindings(op_type):
    trt = import_tensorrt("lean")
    if trt is None:
        pytest.skip("tensorrt_lean_bindings not installed")
    try:
        creator = load_creator(trt, find_plugin_library(), op_type=op_type)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    assert [(n, "k" + t) for n, t in creator_field_names(creator)] == contract_fields(op_type)


@pytest.mark.parametrize("op_type, prefix", [("NVFP4Linear", "FIELDS_JSON "), ("NVFP4MoE", "MOE_FIELDS_JSON ")])
def test_cpp_creator_fields_via_lean_runtime_program(op_type, prefix):
    program = BUILD_DIR / "leanRuntimePluginTest"
    if not program.is_file():
        pytest.skip(f"{program} not built")
    out = subprocess.run([str(program), str(find_plugin_library())], capture_output=True, text=True, timeout=300)
    line = next((x for x in out.stdout.splitlines() if x.startswith(prefix)), None)
    assert line is not None, out.stdout + out.stderr
    fields = json.loads(line[len(prefix):])
    assert [(f["name"], f["type"]) for f in fields] == contract_fields(op_type)


# ---- the ONNX Runtime op accepts exactly the contract's input types and count ----

def _ort_session_error(types: list[int], n_inputs: int | None = None) -> str | None:
    """Session creation with a one-node model whose inputs have `types` (graph inputs, so no
    initializer shape checks); returns ORT's error text or None if accepted."""
    import onnxruntime  # noqa: F401  (skip source below if missing)

    from plugins.ort import make_session

    names = ["x", "weight", "weight_scale", "weight_global_scale", "bias"][: n_inputs or len(types)]
    shapes = [["m", 32], [8, 16], [8, 2], [1], [8]]
    inputs = [helper.make_tensor_value_info(n, t, s) for n, t, s in zip(names, types, shapes)]
    node = helper.make_node("NVFP4Linear", names, ["y"], domain="trt.plugins", name="lin0", in_features=32,
                            out_features=8, group_size=16, mode="w4a16", input_global_scale=1.0,
                            input_global_scale_inv=1.0, has_bias=int(len(names) == 5))
    model = model_bytes([node], inputs, [helper.make_tensor_value_info("y", types[0], ["m", 8])])
    try:
        make_session(model, find_ort_library())
    except Exception as e:  # noqa: BLE001 - ORT raises several exception types
        return str(e)
    return None


def test_ort_op_input_types_match_yaml():
    try:
        find_ort_library()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    c = op_contract()
    onnx_type = {"float32": TensorProto.FLOAT, "int8": TensorProto.INT8}
    activation = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16}
    for t_name in c["activation_types"]:
        t = activation[t_name]
        types = [t if spec["type"] == "T" else onnx_type[spec["type"]] for spec in c["inputs"]]
        assert _ort_session_error(types) is None, t_name  # with bias (5 inputs)
        assert _ort_session_error(types[:4]) is None, t_name  # without
    good = [TensorProto.FLOAT, TensorProto.INT8, TensorProto.INT8, TensorProto.FLOAT]
    for position, wrong in ((0, TensorProto.DOUBLE), (1, TensorProto.UINT8), (2, TensorProto.FLOAT8E4M3FN),
                            (3, TensorProto.FLOAT16)):
        types = list(good)
        types[position] = wrong
        message = _ort_session_error(types)
        assert message is not None and "NVFP4Linear" in message, (position, message)
    assert len(c["inputs"]) == 5 and c["inputs"][4].get("optional")


# ---- the library lookup every part uses (plugins/library.py) ----

@pytest.mark.parametrize("finder, env_var, file_name", [
    ("find_plugin_library", "NVFP4_PLUGIN_LIB", "libnvfp4_trt_plugin.so"),
    ("find_ort_library", "NVFP4_ORT_LIB", "libnvfp4_ort_ops.so"),
    ("find_kernels_library", "NVFP4_KERNELS_LIB", "libnvfp4_kernels.so"),
])
def test_library_lookup_order(tmp_path, monkeypatch, finder, env_var, file_name):
    import plugins.library as library

    find = getattr(library, finder)
    explicit, from_env, in_build = tmp_path / "a.so", tmp_path / "b.so", tmp_path / "build" / file_name
    for p in (explicit, from_env, in_build):
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"\x7fELF")
    monkeypatch.setattr(library, "BUILD_DIR", tmp_path / "build")
    monkeypatch.setenv(env_var, str(from_env))
    assert find(explicit) == explicit.resolve()  # 1. explicit path
    assert find() == from_env.resolve()  # 2. environment variable
    monkeypatch.delenv(env_var)
    assert find() == in_build.resolve()  # 3. build/
    in_build.unlink()
    with pytest.raises(FileNotFoundError) as info:
        find()
    assert file_name in str(info.value) and env_var in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="the path given"):
        find(tmp_path / "missing.so")


@pytest.mark.parametrize("op_type, attributes_header, fields_header", [
    ("NVFP4Linear", "common/nvfp4LinearAttributes.h", "nvfp4Linear/NVFP4LinearFields.h"),
    ("NVFP4MoE", "common/nvfp4MoEAttributes.h", "nvfp4MoE/NVFP4MoEFields.h"),
])
def test_cpp_field_table_matches_yaml(op_type, attributes_header, fields_header):
    """Each plugin's field table (<Op>Fields.h) and the names it uses (<op>Attributes.h) are the
    YAML's attributes, in order, with the parser's types, and a field is a list exactly where the
    YAML gives it num_experts values: checked from the sources, so it holds without a build."""
    src = REPO_ROOT / "trt_plugin_src"
    names = dict(re.findall(r'constexpr char const\* (k\w*Attr\w+) = "(\w+)";', (src / attributes_header).read_text()))
    table = re.findall(r"\{(k\w*Attr\w+), nvinfer1::PluginFieldType::(k\w+), (true|false)\}",
                       (src / fields_header).read_text())
    assert [(names[const], kind) for const, kind, _ in table] == contract_fields(op_type)
    lists = [name for name, spec in op_contract(op_type)["attributes"].items() if spec.get("length", 1) != 1]
    assert [names[const] for const, _, is_list in table if is_list == "true"] == lists


# ---- NVFP4MoE (docs/op-contract-moe.md, trt_plugin_src/nvfp4MoE/NVFP4MoE_PluginConfig.yaml) ----

def test_moe_yaml_is_self_consistent():
    c = op_contract("NVFP4MoE")
    assert c["name"] == "NVFP4MoE" and c["domain"] == "trt.plugins" and c["group_size"] == 16
    assert (c["plugin_version"], c["plugin_namespace"]) == (op_contract()["plugin_version"],
                                                           op_contract()["plugin_namespace"])
    for name, spec in c["attributes"].items():
        assert FIELD_FOR_ONNX[spec["onnx"]] == spec["field"], name
        assert spec.get("length", 1) == (1 if spec["onnx"] != "FLOATS" else "E"), name


def test_moe_doc_tables_match_yaml():
    c = op_contract("NVFP4MoE")
    inputs = markdown_table("Inputs", MOE_DOC)
    assert [(r[0], r[1], r[2]) for r in inputs] == [
        (str(i), spec["name"], ONNX_NAME[spec["type"]]) for i, spec in enumerate(c["inputs"])]
    attrs = markdown_table("Attributes (→ TensorRT plugin fields)", MOE_DOC)
    assert [(r[0], r[1], r[2].split(" ×")[0]) for r in attrs] == [
        (name, spec["onnx"], spec["field"]) for name, spec in c["attributes"].items()]

