"""After pruning: save a pruned model so that a fresh process rebuilds it, export it to ONNX, run it there.

The two complaints users make most about structured pruning are "the pruned model is not faster" and "the pruned
model will not load". This module answers the second and gives the first a fair measurement:

* **Save and load.** ``load_state_dict`` into a freshly built model fails after surgery, because every pruned
  layer has new shapes. :func:`save` therefore stores how to rebuild the model: the architecture (a course model's
  name and constructor arguments), the widths surgery left (``surgery.widths``) and the weights. :func:`load`
  builds the dense architecture, applies the same surgery to it (the first ``w`` channels of every pruned conv:
  only the shapes matter, the weights are then overwritten) and loads the weights, strictly. The result is an
  ordinary, trainable course model. For a model that surgery cannot describe (a Tucker-2 decomposition, your own
  network), :func:`export_program` saves a ``torch.export`` program instead: a fresh process runs it with
  ``torch.export.load(path).module()``, without the model's Python class, for inference.
* **ONNX.** :func:`export_onnx` writes a model with ``torch.onnx.export``; :class:`OnnxModel` runs the file in ONNX
  Runtime on the CPU behind the interface of an ``nn.Module`` (call it on a tensor, get a tensor), so
  ``measure.latency_many`` times it interleaved with the PyTorch models, and :func:`max_difference` checks that
  both runtimes compute the same function.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from . import models, surgery
from .measure import example_input, on_cpu
from .core import device_of, eval_mode

FORMAT = "pruning-course pruned model, v1"


# --------------------------------------------------------------------------- save / load (trainable)

def save(model: nn.Module, path, arch: str, **kwargs) -> Path:
    """Save ``model`` (a course model ``models.build(arch, **kwargs)``, pruned by surgery or not) so that
    :func:`load` rebuilds it in any process: the architecture, the widths surgery left, and the state dict."""
    dense = models.build(arch, **kwargs)
    if not isinstance(model, type(dense)):
        raise TypeError(f"save() rebuilds models.build({arch!r}), a {type(dense).__name__}; got a "
                        f"{type(model).__name__}. For other models use export_program() (inference) or torch.save.")
    widths = surgery.widths(model)
    full = surgery.widths(dense)
    if widths.keys() != full.keys():
        raise ValueError(f"the model's prunable convs differ from {arch}'s: is it another architecture?")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "arch": arch, "kwargs": kwargs,
                "widths": {n: w for n, w in widths.items() if w != full[n]},
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, path)
    return path


def load(path, map_location="cpu") -> nn.Module:
    """The model :func:`save` wrote, rebuilt with its pruned shapes, in eval mode (a plain ``torch.load`` of the
    weights into a dense model would fail with size mismatches in every pruned layer)."""
    record = torch.load(path, map_location=map_location, weights_only=True)
    if record.get("format") != FORMAT:
        raise ValueError(f"{path} was not written by pruning.deploy.save (format {record.get('format')!r})")
    model = models.build(record["arch"], **record["kwargs"])
    if record["widths"]:
        model = surgery.remove_channels(model, {n: range(w) for n, w in record["widths"].items()}, inplace=True)
    model.load_state_dict(record["state_dict"], strict=True)
    return model.eval()


# --------------------------------------------------------------------------- any model, for inference

def export_program(model: nn.Module, path, input_size=None) -> Path:
    """Save ``model`` as a ``torch.export`` program (``.pt2``): shapes, weights and graph in one file, which a fresh
    process loads with ``torch.export.load(path).module()`` without the model's class. Works for any model the
    exporter can trace, decomposed ones included; the loaded module is for inference. A model on a GPU is
    exported from a CPU copy, so that the file loads on any machine."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = on_cpu(model)
    with eval_mode(model):
        program = torch.export.export(model, (example_input(model, input_size),))
    torch.export.save(program, path)
    return path


# --------------------------------------------------------------------------- ONNX

def export_onnx(model: nn.Module, path, input_size=None, batch_size: int = 1, dynamo: bool = True) -> Path:
    """Write ``model`` (in eval mode) to an ONNX file for a fixed input of ``batch_size`` x ``input_size``.

    ``dynamo=True`` is ``torch.onnx``'s current exporter (through ``torch.export``; several seconds per model on
    2 cores); ``dynamo=False`` the older TorchScript-based one, which is deprecated but exports a small CNN in well
    under a second. Both give graphs ONNX Runtime runs at the same speed on the course's models (see the test)."""
    import warnings

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = example_input(model, input_size, batch_size)
    with eval_mode(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the deprecation notice of dynamo=False, the exporter's own chatter
        kw = dict(dynamo=True, verbose=False, optimize=True) if dynamo else dict(dynamo=False)
        # on the model's own device: the graph and weights written are the same, and the model is not moved
        torch.onnx.export(model, (x,), str(path), input_names=["images"], output_names=["logits"], **kw)
    return path


class OnnxModel(nn.Module):
    """An ONNX file run by ONNX Runtime on the CPU, called like the PyTorch model it came from.

    ``threads`` sets ONNX Runtime's intra-op threads (inter-op: 1), the counterpart of ``torch.set_num_threads``;
    the input must have the shape the file was exported with."""

    def __init__(self, path, threads: int = 1):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.path, self.threads = Path(path), threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.input_size = tuple(self.input.shape[1:])   # one image, as the file was exported (measure reads it)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = tuple(self.input.shape)
        if tuple(x.shape) != expected:
            raise ValueError(f"{self.path.name} was exported for inputs of shape {expected}, got {tuple(x.shape)}")
        out = self.session.run(None, {self.input.name: x.detach().cpu().numpy()})[0]
        return torch.from_numpy(out)


def max_difference(model: nn.Module, onnx_model: OnnxModel, batches: int = 3, seed: int = 0) -> float:
    """The largest absolute difference between the two runtimes' outputs on random inputs of the exported shape."""
    gen = torch.Generator().manual_seed(seed)
    shape = tuple(onnx_model.input.shape)
    worst = 0.0
    with eval_mode(model), torch.no_grad():
        for _ in range(batches):
            x = torch.randn(shape, generator=gen)
            ref = model(x.to(device_of(model))).cpu()
            worst = max(worst, float((onnx_model(x) - ref).abs().max()))
    return worst
