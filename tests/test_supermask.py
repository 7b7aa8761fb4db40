import itertools

import pytest
import torch

from pruning import train
from pruning.methods import supermask
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
@pytest.mark.parametrize("method,lr", [("sbp", 5.0), ("sbp-matched", 0.5), ("sbp-admm", 5.0), ("edge-popup", 0.1)])
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
    if method.startswith("sbp"):
        assert all(0 <= float(m.scores.detach().min()) and float(m.scores.detach().max()) <= 1
                   for m in supermask.layers(model).values())
    assert train.evaluate(model, data, "val") > 0.3                              # chance is 0.1


def test_scale_matched_sbp_divides_the_step_by_the_weight_scale():
    # eq. (7): the same network and the same loss give the matched variant the plain one's gradient / sigma_l, so
    # every layer's z moves at the same rate relative to its box, whatever its fan-in
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    grads = {}
    for method in ("sbp", "sbp-matched"):
        net = sbp.build(method, 2, sparsity=0.5, width=0.25, seed=1)
        net(x).square().sum().backward()
        grads[method] = {n: (m.scores.grad.clone(), float(m.weight.abs().max())) for n, m in supermask.layers(net).items()}
    sigmas = {n: s for n, (_, s) in grads["sbp"].items()}
    assert max(sigmas.values()) / min(sigmas.values()) > 5          # the layers' scales differ by an order of magnitude
    for n, (g, sigma) in grads["sbp"].items():
        assert sigma == pytest.approx((2 / supermask.layers(net)[n].weight[0].numel()) ** 0.5)
        assert torch.allclose(grads["sbp-matched"][n][0], g / sigma, rtol=1e-5, atol=1e-12)
    # the scaling is part of the layer, so a copy of the network keeps it
    import copy
    net = sbp.build("sbp-matched", 2, sparsity=0.5, width=0.25, seed=1)
    twin = copy.deepcopy(net)
    twin(x).square().sum().backward()
    for n, m in supermask.layers(twin).items():
        assert torch.allclose(m.scores.grad, grads["sbp-matched"][n][0], rtol=1e-5, atol=1e-12)


def test_experiment_gives_each_method_its_weight_decay(monkeypatch):
    seen = {}
    real = supermask.fit

    def spy(model, data, epochs, **kw):          # what reaches the optimiser's recipe
        seen[model.features[0].method] = kw["weight_decay"]
        return real(model, data, epochs, **kw)

    monkeypatch.setattr(supermask, "fit", spy)
    data = load("mnist", per_class=10, val_per_class=5, test_per_class=5, seed=0)
    exp = supermask.Experiment(sbp.build, data, depth=2, width=0.25, epochs=1, in_channels=1, image_size=28,
                               weight_decay={"edge-popup": 1e-4})
    exp.grid({"sbp": 5.0, "edge-popup": 0.1}, (0.5,), (0,))
    assert seen == {"sbp": 0.0, "edge-popup": 1e-4}


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


def _fake_run(method, sparsity, seed, test):
    return supermask.Run(method, sparsity, seed, 1.0, train.History(), test, None, {})


def test_accuracies_and_paired_differences_by_hand():
    runs = [_fake_run("sbp", 0.5, 1, 0.60), _fake_run("sbp", 0.5, 0, 0.50), _fake_run("edge-popup", 0.5, 0, 0.45),
            _fake_run("edge-popup", 0.5, 1, 0.70), _fake_run("sbp", 0.7, 0, 0.40)]   # no edge-popup partner at 0.7
    assert supermask.accuracies(runs) == {"sbp": {0.5: [0.50, 0.60], 0.7: [0.40]}, "edge-popup": {0.5: [0.45, 0.70]}}
    d = supermask.paired_differences(runs, "sbp", "edge-popup")
    assert list(d) == [0.5] and d[0.5] == pytest.approx([0.05, -0.10])     # seed 0, then seed 1


