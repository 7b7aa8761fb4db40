import matplotlib
import pytest
import torch

from pruning import measure, pipeline, plots, select, selfcheck
from pruning.methods import baselines, gdp
from pruning.models import build


def test_prune_and_finetune_records_every_stage(cifar):
    torch.manual_seed(0)
    model = build("conv2")
    before = {n: p.clone() for n, p in model.state_dict().items()}
    keep = select.keep_by_ratio(baselines.l1_scores(model), 0.5)
    out = pipeline.prune_and_finetune(model, keep, cifar, epochs=2, samples_per_epoch=64, recal_batches=1, progress=False)
    # the dense model is untouched, the pruned one has the kept widths and measured MACs
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())
    assert out.macs == measure.macs(out.model) < measure.macs(model)
    assert out.reduction == pytest.approx(select.macs_removed(model, keep), abs=1e-6)
    assert len(out.history.val_acc) == 2 and len(out.val_curve()) == 3
    assert all(0 <= a <= 1 for a in (out.val_after_surgery, out.val_after_recal, out.test))
    assert out.images_per_epoch == 64 and not out.model.training


def test_compare_uses_the_same_budget_and_table_lists_each(cifar):
    torch.manual_seed(0)
    model = build("conv2")
    keeps = {"L1": select.keep_by_ratio(baselines.l1_scores(model), 0.25),
             "random": select.keep_by_ratio(baselines.random_scores(model), 0.25)}
    outs = pipeline.compare(model, keeps, cifar, epochs=0, recal_batches=1, progress=False)
    assert set(outs) == {"L1", "random"}
    assert outs["L1"].macs == outs["random"].macs  # same ratio per layer: same MACs
    assert outs["L1"].history.val_acc == []
    text = pipeline.table(outs, dense_test=0.5)
    assert text.count("\n") == 3 and "| L1 |" in text and "| random |" in text
    assert "after fine-tuning |" not in text.splitlines()[0].replace("**test: after fine-tuning**", "")   # nothing measured
    assert len({line.count("|") for line in text.splitlines()}) == 1                  # every row as wide as the header


def test_val_images_limits_only_the_two_validation_columns(cifar, monkeypatch):
    torch.manual_seed(0)
    model = build("conv2")
    keep = select.keep_by_ratio(baselines.l1_scores(model), 0.5)
    seen = []
    real = pipeline.evaluate
    monkeypatch.setattr(pipeline, "evaluate", lambda m, d, split="test", **kw: seen.append((split, kw.get("limit")))
                        or real(m, d, split, **kw))
    out = pipeline.prune_and_finetune(model, keep, cifar, epochs=1, samples_per_epoch=64, recal_batches=1,
                                      val_images=20, progress=False)
    assert seen == [("val", 20), ("val", 20)]                       # after surgery, after recalibration
    assert len(out.test_correct) == len(cifar.y_test)               # the test split stays whole
    seen.clear()
    pipeline.prune_and_finetune(model, keep, cifar, epochs=0, recal_batches=1, progress=False)
    assert seen == [("val", None), ("val", None)]


def test_pfec_vgg16_recipe_matches_pfec_flops():
    model = build("vgg16", width=0.25)
    keep = baselines.pfec_vgg16_keep(model, 0.5)
    convs = list(keep)
    assert len(convs) == 7 and convs[0] == "features.0"
    assert all(len(keep[c]) == model.get_submodule(c).out_channels // 2 for c in convs)
    # PFEC reports 34.2% fewer FLOPs for VGG-16-pruned-A; the layout gives the same share at any width
    assert select.macs_removed(model, keep) == pytest.approx(0.342, abs=0.006)
    with pytest.raises(ValueError, match="13-conv"):
        baselines.pfec_vgg16_keep(build("conv4"))


def test_selfcheck_layer_threshold(capsys):
    assert selfcheck.check_layer_threshold(lambda s, a: None) is False
    assert "No answer yet" in capsys.readouterr().out
    right = lambda s, a: gdp.keep_alpha({"x": s}, a)["x"]
    assert selfcheck.check_layer_threshold(right) is True
    sample_std = lambda s, a: torch.nonzero(s >= s.mean() - a * s.std()).flatten()
    assert selfcheck.check_layer_threshold(sample_std) is False


def test_selfcheck_taylor_scores(capsys):
    model = build("lenet5")
    grads = {n: torch.rand_like(m.weight) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    assert selfcheck.check_taylor_scores(lambda w, a: (w.abs() * a).mean(dim=(1, 2, 3)), model, grads) is True
    assert selfcheck.check_taylor_scores(lambda w, a: (w.abs() * a).sum(dim=(1, 2, 3)), model, grads) is False
    assert selfcheck.check_taylor_scores(lambda w, a: None, model, grads) is False


def test_new_plots_draw(tmp_path):
    matplotlib.use("Agg")
    model = build("conv2")
    grads = {n: torch.rand_like(m.weight) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    ax = plots.layer_distributions(grads, ylabel="A")
    assert len(ax.get_xticklabels()) == len(grads)
    s = torch.tensor([3.0, 1.0, 2.0, 0.5])
    ax = plots.scores_with_threshold(s, 1.5)
    assert [p.get_facecolor()[:3] for p in ax.patches].count(matplotlib.colors.to_rgb("tab:red")) == 2
    w = {"a": 10, "b": 20}
    ax = plots.kept_fractions(w, {"x": {"a": 5, "b": 20}})
    assert list(ax.lines[0].get_ydata()) == [0.5, 1.0]
    ax = plots.macs_per_layer({"a": 2e6, "b": 1e6}, {"a": 1e6})
    assert len(ax.patches) == 4
    ax = plots.line_chart({"GDP": [0.5, 0.6]}, xs=[0, 100], hline=(0.7, "dense"))
    assert len(ax.lines) == 2


def test_lesson_01_solutions_pass_the_checks():
    """The exercise solutions in lessons/solutions/01_gdp.md pass the notebook's self-checks."""
    def my_keep(scores, alpha):
        tau = scores.mean() - alpha * scores.std(unbiased=False)
        keep = torch.nonzero(scores >= tau).flatten().tolist()
        return keep or [int(scores.argmax())]

    assert selfcheck.check_layer_threshold(my_keep)
    model = build("lenet5")
    grads = {n: torch.rand_like(m.weight) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    assert selfcheck.check_taylor_scores(lambda w, a: (w.abs() * a).mean(dim=(1, 2, 3)), model, grads)
    assert selfcheck.conv_macs(67, 220, 3, 4) == 220 * 67 * 9 * 16 == 2_122_560
