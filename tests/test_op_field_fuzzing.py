"""Random and hostile field sets against the TensorRT plugins' creators (NVFP4Linear and NVFP4MoE, in
the real TensorRT lean runtime, through its Python bindings) and random attribute sets and input
arities against the ONNX Runtime op: never a crash, never an accepted invalid set, and every refusal
is one line that names the plugin/node and is capped in length.

Small Python models of the op contracts (`expected_valid`, `moe_expected_valid`) say which sets are
valid; the creators and the ORT op must agree with them on every seeded case.
"""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
from onnx import TensorProto, helper

from plugins.library import find_ort_library, find_plugin_library
from plugins.tensorrt_registry import load_creator, op_contract
from tests.ort_models import model_bytes

GOOD = dict(in_features=64, out_features=32, group_size=16, mode="w4a4",
            input_global_scale=2.0 / 2688, input_global_scale_inv=1344.0, has_bias=0)
FIELD_TYPE = {name: spec["field"][1:] for name, spec in op_contract()["attributes"].items()}  # "INT32", ...
PARSER_ATTRIBUTES = ("plugin_version", "plugin_namespace")
MAX_MESSAGE = 600


def expected_valid(fields: list[tuple[str, str, object]]) -> bool:
    """The contract: every field once (parser attributes aside), its type, one value, in range."""
    seen = {}
    for name, kind, value in fields:
        if name in PARSER_ATTRIBUTES:
            continue
        if name not in FIELD_TYPE or name in seen or kind != FIELD_TYPE[name]:
            return False
        if kind != "CHAR" and (not isinstance(value, list) or len(value) != 1):
            return False
        if kind == "CHAR" and (not isinstance(value, bytes) or len(value) == 0):
            return False
        seen[name] = value if kind == "CHAR" else value[0]
    if set(seen) != set(FIELD_TYPE):
        return False
    k, n, g, b = seen["in_features"], seen["out_features"], seen["group_size"], seen["has_bias"]
    mode = seen["mode"].split(b"\0")[0]
    if not (k > 0 and k % 16 == 0 and n > 0 and g == 16 and b in (0, 1) and mode in (b"w4a4", b"w4a16")):
        return False
    if mode == b"w4a4":
        return all(math.isfinite(seen[s]) and seen[s] > 0 for s in ("input_global_scale", "input_global_scale_inv"))
    return True


def random_value(rng: random.Random, kind: str):
    if kind == "CHAR":
        return rng.choice([b"w4a4\0", b"w4a16\0", b"w4a4", b"w8a8\0", b"\0", b"w4a4\0junk", b"x" * 70000 + b"\0"])
    count = rng.choice([1, 1, 1, 1, 0, 2])
    if kind == "FLOAT32":
        pool = [1.0, 1344.0, 2.0 / 2688, 0.0, -1.0, float("inf"), float("nan"), 1e-45, 3.4e38]
    else:
        pool = [64, 32, 16, 0, 1, -16, 40, 2, 2**31 - 16, 4096]
    return [rng.choice(pool) for _ in range(count)]


def random_field_set(rng: random.Random) -> list[tuple[str, str, object]]:
    """Mostly-valid sets with one to three things wrong (or nothing), in random order."""
    fields = [(name, FIELD_TYPE[name], GOOD[name].encode() + b"\0" if FIELD_TYPE[name] == "CHAR" else [GOOD[name]])
              for name in FIELD_TYPE]
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        what = rng.choice(["drop", "duplicate", "unknown", "retype", "revalue", "revalue", "parser"])
        i = rng.randrange(len(fields))
        name, kind, value = fields[i]
        if what == "drop" and len(fields) > 1:
            fields.pop(i)
        elif what == "duplicate":
            fields.append((name, kind, random_value(rng, kind)))
        elif what == "unknown":
            fields.append((rng.choice(["bias", "mode2", "In_features", "x" * 5000]), "INT32", [1]))
        elif what == "retype":
            new_kind = rng.choice(["INT32", "FLOAT32", "CHAR", "INT64", "FLOAT16", "INT8"])
            fields[i] = (name, new_kind, random_value(rng, new_kind) if new_kind in ("INT32", "FLOAT32", "CHAR")
                         else [1])
        elif what == "revalue":
            fields[i] = (name, kind, random_value(rng, kind))
        else:
            fields.append((rng.choice(PARSER_ATTRIBUTES), "CHAR", b"1\0"))
    rng.shuffle(fields)
    return fields


