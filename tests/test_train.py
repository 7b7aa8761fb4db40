import math

import pytest
import torch

from pruning import models, surgery, train
from pruning.methods.baselines import l1_scores, sensitivity_scan
from pruning.select import keep_by_ratio


def test_fit_learns_and_is_deterministic(mnist):
    accs, states = [], []
    for _ in range(2):
        train.seed_everything(0)
        m = models.build("lenet5")
        h = train.fit(m, mnist, 3, lr=0.05, batch_size=32, progress=False)
        accs.append(train.evaluate(m, mnist, "test"))
        states.append(m.state_dict())
        assert len(h.train_loss) == 3 and h.train_loss[-1] < h.train_loss[0]
    assert accs[0] == accs[1] > 0.5
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_fit_until_plateau_stops_and_keeps_the_best_epoch(mnist):
    train.seed_everything(0)
    m = models.build("lenet5")
    h, best = train.fit_until_plateau(m, mnist, lr=0.05, batch_size=32, patience=2, max_epochs=8, progress=False)
    n = len(h.val_acc)
    assert 1 <= best <= n <= 8 and h.val_acc[best - 1] == max(h.val_acc)
    # it stopped because of the patience rule (the best epoch is `patience` behind) or at the epoch limit
    assert n == 8 or n - best == 2
    assert train.evaluate(m, mnist, "val") == pytest.approx(h.val_acc[best - 1])     # the best weights are back
    assert len(set(h.lr)) == 1                                                       # a constant rate
    with pytest.raises(ValueError, match="patience"):
        train.fit_until_plateau(m, mnist, patience=0)


def test_fit_until_plateau_follows_the_patience_rule(mnist, monkeypatch):
    # a scripted validation curve: best at epoch 2, then two epochs without improvement (a tie is none) -> stop
    curve = iter([0.5, 0.6, 0.6, 0.55, 0.9])
    states = []

    def scripted(model, data, split="test", **kw):
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(curve)

    monkeypatch.setattr(train, "evaluate", scripted)
    m = models.build("lenet5")
    h, best = train.fit_until_plateau(m, mnist, lr=0.05, batch_size=64, patience=2, max_epochs=10, progress=False)
    assert h.val_acc == [0.5, 0.6, 0.6, 0.55] and best == 2
    assert all(torch.equal(v, states[1][k]) for k, v in m.state_dict().items())      # epoch 2's weights are back


def test_masks_stay_in_force_during_fit(mnist):
    m = surgery.mask_weights(models.build("lenet5"), 0.6)
    masks = {n: mod.weight_mask.clone() for n, mod in m.named_modules() if hasattr(mod, "weight_mask")}
    train.fit(m, mnist, 1, lr=0.05, batch_size=32, progress=False, eval_val=False)
    for n, mask in masks.items():
        w = m.get_submodule(n).weight
        assert (w[mask == 0] == 0).all() and (w[mask == 1] != 0).float().mean() > 0.99


def test_recalibrate_bn_sets_the_batch_statistics(cifar):
    """After recalibration every BN's running mean/var equal the mean/var of its input over the batches."""
    from pruning.data import batches
    train.seed_everything(0)
    m = models.build("vgg11", width=0.25)
    pruned = surgery.remove_channels(m, keep_by_ratio(l1_scores(m), 0.3)).eval()
    train.recalibrate_bn(pruned, cifar, num_batches=3, batch_size=50, seed=7)
    bn = pruned.features[1]  # the first BN: its input (the conv's output) does not depend on any BN
    seen = []
    hook = bn.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    with torch.no_grad():  # the same batches, in eval mode with the new statistics
        for x, _ in batches(cifar, "train", 50, train=False, shuffle=True, augmentation=False, limit=150, seed=7):
            pruned(x)
    hook.remove()
    acts = torch.cat(seen)
    per_batch_var = torch.stack([a.var(dim=(0, 2, 3), unbiased=True) for a in seen])
    assert torch.allclose(bn.running_mean, acts.mean(dim=(0, 2, 3)), atol=1e-4)
    assert torch.allclose(bn.running_var, per_batch_var.mean(0), rtol=1e-3, atol=1e-5)
    assert not pruned.training and bn.momentum == 0.1  # modes and momentum restored
    import pytest
    with pytest.raises(ValueError, match="num_batches"):
        train.recalibrate_bn(pruned, cifar, num_batches=0)


