import itertools

import pytest
import torch

from pruning import supermask, train
from pruning.data import load
from pruning.methods import sbp
from pruning.methods.edge_popup import EdgePopupLinear
from pruning.methods.sbp import SBPLinear


def test_projection_is_exact_k_and_the_best_binary_approximation():
    g = torch.Generator().manual_seed(0)
    for k in range(7):
        z = torch.rand(6, generator=g)
        m = supermask.topk_mask(z, k)
        assert int(m.sum()) == k and set(m.unique().tolist()) <= {0.0, 1.0}
        best = min((torch.tensor(c, dtype=z.dtype) for c in itertools.product([0.0, 1.0], repeat=6) if sum(c) == k),
                   key=lambda c: float(((z - c) ** 2).sum()))
        assert torch.equal(m, best)
    # ties are broken by position, deterministically
    assert supermask.topk_mask(torch.tensor([0.5, 0.5, 0.5, 0.1]), 2).tolist() == [1, 1, 0, 0]
    with pytest.raises(ValueError, match="k must be between 0 and 4"):
        supermask.topk_mask(torch.zeros(4), 5)


@pytest.mark.parametrize("cls", [EdgePopupLinear, SBPLinear])
def test_straight_through_gradient_matches_hand_computation(cls):
    torch.manual_seed(0)
    layer = cls(5, 3, bias=False, sparsity=0.6)
    x, c = torch.randn(4, 5), torch.randn(4, 3)
    loss = (layer(x) * c).sum()           # L = sum c * (x W_eff^T): dL/dW_eff = c^T x
    loss.backward()
    expected = (c.T @ x) * layer.weight   # eq. (2): straight through the top-k, times the frozen weights
    if cls is EdgePopupLinear:            # edge-popup ranks |s|: the gradient also passes through the abs
        expected = expected * layer.scores.detach().sign()
    assert torch.allclose(layer.scores.grad, expected, atol=1e-6)
    assert layer.weight.grad is None and int(layer.mask().sum()) == layer.k == 6


def test_same_random_weights_for_both_methods_and_clear_errors():
    a, b = sbp.build("sbp", 2, sparsity=0.5, width=0.25, seed=3), sbp.build("edge-popup", 2, sparsity=0.5, width=0.25, seed=3)
    wa, wb = supermask.frozen_weights(a), supermask.frozen_weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[n], wb[n]) for n in wa)
    sigma = {n: w.abs().unique() for n, w in wa.items()}
    assert all(len(s) == 1 for s in sigma.values())        # signed constant: one magnitude per layer
    assert all(0 <= float(m.scores.detach().min()) and float(m.scores.detach().max()) <= 1
               for m in supermask.layers(a).values())
    with pytest.raises(ValueError, match="method"):
        sbp.build("lottery")
    with pytest.raises(ValueError, match="sparsity"):
        sbp.build("sbp", 2, sparsity=1.0)


# each method at its own learning rate: SBP's variable lives in [0, 1], edge-popup's scores start near
# +-1/sqrt(fan_in); on this problem SBP at lr 0.1 barely moved its masks in 24 steps (val 11.5%)
@pytest.mark.parametrize("method,lr", [("sbp", 5.0), ("edge-popup", 0.1)])
def test_training_changes_only_the_mask_and_beats_chance(method, lr):
    data = load("mnist", per_class=100, val_per_class=20, test_per_class=20, seed=0)
    model = sbp.build(method, 2, sparsity=0.5, width=0.25, seed=0, in_channels=1, image_size=28)
    before_w, before_m = supermask.frozen_weights(model), supermask.masks(model)
    train.fit(model, data, epochs=3, lr=lr, schedule="cosine", weight_decay=0.0, progress=False,
              after_step=supermask.project_)
    after_w, after_m = supermask.frozen_weights(model), supermask.masks(model)
    assert all(torch.equal(before_w[n], after_w[n]) for n in before_w)            # bit-identical weights
    assert any(not torch.equal(before_m[n], after_m[n]) for n in before_m)        # the masks moved
    assert all(int(m.sum()) == supermask.layers(model)[n].k for n, m in after_m.items())
    if method == "sbp":
        assert all(0 <= float(m.scores.detach().min()) and float(m.scores.detach().max()) <= 1
                   for m in supermask.layers(model).values())
    assert train.evaluate(model, data, "val") > 0.3                              # chance is 0.1


def test_sparsity_results_explorer():
    from pruning.widgets import SparsityResultsExplorer
    res = {"sbp": {0.5: [0.6, 0.62], 0.7: [0.55, 0.57]}, "edge-popup": {0.5: [0.58, 0.6], 0.7: [0.5, 0.5]}}
    ex = SparsityResultsExplorer(res, dense=0.7)
    ex.slider.value = 0.7
    assert ex.means == pytest.approx({"sbp": 0.56, "edge-popup": 0.5})
    assert ex.difference == pytest.approx(0.06)
    assert "70%" in ex.figure.axes[0].get_title() and "+6.0 pts" in ex.figure.axes[0].get_title()
    ex.slider.value = 0.5
    assert ex.difference == pytest.approx(0.02)


def test_mask_overlap():
    a, b = torch.tensor([1.0, 1, 0, 0]), torch.tensor([1.0, 0, 1, 0])
    assert supermask.overlap(a, a) == 1.0 and supermask.overlap(a, b) == 0.5


def test_mask_scores_plot():
    import matplotlib
    from pruning import plots
    layer = SBPLinear(20, 10, bias=False, sparsity=0.7)
    ax = plots.mask_scores(layer)
    assert "kept (60)" in [t.get_text() for t in ax.get_legend().get_texts()]
    matplotlib.pyplot.close("all")


def test_topk_mask_agrees_with_a_stable_sort_also_with_many_ties():
    g = torch.Generator().manual_seed(1)
    for trial in range(20):
        z = torch.randint(0, 4, (50,), generator=g).float() / 3 if trial % 2 else torch.rand(50, generator=g)
        for k in (0, 1, 7, 25, 49, 50):
            order = torch.argsort(z, descending=True, stable=True)[:k]
            ref = torch.zeros(50)
            ref[order] = 1
            assert torch.equal(supermask.topk_mask(z, k), ref), (z, k)
