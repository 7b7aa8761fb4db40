import pytest

from pruning import selfcheck
from pruning.models import build
from pruning.widgets import SparsityExplorer


def test_sparsity_explorer_updates_on_value(mnist):
    model = build("lenet5").eval()
    ex = SparsityExplorer(model, mnist, limit=50)
    ex.slider.value = 0.5
    assert ex.sparsity == pytest.approx(0.5, abs=0.01)
    assert ex.accuracy == ex.history[0.5]
    ex.slider.value = 0.9
    assert ex.sparsity == pytest.approx(0.9, abs=0.01)
    assert set(ex.history) == {0.5, 0.9}
    hist, curve = ex.figure.axes  # the redrawn figure shows the new state
    assert "90%" in hist.get_title() and f"{ex.accuracy:.1%}" in curve.get_title()
    assert len(curve.lines[0].get_xdata()) == 2


def test_selfchecks_accept_right_and_reject_wrong(capsys):
    right = 64 * 32 * 9 * 16 * 16
    assert selfcheck.check_conv_macs(right, 32, 64, 3, 16)
    assert not selfcheck.check_conv_macs(right // 2, 32, 64, 3, 16)
    assert "Not yet" in capsys.readouterr().out
    saved = 16 * 32 * 9 * 16 * 16 + 64 * 16 * 9 * 16 * 16
    assert selfcheck.check_pruned_macs(saved, 32, 64, 3, 16, removed=16, next_c_out=64)
    assert not selfcheck.check_pruned_macs(16 * 32 * 9 * 16 * 16, 32, 64, 3, 16, removed=16, next_c_out=64)
    assert not selfcheck.check_conv_macs(None, 32, 64, 3, 16)
    assert "No answer yet" in capsys.readouterr().out


def test_alpha_explorer_follows_the_slider():
    import torch
    from pruning.widgets import AlphaExplorer
    model = build("vgg11", width=0.25)
    torch.manual_seed(0)
    scores = {n: torch.rand(w) for n, w in __import__("pruning.surgery", fromlist=["widths"]).widths(model).items()}
    ex = AlphaExplorer(model, scores)
    ex.slider.value = 1.0
    low = ex.reduction
    ex.slider.value = -1.0
    assert ex.reduction > low  # tau = mean - alpha * std: a lower alpha raises the threshold, more filters go
    from pruning.methods import gdp
    assert ex.keep == gdp.keep_alpha(scores, -1.0)
    assert "alpha = -1.0" in ex.figure.axes[0].get_title()


def test_criterion_explorer_switches_ranking(mnist):
    from pruning.methods import gdp
    from pruning.widgets import CriterionExplorer
    model = build("lenet5")
    grads = gdp.accumulate_gradients(model, mnist, num_batches=2, batch_size=32, progress=False)
    ex = CriterionExplorer(model, grads)
    ex.toggle.value = "taylor"
    taylor = dict(ex.correlations)
    ex.toggle.value = "grad"
    assert set(taylor) == {"conv1", "conv2"} and taylor != ex.correlations
    assert all(-1 <= v <= 1 for v in taylor.values())


def test_rank_correlation():
    import torch
    from pruning.select import rank_correlation
    a = torch.tensor([0.1, 0.5, 0.3, 0.9])
    assert rank_correlation(a, a * 10 + 3) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    # ranks (0, 2, 1, 3) vs (1, 3, 2, 0): d = (1, 1, 1, -3), rho = 1 - 6 * 12 / (4 * 15) = -0.2
    assert rank_correlation(a, torch.tensor([1.0, 3.0, 2.0, 0.0])) == pytest.approx(-0.2)
    with pytest.raises(ValueError):
        rank_correlation(a, a[:2])


def test_probes_explorer_error_falls_with_probes(mnist):
    import torch
    from torch import nn

    from pruning.methods import sensitivity as sens
    from pruning.widgets import ProbesExplorer

    torch.manual_seed(0)
    model = nn.Sequential(nn.AvgPool2d(7), nn.Flatten(), nn.Linear(16, 10)).eval()
    x, y = sens.first_batch(mnist, 64)
    exact = sens.exact_hessian(model, ["2"], x, y).diagonal()
    samples = sens.hutchinson_samples(model, ["2"], x, y, probes=400)
    fisher = sens.fisher_diagonal(model, mnist, num_batches=1, batch_size=64, names=["2"], progress=False)["2"].flatten()
    ex = ProbesExplorer(exact, samples, fisher, probes=1)
    ex.refresh()
    one = ex.error
    ex.slider.value = 400
    assert ex.error < one / 4  # error ~ 1/sqrt(probes): 20x more probes, well over 4x smaller
    assert ex.error == pytest.approx(float((samples.double().mean(0) - exact.double()).norm() / exact.double().norm()))
    assert len(ex.figure.axes) == 2
