"""Deployment (pruning/deploy.py): a pruned model saved and rebuilt in a fresh process, ONNX Runtime computing what
PyTorch computes, for channel-pruned and Tucker-decomposed models."""
import subprocess
import sys

import pytest
import torch

from pruning import deploy, measure, models, surgery
from pruning.methods.tucker import decompose_conv

pytest.importorskip("onnxruntime")


def _pruned():
    torch.manual_seed(0)
    model = models.build("vgg11", width=0.25).eval()
    keep = {n: list(range(0, w, 2)) for n, w in surgery.widths(model).items()}   # half of every conv
    return surgery.remove_channels(model, keep)


def _decomposed():
    model = _pruned()
    name = "features.8"   # a 3x3 conv in the middle of the stack
    conv = model.get_submodule(name)
    setattr(model.features, "8", decompose_conv(conv, (conv.out_channels // 2, conv.in_channels // 2)))
    return model.eval()


def _fresh_process(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_the_naive_reload_fails_and_save_load_rebuilds_the_pruned_shapes_in_a_fresh_process(tmp_path):
    model = _pruned()
    with pytest.raises(RuntimeError, match="size mismatch"):       # the pitfall: a dense model, pruned weights
        models.build("vgg11", width=0.25).load_state_dict(model.state_dict())
    path = deploy.save(model, tmp_path / "pruned.pt", "vgg11", width=0.25)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.save(x, tmp_path / "x.pt")
    out = _fresh_process(f"""
import torch
from pruning import deploy, measure, surgery
m = deploy.load({str(path)!r})
x = torch.load({str(tmp_path / 'x.pt')!r})
torch.save(m(x), {str(tmp_path / 'y.pt')!r})
print(measure.macs(m), sorted(surgery.widths(m).items()))
""")
    assert out.split()[0] == str(measure.macs(model))
    assert out.strip().split(" ", 1)[1] == str(sorted(surgery.widths(model).items()))
    with torch.no_grad():
        assert torch.allclose(torch.load(tmp_path / "y.pt"), model(x), atol=1e-6)
    reloaded = deploy.load(path)
    assert not reloaded.training and sum(p.requires_grad for p in reloaded.parameters()) > 0   # trainable again


def test_save_refuses_a_model_it_cannot_rebuild(tmp_path):
    with pytest.raises(TypeError, match="export_program"):
        deploy.save(models.build("lenet5"), tmp_path / "x.pt", "vgg11", width=0.25)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not written by pruning.deploy.save"):
        deploy.load(tmp_path / "other.pt")


def test_a_decomposed_model_runs_in_a_fresh_process_from_its_exported_program(tmp_path):
    model = _decomposed()
    path = deploy.export_program(model, tmp_path / "hybrid.pt2")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    torch.save(x, tmp_path / "x.pt")
    _fresh_process(f"""
import torch
m = torch.export.load({str(path)!r}).module()
torch.save(m(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})
""")
    with torch.no_grad():
        assert torch.allclose(torch.load(tmp_path / "y.pt"), model(x), atol=1e-5)


@pytest.mark.parametrize("build", [_pruned, _decomposed], ids=["channel-pruned", "tucker-2"])
def test_onnx_runtime_computes_what_pytorch_computes(tmp_path, build):
    model = build()
    onnx = deploy.OnnxModel(deploy.export_onnx(model, tmp_path / "m.onnx", dynamo=False))
    assert deploy.max_difference(model, onnx) < 1e-4
    timing = measure.latency_many({"torch": model, "onnx": onnx}, runs=3, warmup=1)   # timed like any model
    assert set(timing) == {"torch", "onnx"} and all(t["median_ms"] > 0 for t in timing.values())
    with pytest.raises(ValueError, match=r"exported for inputs of shape \(1, 3, 32, 32\)"):
        onnx(torch.zeros(2, 3, 32, 32))


def test_the_current_exporter_too(tmp_path):
    model = _pruned()
    onnx = deploy.OnnxModel(deploy.export_onnx(model, tmp_path / "m.onnx", dynamo=True))
    assert deploy.max_difference(model, onnx) < 1e-4
