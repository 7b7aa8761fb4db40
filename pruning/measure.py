"""Measuring a model: FLOPs/MACs, parameters, CPU latency and sparsity.

Conventions, stated once:

* **MACs** are multiply-accumulates; **FLOPs** = 2 x MACs. PFEC and most pruning papers write
  "FLOPs" for what is really MACs (VGG-16 on CIFAR: "3.13e8 FLOPs" = 313 M MACs), so the
  course reports MACs and says so. Counts come from ``torch.utils.flop_counter.FlopCounterMode``
  and cover convolutions and linear layers (matmul/addmm); BatchNorm, ReLU, pooling and
  additions are not counted, as in PFEC.
* A zero weight still costs a MAC in a dense kernel: masks do not lower these counts,
  channel surgery does.
* ``input_size`` is one input without the batch dimension. Left out, it is the size the model declares
  (:func:`pruning.core.input_size_of`); a model that declares none must be given one.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from functools import partial
from typing import Callable, Mapping

import torch
from torch import nn

from torch.utils.flop_counter import FlopCounterMode

from .core import device_of, eval_mode, example_input, run_example  # noqa: F401  (example_input: measure's public name too)


def layer_macs(model: nn.Module, input_size: tuple[int, ...] | None = None) -> dict[str, int]:
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
            run_example(model, example_input(model, input_size))
    finally:
        for h in handles:
            h.remove()
        for m in model.modules():          # a forward that failed inside a module leaves its counter open: close it
            counter = m.__dict__.pop("_course_counter", None)
            if counter is not None:
                counter.__exit__(None, None, None)
    return counts


def macs(model: nn.Module, input_size: tuple[int, ...] | None = None) -> int:
    """Total MACs of one image's forward pass (FLOPs = 2 x this)."""
    x = example_input(model, input_size)
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        run_example(model, x)
    return counter.get_total_flops() // 2


def flops(model: nn.Module, input_size: tuple[int, ...] | None = None) -> int:
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
def interleaved(calls: Mapping[object, Callable[[], object]], runs: int, warmup: int = 10,
                threads: int = 1) -> dict[object, list[float]]:
    """The timing loop behind every latency in the course: ``warmup`` untimed rounds, then ``runs`` timed rounds,
    each calling every zero-argument function of ``calls`` once, in turn, on ``threads`` threads. Returns each
    call's times in milliseconds. Interleaving is the point: a change in the machine's load during the
    measurement hits every call alike, so their ratios stay meaningful."""
    times: dict[object, list[float]] = {key: [] for key in calls}
    with _threads(threads):
        for _ in range(warmup):
            for call in calls.values():
                call()
        for _ in range(runs):
            for key, call in calls.items():
                start = time.perf_counter()
                call()
                times[key].append((time.perf_counter() - start) * 1000)
    return times


@torch.no_grad()
def latency_many(models: dict[str, nn.Module], input_size: tuple[int, ...] | None = None, batch_size: int = 1,
                 threads: int = 1, warmup: int = 10, runs: int = 50) -> dict[str, dict[str, float]]:
    """CPU forward-pass latency of several models, in milliseconds, measured **interleaved**.

    Each timed round runs every model once, in turn, so a change in the machine's load during the
    measurement (another process, frequency scaling) hits all models alike and their ratios stay
    meaningful. Timing them one after another instead lets a slow spell land on one model only.
    Returns, per model, the median (the figure to report), the 10th and 90th percentiles, and the
    settings it was measured with. A model on a GPU is timed as a CPU copy (the model itself is left where it
    is): these are CPU latencies on every machine, comparable with the course's reference runs.
    """
    if runs < 1 or warmup < 0 or threads < 1 or batch_size < 1:
        raise ValueError("runs, threads and batch_size must be >= 1 and warmup >= 0")
    models = {name: on_cpu(m) for name, m in models.items()}
    inputs = {name: example_input(m, input_size, batch_size) for name, m in models.items()}
    modes = {name: m.training for name, m in models.items()}
    for m in models.values():
        m.eval()
    try:
        times = interleaved({name: partial(m, inputs[name]) for name, m in models.items()}, runs, warmup, threads)
    finally:
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


def on_cpu(model):
    """``model`` itself when it runs on the CPU (or is no ``nn.Module``, e.g. an ONNX Runtime session), else a
    copy of it on the CPU (masks included), for the CPU timings."""
    if not isinstance(model, nn.Module) or device_of(model).type == "cpu":
        return model
    from .surgery import clone                      # here, not at the top: surgery's imports reach measure
    return clone(model).cpu()


def latency(model: nn.Module, input_size: tuple[int, ...] | None = None, batch_size: int = 1,
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


def summary(model: nn.Module, input_size: tuple[int, ...] | None = None) -> dict[str, float]:
    """MACs, FLOPs and parameters in one dict (for tables)."""
    m = macs(model, input_size)
    return {"macs": m, "flops": 2 * m, "params": parameters(model)}
