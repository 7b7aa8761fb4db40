import random

import pytest
import torch

from pruning import measure, select, surgery, train
from pruning.methods import baselines, mending
from pruning.models import build


def _space(model, reduction=0.5, **kw):
    base = mending.prepruned_widths(model, reduction)
    budget = int((1 - reduction) * measure.macs(model))
    return mending.SearchSpace(model, base, budget, **kw)


def test_prepruned_widths_meet_the_target_both_rules():
    model = build("vgg16", width=0.25)
    dense = measure.macs(model)
    for rule in ("uniform", "pfec"):
        w = mending.prepruned_widths(model, 0.3, rule=rule)
        small = surgery.remove_channels(model, {n: list(range(k)) for n, k in w.items()})
        assert 1 - measure.macs(small) / dense >= 0.3
    pfec = mending.prepruned_widths(model, 0.3, rule="pfec")
    full = surgery.widths(model)
    assert all(pfec[n] == full[n] for n in list(full)[1:7])   # PFEC leaves convs 2-7 whole
    with pytest.raises(ValueError, match="rule"):
        mending.prepruned_widths(model, 0.3, rule="greedy")
    with pytest.raises(ValueError, match="cannot remove"):
        mending.prepruned_widths(model, 0.95, rule="pfec")


def test_repair_always_lands_within_budget():
    model = build("vgg11", width=0.25)
    space = _space(model, 0.5)
    rng = random.Random(0)
    assert space.macs(space.zero()) <= space.budget
    for _ in range(50):
        genes = space.repair(space.sample(rng), rng)
        assert space.macs(genes) <= space.budget
        assert all(-space.span <= d <= space.span for d in genes)
    # the most expensive candidate is repaired too; after repair no single layer can grow within budget
    top = space.repair((space.span,) * len(space.names), rng)
    assert space.macs(top) <= space.budget
    for i, d in enumerate(top):
        if d < space.span:
            assert space.macs(top[:i] + (d + 1,) + top[i + 1:]) > space.budget
    # without filling, a candidate within budget is left alone
    lean = mending.SearchSpace(model, space.base, space.budget, fill=False)
    assert lean.repair(lean.zero(), rng) == lean.zero()
    # widths follow c0 + d * step inside [1, full]
    w = space.widths((1,) * len(space.names))
    assert all(w[n] == min(space.full[n], space.base[n] + space.steps[n]) for n in space.names)
    with pytest.raises(ValueError, match="integers in -2..2"):
        space.widths((3,) * len(space.names))
    with pytest.raises(ValueError, match="over the budget"):
        mending.SearchSpace(model, space.base, budget=10)


def test_macs_of_a_candidate_match_surgery():
    model = build("vgg11", width=0.25)
    space = _space(model, 0.4)
    genes = space.repair(space.sample(random.Random(3)), random.Random(3))
    small = surgery.remove_channels(model, {n: list(range(k)) for n, k in space.widths(genes).items()})
    assert space.macs(genes) == measure.macs(small)


