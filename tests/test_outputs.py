"""export/outputs.py and export/inputs.py: outputs appear whole or not at all, nothing of the user's
is replaced without --force or ever when it is an input, stale temporaries of dead runs are
removed, and input files that would hang or flood are refused."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from export.errors import OutputError, UserError
from export.inputs import MAX_JSON_BYTES, read_json_object, regular_file
from export.outputs import (TEMPORARY_MARK, Staging, check_outputs, remove_stale_temporaries, replace_file,
                            write_file)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_files_published_together_in_order(tmp_path):
    targets = [tmp_path / "m.onnx.data", tmp_path / "m.onnx.json", tmp_path / "m.onnx"]
    with Staging(targets) as staging:
        for t in targets:
            staging.path(t).write_text(t.name)
        assert sorted(p.name for p in tmp_path.iterdir()) == [staging.folder.name]
        assert staging.folder.name.startswith(".m.onnx" + TEMPORARY_MARK + str(os.getpid()))
        staging.publish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data", "m.onnx.json"]
    assert (tmp_path / "m.onnx").read_text() == "m.onnx"


def test_failure_or_interrupt_leaves_nothing(tmp_path):
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with Staging([tmp_path / "a.bin"]) as staging:
                staging.path(tmp_path / "a.bin").write_bytes(b"x")
                raise exc
        assert list(tmp_path.iterdir()) == []


def test_unpublished_staging_is_discarded(tmp_path):
    """A check that fails (no publish) leaves nothing."""
    with Staging([tmp_path / "a.bin"]) as staging:
        staging.path(tmp_path / "a.bin").write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []


def test_os_error_while_writing_is_one_line_naming_the_output(tmp_path):
    with pytest.raises(OutputError) as info:
        with Staging([tmp_path / "m.onnx"]) as staging:
            raise OSError(28, "No space left on device", str(staging.path(tmp_path / "m.onnx")))
    assert str(info.value) == f"{tmp_path / 'm.onnx'}: cannot write (No space left on device)"
    assert list(tmp_path.iterdir()) == []


def test_folder_replaced_only_as_a_whole(tmp_path):
    out = tmp_path / "repo"
    out.mkdir()
    (out / "old.txt").write_text("old")
    check_outputs([out], force=True, directory=True)
    with Staging([out], directory=True) as staging:
        (staging.path() / "new.txt").write_text("new")
        assert (out / "old.txt").exists()  # untouched until publish
        staging.publish()
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_existing_output_needs_force(tmp_path):
    (tmp_path / "m.onnx.json").write_text("{}")
    with pytest.raises(OutputError, match=r"m\.onnx\.json: already exists \(pass --force"):
        check_outputs([tmp_path / "m.onnx", tmp_path / "m.onnx.json"])
    check_outputs([tmp_path / "m.onnx", tmp_path / "m.onnx.json"], force=True)


@pytest.mark.parametrize("output, relation", [
    ("src", "is"), (".", "contains"), ("src/sub/out", "lies inside"),
])
def test_output_overlapping_an_input_is_refused_even_with_force(tmp_path, output, relation):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    with pytest.raises(OutputError, match=f"the output {relation} the input"):
        check_outputs([tmp_path / output], inputs=[src], force=True, directory=True)


def test_output_through_a_symlink_to_an_input_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "link").symlink_to(src)
    with pytest.raises(OutputError, match="the output is the input"):
        check_outputs([tmp_path / "link"], inputs=[src], force=True, directory=True)


def test_output_folder_missing_or_a_file(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        check_outputs([tmp_path / "no" / "m.onnx"])
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is not a folder"):
        check_outputs([tmp_path / "file" / "m.onnx"])
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(OutputError, match="exists and is a folder"):
        check_outputs([tmp_path / "dir.onnx"], force=True)


def test_unwritable_folder_is_one_line(tmp_path, monkeypatch):
    from pathlib import Path

    def refuse(self, *a, **k):
        raise OSError(30, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(OutputError, match="m.onnx: cannot write in .*Read-only file system"):
        with Staging([tmp_path / "m.onnx"]):
            pass


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    stale = tmp_path / f".m.onnx{TEMPORARY_MARK}{dead_pid()}-0123abcd"
    stale.mkdir()
    (stale / "m.onnx.data").write_bytes(b"\0" * 1000)
    mine = tmp_path / f".m.onnx{TEMPORARY_MARK}{os.getpid()}-0123abcd"
    mine.mkdir()
    other = tmp_path / ".m.onnx.something-else"
    other.mkdir()
    assert remove_stale_temporaries(tmp_path, "m.onnx") == [stale]
    assert not stale.exists() and mine.exists() and other.exists()
    # ... and every write does it first.
    stale.mkdir()
    write_file(tmp_path / "m.onnx", b"x")
    assert not stale.exists()


def test_publish_is_not_cut_by_sigint(tmp_path):
    """SIGINT during publish is held back until every file is in place."""
    targets = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(KeyboardInterrupt):
        with Staging(targets) as staging:
            for t in targets:
                staging.path(t).write_text("x")
            original = os.replace

            def replace_then_interrupt(src, dst):
                original(src, dst)
                os.kill(os.getpid(), signal.SIGINT)

            os.replace = replace_then_interrupt
            try:
                staging.publish()
            finally:
                os.replace = original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_special_and_huge_inputs_are_refused(tmp_path):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="is a FIFO; expected a regular file"):
        read_json_object(fifo)
    with pytest.raises(UserError, match="is a character device"):
        regular_file("/dev/zero", "plugin library")
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(MAX_JSON_BYTES + 1)
    with pytest.raises(UserError, match="more than the"):
        read_json_object(big)
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(UserError, match="expected a JSON object"):
        read_json_object(tmp_path / "list.json")
    (tmp_path / "deep.json").write_text("[" * 100000)
    with pytest.raises(UserError, match="JSON"):
        read_json_object(tmp_path / "deep.json")


def test_replace_file_makes_its_folder_and_replaces_but_never_an_input(tmp_path):
    report = tmp_path / "new" / "sub" / "report.md"
    replace_file(report, "first\n")
    replace_file(report, "second\n")
    assert report.read_text() == "second\n" and os.listdir(report.parent) == ["report.md"]
    with pytest.raises(OutputError, match="is the input"):
        replace_file(report, "third\n", inputs=[report])
    assert report.read_text() == "second\n"
