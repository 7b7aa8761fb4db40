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


def test_masks_stay_in_force_during_fit(mnist):
    m = surgery.mask_weights(models.build("lenet5"), 0.6)
    masks = {n: mod.weight_mask.clone() for n, mod in m.named_modules() if hasattr(mod, "weight_mask")}
    train.fit(m, mnist, 1, lr=0.05, batch_size=32, progress=False, eval_val=False)
    for n, mask in masks.items():
        w = m.get_submodule(n).weight
        assert (w[mask == 0] == 0).all() and (w[mask == 1] != 0).float().mean() > 0.99


def test_recalibrate_bn_restores_accuracy_after_pruning(cifar):
    train.seed_everything(0)
    m = models.build("vgg11", width=0.25)
    train.fit(m, cifar, 4, lr=0.05, batch_size=50, progress=False, eval_val=False)
    pruned = surgery.remove_channels(m, keep_by_ratio(l1_scores(m), 0.3)).eval()
    before = pruned.features[1].running_mean.clone()
    train.recalibrate_bn(pruned, cifar, num_batches=4, batch_size=50)
    assert not torch.allclose(before, pruned.features[1].running_mean)
    assert not pruned.training and pruned.features[1].momentum == 0.1


def test_sensitivity_scan_shape(cifar):
    m = models.build("vgg11", width=0.25).eval()
    scan = sensitivity_scan(m, cifar, ratios=(0.25, 0.5), layers=m.conv_names()[:2], limit=50, progress=False)
    assert list(scan) == m.conv_names()[:2] and all(len(v) == 2 for v in scan.values())
    assert all(0 <= a <= 1 for v in scan.values() for a in v)
