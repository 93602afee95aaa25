"""scripts/dev/device_run.sh's steps that need no GPU."""
import lzma
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_unpack_restores_every_packed_library_next_to_itself(tmp_path):
    libs = {tmp_path / "a.so": os.urandom(3000), tmp_path / "sub" / "b.so": b"\x7fELF" + bytes(5000)}
    for path, data in libs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_name(path.name + ".xz").write_bytes(lzma.compress(data))
    (tmp_path / "c.txt.xz").write_bytes(lzma.compress(b"not a library"))
    env = dict(os.environ, UNPACK_DIR=str(tmp_path), OUT=str(tmp_path / "out"))
    run = subprocess.run(["bash", str(REPO / "scripts/dev/device_run.sh"), "unpack"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert "step unpack took" in run.stdout, run.stdout + run.stderr
    for path, data in libs.items():
        assert path.read_bytes() == data
    assert not (tmp_path / "c.txt").exists()
