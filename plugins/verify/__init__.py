"""Verification of an exported graph, the one home for it (docs/verify.md):

- `layers`: the layer-by-layer check (default judgement): each NVFP4 node of the runtime under test
  against the reference computed from that node's own input, bounds from the op's formula;
- `accuracy`: the model-level report (perplexity, top-1 agreement, KL) against the reference model
  and, when given, the unquantized source, thresholds from the reference's own sensitivity;
- `references` (per-op references, a registry), `tolerance` (the bounds), `graph` (marking outputs,
  float32 emulation of 16-bit graphs), `runtimes` (ONNX Runtime, onnx.reference, TensorRT).
"""