# --- the TensorRT plugin creator ---------------------------------------------------------------

@pytest.fixture(scope="module")
def trt_creator(lean_plugin_registry):
    """(bindings, creator, recorder): the lean runtime's registry with the plugin library loaded
    and an error recorder set (tests/test_plugin_registry.py's)."""
    from tests.test_plugin_registry import Recorder

    trt, library = lean_plugin_registry
    recorder = Recorder()
    trt.get_plugin_registry().error_recorder = recorder
    yield trt, load_creator(trt, library), recorder
    trt.get_plugin_registry().error_recorder = None


NUMPY = {"INT32": np.int32, "FLOAT32": np.float32, "INT64": np.int64, "FLOAT16": np.float16, "INT8": np.int8}


def create(trt, creator, fields, phase="BUILD", name="fuzz"):
    collection = []
    for field_name, kind, value in fields:
        if kind == "CHAR":
            data = np.frombuffer(value, dtype=np.int8).copy()
        else:
            data = np.array(value, dtype=NUMPY[kind])
        collection.append(trt.PluginField(field_name, data, getattr(trt.PluginFieldType, kind)))
    return creator.create_plugin(name, trt.PluginFieldCollection(collection), getattr(trt.TensorRTPhase, phase))


def assert_refusal(recorder, name="fuzz", op="NVFP4Linear"):
    ours = [e for e in recorder.errors if f"{op} plugin '{name[:20]}" in e]
    assert ours, recorder.errors
    assert "\n" not in ours[-1] and len(ours[-1]) < MAX_MESSAGE, ours[-1][:2000]
    return ours[-1]


def fuzz(trt, creator, recorder, phase, op, random_set, is_valid, rng, count):
    """`count` random field sets through createPlugin(phase): a plugin exactly for the sets `is_valid`
    accepts, else one capped line naming the plugin. Returns (accepted, refused)."""
    accepted = refused = 0
    for _ in range(count):
        fields = random_set(rng)
        recorder.clear()
        plugin = create(trt, creator, fields, phase)
        valid = is_valid(fields)
        assert (plugin is not None) == valid, (fields, recorder.errors)
        if valid:
            accepted += 1
        else:
            refused += 1
            message = assert_refusal(recorder, op=op)
            assert phase == "BUILD" or "corrupt serialized fields in the engine" in message
    return accepted, refused


@pytest.mark.parametrize("phase", ["BUILD", "RUNTIME"])
def test_random_field_sets(trt_creator, phase):
    trt, creator, recorder = trt_creator
    rng = random.Random(2026 if phase == "BUILD" else 2027)
    accepted, refused = fuzz(trt, creator, recorder, phase, "NVFP4Linear", random_field_set, expected_valid, rng, 400)
    assert accepted >= 50 and refused >= 150  # both sides were exercised


@pytest.mark.parametrize("fields, expected", [
    ([("in_features", "INT32", [64]), ("in_features", "INT32", [48])], "field 'in_features' is given twice"),
    ([("bogus", "INT32", [1])], "unknown field \"bogus\"; expected in_features, out_features"),
    ([("x" * 100000, "INT32", [1])], "... ("),
    ([("mode", "CHAR", b"w" * 65536 + b"\0")], "must be one kCHAR string, got type kCHAR with length 65537"),
    ([("mode", "CHAR", b"w" * 4000 + b"\0")], "got \"wwww"),
    ([("mode", "CHAR", b"\x01\x02bad\0")], "got \"\\x01\\x02bad\""),
    ([("has_bias", "INT32", [0, 1])], "field 'has_bias' must be one kINT32 value, got type kINT32 with length 2"),
    ([("input_global_scale", "FLOAT32", [])], "field 'input_global_scale' must be one kFLOAT32 value"),
    ([("group_size", "INT64", [16])], "field 'group_size' must be one kINT32 value, got type kINT64"),
])
def test_hostile_fields_are_named_and_capped(trt_creator, fields, expected):
    trt, creator, recorder = trt_creator
    base = {name: (FIELD_TYPE[name], GOOD[name].encode() + b"\0" if FIELD_TYPE[name] == "CHAR" else [GOOD[name]])
            for name in FIELD_TYPE}
    replaced = {name for name, _, _ in fields}
    full = [(n, k, v) for n, (k, v) in base.items() if n not in replaced or n == "in_features"] + fields
    if fields[0][0] == "in_features":  # the duplicate case: the original stays, the copy follows
        full = [(n, k, v) for n, (k, v) in base.items()] + fields[1:]
    recorder.clear()
    assert create(trt, creator, full) is None
    message = assert_refusal(recorder)
    assert expected in message, message