def test_sensitivity_scan_shape(cifar):
    m = models.build("vgg11", width=0.25).eval()
    scan = sensitivity_scan(m, cifar, ratios=(0.25, 0.5), layers=m.conv_names()[:2], limit=50, progress=False)
    assert list(scan) == m.conv_names()[:2] and all(len(v) == 2 for v in scan.values())
    first = m.conv_names()[0]
    by_hand = train.evaluate(surgery.remove_channels(m, keep_by_ratio({first: l1_scores(m)[first]}, 0.5)),
                             cifar, "val", limit=50)
    assert scan[first][1] == by_hand


def test_after_step_runs_after_every_optimiser_step(mnist):
    model = models.build("lenet5")
    calls = []
    train.fit(model, mnist, epochs=2, batch_size=100, progress=False, eval_val=False,
              after_step=lambda m: calls.append(m is model))
    assert len(calls) == 2 * 3 and all(calls)   # 300 training images in batches of 100, twice


def test_device_of_follows_the_first_parameter_else_cpu():
    cpu = torch.device("cpu")
    assert train.device_of(models.build("lenet5")) == cpu
    assert train.device_of(torch.nn.ReLU()) == cpu                       # no parameter, no buffer
    assert train.device_of(torch.nn.Sequential()) == cpu
    assert train.device_of(torch.nn.BatchNorm2d(3, affine=False)) == cpu  # buffers only
    assert train.device_of(models.build("lenet5").to("meta")) == torch.device("meta")


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")


@needs_gpu
def test_fit_and_evaluate_follow_a_model_on_the_gpu(mnist):
    """The loops move the CPU batches to the model's device: a model moved to the GPU trains and evaluates there."""
    train.seed_everything(0)
    model = models.build("lenet5").to("cuda")
    assert train.device_of(model).type == "cuda"
    history = train.fit(model, mnist, 1, lr=0.05, schedule="cosine", batch_size=32, samples_per_epoch=128,
                        progress=False)
    assert len(history.train_loss) == 1 and math.isfinite(history.train_loss[0])
    assert isinstance(history.val_acc[0], float) and 0.0 <= history.val_acc[0] <= 1.0
    acc = train.evaluate(model, mnist, "test")
    assert isinstance(acc, float) and 0.0 <= acc <= 1.0
    assert all(p.device.type == "cuda" for p in model.parameters())     # fit and evaluate left it there
    on_cpu = train.evaluate(model.to("cpu"), mnist, "test")
    assert abs(on_cpu - acc) <= 0.05                                    # the same model, up to TF32 rounding


@needs_gpu
def test_recalibration_and_scores_run_on_the_gpu(cifar):
    """BN recalibration, GDP's gradient accumulation and the Hutchinson and Fisher diagonals on a GPU model."""
    from pruning.methods import gdp, sensitivity
    train.seed_everything(0)
    model = models.build("vgg11", width=0.25).to("cuda")
    train.recalibrate_bn(model, cifar, num_batches=2, batch_size=50)
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.running_mean.device.type == "cuda" and torch.isfinite(bn.running_var).all()
    grads = gdp.accumulate_gradients(model, cifar, num_batches=2, batch_size=50, progress=False)
    names = model.conv_names()[:2]
    hutch = sensitivity.hessian_diagonal(model, cifar, num_batches=1, batch_size=32, names=names, progress=False)
    fisher = sensitivity.fisher_diagonal(model, cifar, num_batches=1, batch_size=16, names=names, progress=False)
    for scores in (grads, hutch, fisher):
        assert all(v.device.type == "cuda" and torch.isfinite(v).all() for v in scores.values())


@pytest.mark.parametrize("steps", range(1, 10))
def test_one_cycle_schedule_runs_for_any_number_of_steps(mnist, steps):
    """torch's OneCycleLR divides by zero for exactly 4 steps with a quarter of warm-up; fit must not."""
    model = models.build("lenet5")
    history = train.fit(model, mnist, epochs=1, lr=0.05, batch_size=16, samples_per_epoch=16 * steps,
                  eval_val=False, progress=False)
    assert len(history.train_loss) == 1 and math.isfinite(history.train_loss[0])
