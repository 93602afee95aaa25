"""Reading and writing NVFP4 checkpoints in the AMD Quark, NVIDIA ModelOpt and
compressed-tensors layouts (one scheme module per layout, a shared reader and writer)."""
from export.checkpoint.reader import FORMATS, Checkpoint, natural_key, open_checkpoint
from export.checkpoint.writer import layer_tensors, make_scheme, write_checkpoint
from export.errors import CheckpointError

__all__ = ["FORMATS", "Checkpoint", "CheckpointError", "layer_tensors", "make_scheme", "natural_key",
           "open_checkpoint", "write_checkpoint"]