def test_parser_attributes_are_ignored(trt_creator):
    trt, creator, recorder = trt_creator
    fields = [(n, FIELD_TYPE[n], GOOD[n].encode() + b"\0" if FIELD_TYPE[n] == "CHAR" else [GOOD[n]]) for n in FIELD_TYPE]
    fields += [("plugin_version", "CHAR", b"1\0"), ("plugin_namespace", "CHAR", b"\0")]
    assert create(trt, creator, fields) is not None


def test_hostile_plugin_name_is_capped(trt_creator):
    trt, creator, recorder = trt_creator
    recorder.clear()
    name = "n" * 100000
    assert create(trt, creator, [("bogus", "INT32", [1])], name=name) is None
    assert recorder.errors and len(recorder.errors[-1]) < MAX_MESSAGE, len(recorder.errors[-1])


# --- the NVFP4MoE creator: the same parser, list fields of num_experts values ---------------------

E4 = [0.5, 1.0, 1.5, 2.0]
GOOD_MOE = dict(num_experts=4, top_k=2, hidden_size=64, intermediate_size=32, group_size=16, mode="w4a4",
                activation="silu", normalize_topk=1, w13_input_global_scale=[s / 2688 for s in E4],
                w13_input_global_scale_inv=[2688 / s for s in E4], w2_input_global_scale=[s / 448 for s in E4],
                w2_input_global_scale_inv=[448 / s for s in E4])
MOE_FIELD_TYPE = {name: spec["field"][1:] for name, spec in op_contract("NVFP4MoE")["attributes"].items()}
MOE_LISTS = [name for name, spec in op_contract("NVFP4MoE")["attributes"].items() if spec.get("length") == "E"]


def moe_expected_valid(fields: list[tuple[str, str, object]]) -> bool:
    """The contract and the CUDA kernels' limits (num_experts <= 4096, top_k <= 32)."""
    seen = {}
    for name, kind, value in fields:
        if name in PARSER_ATTRIBUTES:
            continue
        if name not in MOE_FIELD_TYPE or name in seen or kind != MOE_FIELD_TYPE[name]:
            return False
        if kind == "CHAR":
            if not isinstance(value, bytes) or len(value) == 0 or len(value) > 4096:
                return False
            seen[name] = value.split(b"\0")[0]
        elif name in MOE_LISTS:
            if not isinstance(value, list) or len(value) == 0:
                return False
            seen[name] = [float(np.float32(v)) for v in value]
        else:
            if not isinstance(value, list) or len(value) != 1:
                return False
            seen[name] = value[0]
    if set(seen) != set(MOE_FIELD_TYPE):
        return False
    e, k, h, i = (seen[n] for n in ("num_experts", "top_k", "hidden_size", "intermediate_size"))
    if not (1 <= e <= 4096 and 1 <= k <= min(e, 32) and seen["group_size"] == 16 and seen["normalize_topk"] in (0, 1)):
        return False
    if not all(0 < v <= 2**30 and v % 16 == 0 for v in (h, i)) or h // 32 > 65535 or i // 16 > 65535:
        return False
    if seen["mode"] not in (b"w4a4", b"w4a16") or seen["activation"] != b"silu":
        return False
    w4a4 = seen["mode"] == b"w4a4"
    return all(len(seen[n]) == e and all(math.isfinite(v) and (v > 0 or not w4a4) for v in seen[n]) for n in MOE_LISTS)


