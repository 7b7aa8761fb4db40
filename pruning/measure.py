"""Measuring a model: FLOPs/MACs, parameters, CPU latency and sparsity.

Conventions, stated once:

* **MACs** are multiply-accumulates; **FLOPs** = 2 x MACs. PFEC and most pruning papers write
  "FLOPs" for what is really MACs (VGG-16 on CIFAR: "3.13e8 FLOPs" = 313 M MACs), so the
  course reports MACs and says so. Counts come from ``torch.utils.flop_counter.FlopCounterMode``
  and cover convolutions and linear layers (matmul/addmm); BatchNorm, ReLU, pooling and
  additions are not counted, as in PFEC.
* A zero weight still costs a MAC in a dense kernel: masks do not lower these counts,
  channel surgery does.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager

import torch
from torch import nn

from .models import eval_mode
from torch.utils.flop_counter import FlopCounterMode


def example_input(model: nn.Module, input_size: tuple[int, ...], batch_size: int = 1) -> torch.Tensor:
    """A zero batch of ``input_size`` images with the model's dtype, on the model's device."""
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else "cpu"
    return torch.zeros((batch_size, *input_size), dtype=dtype, device=device)


def layer_macs(model: nn.Module, input_size: tuple[int, ...] = (3, 32, 32)) -> dict[str, int]:
    """MACs of one image's forward pass, per leaf module (by name as in ``named_modules``).

    Only modules that do multiply-accumulates (conv, linear) appear.
    """
    counts: dict[str, int] = {}
    handles = []

    def hook(name):
        def pre(module, args):
            counter = FlopCounterMode(display=False)
            counter.__enter__()
            module._course_counter = counter

        def post(module, args, output):
            counter = module._course_counter
            counter.__exit__(None, None, None)
            del module._course_counter
            flops = counter.get_total_flops()
            if flops:
                counts[name] = counts.get(name, 0) + flops // 2
        return pre, post

    for name, m in model.named_modules():
        if len(list(m.children())) == 0:
            pre, post = hook(name)
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
    try:
        with eval_mode(model), torch.no_grad():
            model(example_input(model, input_size))
    finally:
        for h in handles:
            h.remove()
        for m in model.modules():          # a forward that failed inside a module leaves its counter open: close it
            counter = m.__dict__.pop("_course_counter", None)
            if counter is not None:
                counter.__exit__(None, None, None)
    return counts


def macs(model: nn.Module, input_size: tuple[int, ...] = (3, 32, 32)) -> int:
    """Total MACs of one image's forward pass (FLOPs = 2 x this)."""
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example_input(model, input_size))
    return counter.get_total_flops() // 2


def flops(model: nn.Module, input_size: tuple[int, ...] = (3, 32, 32)) -> int:
    """Total FLOPs (= 2 x MACs) of one image's forward pass."""
    return 2 * macs(model, input_size)


def parameters(model: nn.Module, nonzero: bool = False) -> int:
    """Number of parameters (``nonzero=True``: only those that are not exactly zero,
    counting a pruned weight through its mask)."""
    if not nonzero:  # a masked layer's only parameter is weight_orig: count it as the weight
        return sum(p.numel() for p in model.parameters())
    total = 0
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            if name.endswith("_orig"):  # torch.nn.utils.prune: count the effective weight
                p = getattr(m, name[:-5])
            total += int(torch.count_nonzero(p))
    return total


@contextmanager
def _threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@torch.no_grad()
def latency_many(models: dict[str, nn.Module], input_size: tuple[int, ...] = (3, 32, 32), batch_size: int = 1,
                 threads: int = 1, warmup: int = 10, runs: int = 50) -> dict[str, dict[str, float]]:
    """CPU forward-pass latency of several models, in milliseconds, measured **interleaved**.

    Each timed round runs every model once, in turn, so a change in the machine's load during the
    measurement (another process, frequency scaling) hits all models alike and their ratios stay
    meaningful. Timing them one after another instead lets a slow spell land on one model only.
    Returns, per model, the median (the figure to report), the 10th and 90th percentiles, and the
    settings it was measured with.
    """
    if runs < 1 or warmup < 0 or threads < 1 or batch_size < 1:
        raise ValueError("runs, threads and batch_size must be >= 1 and warmup >= 0")
    inputs = {name: example_input(m, input_size, batch_size) for name, m in models.items()}
    modes = {name: m.training for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for m in models.values():
        m.eval()
    with _threads(threads):
        for _ in range(warmup):
            for name, m in models.items():
                m(inputs[name])
        for _ in range(runs):
            for name, m in models.items():
                start = time.perf_counter()
                m(inputs[name])
                times[name].append((time.perf_counter() - start) * 1000)
    for name, m in models.items():
        m.train(modes[name])
    result = {}
    for name, t in times.items():
        q = statistics.quantiles(t, n=10) if len(t) > 1 else [t[0]] * 9
        result[name] = {"median_ms": statistics.median(t), "p10_ms": q[0], "p90_ms": q[-1],
                        "threads": threads, "batch_size": batch_size, "runs": runs}
    return result


def speedups(models: dict[str, nn.Module], reference: str = "dense", **setting) -> dict[str, float]:
    """Measured speed-up of every model over ``models[reference]`` (its median time / theirs), all timed interleaved in
    one :func:`latency_many` measurement with ``setting`` (``batch_size``, ``threads``, ``runs``, ...). Compare it with
    the FLOPs-predicted speed-up, ``macs(reference) / macs(model)``."""
    if reference not in models:
        raise ValueError(f"the reference {reference!r} is not among the models {list(models)}")
    t = latency_many(models, **setting)
    return {k: t[reference]["median_ms"] / t[k]["median_ms"] for k in models if k != reference}


def latency(model: nn.Module, input_size: tuple[int, ...] = (3, 32, 32), batch_size: int = 1,
            threads: int = 1, warmup: int = 10, runs: int = 50) -> dict[str, float]:
    """CPU forward-pass latency of one model in milliseconds: warm-up runs, then ``runs`` timed runs.

    Returns the median (the figure to report) with the 10th and 90th percentiles, and the settings
    it was measured with. To compare models, use :func:`latency_many`, which interleaves them.
    """
    return latency_many({"model": model}, input_size, batch_size, threads, warmup, runs)["model"]


def sparsity(model: nn.Module) -> dict[str, dict[str, float]]:
    """Zeros per weight tensor of every conv and linear layer, and overall.

    Returns ``{layer: {"zeros", "total", "sparsity"}}`` plus an ``"overall"`` entry. A layer
    pruned with ``torch.nn.utils.prune`` is read through its mask (its effective weight).
    """
    report, zeros, total = {}, 0, 0
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight
            z, t = int((w == 0).sum()), w.numel()
            report[name] = {"zeros": z, "total": t, "sparsity": z / t}
            zeros, total = zeros + z, total + t
    report["overall"] = {"zeros": zeros, "total": total, "sparsity": zeros / max(total, 1)}
    return report


def summary(model: nn.Module, input_size: tuple[int, ...] = (3, 32, 32)) -> dict[str, float]:
    """MACs, FLOPs and parameters in one dict (for tables)."""
    m = macs(model, input_size)
    return {"macs": m, "flops": 2 * m, "params": parameters(model)}
