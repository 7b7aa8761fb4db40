"""pruning - the package behind the open course on neural-network pruning.

The common path every method follows, one module per step::

    data, models, zoo      what to prune: datasets, architectures, pretrained baselines
    methods/               1. scores      - one file per paper (and the PFEC / random baselines)
    select                 2. selection   - ratio, threshold or MACs budget -> channels to keep
    surgery                3. removal     - masks (torch.nn.utils.prune) or channel surgery
    train                  4. repair      - BN recalibration and fine-tuning
    measure                5. measurement - MACs/FLOPs, parameters, latency, sparsity
    pipeline               steps 3-5 as one call, the same budget for every selection

plus ``core`` (what every module shares: channel groups, eval mode, a model's device and input size), ``tracing``
(channel groups of a model that declares none), ``methods/supermask`` (frozen random weights with a learned mask,
for paper 5), ``budget`` (every method at one
MACs budget, for the capstone), ``digits`` and ``detector`` (a detection set from MNIST and a small Faster
R-CNN, for paper 3 at detection scale), ``stats`` (intervals over seeds, McNemar and bootstrap tests within a
run), ``deploy`` (save and reload a pruned model, ONNX export and ONNX Runtime), and ``plots``, ``widgets``,
``selfcheck`` and ``checks`` for the notebooks. Two tools sit beside the engine:
``python -m pruning.reproduce`` (reference runs of the notebooks over seeds) and ``python -m pruning.report``
(the evidence over those runs, and the README's tables).

For your own model: ``pruning.core`` (its input size, given once), ``pruning.tracing`` (its channel groups, found by
tracing) and ``pruning.data.Loaders`` (your DataLoaders); notebook 08 walks through them. The names below
(``import pruning as pr``) are the common path in one import.
"""

__version__ = "0.1.0"

# The facade: the common path in one import (``import pruning as pr``; ``pr.keep_for_macs(...)``), for a student's own
# model. Names load on first use (PEP 562), so ``python -m pruning.report`` and the other tools do not import torch.
_FACADE = {
    "set_input_size": "core", "input_size_of": "core", "ChannelGroup": "core", "device_of": "core",
    "eval_mode": "core",
    "Dataset": "data", "Loaders": "data",
    "attach": "tracing",
    "channel_groups": "surgery", "remove_channels": "surgery", "mask_weights": "surgery",
    "keep_by_ratio": "select", "keep_by_threshold": "select", "keep_for_macs": "select",
    "Recipe": "train", "fit": "train", "evaluate": "train", "recalibrate_bn": "train",
    "prune_and_finetune": "pipeline", "finetune": "pipeline", "compare": "pipeline", "FINETUNE": "pipeline",
    "macs": "measure", "parameters": "measure", "latency_many": "measure",
}


def __getattr__(name):
    if name in _FACADE:
        import importlib

        return getattr(importlib.import_module(f".{_FACADE[name]}", __name__), name)
    raise AttributeError(f"module 'pruning' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_FACADE])
