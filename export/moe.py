"""The NVFP4MoE op's stacked expert layout (docs/op-contract-moe.md, "Inputs"), to and from the
canonical `NVFP4MoEWeights`.

Per block the op takes six stacked tensors (`w13_*`: each expert's gate rows then its up rows;
`w2_*`: down) and four per-expert activation-scale lists. Stacking copies the experts' bytes
unchanged and keeps every scale: each row of a `*_weight_global_scale` carries the global scale of
the projection it belongs to, and each expert its own activation scales.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from export.layer import GROUP_SIZE, NVFP4LinearWeights, NVFP4MoEWeights


@dataclass(frozen=True)
class StackedMoE:
    """One NVFP4MoE node's inputs 2-7 (torch, int8 carriage of the FP4/FP8 bytes) and attributes."""
    w13_weight: torch.Tensor  # int8 [E, 2I, H/2]
    w13_weight_scale: torch.Tensor  # int8 [E, 2I, H/16]
    w13_weight_global_scale: torch.Tensor  # float32 [E, 2I]
    w2_weight: torch.Tensor  # int8 [E, H, I/2]
    w2_weight_scale: torch.Tensor  # int8 [E, H, I/16]
    w2_weight_global_scale: torch.Tensor  # float32 [E, H]
    num_experts: int
    top_k: int
    hidden_size: int
    intermediate_size: int
    mode: str  # "w4a4" | "w4a16"
    normalize_topk: bool
    w13_input_global_scale: tuple[float, ...]  # per expert; 1.0 for w4a16
    w13_input_global_scale_inv: tuple[float, ...]
    w2_input_global_scale: tuple[float, ...]
    w2_input_global_scale_inv: tuple[float, ...]

    TENSORS = ("w13_weight", "w13_weight_scale", "w13_weight_global_scale",
               "w2_weight", "w2_weight_scale", "w2_weight_global_scale")

    ATTRIBUTES = ("num_experts", "top_k", "hidden_size", "intermediate_size", "mode", "normalize_topk",
                  "w13_input_global_scale", "w13_input_global_scale_inv", "w2_input_global_scale",
                  "w2_input_global_scale_inv")

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """Inputs 2-7 of the node, in the contract's order."""
        return tuple(getattr(self, n) for n in self.TENSORS)

    def node_attributes(self) -> dict:
        """The node's attributes (export.torch_ops.moe_node_attributes: the contract's order, plus
        plugin_version / plugin_namespace)."""
        from export.torch_ops import moe_node_attributes

        return moe_node_attributes(**{n: getattr(self, n) for n in self.ATTRIBUTES})