def test_inherited_filters_keep_the_ranking_order(cifar):
    model = build("vgg11", width=0.25).eval()
    ev = mending.Evaluator(model, cifar, recal_batches=1, limit=20)
    scores = baselines.l1_scores(model)
    small, large = surgery.widths(model), surgery.widths(model)
    small = {n: max(1, w // 2) for n, w in small.items()}
    k_small, k_large = ev.keep(small), ev.keep({n: max(1, 3 * w // 4) for n, w in large.items()})
    for n in small:
        assert k_small[n] == select.top_indices(scores[n], small[n])
        assert set(k_small[n]) <= set(k_large[n])        # a wider layer keeps a superset: the same ranking
        ranked = torch.argsort(-scores[n], stable=True)[: small[n]].tolist()
        assert sorted(ranked) == k_small[n]


def test_evaluation_cache_hits(cifar):
    model = build("vgg11", width=0.25).eval()
    ev = mending.Evaluator(model, cifar, recal_batches=1, limit=20)
    w = mending.prepruned_widths(model, 0.3)
    a = ev(w)
    b = ev(dict(w))
    assert a == b and ev.calls == 2 and ev.hits == 1 and len(ev.cache) == 1


def test_rescore_uses_only_the_images_the_search_did_not_score(cifar):
    model = build("vgg11", width=0.25).eval()
    ev = mending.Evaluator(model, cifar, recal_batches=1, limit=20)
    w = mending.prepruned_widths(model, 0.3)
    held_out = ev.rescore(w)
    n_val = len(cifar.y_val)
    assert held_out.dtype == torch.bool and len(held_out) == n_val - 20
    # the same model as the search scored (seeded recalibration): its correctness on all images splits into the two
    everything = train.correct(ev.build(w), cifar, "val")
    assert torch.equal(everything[20:], held_out)
    assert ev(w) == pytest.approx(everything[:20].double().mean().item())
    with pytest.raises(ValueError, match="none is left"):
        mending.Evaluator(model, cifar, recal_batches=1, limit=None).rescore(w)
    with pytest.raises(ValueError, match="no images after"):
        mending.Evaluator(model, cifar, recal_batches=1, limit=n_val).rescore(w)


def test_searches_are_deterministic_and_within_budget(cifar):
    model = build("vgg11", width=0.25).eval()
    space = _space(model, 0.5)
    fake = lambda w: sum(v * (i + 1) for i, v in enumerate(w.values())) / 1e4   # a cheap stand-in fitness
    a = mending.evolve(space, fake, generations=3, population=5, parents=2, seed=1, progress=False)
    b = mending.evolve(space, fake, generations=3, population=5, parents=2, seed=1, progress=False)
    assert [[c.genes for c in g] for g in a.generations] == [[c.genes for c in g] for g in b.generations]
    assert a.evaluations == 20 and a.generations[0][0].genes == space.zero()
    assert all(c.macs <= space.budget for g in a.generations for c in g)
    best = a.best_so_far()
    assert all(x <= y for x, y in zip(best, best[1:])) and best[-1] == a.best.fitness
    r = mending.random_search(space, fake, generations=3, population=5, seed=1, progress=False)
    assert r.evaluations == a.evaluations and all(c.macs <= space.budget for g in r.generations for c in g)
    assert [[c.genes for c in g] for g in r.generations] == \
        [[c.genes for c in g] for g in mending.random_search(space, fake, 3, 5, seed=1, progress=False).generations]
    # a real evaluator works the same way, through the cache
    ev = mending.Evaluator(model, cifar, recal_batches=1, limit=20)
    res = mending.evolve(space, ev, generations=1, population=3, parents=2, seed=0, progress=False)
    assert res.evaluations == 6 and ev.calls == 6 and 0 <= res.best.fitness <= 1


def test_greedy_path_and_grid_on_lenet(mnist):
    model = build("lenet5").eval()
    ev = mending.Evaluator(model, mnist, recal_batches=0, limit=50)
    budget = measure.macs(model, (1, 28, 28)) // 2
    path = mending.greedy(model, ev, budget, input_size=(1, 28, 28), progress=False)
    assert path[0].macs == measure.macs(model, (1, 28, 28)) and path[-1].macs <= budget < path[-2].macs
    assert all(sum(b.widths.values()) == sum(a.widths.values()) - 1 for a, b in zip(path, path[1:]))
    g = mending.grid(model, ev, input_size=(1, 28, 28))
    assert len(g) == 6 * 16 and g[(6, 16)].macs == path[0].macs
    best_within = max((c for c in g.values() if c.macs <= budget), key=lambda c: c.fitness)
    assert best_within.fitness >= path[-1].fitness          # the grid is the ground truth
    with pytest.raises(ValueError, match="tiny models"):
        mending.grid(build("vgg11", width=0.25), ev)


def test_search_explorer_browses_generations():
    from pruning.widgets import SearchExplorer
    model = build("vgg11", width=0.25).eval()
    space = _space(model, 0.5)
    fake = lambda w: sum(v * (i + 1) for i, v in enumerate(w.values())) / 1e4
    res = mending.evolve(space, fake, generations=2, population=4, parents=2, seed=0, progress=False)
    ex = SearchExplorer(res, space.base, space.full, space.budget)
    ex.generation.value = 1
    best1 = max(res.generations[1], key=lambda c: c.fitness)
    assert ex.candidate.fitness == best1.fitness
    ex.index.value = 3
    assert ex.candidate.fitness == min(c.fitness for c in res.generations[1])
    ex.generation.value = 0
    assert ex.candidate in res.generations[0]
    title = ex.figure.axes[0].get_title()
    assert "generation 0, candidate 3" in title


def test_mending_selfchecks(capsys):
    from pruning import selfcheck
    assert selfcheck.check_space_size(5 ** 13) and not selfcheck.check_space_size(13 * 5)
    assert not selfcheck.check_space_size(None)

    def repair(genes, macs, budget, span, rng):   # the solution in lessons/solutions/04_mending.md
        out = list(genes)
        while macs(out) > budget:
            i = rng.choice([i for i, d in enumerate(out) if d > -span])
            out[i] -= 1
        return tuple(out)

    assert selfcheck.check_repair(repair)
    assert not selfcheck.check_repair(lambda g, m, b, s, r: tuple(-s for _ in g))       # lowers what fits already
    assert not selfcheck.check_repair(lambda g, m, b, s, r: g)                           # ignores the budget
    assert not selfcheck.check_repair(lambda g, m, b, s, r: None)
    assert "No answer yet" in capsys.readouterr().out


def test_width_grid_plot(mnist):
    import matplotlib
    from pruning import plots
    model = build("lenet5").eval()
    ev = mending.Evaluator(model, mnist, recal_batches=0, limit=20)
    g = mending.grid(model, ev, input_size=(1, 28, 28))
    budget = measure.macs(model, (1, 28, 28)) // 3
    path = mending.greedy(model, ev, budget, input_size=(1, 28, 28), progress=False)
    ax = plots.width_grid(g, budget, path)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "over budget" and labels[1] == "greedy path" and labels[-1].startswith("best within budget")
    matplotlib.pyplot.close("all")