def test_experiment_reuses_runs_and_records_what_moved():
    data = load("mnist", per_class=30, val_per_class=10, test_per_class=10, seed=0)
    exp = supermask.Experiment(sbp.build, data, depth=2, width=0.25, epochs=1, in_channels=1, image_size=28)
    sweep = exp.lr_sweep({"sbp": (5.0,), "edge-popup": (0.1, 0.3)}, sparsity=0.5, seed=0)
    assert set(sweep) == {"sbp", "edge-popup"} and set(sweep["edge-popup"]) == {0.1, 0.3}
    assert len(exp.runs) == 3
    first = exp.runs[("sbp", 0.5, 0, 5.0)]
    runs = exp.grid({"sbp": 5.0, "edge-popup": 0.1}, (0.5,), (0, 1))
    assert len(runs) == 4 and len(exp.runs) == 5                     # the two seed-0 runs came from the cache
    assert any(r is first for r in runs)
    assert sweep["sbp"][5.0] == first.history.val_acc[-1] and 0 <= first.test <= 1
    moved = first.flipped()
    assert set(moved) == set(supermask.layers(first.model)) and all(0 <= v <= 1 for v in moved.values())
    assert any(v > 0 for v in moved.values())                         # training moved some mask
    fresh = sbp.build("sbp", 2, sparsity=0.5, width=0.25, seed=0, in_channels=1, image_size=28)
    assert supermask.masks(fresh).keys() == first.initial_masks.keys()
    assert all(torch.equal(supermask.masks(fresh)[n], m) for n, m in first.initial_masks.items())


def test_one_step_is_a_projected_gradient_step():
    torch.manual_seed(0)
    layer = SBPLinear(4, 2, bias=False, sparsity=0.5)
    x, target = torch.randn(3, 4), torch.zeros(3, 2)
    step = supermask.one_step(layer, x, target, lr=3.0)
    assert torch.allclose(step["ranking"], (step["ranking_before"] - 3.0 * step["grad"]).clamp(0, 1))
    assert int(step["mask"].sum()) == int(step["mask_before"].sum()) == layer.k
    assert float(step["ranking"].min()) >= 0 and float(step["ranking"].max()) <= 1


def test_selfchecks_accept_right_answers_and_reject_wrong_ones():
    from pruning import selfcheck

    def right(z, k):
        m = torch.zeros_like(z)
        m[torch.argsort(z, descending=True, stable=True)[:k]] = 1
        return m

    def smallest(z, k):
        return right(-z, k)

    assert selfcheck.check_projection(right) and not selfcheck.check_projection(smallest)
    assert not selfcheck.check_projection(lambda z, k: None)
    assert selfcheck.check_sbp_step(lambda z, g, w, lr: (z - lr * g * w).clamp(0, 1))
    assert not selfcheck.check_sbp_step(lambda z, g, w, lr: z - lr * g * w)          # no projection
    assert not selfcheck.check_sbp_step(lambda z, g, w, lr: (z - lr * g).clamp(0, 1))  # forgot w0
    assert selfcheck.check_random_overlap(0.3, sparsity=0.7)
    assert not selfcheck.check_random_overlap(0.7, sparsity=0.7) and not selfcheck.check_random_overlap(None, 0.7)


def test_supermask_plots():
    import matplotlib
    matplotlib.use("Agg")
    from pruning import plots
    z = torch.tensor([0.3, 0.9, 0.1])
    ax = plots.ranking_bars(z, supermask.topk_mask(z, 1), before=torch.zeros(3))
    assert len(ax.patches) == 3
    ax = plots.layer_bars({"a": {"features.0": 0.2, "classifier.0": 0.4}, "b": {"features.0": 0.1, "classifier.0": 0.3}},
                          hline=(0.5, "chance"))
    assert len(ax.patches) == 4


def test_admm_variant_adds_the_penalty_gradient_and_updates_v_u_rho():
    from pruning.methods.sbp import SBPADMMLinear
    torch.manual_seed(0)
    plain = SBPLinear(6, 3, bias=False, sparsity=0.5)
    torch.manual_seed(0)
    admm = SBPADMMLinear(6, 3, bias=False, sparsity=0.5)
    assert torch.equal(plain.scores, admm.scores) and torch.equal(admm.v, admm.mask().detach())
    admm.rho = 0.05
    admm.u.fill_(0.1)
    x, c = torch.randn(4, 6), torch.randn(4, 3)
    (plain(x) * c).sum().backward()
    (admm(x) * c).sum().backward()
    z = admm.scores.detach()
    assert torch.allclose(admm.scores.grad - plain.scores.grad, 0.05 * (z - admm.v + 0.1), atol=1e-6)   # eq. (6a)
    with torch.no_grad():
        admm.scores.add_(torch.randn(3, 6))                     # a step that leaves the box
    u_old = admm.u.clone()
    admm.project_()
    z = admm.scores.detach()
    assert float(z.min()) >= 0 and float(z.max()) <= 1                                          # clipped
    assert torch.equal(admm.v, supermask.topk_mask(z + u_old, admm.k))                           # eq. (6b)
    assert torch.allclose(admm.u, u_old + z - admm.v) and admm.rho == pytest.approx(0.05 * admm.growth)   # eq. (6c)
    with pytest.raises(ValueError, match="sbp-admm"):
        sbp.build("admm")
