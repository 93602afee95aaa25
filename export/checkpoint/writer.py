"""Write NVFP4 checkpoints in any of the three layouts, the way the real producers lay them out.

The folder appears whole or not at all (export/outputs.py: staged next to the destination, then
renamed into place).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from export.checkpoint.compressed_tensors import CompressedTensorsScheme
from export.checkpoint.modelopt import ModelOptScheme
from export.checkpoint.quark import QuarkScheme
from export.checkpoint.scheme import NVFP4Scheme
from export.checkpoint.store import INDEX_NAME
from export.errors import UserError
from export.layer import NVFP4LinearWeights
from export.outputs import Staging, check_outputs

SCHEMES = {"quark": QuarkScheme, "modelopt": ModelOptScheme, "compressed-tensors": CompressedTensorsScheme}


def make_scheme(fmt: str, *, exclude=(), w4a16: bool = False) -> NVFP4Scheme:
    try:
        cls = SCHEMES[fmt]
    except KeyError:
        raise UserError(f"unknown checkpoint format {fmt!r} (expected one of {', '.join(SCHEMES)})") from None
    return cls(exclude=list(exclude), input_quantized=not w4a16)


def layer_tensors(scheme: NVFP4Scheme, layer: NVFP4LinearWeights) -> dict[str, torch.Tensor]:
    """The stored tensors of one NVFP4 linear in this layout (names with the module prefix)."""
    # compressed-tensors keeps scalars as [1], ModelOpt and Quark as [].
    scalar_shape = (1,) if scheme.reciprocal_globals else ()
    if layer.weight_global_scale.numel() != 1:
        raise ValueError(f"{layer.name}: checkpoints hold one weight global scale per linear")
    p = layer.name + "."
    out = {
        p + scheme.weight_suffix: layer.weight_packed.to(torch.uint8).contiguous(),
        p + scheme.scale_suffix: layer.weight_scale.contiguous(),
        p + scheme.weight_global_suffix: scheme.from_dequant(layer.weight_global_scale).reshape(scalar_shape),
    }
    if layer.input_global_scale is not None and scheme.input_quantized:
        stored = layer.input_global_scale_inv if scheme.reciprocal_globals else layer.input_global_scale
        out[p + scheme.input_global_suffix] = stored.to(torch.float32).reshape(scalar_shape).clone()
    if layer.bias is not None:
        out[p + "bias"] = layer.bias.contiguous()
    return out


def _shards(tensors: dict[str, torch.Tensor], max_shard_bytes: int | None) -> list[dict[str, torch.Tensor]]:
    if not max_shard_bytes:
        return [tensors]
    shards, current, size = [], {}, 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = t
        size += nbytes
    if current:
        shards.append(current)
    return shards


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    try:
        save_file(tensors, str(path), metadata={"format": "pt"})
    except SafetensorError as e:  # its I/O errors (disk full...) are not OSError
        raise OSError(None, " ".join(str(e).split()), str(path)) from None


def write_tensors(folder: Path, tensors: dict[str, torch.Tensor], max_shard_bytes: int | None = None) -> None:
    """model.safetensors, or model-0000i-of-0000n.safetensors + index when sharded."""
    shards = _shards(tensors, max_shard_bytes)
    if len(shards) == 1:
        _save(shards[0], folder / "model.safetensors")
        return
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        _save(shard, folder / fname)
        for name, t in shard.items():
            weight_map[name] = fname
            total += t.numel() * t.element_size()
    (folder / INDEX_NAME).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                                indent=2) + "\n")


def write_checkpoint(out_dir, scheme: NVFP4Scheme, config: dict, tensors: dict[str, torch.Tensor], *,
                     extra_files: dict[str, bytes | os.PathLike] | None = None, max_shard_bytes: int | None = None,
                     inputs=(), force: bool = False) -> Path:
    """Write config.json (with the layout's quantization_config), its side files and tensors.

    `tensors` holds every tensor of the checkpoint already in the stored layout (see
    `layer_tensors`). `extra_files` (tokenizer, generation config...) are copied verbatim: the
    bytes given, or the file at the path given. An existing `out_dir` is replaced only with
    `force`, and never when it is, holds or lies inside one of `inputs`.
    """
    out = Path(out_dir)
    check_outputs([out], inputs=inputs, force=force, directory=True)
    entries = scheme.config_entries()
    with Staging([out], directory=True) as staging:
        tmp = staging.path()
        for fname, data in (extra_files or {}).items():
            if isinstance(data, (bytes, bytearray)):
                (tmp / fname).write_bytes(data)
            else:
                shutil.copyfile(data, tmp / fname)
        cfg = dict(config)
        cfg["quantization_config"] = entries.pop("config.json")
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=False) + "\n")
        for fname, obj in entries.items():
            (tmp / fname).write_text(json.dumps(obj, indent=2) + "\n")
        write_tensors(tmp, tensors, max_shard_bytes)
        staging.publish()
    return out
