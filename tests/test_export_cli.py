"""scripts/export.py (plugins/cli/export.py): the README's main command, --verify publishing only
what passes, and bad input (one line, exit 2, nothing left; tests/test_malformed_inputs.py has the
full table)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from plugins.cli import export as export_cli
from export.errors import OutputError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tiny-llama-nvfp4"


def _cli():
    return export_cli.main


def _ort_or_skip():
    from plugins.library import find_ort_library

    try:
        find_ort_library()
    except FileNotFoundError as e:
        pytest.skip(f"--verify of the plugin format needs the ORT custom-op library: {e}")


def test_main_command_with_verify(tmp_path, capsys):
    _ort_or_skip()
    out = tmp_path / "out.onnx"
    assert _cli()([str(EXAMPLE), str(out), "--verify", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "verify: PASSED" in text and "14 NVFP4, 1 excluded" in text and "bytes written" in text
    assert "layer by layer" in text and "14 nodes x 3 runs, 0 failed" in text
    side = json.loads((tmp_path / "out.onnx.json").read_text())
    assert side["dtype"] == "float16" and side["architecture"] == "LlamaForCausalLM" and side["num_layers"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx", "out.onnx.json"]
    # An existing output needs --force.
    assert _cli()([str(EXAMPLE), str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--force" in err and "\n" not in err


def _broken_copy(tmp_path, edit) -> Path:
    src = tmp_path / "ckpt"
    shutil.copytree(EXAMPLE, src)
    cfg = json.loads((src / "config.json").read_text())
    edit(cfg)
    (src / "config.json").write_text(json.dumps(cfg))
    return src


def _set(key, value):
    def edit(cfg):
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    return edit


@pytest.mark.parametrize("case, edit, needle", [
    ("architecture", _set("architectures", ["GPT2LMHeadModel"]), "supported: LlamaForCausalLM"),
    ("missing-field", _set("hidden_size", None), "hidden_size"),
    ("bad-field", _set("num_key_value_heads", 3), "num_key_value_heads"),
    ("shape", _set("intermediate_size", 256), "config.json"),
])
def test_bad_checkpoint(tmp_path, capsys, case, edit, needle):
    src = _broken_copy(tmp_path, edit)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert _cli()([str(src), str(out_dir / "m.onnx"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and "\n" not in err, err
    assert list(out_dir.iterdir()) == []  # no partial .onnx, .data or temporary


def test_bad_output_paths(tmp_path, capsys):
    main = _cli()
    assert main([str(EXAMPLE), str(tmp_path / "missing" / "m.onnx"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and "\n" not in err
    assert main([str(tmp_path / "no-such-model"), str(tmp_path / "m.onnx"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().startswith("error:")
    assert main([str(EXAMPLE), str(tmp_path / "m.onnx"), "--format", "qdq", "--opset", "21", "--quiet"]) == 2
    assert "--opset 21" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_failure_during_write_leaves_nothing(tmp_path, monkeypatch):
    """A crash while writing (here: in onnx_ir.save) removes every temporary file."""
    import onnx_ir

    from export.onnx_export import export_model

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(onnx_ir, "save", boom)
    with pytest.raises(OutputError, match="m.onnx: cannot write"):
        export_model(EXAMPLE, tmp_path / "m.onnx", external_data=True, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_a_whole_export(tmp_path, capsys):
    """--force replaces all three files; an earlier export's .onnx.data that the new one does not
    have is removed with it (it would describe another graph)."""
    out = tmp_path / "m.onnx"
    assert _cli()([str(EXAMPLE), str(out), "--quiet", "--external-data"]) == 0
    assert (tmp_path / "m.onnx.data").exists()
    assert _cli()([str(EXAMPLE), str(out), "--quiet", "--dtype", "float32", "--force"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.json"]
    assert json.loads((tmp_path / "m.onnx.json").read_text())["dtype"] == "float32"


def test_failed_verify_publishes_nothing_unless_asked(tmp_path, monkeypatch, capsys):
    """--verify checks the staged files; when the check fails the export is not written
    (exit 1), unless --keep-unverified."""
    _ort_or_skip()
    from plugins.cli import verify

    def failing(onnx_path, model_dir, **kwargs):
        assert Path(onnx_path).is_file() and Path(str(onnx_path) + ".json").is_file()  # the staged export
        return False

    monkeypatch.setattr(verify, "check_export", failing)
    out = tmp_path / "m.onnx"
    assert _cli()([str(EXAMPLE), str(out), "--quiet", "--verify"]) == 1
    assert "nothing was written" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    assert _cli()([str(EXAMPLE), str(out), "--quiet", "--verify", "--keep-unverified"]) == 1
    assert "written anyway" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.json"]