def random_moe_field_set(rng: random.Random) -> list[tuple[str, str, object]]:
    """Mostly-valid NVFP4MoE sets with one to three things wrong (or nothing), in random order."""
    def encode(name, value):
        return value.encode() + b"\0" if MOE_FIELD_TYPE[name] == "CHAR" else list(value) if isinstance(value, list) \
            else [value]

    fields = [(name, MOE_FIELD_TYPE[name], encode(name, GOOD_MOE[name])) for name in MOE_FIELD_TYPE]
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        what = rng.choice(["drop", "duplicate", "unknown", "retype", "revalue", "revalue", "experts", "parser"])
        i = rng.randrange(len(fields))
        name, kind, value = fields[i]
        if what == "drop" and len(fields) > 1:
            fields.pop(i)
        elif what == "duplicate":
            fields.append((name, kind, value))
        elif what == "unknown":
            fields.append((rng.choice(["topk", "num_expert", "x" * 5000]), "INT32", [1]))
        elif what == "retype":
            new_kind = rng.choice(["INT32", "FLOAT32", "CHAR", "INT64"])
            count = len(value) if isinstance(value, list) else 1
            fields[i] = (name, new_kind, b"1\0" if new_kind == "CHAR" else [1] * count)
        elif what == "revalue" and name in MOE_FIELD_TYPE:
            kind = MOE_FIELD_TYPE[name]
            if kind == "CHAR":
                fields[i] = (name, kind, rng.choice([b"w4a16\0", b"silu\0", b"gelu\0", b"\0", b"w4a4\0junk",
                                                     b"s" * 5000 + b"\0"]))
            elif name in MOE_LISTS:
                pool = [1.0, 0.0, -1.0, float("inf"), float("nan"), 1e-45]
                fields[i] = (name, kind, [rng.choice(pool) if rng.random() < 0.3 else 1.0
                                          for _ in range(rng.choice([3, 4, 4, 5]))])
            else:
                fields[i] = (name, kind, [rng.choice([0, 1, 2, 3, 4, 16, 33, 40, -16, 48, 4097, 2**31 - 16])])
        elif what == "experts":  # consistent num_experts and top_k: the kernels' limits decide
            n, k = rng.choice([1, 8, 40, 4097]), rng.choice([1, 2, 32, 33])
            values = {"num_experts": [n], "top_k": [k]} | {f: [1.0] * n for f in MOE_LISTS}
            fields = [(f, t, values.get(f, v) if t == MOE_FIELD_TYPE.get(f) else v) for f, t, v in fields]
        elif what == "parser":
            fields.append((rng.choice(PARSER_ATTRIBUTES), "CHAR", b"1\0"))
    rng.shuffle(fields)
    return fields


@pytest.mark.parametrize("phase", ["BUILD", "RUNTIME"])
def test_random_moe_field_sets(trt_creator, phase):
    trt, _, recorder = trt_creator
    creator = load_creator(trt, find_plugin_library(), op_type="NVFP4MoE")
    rng = random.Random(3026 if phase == "BUILD" else 3027)
    accepted, refused = fuzz(trt, creator, recorder, phase, "NVFP4MoE", random_moe_field_set, moe_expected_valid,
                             rng, 300)
    assert accepted >= 40 and refused >= 100  # both sides were exercised


# --- the ONNX Runtime op -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ort_library():
    try:
        return find_ort_library()
    except FileNotFoundError as e:
        pytest.skip(str(e))


def ort_model(attributes: dict, n_inputs: int, weight_shape=(32, 32), scale_shape=(32, 4), gscale_shape=(1,),
              bias_shape=(32,)) -> bytes:
    """One node; weight/scale/global scale/bias are initializers (so their shapes are known when the
    kernel is created), x a graph input."""
    rng = np.random.default_rng(0)
    inits = [helper.make_tensor("weight", TensorProto.INT8, list(weight_shape),
                                rng.integers(-128, 128, weight_shape, dtype=np.int8).tobytes(), raw=True),
             helper.make_tensor("weight_scale", TensorProto.INT8, list(scale_shape),
                                np.full(scale_shape, 0x38, np.int8).tobytes(), raw=True),
             helper.make_tensor("weight_global_scale", TensorProto.FLOAT, list(gscale_shape),
                                np.ones(gscale_shape, np.float32).tobytes(), raw=True),
             helper.make_tensor("bias", TensorProto.FLOAT, list(bias_shape), np.zeros(bias_shape, np.float32).tobytes(),
                                raw=True)]
    names = ["x", "weight", "weight_scale", "weight_global_scale", "bias"][:n_inputs]
    node = helper.make_node("NVFP4Linear", names, ["y"], domain="trt.plugins", name="fuzz", **attributes)
    return model_bytes([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", 64])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", 32])],
                       [i for i in inits if i.name in names])


