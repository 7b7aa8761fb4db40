"""Running a model many times on the same images with one layer changed, without recomputing what lies before it.

Measuring what removing each of a layer's 256 channels costs runs the model 256 times on the same batch, and
everything upstream of the changed layer computes the same values every time. ``forward_after`` traces the model
once (``torch.fx.symbolic_trace``), runs it once, keeps the values that cross the cut (the input of the first
changed module, and any earlier value read after the cut, such as a residual shortcut) and returns a function that
runs only the graph from the cut on. It runs the same operations on the same values as ``model(x)``, so the outputs
agree (``tests/test_replay.py`` checks it, with a channel zeroed in between).

    forward = replay.forward_after(model, ["features.27", "features.28"], x)   # the modules whose tensors change
    with torch.no_grad():
        logits = forward()          # model(x) with the current values of those modules' parameters

The cached values belong to ``x`` and to the parameters upstream of the cut as they were: change only the named
modules' tensors between calls (in place), in eval mode. A model that ``symbolic_trace`` cannot follow gets
``lambda: model(x)``: slower, never wrong.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import fx, nn


def forward_after(model: nn.Module, changed: Iterable[str], x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A function computing ``model(x)`` that reruns only the part of the graph at and after the first use of a
    module named in ``changed`` (or of one of its parameters); everything before it is computed here, once."""
    changed = tuple(changed)
    try:
        gm = fx.symbolic_trace(model)     # shares the model's modules and parameters: in-place changes show through
    except Exception:                     # noqa: BLE001 - data-dependent control flow and the like: no shortcut
        return lambda: model(x)
    nodes = list(gm.graph.nodes)

    def touches(node: fx.Node) -> bool:
        return node.op in ("call_module", "get_attr") and any(
            node.target == c or node.target.startswith(c + ".") for c in changed)

    cut = next((i for i, n in enumerate(nodes) if touches(n)), None)
    if cut is None:
        raise ValueError(f"forward_after: none of {list(changed)} is used by the model's forward pass")
    tail = nodes[cut:]
    inside = set(tail)
    crossing = {a for n in tail for a in n.all_input_nodes if a not in inside}

    interpreter = fx.Interpreter(gm, garbage_collect_values=False)
    with torch.no_grad():
        interpreter.run(x)
    cache = {n: interpreter.env[n] for n in crossing}
    interpreter.env.clear()
    last_use = {a: i for i, n in enumerate(tail) for a in n.all_input_nodes}   # free each value after its last reader

    def forward() -> torch.Tensor:
        env = interpreter.env = dict(cache)
        try:
            for i, node in enumerate(tail):
                value = interpreter.run_node(node)
                if node.op == "output":
                    return value
                env[node] = value
                for a in node.all_input_nodes:
                    if last_use[a] == i:
                        del env[a]
        finally:
            interpreter.env = {}
        raise RuntimeError("forward_after: the traced graph has no output node")

    return forward