def _input_scales(layers: tuple[NVFP4LinearWeights, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if not layers[0].w4a4:
        return (1.0,) * len(layers), (1.0,) * len(layers)
    return (tuple(float(lin.input_global_scale) for lin in layers),
            tuple(float(lin.input_global_scale_inv) for lin in layers))


def stacked_shapes(num_experts: int, hidden_size: int, intermediate_size: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the node's inputs 2-7, by name."""
    e, h, i = num_experts, hidden_size, intermediate_size
    return {"w13_weight": (e, 2 * i, h // 2), "w13_weight_scale": (e, 2 * i, h // GROUP_SIZE),
            "w13_weight_global_scale": (e, 2 * i), "w2_weight": (e, h, i // 2),
            "w2_weight_scale": (e, h, i // GROUP_SIZE), "w2_weight_global_scale": (e, h)}


def _stackers(moe: NVFP4MoEWeights) -> dict[str, Callable[[], torch.Tensor]]:
    """Per stacked tensor, a function that makes it (a copy of the experts' bytes, expert order)."""
    rows = {"w13": lambda e: (moe.gate[e], moe.up[e]), "w2": lambda e: (moe.down[e],)}
    parts = {
        "weight": lambda lin: lin.weight_packed.view(torch.int8),
        "weight_scale": lambda lin: lin.weight_scale.view(torch.int8),
        "weight_global_scale": lambda lin: lin.weight_global_scale.to(torch.float32).reshape(-1).expand(
            lin.out_features),
    }

    def maker(linears, part):
        return lambda: torch.stack([torch.cat([part(lin) for lin in linears(e)]) for e in range(moe.num_experts)])

    return {f"{p}_{s}": maker(rows[p], parts[s]) for p in rows for s in parts}


def _stacked(moe: NVFP4MoEWeights, tensors: dict[str, torch.Tensor]) -> StackedMoE:
    w13_in, w2_in = _input_scales(moe.gate), _input_scales(moe.down)
    return StackedMoE(
        **tensors, num_experts=moe.num_experts, top_k=moe.top_k, hidden_size=moe.hidden_size,
        intermediate_size=moe.intermediate_size, mode=moe.mode, normalize_topk=bool(moe.normalize_topk),
        w13_input_global_scale=w13_in[0], w13_input_global_scale_inv=w13_in[1],
        w2_input_global_scale=w2_in[0], w2_input_global_scale_inv=w2_in[1])


def stack_moe(moe: NVFP4MoEWeights) -> StackedMoE:
    """The node's stacked form of a block (a copy of the experts' bytes, in expert order)."""
    return _stacked(moe, {name: make() for name, make in _stackers(moe).items()})


def stack_moe_deferred(moe: NVFP4MoEWeights) -> tuple[StackedMoE, dict[str, Callable[[], torch.Tensor]]]:
    """(the stacked form with zero-stride stand-ins of the right shapes and dtypes but wrong
    values, {tensor name: function making the real tensor}): for export, which writes the stacked
    copies one at a time instead of holding all of them."""
    shapes = stacked_shapes(moe.num_experts, moe.hidden_size, moe.intermediate_size)
    dtypes = {n: torch.float32 if n.endswith("global_scale") else torch.int8 for n in shapes}
    stand_ins = {n: torch.zeros((), dtype=dtypes[n]).expand(shapes[n]) for n in shapes}
    return _stacked(moe, stand_ins), _stackers(moe)


def _global(rows: torch.Tensor) -> torch.Tensor:
    """A projection's weight global scale from its rows: a scalar where every row has the same."""
    rows = rows.to(torch.float32)
    return rows[0].clone() if bool((rows == rows[0]).all()) else rows.clone()


def unstack_moe(tensors, *, num_experts: int, top_k: int, hidden_size: int, intermediate_size: int,
                mode: str, normalize_topk, w13_input_global_scale, w13_input_global_scale_inv,
                w2_input_global_scale, w2_input_global_scale_inv, name: str = "NVFP4MoE") -> NVFP4MoEWeights:
    """`NVFP4MoEWeights` (router unknown: None) from a node's inputs 2-7 (torch or numpy, the byte
    tensors as int8 or uint8) and its attributes. Expert linears are views, not copies.
    Raises ValueError when a shape or a list length disagrees with the attributes."""
    e_, h, i = int(num_experts), int(hidden_size), int(intermediate_size)
    names = StackedMoE.TENSORS
    t = [torch.as_tensor(a) for a in tensors]
    if len(t) != len(names):
        raise ValueError(f"{name}: expected {len(names)} stacked tensors, got {len(t)}")
    expected = stacked_shapes(e_, h, i)
    for n, a in zip(names, t):
        if tuple(a.shape) != expected[n]:
            raise ValueError(f"{name}: {n} has shape {list(a.shape)}, expected {list(expected[n])}")
    scale_lists = {"w13_input_global_scale": w13_input_global_scale,
                   "w13_input_global_scale_inv": w13_input_global_scale_inv,
                   "w2_input_global_scale": w2_input_global_scale,
                   "w2_input_global_scale_inv": w2_input_global_scale_inv}
    for n, v in scale_lists.items():
        if len(v) != e_:
            raise ValueError(f"{name}: {n} has {len(v)} values, expected num_experts={e_}")
    if mode not in ("w4a4", "w4a16"):
        raise ValueError(f"{name}: mode {mode!r} is not w4a4 or w4a16")
    w13, w13_s, w13_g, w2, w2_s, w2_g = t
    w4a4 = mode == "w4a4"

    def linear(label, packed, scale, glob, s_in, s_in_inv):
        return NVFP4LinearWeights(
            name=label, weight_packed=packed.view(torch.uint8), weight_scale=scale.view(torch.float8_e4m3fn),
            weight_global_scale=_global(glob),
            input_global_scale=torch.tensor(s_in, dtype=torch.float32) if w4a4 else None,
            input_global_scale_inv=torch.tensor(s_in_inv, dtype=torch.float32) if w4a4 else None)

    gate, up, down = [], [], []
    for e in range(e_):
        s13 = (w13_input_global_scale[e], w13_input_global_scale_inv[e])
        s2 = (w2_input_global_scale[e], w2_input_global_scale_inv[e])
        gate.append(linear(f"{name}.experts.{e}.gate", w13[e, :i], w13_s[e, :i], w13_g[e, :i], *s13))
        up.append(linear(f"{name}.experts.{e}.up", w13[e, i:], w13_s[e, i:], w13_g[e, i:], *s13))
        down.append(linear(f"{name}.experts.{e}.down", w2[e], w2_s[e], w2_g[e], *s2))
    return NVFP4MoEWeights(name=name, router_weight=None, gate=tuple(gate), up=tuple(up), down=tuple(down),
                           top_k=int(top_k), normalize_topk=bool(normalize_topk))
