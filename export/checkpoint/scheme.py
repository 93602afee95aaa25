"""What an NVFP4 checkpoint layout holds, and how it maps to `NVFP4LinearWeights`.

One subclass per layout (modelopt.py, quark.py, compressed_tensors.py), in the spirit of vLLM's
quantization "schemes": tensor suffixes, whether global scales are stored as reciprocals, how
the config says which layers are quantized, and the config the real producer writes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from export.checkpoint.patterns import matches_any


@dataclass
class NVFP4Scheme:
    """A parsed quantization config. Subclasses set the class attributes and `from_config`."""

    format = ""  # "quark" | "modelopt" | "compressed-tensors"
    weight_suffix = "weight"  # packed uint8 [N, K/2]
    scale_suffix = "weight_scale"  # float8_e4m3fn [N, K/16]
    weight_global_suffix = "weight_scale_2"
    input_global_suffix = "input_scale"
    # compressed-tensors stores both global scales in the quant direction (divisors).
    reciprocal_globals = False
    # Tensors some producers add that change the math and that this pipeline cannot fold in.
    unsupported_suffixes = ()  # tuple of suffixes

    exclude: list[str] = field(default_factory=list)
    input_quantized: bool = True  # False = W4A16 (weight-only)
    config_file: str = "config.json"  # where the quantization config was read from

    def is_excluded(self, name: str) -> bool:
        return matches_any(name, self.exclude)

    def expects_quantized(self, name: str) -> bool:
        """Whether the config says linear `name` is NVFP4 (then its tensors must be)."""
        return not self.is_excluded(name)

    def activation_quantized(self, name: str) -> bool:
        return self.input_quantized

    def to_dequant(self, stored: torch.Tensor) -> torch.Tensor:
        """Dequant-direction float32 scalar from a stored global scale."""
        v = stored.to(torch.float32)
        return (1.0 / v) if self.reciprocal_globals else v

    def input_scales(self, stored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_global_scale, input_global_scale_inv) exactly as vLLM computes them."""
        v = stored.to(torch.float32)
        if self.reciprocal_globals:
            return 1.0 / v, v
        return v, 1.0 / v

    def from_dequant(self, value: torch.Tensor) -> torch.Tensor:
        """The stored form of a dequant-direction global scale (writers)."""
        v = value.to(torch.float32)
        return (1.0 / v) if self.reciprocal_globals else v

    # --- writers -------------------------------------------------------------------------------
    def config_entries(self) -> dict[str, dict]:
        """{file name: JSON object} that the real producer writes; "config.json" gets its
        `quantization_config` key set to the value given for it."""
        raise NotImplementedError
