"""The model-level accuracy report, beside the layer-by-layer check: next-token perplexity on a
text, top-1 agreement and KL divergence of the exported graph (run by the runtime under test) with

  (a) the reference NVFP4 model (export.modeling, `exact`) in float64: judged, with thresholds that
      are multiples of the reference's own sensitivity (the same reference in the graph's dtype vs
      in float64; tolerance.model_thresholds): KL, top-1 disagreement and the shift of the mean
      negative log-likelihood (log of the perplexity ratio);
  (b) the unquantized source model (transformers, float32) when given: reported, not judged (it
      measures the quantization, not the export).

The text is cut into windows of `context` tokens, each run from an empty cache.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from export.dtypes import torch_dtype
from plugins.verify import tolerance

DATA = Path(__file__).resolve().parent / "data"  # what its README.md says
DEFAULT_TEXT = DATA / "evaluation.txt"  # held out from calibration
CALIBRATION_TEXT = DATA / "calibration.txt"


def load_tokenizer(directory):
    """A transformers tokenizer from `directory`, or None when it has none."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    try:
        return transformers.AutoTokenizer.from_pretrained(str(directory))
    except Exception:  # noqa: BLE001 - "no tokenizer here" comes in many exception types
        return None


def text_windows(tokenizer, text: str, context: int, max_tokens: int) -> np.ndarray:
    """Token ids [W, context] of the first `max_tokens` tokens of `text` (at least one window)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    count = len(ids) // context
    if count < 1:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than one window of {context}")
    return np.asarray(ids[: count * context], dtype=np.int64).reshape(count, context)


def _log_softmax(logits) -> np.ndarray:
    t = torch.as_tensor(np.asarray(logits, dtype=np.float64) if not torch.is_tensor(logits) else logits.double())
    return torch.log_softmax(t, dim=-1).numpy()


@dataclass
class Scores:
    """Log-probabilities of next tokens [W, S-1, V] of one model."""
    name: str
    logp: np.ndarray

    def nll(self, targets: np.ndarray) -> np.ndarray:
        """Negative log-likelihood of each target token, nats [W, S-1]."""
        return -np.take_along_axis(self.logp, targets[..., None], axis=-1)[..., 0]

    def perplexity(self, targets: np.ndarray) -> float:
        return float(np.exp(self.nll(targets).mean()))

    def kl_from(self, ref: "Scores") -> float:
        """Mean KL(ref || self) per position, nats."""
        p = np.exp(ref.logp)
        return float(np.mean(np.sum(p * (ref.logp - self.logp), axis=-1)))

    def top1_agreement(self, ref: "Scores") -> float:
        return float(np.mean(self.logp.argmax(-1) == ref.logp.argmax(-1)))


def reference_scores(checkpoint, dtype: torch.dtype, windows: np.ndarray, name: str) -> Scores:
    from export.modeling import build_model

    model = build_model(checkpoint, dtype=dtype, reference="exact")
    out = []
    with torch.inference_mode():
        for w in windows:
            ids = torch.from_numpy(w[None])
            pos = torch.arange(ids.shape[1])[None]
            logits, _ = model(ids, pos, torch.ones_like(ids), model.empty_cache(1))
            out.append(_log_softmax(logits[0, :-1]))
    return Scores(name, np.stack(out))


def source_scores(source_dir, windows: np.ndarray) -> Scores:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    model = transformers.AutoModelForCausalLM.from_pretrained(str(source_dir), dtype=torch.float32).eval()
    with torch.inference_mode():
        logits = [model(input_ids=torch.from_numpy(w[None]), use_cache=False).logits[0, :-1] for w in windows]
    return Scores("source (unquantized, float32)", np.stack([_log_softmax(x) for x in logits]))


def graph_scores(runtime, side: dict, windows: np.ndarray) -> Scores:
    from plugins.triton import prefill_feeds

    out = []
    for w in windows:
        out.append(_log_softmax(np.asarray(runtime.run(prefill_feeds(w, side))["logits"], dtype=np.float64)[0, :-1]))
    return Scores(f"exported graph ({runtime.name})", np.stack(out))


@dataclass
class AccuracyReport:
    text: str
    windows: int
    context: int
    rows: list[dict] = field(default_factory=list)  # name, perplexity, kl, top1 (vs reference float64)
    noise: dict = field(default_factory=dict)
    thresholds: dict = field(default_factory=dict)
    measured: dict = field(default_factory=dict)
    source: dict | None = None

    @property
    def ok(self) -> bool:
        return all(self.measured[k] <= self.thresholds[k] for k in self.thresholds)

    def table(self) -> str:
        lines = [f"accuracy on {self.text} ({self.windows} windows of {self.context} tokens; KL and top-1 "
                 "against the reference in float64):",
                 f"  {'model':52} {'perplexity':>10} {'KL':>10} {'top-1':>7}"]
        for r in self.rows:
            kl = f"{r['kl']:10.2e}" if r.get("kl") is not None else f"{'':10}"
            top1 = f"{r['top1']:7.3f}" if r.get("top1") is not None else f"{'':7}"
            lines.append(f"  {r['name'][:52]:52} {r['perplexity']:10.3f} {kl} {top1}")
        for k in self.thresholds:
            lines.append(f"  {k:18} {self.measured[k]:.3e} <= {self.thresholds[k]:.3e} "
                         f"(noise {self.noise[k]:.3e})  {'ok' if self.measured[k] <= self.thresholds[k] else 'NO'}")
        if self.source:
            lines.append(f"  exported vs source: KL {self.source['kl']:.3e}, top-1 {self.source['top1']:.3f} "
                         "(the quantization's effect; reported, not judged)")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"text": self.text, "windows": self.windows, "context": self.context, "rows": self.rows,
                "noise": self.noise, "thresholds": self.thresholds, "measured": self.measured,
                "source": self.source, "passed": self.ok}


def accuracy_report(runtime, side: dict, checkpoint, windows: np.ndarray, *, text_name: str,
                    source_dir=None) -> AccuracyReport:
    targets = windows[:, 1:]
    ref64 = reference_scores(checkpoint, torch.float64, windows, "reference NVFP4 model, float64")
    ref_t = reference_scores(checkpoint, torch_dtype(side["dtype"]), windows, f"reference NVFP4 model, {side['dtype']}")
    graph = graph_scores(runtime, side, windows)
    p64 = ref64.perplexity(targets)
    report = AccuracyReport(text_name, int(windows.shape[0]), int(windows.shape[1]))
    report.rows.append({"name": ref64.name, "perplexity": p64})
    for s in (ref_t, graph):
        report.rows.append({"name": s.name, "perplexity": s.perplexity(targets), "kl": s.kl_from(ref64),
                            "top1": s.top1_agreement(ref64)})

    nll64 = ref64.nll(targets)

    def distance(s):
        return {"kl": s.kl_from(ref64), "top1_disagreement": 1.0 - s.top1_agreement(ref64),
                "nll_shift": abs(float(np.mean(s.nll(targets) - nll64)))}

    report.noise = distance(ref_t)
    # The mean NLL shift of two correct models is a small signed number: its noise is the larger of
    # the reference's own shift and that shift's standard error over the text's tokens.
    diff = ref_t.nll(targets) - nll64
    report.noise["nll_shift"] = max(report.noise["nll_shift"], float(np.std(diff) / np.sqrt(diff.size)))
    report.thresholds = tolerance.model_thresholds(report.noise)
    report.measured = distance(graph)
    del ref_t, ref64
    if source_dir is not None:
        src = source_scores(source_dir, windows)
        report.rows.append({"name": src.name, "perplexity": src.perplexity(targets)})
        report.source = {"kl": graph.kl_from(src), "top1": graph.top1_agreement(src),
                         "perplexity": src.perplexity(targets)}
    return report
