"""Ctrl-C, SIGTERM and SIGKILL during a command: one line, exit 130/143, and nothing left behind
that the next run does not remove."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plugins.cli import export as export_cli
from export.cli.runner import EXIT_INTERRUPTED, EXIT_TERMINATED
from export.outputs import TEMPORARY_MARK

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tiny-llama-nvfp4"


def _interrupt_while_writing(monkeypatch, raise_it):
    """Make the export's writer write part of its output, then be interrupted."""
    from export import onnx_export

    original = onnx_export.save_model

    def save_model(model_ir, path, **kw):
        original(model_ir, path, **kw)
        raise_it()

    monkeypatch.setattr(onnx_export, "save_model", save_model)


def test_ctrl_c_while_writing(tmp_path, monkeypatch, capsys):
    def ctrl_c():
        raise KeyboardInterrupt
    _interrupt_while_writing(monkeypatch, ctrl_c)
    assert export_cli.main([str(EXAMPLE), str(tmp_path / "m.onnx"), "--quiet"]) == EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert list(tmp_path.iterdir()) == []


def test_sigterm_while_writing(tmp_path, monkeypatch, capsys):
    def sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    _interrupt_while_writing(monkeypatch, sigterm)
    assert export_cli.main([str(EXAMPLE), str(tmp_path / "m.onnx"), "--quiet"]) == EXIT_TERMINATED == 143
    assert capsys.readouterr().err == "terminated\n"
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)


def test_killed_run_leaves_only_a_recognised_temporary_that_the_next_run_removes(tmp_path):
    out = tmp_path / "m.onnx"
    killed = _run(
        "import os, signal\n"
        "from export import onnx_export\n"
        "from plugins.cli.export import main\n"
        "original = onnx_export.save_model\n"
        "def save_model(*a, **k):\n"
        "    original(*a, **k)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "onnx_export.save_model = save_model\n"
        f"main([{str(EXAMPLE)!r}, {str(out)!r}, '--quiet'])\n")
    assert killed.returncode == -signal.SIGKILL
    left = list(tmp_path.iterdir())
    assert len(left) == 1 and left[0].name.startswith(f".m.onnx{TEMPORARY_MARK}") and not out.exists()
    assert export_cli.main([str(EXAMPLE), str(out), "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.json"]


@pytest.mark.parametrize("signum, status, line", [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "terminated")])
def test_signal_to_the_real_command(tmp_path, signum, status, line):
    """The script as a user runs it, signalled while it works: one line, no traceback, nothing left."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "export.py"), str(EXAMPLE),
                             str(tmp_path / "m.onnx"), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(1.0)  # inside the command (importing torch, building or tracing the model)
    if proc.poll() is not None:
        pytest.skip("the export finished before the signal could be sent")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert err.strip().splitlines() == [line], err
    assert list(tmp_path.iterdir()) == []