def ort_attribute_set(rng: random.Random) -> tuple[dict, list[tuple[str, str, object]]]:
    """Random node attributes, and the same as (name, field kind, value) for expected_valid."""
    attrs = {"in_features": 64, "out_features": 32, "group_size": 16, "mode": "w4a4",
             "input_global_scale": 2.0 / 2688, "input_global_scale_inv": 1344.0, "has_bias": 0}
    for _ in range(rng.choice([0, 1, 1, 2])):
        name = rng.choice(list(attrs))
        choice = rng.choice(["drop", "value", "type"])
        if choice == "drop":
            attrs.pop(name)
        elif choice == "type":
            attrs[name] = rng.choice([1.5, 7, "w4a4"])
        elif isinstance(attrs[name], str):
            attrs[name] = rng.choice(["w4a16", "w8a8", "", "w" * 70000])
        elif isinstance(attrs[name], float):
            attrs[name] = rng.choice([0.0, -1.0, float("inf"), float("nan"), 1e-45, 5.0])
        else:
            attrs[name] = rng.choice([0, 1, 16, 48, 40, -16, 2, 32])
    kinds = {int: "INT32", float: "FLOAT32", str: "CHAR"}
    fields = [(n, kinds[type(v)], v.encode() + b"\0" if isinstance(v, str) else [v]) for n, v in attrs.items()]
    return attrs, fields


def ort_expected_valid(attrs: dict, fields, n_inputs: int) -> bool:
    if not expected_valid(fields) or attrs.get("mode") == "":
        return False
    # Initializers: weight [32, 32], scale [32, 4], global [1], bias [32]; x is [m, 64].
    return (attrs["in_features"] == 64 and attrs["out_features"] == 32 and n_inputs == 4 + attrs["has_bias"])


def test_random_attribute_sets_and_arities(ort_library):
    from plugins.ort import make_session

    rng = random.Random(7)
    accepted = refused = 0
    for _ in range(150):
        attrs, fields = ort_attribute_set(rng)
        has_bias = attrs.get("has_bias") if attrs.get("has_bias") in (0, 1) else 0
        n_inputs = 4 + has_bias if rng.random() < 0.7 else rng.choice([2, 3, 4, 5])
        model = ort_model(attrs, n_inputs)
        try:
            session = make_session(model, ort_library)
            error = None
        except Exception as e:  # noqa: BLE001 - ORT reports with several exception types
            error = str(e)
        valid = ort_expected_valid(attrs, fields, n_inputs)
        assert (error is None) == valid, (attrs, n_inputs, error)
        if valid:
            accepted += 1
            x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
            (y,) = session.run(None, {"x": x})
            assert y.shape == (3, 32)
        else:
            refused += 1
            last = error.strip().splitlines()[-1]
            assert len(error) < 2000, error[:3000]
            assert "NVFP4Linear" in error or "Node (fuzz)" in error or "fuzz" in error, error
            assert "w" * 100 not in last, "an attribute value was echoed whole"
    assert accepted >= 20 and refused >= 60


@pytest.mark.parametrize("n_inputs, shapes, expected", [
    (2, {}, "has input size 2 not in range"),  # ONNX Runtime refuses these first; the op would too
    (3, {}, "has input size 3 not in range"),
    (5, {}, "has_bias=0 but the node has 5 inputs; expected 4"),
    (4, {"weight_shape": (32, 16)}, "input 'weight' must have shape [out_features, in_features/2] = [32, 32]"),
    (4, {"scale_shape": (33, 4)}, "input 'weight_scale' must have shape"),
    (4, {"weight_shape": (2, 3, 4)}, "input 'weight' must have shape"),
    (4, {"gscale_shape": (2, 16)}, "input 'weight_global_scale' must have shape"),
])
def test_every_shape_checked_before_data_is_read(ort_library, n_inputs, shapes, expected):
    """A node with too few inputs, or constants of the wrong shape, is refused at session creation,
    before the constant weight is decoded (which would read past a short buffer)."""
    from plugins.ort import make_session

    attrs = dict(in_features=64, out_features=32, group_size=16, mode="w4a16", input_global_scale=1.0,
                 input_global_scale_inv=1.0, has_bias=0)
    with pytest.raises(Exception) as info:
        make_session(ort_model(attrs, n_inputs, **shapes), ort_library)
    assert expected in str(info.value), str(info.value)


def test_unknown_attribute_refused_before_the_session(ort_library):
    from export.errors import DeployError
    from plugins.ort import make_session

    attrs = dict(in_features=64, out_features=32, group_size=16, mode="w4a16", input_global_scale=1.0,
                 input_global_scale_inv=1.0, has_bias=0, in_feature=64, plugin_version="1")
    with pytest.raises(DeployError, match="node 'fuzz': unknown attribute 'in_feature'"):
        make_session(ort_model(attrs, 4), ort_library)
