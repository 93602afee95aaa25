"""The ONNX Runtime op's portable loops (CPUs without AVX2) compute the same bits as its AVX2 path
and the exact reference: the op is run in a child process with NVFP4_CPU_PORTABLE=1."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import numpy as np, torch
from export.reference import nvfp4_linear_exact
from tests.test_ort_op import activation, build_model, make_layer, run
for mode in ("w4a4", "w4a16"):
    for n, k, m in ((40, 576, 3), (24, 1552, 2)):
        layer = make_layer(n, k, w4a4=mode == "w4a4", bias=True, per_channel=True)
        x = activation((m, k), torch.float32, scale=1.5)
        y = run(build_model(layer, torch.float32), x)
        assert torch.equal(y, nvfp4_linear_exact(x, layer)), (mode, n, k)
print("ok")
"""


def test_portable_loops_match_the_exact_reference():
    from plugins.library import find_ort_library

    try:
        find_ort_library()
    except FileNotFoundError as e:
        pytest.skip(f"ORT custom-op library not built: {e}")
    env = dict(os.environ, NVFP4_CPU_PORTABLE="1")
    r = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
