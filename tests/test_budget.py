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


def test_input_sizes_from_one_forward_pass(small_vgg):
    sizes = hybrid.input_sizes(small_vgg, ["features.0", "features.3"])
    assert sizes["features.0"] == (32, 32) and sizes["features.3"] == (32, 32)
    assert not small_vgg.training
