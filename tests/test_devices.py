"""The helpers that build their own batches or example inputs follow the model's device. The CUDA tests are skipped
on a machine without a GPU (the course's CI); the CPU tests check that the same code paths still agree on the CPU."""
import pytest
import torch
from torch import nn

from pruning import measure, models
from pruning.methods import hybrid
from pruning.methods import sensitivity as sens

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")


def _small():
    torch.manual_seed(0)
    return models.build("vgg11", width=0.25).eval()


@needs_gpu
def test_sensitivity_helpers_follow_a_model_on_the_gpu(cifar):
    model = _small()
    x, y = sens.first_batch(cifar, 32, seed=1, device="cuda")
    assert x.device.type == "cuda" and y.device.type == "cuda"
    on_cpu = sens.removal_check(model, *sens.first_batch(cifar, 32, seed=1), "features.0")
    on_gpu = sens.removal_check(model.to("cuda"), x, y, "features.0")
    assert on_gpu["actual"].device.type == "cpu"                        # results come back on the CPU
    assert torch.allclose(on_cpu["actual"], on_gpu["actual"], atol=1e-3)
    assert sens.top_eigenvalue(model, cifar, "features.0", iterations=3, batch_size=16) > 0


@needs_gpu
def test_measure_and_hybrid_follow_a_model_on_the_gpu():
    model = _small()
    cpu_macs, cpu_sizes = measure.macs(model), hybrid.input_sizes(model, ["features.0", "features.4"])
    model.to("cuda")
    assert measure.macs(model) == cpu_macs and measure.example_input(model, (3, 32, 32)).device.type == "cuda"
    assert hybrid.input_sizes(model, ["features.0", "features.4"]) == cpu_sizes


def test_example_input_takes_the_models_dtype_and_device():
    model = _small().double()
    x = measure.example_input(model, (3, 32, 32), batch_size=2)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float64 and x.device == torch.device("cpu")


def test_layer_macs_leaves_nothing_behind_when_a_forward_fails():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.conv(x))      # wrong shapes: fc gets a 4-D tensor of the wrong width

    model = Broken()
    with pytest.raises(ValueError, match=r"failed on an example input of shape \(1, 3, 32, 32\)"):
        measure.layer_macs(model, (3, 32, 32))
    assert not any("_course_counter" in m.__dict__ for m in model.modules())
    from torch.utils._python_dispatch import _get_current_dispatch_mode
    assert _get_current_dispatch_mode() is None                           # no FlopCounterMode left pushed
    assert measure.macs(_small()) > 0                                     # counting still works afterwards
