import numpy as np
import pytest
import torch
from torch import nn

from pruning import measure, pipeline, surgery
from pruning.methods import hybrid, mean_variance as st, tucker
from pruning.models import build


# --------------------------------------------------------------------------- statistics clustering

def _two_groups(n_weak=5, n_strong=7):
    """A conv whose first filters have tiny weights (low variance) and the rest large ones; every filter
    has mean zero, so the variance alone separates them."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, n_weak + n_strong, 3, bias=False)
    with torch.no_grad():
        conv.weight[:n_weak].normal_(0, 0.01)
        conv.weight[n_weak:].normal_(0, 1.0)
        conv.weight -= conv.weight.mean(dim=(1, 2, 3), keepdim=True)
    return conv


def test_filter_statistics_are_mean_and_variance():
    w = torch.randn(6, 3, 3, 3)
    stats = st.filter_statistics(w)
    assert stats.shape == (6, 2)
    assert torch.allclose(stats[:, 0], w.flatten(1).double().mean(1))
    assert torch.allclose(stats[:, 1], w.flatten(1).double().var(1, unbiased=False))
    z = st.standardise(stats)
    assert torch.allclose(z.mean(0), torch.zeros(2, dtype=z.dtype), atol=1e-9)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(2, dtype=z.dtype))


def test_weak_cluster_is_the_low_variance_one_and_min_keep_holds():
    conv = _two_groups()
    lc = st.cluster_filters(conv.weight, k=2, seed=0)
    assert lc.removed == [0, 1, 2, 3, 4] and lc.keep == list(range(5, 12))
    mean_var = [lc.stats[lc.labels == c, 1].mean() for c in range(2)]
    assert mean_var[lc.weak] == min(mean_var)
    # a layer is never emptied: with every filter in the weak cluster the best min_keep survive
    assert len(st.cluster_filters(conv.weight[:2], k=2, min_keep=2).keep) == 2


def test_kmeans_split_is_deterministic_under_a_seed():
    model = build("vgg11", width=0.25)
    a = st.cluster_model(model, k=3, seed=4)
    b = st.cluster_model(model, k=3, seed=4)
    for name in a:
        assert np.array_equal(a[name].labels, b[name].labels) and a[name].keep == b[name].keep
    assert st.keep_clusters(model, seed=4) == st.keep_clusters(model, seed=4)


def test_cluster_errors_are_clear():
    conv = _two_groups()
    with pytest.raises(ValueError, match="k must be an integer between 2 and the number of filters"):
        st.cluster_filters(conv.weight, k=1)
    with pytest.raises(ValueError, match="between 2 and the number of filters \\(12\\)"):
        st.cluster_filters(conv.weight, k=13)
    with pytest.raises(ValueError, match="not prunable convs"):
        st.cluster_model(build("lenet5"), names=["fc1"])


def test_cluster_pruning_rebuilds_the_next_layer():
    model = build("lenet5").eval()
    keep = st.keep_clusters(model)
    pruned = surgery.remove_channels(model, keep)
    assert pruned.conv2.in_channels == len(keep["conv1"]) == pruned.conv1.out_channels
    assert pruned.fc1.in_features == 25 * len(keep["conv2"])
    assert pruned(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


# --------------------------------------------------------------------------- Tucker-2

@pytest.mark.parametrize("stride,padding,dilation,bias", [(1, 1, 1, False), (2, 2, 2, True), (1, 0, 1, True)])
def test_full_rank_tucker2_reproduces_the_layer(stride, padding, dilation, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 10, 3, stride=stride, padding=padding, dilation=dilation, bias=bias).double()
    x = torch.randn(2, 6, 11, 11, dtype=torch.float64)
    dec = tucker.decompose_conv(conv, (10, 6))
    assert isinstance(dec, tucker.Tucker2Conv) and dec.ranks == (10, 6)
    assert dec.core.stride == conv.stride and dec.core.padding == conv.padding and dec.core.dilation == conv.dilation
    assert (dec.last.bias is not None) == bias and dec.first.bias is None and dec.core.bias is None
    assert torch.allclose(dec(x), conv(x), atol=1e-5)
    assert torch.allclose(dec.full_weight(), conv.weight, atol=1e-10)
    # float32, as in a real model, within 1e-5 as well
    conv32 = conv.float()
    assert torch.allclose(tucker.decompose_conv(conv32, (10, 6))(x.float()), conv32(x.float()), atol=1e-5)


def test_error_falls_as_rank_rises():
    torch.manual_seed(0)
    w = torch.randn(16, 12, 3, 3)
    errors = [tucker.relative_error(w, (r, max(1, r * 3 // 4))) for r in (2, 4, 8, 12, 16)]
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-6


def test_decomposed_model_cost_matches_the_formula():
    torch.manual_seed(0)
    model = build("vgg11", width=0.25).eval()
    names = ["features.8", "features.15"]   # 32 -> 64 at 8x8 and 64 -> 128 at 4x4 (recorded below)
    ranks = {"features.8": (20, 9), "features.15": (11, 30)}
    small = tucker.decompose(model, ranks)
    in_hw = {}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda m, a, o, n=n: in_hw.__setitem__(n, tuple(a[0].shape[-2:]))) for n in names]
    model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    saved = {k: 0 for k in ("params", "macs")}
    for n in names:
        conv = model.get_submodule(n)
        before, after = tucker.cost(conv, None, in_hw[n]), tucker.cost(conv, ranks[n], in_hw[n])
        # the formula agrees with the counted replacement layer by layer
        counted = measure.layer_macs(small)
        assert sum(v for k, v in counted.items() if k.startswith(n + ".")) == after["macs"]
        assert measure.parameters(small.get_submodule(n)) == after["params"]
        assert measure.parameters(conv) == before["params"] and measure.layer_macs(model)[n] == before["macs"]
        for k in saved:
            saved[k] += before[k] - after[k]
    assert measure.parameters(model) - measure.parameters(small) == saved["params"]
    assert measure.macs(model) - measure.macs(small) == saved["macs"]
    assert model is not small and isinstance(model.get_submodule("features.8"), nn.Conv2d)


def test_ranks_out_of_range_give_clear_errors():
    conv = nn.Conv2d(4, 8, 3)
    for bad in [(0, 2), (9, 2), (2, 5), (2.5, 2), (3,)]:
        with pytest.raises(ValueError, match="ranks"):
            tucker.decompose_conv(conv, bad)
    with pytest.raises(ValueError, match="not a Conv2d"):
        tucker.decompose(build("lenet5"), {"fc1": (2, 2)})
    with pytest.raises(ValueError, match="rank rule"):
        tucker.choose_ranks(conv.weight, "svd")
    with pytest.raises(ValueError, match="energy"):
        tucker.ranks_energy(conv.weight, 1.5)
    with pytest.raises(ValueError, match="groups=1"):
        tucker.decompose_conv(nn.Conv2d(4, 8, 3, groups=2), (2, 2))


def test_vbmf_finds_the_rank_of_a_noisy_low_rank_matrix():
    g = torch.Generator().manual_seed(0)
    for rank, shape in [(5, (50, 200)), (3, (120, 40))]:
        y = torch.randn(shape[0], rank, generator=g) @ torch.randn(rank, shape[1], generator=g)
        noisy = y + 0.1 * torch.randn(*shape, generator=g)
        assert tucker.vbmf_rank(noisy) == rank
    # pure noise has no structure to keep
    assert tucker.vbmf_rank(torch.randn(40, 100, generator=g)) == 0
    with pytest.raises(ValueError, match="VBMF"):
        tucker.vbmf_rank(torch.randn(1, 10))


def test_energy_and_ratio_rules():
    torch.manual_seed(0)
    w = torch.randn(16, 8, 3, 3)
    assert tucker.ranks_energy(w, 1.0) == (16, 8)
    low, high = tucker.ranks_energy(w, 0.5), tucker.ranks_energy(w, 0.9)
    assert low[0] <= high[0] and low[1] <= high[1]
    s2 = torch.linalg.svdvals(tucker.unfold(w, 0)) ** 2
    assert s2[: high[0]].sum() / s2.sum() >= 0.9 > s2[: high[0] - 1].sum() / s2.sum()
    assert tucker.ranks_ratio(w, 0.5) == (8, 4) == tucker.choose_ranks(w, "ratio", 0.5)


# --------------------------------------------------------------------------- hybrid

def test_hybrid_prunes_low_and_decomposes_high_layers(cifar):
    torch.manual_seed(0)
    model = build("vgg11", width=0.25).eval()
    convs = model.conv_names()
    small, plan = hybrid.compress(model, split=3, rule="ratio", value=0.5)
    assert list(plan.pruned) == convs[:3] and list(plan.decomposed) == convs[3:]
    for n, (before, kept) in plan.pruned.items():
        assert small.get_submodule(n).out_channels == kept < before
    for n in convs[3:]:
        assert isinstance(small.get_submodule(n), tucker.Tucker2Conv)
    # the first decomposed conv reads the pruned channels of the last pruned one
    assert small.get_submodule(convs[3]).first.in_channels == plan.pruned[convs[2]][1]
    assert measure.parameters(small) < measure.parameters(model) and measure.macs(small) < measure.macs(model)
    with pytest.raises(ValueError, match="split must be an integer from 0 to 8"):
        hybrid.compress(model, split=9)
    # the shared path fine-tunes and measures a compressed model like a pruned one
    out = pipeline.finetune(model, small, cifar, epochs=1, samples_per_epoch=64, recal_batches=1, progress=False)
    assert 0 < out.params_removed < 1 and out.reduction == pytest.approx(1 - measure.macs(small) / measure.macs(model))


# --------------------------------------------------------------------------- widgets, plots, self-checks

def test_cluster_explorer_follows_layer_and_k():
    from pruning.widgets import ClusterExplorer
    model = build("lenet5").eval()
    ex = ClusterExplorer(model)
    ex.layer.value = "conv2"
    assert ex.clusters.name == "conv2" and len(ex.clusters.labels) == 16 and set(ex.clusters.labels) == {0, 1}
    ex.k.value = 4
    assert set(ex.clusters.labels) == {0, 1, 2, 3}
    assert ex.clusters.keep == st.cluster_filters(model.conv2.weight, k=4).keep
    ax = ex.figure.axes[0]
    assert "conv2, k = 4" in ax.get_title() and len(ax.collections) == 4


def test_tucker_explorer_reports_params_error_accuracy_latency(cifar):
    from pruning.widgets import TuckerExplorer
    torch.manual_seed(0)
    model = build("vgg11", width=0.25).eval()
    ex = TuckerExplorer(model, "features.11", cifar, limit=40, runs=3)   # a 64 -> 64 conv at 8x8
    assert ex.layer_input == (64, 8, 8)
    ex.slider.value = 64
    assert ex.ranks == (64, 64) and ex.error < 1e-5
    assert ex.accuracy == pytest.approx(__import__("pruning").train.evaluate(model, cifar, "val", limit=40), abs=0.03)
    ex.slider.value = 8
    assert ex.ranks == (8, 8) and ex.error > 0.1
    assert ex.params == {"original": 64 * 64 * 9, "tucker": 64 * 8 + 8 * 8 * 9 + 8 * 64}
    assert set(ex.latency_ms) == {"original", "tucker"} and all(v > 0 for v in ex.latency_ms.values())
    assert set(ex.history) == {64, 8} and ex.history[8]["error"] == ex.error
    assert ex.history[8]["params"] == ex.params["tucker"] and ex.history[64]["ranks"] == (64, 64)
    assert "(8, 8)" in ex.figure.axes[0].get_title()
    with pytest.raises(ValueError, match="not a Conv2d"):
        TuckerExplorer(model, "classifier", cifar)


def test_paper3_plots_draw():
    import matplotlib
    from pruning import plots
    conv = _two_groups()
    lc = st.cluster_filters(conv.weight)
    ax = plots.clusters(lc.stats, lc.labels, lc.weak)
    assert len(ax.collections) == 2 and "weak" in ax.get_legend().get_texts()[-1].get_text()
    fig = plots.filters(conv.weight, removed=lc.removed, ncols=6)
    titles = [a.get_title() for a in fig.axes]
    assert titles.count("#0 removed") == 1 and "#11" in titles
    ax = plots.singular_values(conv.weight, ranks=(4, 2))
    assert len(ax.lines) == 4
    core, u, v = tucker.tucker2(conv.weight, (4, 2))
    assert len(plots.tucker_factors(conv.weight, core, u, v).axes) == 5
    matplotlib.pyplot.close("all")


def test_tucker_selfchecks(capsys):
    from pruning import selfcheck
    conv = nn.Conv2d(64, 128, 3, bias=False)
    assert selfcheck.check_tucker_params(64 * 16 + 16 * 32 * 9 + 32 * 128, conv, (32, 16))
    assert selfcheck.check_tucker_params(69_632, nn.Conv2d(256, 256, 3, bias=False), (64, 64))  # the answer in lessons/solutions/03_statistics_tucker.md
    assert not selfcheck.check_tucker_params(64 * 16 + 16 * 32 * 9, conv, (32, 16))
    assert not selfcheck.check_tucker_params(None, conv, (32, 16))

    def hosvd(w, ranks):  # the solution in lessons/solutions/03_statistics_tucker.md
        u = torch.linalg.svd(w.flatten(1), full_matrices=False)[0][:, :ranks[0]]
        v = torch.linalg.svd(w.transpose(0, 1).flatten(1), full_matrices=False)[0][:, :ranks[1]]
        return torch.einsum("oiyx,oa,ib->abyx", w, u, v), u, v

    assert selfcheck.check_hosvd(hosvd)
    assert "Correct" in capsys.readouterr().out
    assert not selfcheck.check_hosvd(lambda w, r: None)
    assert not selfcheck.check_hosvd(lambda w, r: (w[: r[0], : r[1]], torch.eye(12)[:, : r[0]], torch.eye(8)[:, : r[1]]))
    assert not selfcheck.check_hosvd(lambda w, r: (torch.zeros(r[0], r[1], 3, 3), torch.ones(12, r[0]), torch.ones(8, r[1])))
