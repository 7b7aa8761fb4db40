import pytest
import torch
from torch import nn

from pruning import measure, select, surgery
from pruning.methods import gdp
from pruning.models import build


def test_accumulated_gradients_match_autograd(mnist):
    torch.manual_seed(0)
    model = build("lenet5")
    grads = gdp.accumulate_gradients(model, mnist, num_batches=3, batch_size=16, seed=4, progress=False)
    # the same three batches, by hand
    from pruning.data import batches
    expected = {n: torch.zeros_like(m.weight) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    weights = {n: model.get_submodule(n).weight for n in expected}
    for x, y in batches(mnist, "train", 16, train=False, shuffle=True, augmentation=False, limit=48, seed=4):
        g = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), list(weights.values()))
        for n, gi in zip(weights, g):
            expected[n] += gi.abs()
    assert set(grads) == set(expected)
    for n in expected:
        assert torch.allclose(grads[n], expected[n], atol=1e-7), n
    assert all(p.grad is None for p in model.parameters())  # no gradient left behind, no step taken


def test_taylor_is_grad_times_weight_magnitude():
    model = build("lenet5")
    grads = {n: torch.rand_like(m.weight) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    t = gdp.weight_scores(model, grads, "taylor")
    assert torch.allclose(t["conv2"], grads["conv2"] * model.conv2.weight.abs())
    f = gdp.filter_scores(model, grads)
    assert torch.allclose(f["conv1"], grads["conv1"].mean(dim=(1, 2, 3)))
    with pytest.raises(ValueError):
        gdp.weight_scores(model, grads, "hessian")


def test_alpha_threshold_by_hand():
    s = {"a": torch.tensor([1.0, 2.0, 3.0, 10.0])}  # mean 4, population std sqrt(12.5) = 3.5355
    assert gdp.layer_thresholds(s, 0.0)["a"] == pytest.approx(4.0)
    assert gdp.layer_thresholds(s, 0.5)["a"] == pytest.approx(4.0 - 0.5 * 12.5 ** 0.5)
    assert gdp.keep_alpha(s, 0.0) == {"a": [3]}
    assert gdp.keep_alpha(s, 0.5) == {"a": [2, 3]}  # tau = 2.23
    assert gdp.keep_alpha(s, 5.0) == {"a": [0, 1, 2, 3]}
    assert gdp.keep_alpha({"b": torch.tensor([1.0, 2.0])}, -5.0) == {"b": [1]}  # tau = 4: never empties a layer


@pytest.mark.parametrize("target,normalize", [(0.35, "max"), (0.6, "max"), (0.35, "l2")])
def test_global_bisection_meets_target_within_one_filter(target, normalize):
    torch.manual_seed(1)
    model = build("vgg16", width=0.25)
    scores = {n: torch.rand(w) for n, w in surgery.widths(model).items()}
    keep, t = gdp.keep_global(model, scores, target, normalize=normalize)
    got = select.macs_removed(model, keep)
    assert got >= target
    # putting back the best removed filter (the one just under the threshold) misses the target
    norm = select.normalize_per_layer(scores, normalize)
    removed = [(float(norm[n][i]), n, i) for n in keep for i in range(len(norm[n])) if i not in keep[n]]
    _, n, i = max(removed)
    restored = {**keep, n: sorted(keep[n] + [i])}
    assert select.macs_removed(model, restored) < target
    # and surgery delivers what was predicted
    small = surgery.remove_channels(model, keep)
    assert 1 - measure.macs(small) / measure.macs(model) == pytest.approx(got, abs=1e-12)


def test_global_bisection_impossible_target():
    model = build("lenet5")
    with pytest.raises(ValueError, match="cannot reach"):
        gdp.keep_global(model, {"conv1": torch.rand(6)}, 0.95, input_size=(1, 28, 28))
