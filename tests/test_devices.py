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


# --------------------------------------------------------------------------- the notebooks' DEVICE setting

def test_default_device_is_the_gpu_when_there_is_one_and_can_be_forced(monkeypatch):
    from pruning import core
    monkeypatch.delenv("PRUNING_DEVICE", raising=False)
    assert core.default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("PRUNING_DEVICE", "cpu")
    assert core.default_device() == torch.device("cpu")
    monkeypatch.setenv("PRUNING_DEVICE", "gpu-please")
    with pytest.raises(RuntimeError):
        core.default_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("PRUNING_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="sees no GPU"):
            core.default_device()


def test_on_cpu_leaves_a_cpu_model_itself():
    model = _small()
    assert measure.on_cpu(model) is model
    assert measure.on_cpu("an ONNX session") == "an ONNX session"


@needs_gpu
def test_latency_times_a_cpu_copy_and_leaves_the_model_on_the_gpu():
    model = _small().to("cuda")
    out = measure.latency_many({"gpu model": model, "cpu model": _small()}, (3, 32, 32), runs=3, warmup=1)
    assert set(out) == {"gpu model", "cpu model"} and all(v["median_ms"] > 0 for v in out.values())
    assert models.device_of(model).type == "cuda"


@needs_gpu
def test_scores_tracing_and_statistics_follow_a_model_on_the_gpu(cifar):
    from pruning import select, tracing
    from pruning.methods import baselines, mean_variance, tucker
    model = _small().to("cuda")
    l1 = baselines.l1_scores(model)
    name = next(iter(l1))
    assert -1 <= select.rank_correlation(l1[name], l1[name].cpu().flip(0)) <= 1      # one on the GPU, one on the CPU
    tracing.attach(model, torch.zeros(1, 3, 32, 32))                                 # a CPU example input
    assert model.channel_groups()
    w = model.get_submodule(name).weight
    clusters = mean_variance.cluster_filters(w, k=2)
    assert clusters.stats.device.type == "cpu" and clusters.keep
    core, u, v = tucker.tucker2(w, (4, 4))
    assert core.device == w.device and tucker.relative_error(w, (4, 4)) < 1
    assert tucker.vbmf_rank(w.flatten(1)) >= 0
    sensitivities = sens.channel_sensitivity(model, sens.fisher_diagonal(model, cifar, num_batches=1, batch_size=8))
    assert all(s.device.type == "cpu" for s in sensitivities.values())


@needs_gpu
def test_the_plots_and_the_probes_widget_draw_gpu_tensors():
    import matplotlib
    matplotlib.use("Agg")
    from pruning import plots
    from pruning.methods import baselines, tucker
    from pruning.widgets import ProbesExplorer
    model = _small().to("cuda")
    conv = model.get_submodule("features.0")
    plots.weight_histogram(model)
    plots.kernel_norms(model.get_submodule("features.4"))
    plots.layer_distributions(baselines.l1_scores(model))
    plots.filters(conv.weight)
    plots.tucker_factors(conv.weight, *tucker.tucker2(conv.weight, (4, 2)))
    ProbesExplorer(torch.rand(20, device="cuda"), torch.rand(5, 20, device="cuda"), torch.rand(20, device="cuda")).update()


@needs_gpu
def test_toy_hessians_take_cpu_batches_for_a_gpu_model():
    torch.manual_seed(0)
    toy = nn.Sequential(nn.Conv2d(1, 2, 5, stride=4, bias=False), nn.Flatten(), nn.Linear(2 * 36, 10)).to("cuda")
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    exact = sens.exact_hessian(toy, ["0"], x, y)
    samples = sens.hutchinson_samples(toy, ["0"], x, y, probes=3)
    assert exact.device.type == "cpu" and samples.shape == (3, exact.shape[0]) and samples.device.type == "cpu"


@needs_gpu
def test_supermask_experiment_trains_on_the_device_it_is_given(cifar):
    from pruning.methods import sbp, supermask
    exp = supermask.Experiment(sbp.build, cifar, depth=2, width=0.25, epochs=1, samples_per_epoch=256, device="cuda")
    r = exp.run("sbp", 0.5, seed=0, lr=0.1)
    assert models.device_of(r.model).type == "cuda" and 0 <= r.test <= 1
    fresh = supermask.frozen_weights(sbp.build("sbp", 2, sparsity=0.5, width=0.25, seed=0))
    assert all(torch.equal(w.cpu(), fresh[n]) for n, w in supermask.frozen_weights(r.model).items())


@needs_gpu
def test_a_program_exported_from_a_gpu_model_loads_on_the_cpu(tmp_path):
    from pruning import deploy
    model = _small().to("cuda")
    path = deploy.export_program(model, tmp_path / "m.pt2", (3, 32, 32))
    loaded = torch.export.load(path).module()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x.cuda()).cpu(), atol=1e-4)


@needs_gpu
def test_detector_latency_is_timed_on_the_cpu():
    from pruning import detector
    model = detector.build(widths=(8, "M", 16), size=32).to("cuda")
    images = torch.randint(0, 255, (2, 1, 32, 32), dtype=torch.uint8)
    ms = detector.latency({"small": model}, images, rounds=2, warmup=1)
    assert ms["small"] > 0 and models.device_of(model).type == "cuda"
