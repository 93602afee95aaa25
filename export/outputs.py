"""Writing a command's outputs so that nothing of the user's is lost and nothing half-written stays.

Every command writes through `Staging`:
  1. `check_outputs` refuses, before any work, an output that exists (unless --force), whose folder
     is missing or not a folder, or that is, contains or lies inside one of the command's inputs
     (even with --force: replacing it would destroy the input being read).
  2. The files are written under a staging folder next to the outputs, named
     `.NAME.nvfp4-tmp-<pid>-<random>`, so that a run that is killed (SIGKILL, power loss) leaves a
     name this module recognises: the next run removes those of dead processes.
  3. `publish()` renames the staged files into place, with SIGINT/SIGTERM held back meanwhile;
     anything else (an error, Ctrl-C, SIGTERM, verification failing) removes the staging folder.
An OSError while writing (read-only filesystem, disk full, permission) becomes one `OutputError`
line naming the output.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import threading
from pathlib import Path
from typing import Iterable, Sequence

from export.errors import OutputError

TEMPORARY_MARK = ".nvfp4-tmp-"


def temporary_name(name: str) -> str:
    return f".{name}{TEMPORARY_MARK}{os.getpid()}-{secrets.token_hex(4)}"


def _owner_pid(entry: str, name: str) -> int | None:
    prefix = f".{name}{TEMPORARY_MARK}"
    if not entry.startswith(prefix):
        return None
    pid = entry[len(prefix):].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def remove_stale_temporaries(folder: Path, name: str) -> list[Path]:
    """Remove the temporaries of `name` in `folder` left by processes that no longer run."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        pid = _owner_pid(entry.name, name)
        if pid is not None and pid != os.getpid() and not _alive(pid):
            _remove(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def _relation(output: Path, input_path: Path) -> str | None:
    """How `output` overlaps `input_path` ("is", "contains", "lies inside"), or None."""
    out, inp = output.resolve(), input_path.resolve()
    if out == inp:
        return "is"
    with contextlib.suppress(OSError):
        if output.exists() and input_path.exists() and os.path.samefile(output, input_path):
            return "is"
    if out in inp.parents:
        return "contains"
    if inp in out.parents:
        return "lies inside"
    return None


def check_outputs(targets: Sequence[str | os.PathLike], *, inputs: Iterable[str | os.PathLike] = (),
                  force: bool = False, directory: bool = False) -> None:
    """Refuse outputs that cannot or must not be written (see the module docstring).
    `directory`: the targets are folders (else files)."""
    inputs = [Path(p) for p in inputs if p is not None]
    for target in map(Path, targets):
        for inp in inputs:
            relation = _relation(target, inp)
            if relation:
                raise OutputError(f"{target}: the output {relation} the input {inp}; choose another output path")
        parent = target.parent
        if not parent.exists():
            raise OutputError(f"{target}: the output folder {parent} does not exist")
        if not parent.is_dir():
            raise OutputError(f"{target}: {parent} is not a folder")
        if os.path.lexists(target):
            if target.is_dir() != directory or not (target.is_dir() or target.is_file()):
                kind = "a folder" if target.is_dir() else "not a regular file"
                raise OutputError(f"{target}: exists and is {kind}; expected {'a folder' if directory else 'a file'} "
                                  "or a new name")
            if not force:
                raise OutputError(f"{target}: already exists (pass --force to replace it)")


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM that arrive inside the block take effect when it ends (so a publish is
    never cut in two). Python runs signal handlers in the main thread, so swapping the handlers
    holds them back whichever thread the kernel delivers them to."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in pending:
            signal.raise_signal(s)


def _open_permissions(root: Path) -> None:
    """Staged files get the permissions of files the user creates (umask), not private ones."""
    umask = os.umask(0)
    os.umask(umask)
    for folder, dirs, files in os.walk(root):
        os.chmod(folder, 0o777 & ~umask)
        for f in files:
            path = os.path.join(folder, f)
            executable = os.stat(path).st_mode & 0o111
            os.chmod(path, (0o777 if executable else 0o666) & ~umask)


class Staging:
    """Write outputs under a staging folder, then publish them all by rename.

    Files (`directory=False`): `staging.path(target)` is where each target is written; `publish()`
    renames them in the order given (put the file a reader opens first, e.g. OUT.onnx, last) and
    removes `obsolete` paths (e.g. an earlier export's OUT.onnx.data that this one no longer has).
    Folder (`directory=True`, one target): `staging.path()` is the folder to fill; `publish()`
    swaps it in, replacing an existing folder (checked beforehand with `check_outputs(force=True)`).
    """

    def __init__(self, targets: Sequence[str | os.PathLike], *, directory: bool = False):
        self.targets = [Path(t) for t in targets]
        if not self.targets or (directory and len(self.targets) != 1):
            raise ValueError("Staging needs one folder target or one or more file targets")
        self.directory = directory
        self.main = self.targets[-1]  # what messages and the staging folder are named after
        self.folder = self.main.parent / temporary_name(self.main.name)
        self.published = False
        self._replaced: Path | None = None

    def path(self, target: str | os.PathLike | None = None) -> Path:
        if self.directory:
            return self.folder
        target = Path(target) if target is not None else self.main
        if target not in self.targets:
            raise ValueError(f"{target} is not an output of this staging")
        return self.folder / target.name

    def __enter__(self) -> Staging:
        for t in self.targets:
            remove_stale_temporaries(t.parent, t.name)
        try:
            self.folder.mkdir()
        except OSError as e:
            raise OutputError(f"{self.main}: cannot write in {self.folder.parent} ({e.strerror})") from None
        return self

    def publish(self, obsolete: Iterable[str | os.PathLike] = ()) -> None:
        _open_permissions(self.folder)
        with _signals_held():
            if self.directory:
                target = self.targets[0]
                if os.path.lexists(target):
                    self._replaced = target.parent / temporary_name(target.name)
                    os.replace(target, self._replaced)
                os.replace(self.folder, target)
            else:
                for target in self.targets:
                    staged = self.folder / target.name
                    if staged.exists():
                        os.replace(staged, target)
                for path in map(Path, obsolete):
                    if os.path.lexists(path):
                        path.unlink()
            self.published = True

    def __exit__(self, exc_type, exc, tb) -> None:
        # After a folder publish self.folder no longer exists; after a files publish it is empty.
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._replaced is not None:
            _remove(self._replaced)  # the folder the publish replaced
        if isinstance(exc, OSError) and not self.published:
            raise OutputError(self._describe(exc)) from None

    def _describe(self, e: OSError) -> str:
        """One line naming the output an OSError hit; staging paths are shown as their target."""
        reason = e.strerror or str(e)
        name = e.filename if isinstance(e.filename, (str, os.PathLike)) else None
        if name is None:
            return f"{self.main}: cannot write ({reason})"
        path = Path(name)
        if path != self.folder and self.folder not in path.parents:
            return f"{path}: {reason}"  # not an output: an input that failed while being read
        inner = path.relative_to(self.folder)
        shown = self.main / inner if self.directory else self.main.parent / inner
        return f"{shown}: cannot write ({reason})"


def write_file(path: str | os.PathLike, data: bytes | str, *, inputs: Iterable[str | os.PathLike] = (),
               force: bool = False) -> Path:
    """Write one file whole or not at all (checks as `check_outputs`)."""
    path = Path(path)
    check_outputs([path], inputs=inputs, force=force)
    with Staging([path]) as staging:
        staged = staging.path(path)
        if isinstance(data, str):
            staged.write_text(data, encoding="utf-8")
        else:
            staged.write_bytes(data)
        staging.publish()
    return path


def replace_file(path: str | os.PathLike, data: bytes | str, *, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Write a record that a tool rewrites on every run (a benchmark's or a GPU check's report):
    its folder is made if missing, an earlier file replaced; whole or not at all, never over one
    of `inputs`."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_file(path, data, inputs=inputs, force=True)
