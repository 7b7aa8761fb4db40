import pytest
import torch
from torch import nn

from pruning import measure
from pruning.models import build


def test_conv_macs_equal_hand_computed_figure():
    conv = nn.Conv2d(16, 32, 3, padding=1, bias=False)
    # 32 outputs x 16 inputs x 3x3 kernel x 8x8 output positions
    assert measure.macs(conv, (16, 8, 8)) == 32 * 16 * 9 * 8 * 8
    assert measure.flops(conv, (16, 8, 8)) == 2 * 32 * 16 * 9 * 8 * 8


def test_strided_conv_and_linear_macs():
    conv = nn.Conv2d(3, 8, 5, stride=2, padding=2)
    assert measure.macs(conv, (3, 32, 32)) == 8 * 3 * 25 * 16 * 16
    assert measure.macs(nn.Linear(100, 7), (100,)) == 700


def test_layer_macs_sum_to_total_and_name_layers():
    m = build("vgg16", width=0.25)
    per = measure.layer_macs(m, (3, 32, 32))
    assert sum(per.values()) == measure.macs(m)
    assert per["features.0"] == 16 * 3 * 9 * 32 * 32
    assert per["classifier"] == 128 * 10
    assert len(per) == 14  # 13 convs + 1 linear


def test_vgg16_full_width_matches_pfec_figure():
    # PFEC reports 3.13e8 "FLOPs" (multiply-accumulates) for VGG-16 on CIFAR-10
    assert measure.macs(build("vgg16")) == pytest.approx(3.13e8, rel=0.01)


def test_parameters_count_and_nonzero():
    from pruning.models import build
    from pruning.surgery import mask_weights
    m = build("lenet5")
    masked = mask_weights(m, 0.5)  # masks change no parameter count, only the nonzero count
    assert measure.parameters(masked) == measure.parameters(m) == 61706
    assert measure.parameters(masked, nonzero=True) < 0.55 * measure.parameters(m)
    lin = nn.Linear(4, 3)
    assert measure.parameters(lin) == 15
    with torch.no_grad():
        lin.weight[0].zero_()
    assert measure.parameters(lin, nonzero=True) == 11


def test_sparsity_report():
    m = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        m[0].weight[0].zero_()
    rep = measure.sparsity(m)
    assert rep["0"]["zeros"] == 9 and rep["0"]["sparsity"] == 0.5
    assert rep["overall"]["zeros"] == 9 and rep["overall"]["total"] == 22


def test_latency_reports_median_and_settings():
    before = torch.get_num_threads()
    r = measure.latency(nn.Linear(10, 10), (10,), runs=5, warmup=1, threads=1)
    assert r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
    assert r["threads"] == 1 and r["batch_size"] == 1 and r["runs"] == 5
    assert torch.get_num_threads() == before  # the thread count is restored
    with pytest.raises(ValueError):
        measure.latency(nn.Linear(2, 2), (2,), runs=0)


def test_latency_many_interleaves_and_ranks_models():
    import time as _time
    order = []

    class Slow(nn.Module):
        def __init__(self, name, seconds):
            super().__init__()
            self.lin, self.name, self.seconds = nn.Linear(2, 2), name, seconds

        def forward(self, x):
            order.append(self.name)
            _time.sleep(self.seconds)
            return self.lin(x)

    r = measure.latency_many({"fast": Slow("fast", 0.001), "slow": Slow("slow", 0.004)}, (2,), runs=5, warmup=1)
    assert order == ["fast", "slow"] * 6  # warm-up and every timed round run both models in turn
    assert r["slow"]["median_ms"] > r["fast"]["median_ms"] + 2
    assert r["fast"]["runs"] == 5 and r["fast"]["threads"] == 1


def test_speedups_are_the_reference_time_over_each_models_time_in_one_measurement():
    import pytest as _pytest
    from torch import nn as _nn
    wide, thin = _nn.Conv2d(3, 64, 3, padding=1), _nn.Conv2d(3, 4, 3, padding=1)
    out = measure.speedups({"dense": wide, "thin": thin}, input_size=(3, 32, 32), runs=5, warmup=1)
    assert set(out) == {"thin"} and out["thin"] > 0
    with _pytest.raises(ValueError, match="reference 'dense' is not among"):
        measure.speedups({"thin": thin})
