import pytest
import torch
from torch import nn

from pruning import budget, measure
from pruning.methods import hybrid, tucker
from pruning.models import VGG


@pytest.fixture(scope="module")
def small_vgg():
    torch.manual_seed(0)
    return VGG(16, width=0.125).eval()


def test_every_method_meets_the_budget_and_not_much_more(small_vgg, cifar):
    sel = budget.Selectors(small_vgg, cifar, grad_batches=1, fisher_batches=1,
                           search={"generations": 1, "population": 2, "parents": 1, "eval_images": 40, "recal_batches": 1})
    for method in budget.METHODS:
        out = sel.select(method, 0.5)
        got = budget.achieved(small_vgg, out)
        assert 0.5 <= got < 0.56, (method, got)
        assert isinstance(out, nn.Module) == (method == "hybrid")
        assert sel.seconds[method] > 0
    assert sel.select("GDP", 0.3) != sel.select("GDP", 0.5)          # scores are cached, selections are not
    with pytest.raises(ValueError, match="method must be one of"):
        sel.select("lottery", 0.5)


def test_hybrid_at_a_budget_takes_the_largest_rank_ratio_within_it(small_vgg):
    out, plan = hybrid.compress_to_macs(small_vgg, 0.6, split=2)
    dense = measure.macs(small_vgg)
    assert 0.6 <= 1 - measure.macs(out) / dense < 0.66           # within budget, and close to it: the largest ratio
    assert set(plan.pruned) and set(plan.decomposed) and not set(plan.pruned) & set(plan.decomposed)
    pruned_widths = {n: k for n, (_, k) in plan.pruned.items()}
    assert all(isinstance(out.get_submodule(n), tucker.Tucker2Conv) for n in plan.decomposed)
    assert all(out.get_submodule(n).out_channels == k for n, k in pruned_widths.items())
    with pytest.raises(ValueError, match="rank 1"):
        hybrid.compress_to_macs(small_vgg, 0.99, split=2)


def test_hybrid_storage_rule_meets_the_parameter_target(small_vgg):
    out, plan = hybrid.compress(small_vgg, split=2, k=3, rule="storage", value=0.54)
    removed = 1 - measure.parameters(out) / measure.parameters(small_vgg)
    assert 0.54 <= removed < 0.60 and set(plan.pruned) and set(plan.decomposed)
    same, _ = hybrid.compress_to_budget(small_vgg, 0.54, "params", split=2, k=3)
    assert measure.parameters(same) == measure.parameters(out)
    with pytest.raises(ValueError, match="needs value"):
        hybrid.compress(small_vgg, split=2, rule="storage")


def test_input_sizes_from_one_forward_pass(small_vgg):
    sizes = hybrid.input_sizes(small_vgg, ["features.0", "features.3"])
    assert sizes["features.0"] == (32, 32) and sizes["features.3"] == (32, 32)
    assert not small_vgg.training


def test_pareto_front_by_hand():
    pts = {"a": (1.0, 0.9), "b": (0.5, 0.8), "c": (0.5, 0.7), "d": (0.8, 0.8), "e": (0.3, 0.6)}
    # c is beaten by b (same cost, more accurate); d by b (cheaper, as accurate)
    assert budget.pareto_front(pts) == ["e", "b", "a"]
    assert budget.pareto_front({"x": (1.0, 0.5)}) == ["x"]


def test_budget_explorer_and_tradeoff_plot():
    from pruning import plots
    from pruning.widgets import BudgetExplorer
    res = {0.5: {"L1": {"test": 0.75, "latency_ms": 6.0}, "GDP": {"test": 0.78, "latency_ms": 6.5}},
           0.7: {"L1": {"test": 0.70, "latency_ms": 4.0}, "GDP": {"test": 0.66, "latency_ms": 4.2}}}
    ex = BudgetExplorer(res, dense_test=0.83, dense_latency_ms=9.0)
    ex.slider.value = 0.7
    assert ex.ranking == ["L1", "GDP"]
    ex.slider.value = 0.5
    assert ex.ranking == ["GDP", "L1"]
    ax = plots.tradeoff({"L1": [(0.5, 0.75), (0.3, 0.7)]}, dense=(1.0, 0.83), front=[(0.3, 0.7)])
    assert len(ax.lines) == 1 and ax.get_legend() is not None


def test_finetune_can_skip_per_epoch_validation(small_vgg, cifar):
    from pruning import pipeline
    keep = budget.Selectors(small_vgg, cifar).select("L1", 0.3)
    out = pipeline.prune_and_finetune(small_vgg, keep, cifar, epochs=1, samples_per_epoch=64, recal_batches=1,
                                      progress=False, eval_val=False)
    assert out.history.val_acc == [] and len(out.history.train_loss) == 1 and 0 <= out.test <= 1
