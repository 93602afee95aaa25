"""Tensors of a (possibly sharded) safetensors checkpoint, read lazily through `safe_open`.

Sharded checkpoints are found through `model.safetensors.index.json`; without an index every
`*.safetensors` file in the folder is read. Nothing is loaded until a tensor is asked for.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from export.errors import CheckpointError, first_line, quote
from export.inputs import read_json_object, regular_file

INDEX_NAME = "model.safetensors.index.json"


class TensorStore:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._where: dict[str, Path] = {}
        self._handles: dict[Path, object] = {}
        index = self.directory / INDEX_NAME
        if os.path.lexists(index):
            self._read_index(index)
        else:
            files = sorted(self.directory.glob("*.safetensors"))
            if not files:
                raise CheckpointError("no *.safetensors file and no " + INDEX_NAME, file=str(self.directory))
            for f in files:
                for name in self._open(f).keys():
                    if name in self._where:
                        raise CheckpointError(
                            f"is also in {self._where[name].name}; each tensor must be in one file",
                            file=str(f), tensor=name,
                        )
                    self._where[name] = f

    def _read_index(self, index: Path) -> None:
        weight_map = read_json_object(index, INDEX_NAME, error=CheckpointError).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"expected a 'weight_map' object of tensor name -> shard file name, got "
                                  f"{quote(weight_map)}", file=str(index))
        shards = {}
        for name, shard in weight_map.items():
            path = self.directory / shard
            if shard not in shards and (Path(shard).name != shard or not shard.endswith(".safetensors")):
                raise CheckpointError(f"names shard {quote(shard)} (for tensor {quote(name)}); expected a "
                                      "*.safetensors file name in the same folder", file=str(index))
            if shard not in shards and not os.path.lexists(path):
                raise CheckpointError(f"names shard {quote(shard)} (for tensor {quote(name)}), which does not "
                                      "exist", file=str(index))
            shards.setdefault(shard, path)
            self._where[name] = path
        for path in shards.values():
            present = set(self._open(path).keys())
            for name, p in self._where.items():
                if p == path and name not in present:
                    raise CheckpointError(f"index {index.name} lists it in this shard but it is not there",
                                          file=str(path), tensor=name)

    def _open(self, path: Path):
        handle = self._handles.get(path)
        if handle is None:
            regular_file(path, "safetensors file", error=CheckpointError)
            try:
                handle = safe_open(str(path), framework="pt", device="cpu")
            except (SafetensorError, OSError, ValueError) as e:
                raise CheckpointError(f"not a readable safetensors file ({first_line(e)})", file=str(path)) from None
            self._handles[path] = handle
        return handle

    def names(self) -> list[str]:
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def file_of(self, name: str) -> Path:
        return self._where[name]

    def get(self, name: str) -> torch.Tensor:
        path = self._where.get(name)
        if path is None:
            raise CheckpointError("missing tensor", file=str(self.directory), tensor=name)
        try:
            return self._open(path).get_tensor(name)
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"cannot be read ({first_line(e)})", file=str(path), tensor=name) from None

    def shape(self, name: str) -> list[int]:
        path = self._where[name]
        return list(self._open(path).get_slice(name).get_shape())

    def dtype(self, name: str) -> str:
        """safetensors dtype string, e.g. 'U8', 'F8_E4M3', 'F32' (read from the header only)."""
        path = self._where[name]
        return self._open(path).get_slice(name).get_dtype()
