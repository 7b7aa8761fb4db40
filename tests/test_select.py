import pytest
import torch

from pruning import measure, select, surgery
from pruning.methods.baselines import l1_scores
from pruning.models import build


def test_top_indices_and_ratio():
    s = torch.tensor([0.5, 0.1, 0.9, 0.3])
    assert select.top_indices(s, 2) == [0, 2]
    assert select.keep_by_ratio({"a": s}, 0.5) == {"a": [0, 2]}
    assert select.keep_by_ratio({"a": s}, 0.0) == {"a": [0, 1, 2, 3]}
    assert select.keep_by_ratio({"a": s}, 0.99) == {"a": [2]}  # never empties a layer


def test_threshold_keeps_at_least_one():
    s = {"a": torch.tensor([0.5, 0.1, 0.9]), "b": torch.tensor([0.1, 0.2])}
    assert select.keep_by_threshold(s, 0.4) == {"a": [0, 2], "b": [1]}
    assert select.keep_by_threshold(s, {"a": 0.0, "b": 0.15}) == {"a": [0, 1, 2], "b": [1]}


@pytest.mark.parametrize("target", [0.2, 0.5, 0.7])
def test_keep_for_macs_meets_target_within_one_channel(target):
    m = build("vgg16", width=0.25)
    keep = select.keep_for_macs(m, l1_scores(m), target)
    small = surgery.remove_channels(m, keep)
    got = 1 - measure.macs(small) / measure.macs(m)
    assert got >= target
    # not overshooting by more than the most expensive single channel of any layer
    per = measure.layer_macs(m)
    widths = surgery.widths(m)
    worst = max(per[n] / widths[n] for n in widths) * 2 / measure.macs(m)
    assert got - target <= worst


def test_a_mac_aware_ranking_meets_the_budget_and_spends_it_on_the_costly_channels():
    m = build("vgg16", width=0.25)
    cost = select.channel_costs(m)
    per, widths = measure.layer_macs(m), surgery.widths(m)
    first = next(iter(widths))
    assert cost[first] == pytest.approx(sum(per[n] for g in m.channel_groups() if g.conv == first for n in g.members)
                                        / widths[first])
    flat = {n: torch.ones(w) for n, w in widths.items()}            # every channel scores alike: only the cost ranks
    keep = select.keep_for_macs(m, flat, 0.3, per_mac=True)
    assert 1 - measure.macs(surgery.remove_channels(m, keep)) / measure.macs(m) >= 0.3
    cut = {n: widths[n] - len(k) for n, k in keep.items()}
    costly, cheap = max(cost, key=cost.get), min(cost, key=cost.get)
    assert cut[costly] > 0 and cut[cheap] == 0


def test_keep_for_macs_impossible_target():
    m = build("lenet5")
    with pytest.raises(ValueError, match="cannot remove"):
        select.keep_for_macs(m, {"conv1": l1_scores(m)["conv1"]}, 0.9, input_size=(1, 28, 28))


def test_normalize():
    s = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([10.0, 40.0])}
    n = select.normalize_per_layer(s)
    assert n["a"].tolist() == [0.5, 1.0] and n["b"].tolist() == [0.25, 1.0]
    with pytest.raises(ValueError):
        select.normalize_per_layer(s, "zscore")


def test_uniform_ratio_for_a_macs_target():
    model = build("vgg16", width=0.25)
    r, kept = select.uniform_ratio_for(model, 0.5)
    assert select.macs_removed(model, {n: list(range(k)) for n, k in kept.items()}) >= 0.5
    # a hair less ratio misses the target (r is the smallest, up to flooring)
    r2, kept2 = select.uniform_ratio_for(model, 0.45)
    assert r2 <= r and sum(kept2.values()) >= sum(kept.values())
    with pytest.raises(ValueError, match="at most"):
        select.uniform_ratio_for(build("lenet5"), 0.99, input_size=(1, 28, 28))


def test_uniform_ratio_for_a_parameter_target():
    model = build("vgg11", width=0.25)
    r, kept = select.uniform_ratio_for(model, 0.6, metric="params", iterations=20)
    small = surgery.remove_channels(model, {n: list(range(k)) for n, k in kept.items()})
    assert 1 - measure.parameters(small) / measure.parameters(model) >= 0.6
    # one channel more in every layer misses the target
    grown = surgery.remove_channels(model, {n: list(range(min(k + 1, surgery.widths(model)[n]))) for n, k in kept.items()})
    assert 1 - measure.parameters(grown) / measure.parameters(model) < 0.6
    with pytest.raises(ValueError, match="metric"):
        select.uniform_ratio_for(model, 0.5, metric="latency")


def test_keep_like_matches_widths_with_other_scores():
    import torch as _t
    scores = {"a": _t.tensor([3.0, 1.0, 2.0, 0.5]), "b": _t.tensor([0.1, 0.9])}
    assert select.keep_like(scores, {"a": [1, 3], "b": [0]}) == {"a": [0, 2], "b": [1]}
    with pytest.raises(ValueError, match="no scores"):
        select.keep_like(scores, {"c": [0]})


def test_round_widths_rounds_each_count_up_keeping_the_best_and_never_past_the_layer():
    import torch as _t
    scores = {"a": _t.arange(20.0), "b": _t.tensor([5.0, 1.0, 4.0])}
    keep = {"a": [19, 18, 17], "b": [0]}
    out = select.round_widths(scores, keep, 8)
    assert out == {"a": list(range(12, 20)), "b": [0, 1, 2]}     # 3 -> 8 best of a; 1 -> 8 capped at 3 in b
    assert select.round_widths(scores, {"a": list(range(16))}, 8) == {"a": list(range(16))}   # already a multiple
    with pytest.raises(ValueError, match="positive integer"):
        select.round_widths(scores, keep, 0)
