import numpy as np
import pytest
import torch

from pruning import data as D


def test_shapes_dtypes_and_balance(cifar):
    assert cifar.x_train.shape == (500, 3, 32, 32) and cifar.x_train.dtype == torch.uint8
    assert cifar.x_val.shape == (200, 3, 32, 32)
    assert cifar.x_test.shape == (200, 3, 32, 32)
    for y, n in ((cifar.y_train, 50), (cifar.y_val, 20), (cifar.y_test, 20)):
        assert torch.bincount(y, minlength=10).tolist() == [n] * 10


def test_mnist_is_nchw(mnist):
    assert mnist.x_train.shape == (300, 1, 28, 28)


def test_val_is_carved_from_train_and_disjoint():
    full = D.load("mnist", val_per_class=10, seed=3)
    raw = np.load(D.find("mnist"))
    assert len(full.y_train) + len(full.y_val) == len(raw["y_train"])
    train_set = {bytes(x.numpy()) for x in full.x_train}
    assert not any(bytes(x.numpy()) in train_set for x in full.x_val)


@pytest.mark.parametrize("seed", [0, 5])
def test_every_validation_prefix_holds_every_class(seed):
    # code that scores on the first `limit` validation images (mending's search, the sensitivity scan, the
    # widgets) must see all ten classes, and so must the images after them (Evaluator.rescore): the source
    # files store images grouped by class, so a sorted split would hand a prefix of 500 only classes 0-4
    d = D.load("cifar10", per_class=10, val_per_class=100, seed=seed)
    for m in (1, 3, 10):
        assert torch.bincount(d.y_val[:m * 10], minlength=10).tolist() == [m] * 10
    for m in (100, 300, 500):
        assert torch.bincount(d.y_val[:m], minlength=10).tolist() == [m // 10] * 10
        assert torch.bincount(d.y_val[m:], minlength=10).tolist() == [100 - m // 10] * 10
    assert d.y_val[:10].tolist() != list(range(10))          # the class order inside a round is shuffled too
    assert torch.equal(d.x_val, torch.from_numpy(np.load(D.find("cifar10"))["x_train"][d.val_index.numpy()]).permute(0, 3, 1, 2))


def test_deterministic_under_seed_and_different_across_seeds():
    a = D.load("mnist", per_class=5, val_per_class=5, seed=1)
    b = D.load("mnist", per_class=5, val_per_class=5, seed=1)
    c = D.load("mnist", per_class=5, val_per_class=5, seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_val, b.x_val)
    assert not torch.equal(a.x_train, c.x_train)


def test_batches_normalised_augmented_and_deterministic(cifar):
    xb, yb = next(D.batches(cifar, "train", 64, seed=5))
    assert xb.shape == (64, 3, 32, 32) and xb.dtype == torch.float32 and yb.shape == (64,)
    assert abs(xb.mean().item()) < 0.6 and 0.5 < xb.std().item() < 1.5
    xb2, _ = next(D.batches(cifar, "train", 64, seed=5))
    assert torch.equal(xb, xb2)
    # CIFAR training batches are augmented: same images, same order, with and without augmentation
    aug, _ = next(D.batches(cifar, "train", 64, shuffle=False, seed=5))
    plain, _ = next(D.batches(cifar, "train", 64, shuffle=False, augmentation=False, seed=5))
    assert torch.equal(plain, D.normalize(cifar.x_train[:64], cifar.spec))
    assert not torch.equal(aug, plain) and aug.shape == plain.shape
    # evaluation batches are neither shuffled nor augmented
    xe, ye = next(D.batches(cifar, "test", 10))
    assert torch.equal(ye, cifar.y_test[:10])
    assert torch.allclose(xe, D.normalize(cifar.x_test[:10], cifar.spec))


def test_augment_crops_and_flips_per_image():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4).repeat(50, 1, 1, 1)
    out = D.augment(x, g, pad=1)
    assert out.shape == x.shape
    # every output is a crop of the (padded, possibly flipped) input: values come from the input or padding
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0}
    # images differ: offsets and flips are drawn per image
    assert len({bytes(o.numpy()) for o in out}) > 5
    # zero padding only: a crop at offset (1, 1) without flip reproduces the image exactly
    g = torch.Generator().manual_seed(0)
    assert any(torch.equal(o, x[i]) for i, o in enumerate(D.augment(x, g, pad=1)))
    # with no padding only flips remain: every image is itself or its mirror, and both happen
    out = D.augment(x, torch.Generator().manual_seed(1), pad=0)
    same = [torch.equal(o, x[i]) for i, o in enumerate(out)]
    mirrored = [torch.equal(o, x[i].flip(-1)) for i, o in enumerate(out)]
    assert all(s or m for s, m in zip(same, mirrored)) and any(same) and any(mirrored)


def test_batches_cover_split_once(mnist):
    seen = torch.cat([y for _, y in D.batches(mnist, "train", 64)])
    assert sorted(seen.tolist()) == sorted(mnist.y_train.tolist())


def test_missing_data_names_both_remedies(tmp_path, monkeypatch):
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(D, "SHARED_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(D, "CACHE_DIR", tmp_path / "cache")
    with pytest.raises(D.DataError) as e:
        D.load("mnist", download=False)
    msg = str(e.value)
    assert D.ENV_VAR in msg and "torchvision" in msg and "internet" in msg


def test_failed_download_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(D, "SHARED_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(D, "CACHE_DIR", tmp_path / "cache")

    def offline(name):
        raise OSError("Temporary failure in name resolution")
    monkeypatch.setattr(D, "_download", offline)
    with pytest.raises(D.DataError, match="Temporary failure in name resolution") as e:
        D.load("cifar10")
    assert "PRUNING_DATA_DIR" in str(e.value)


def test_corrupt_file_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    (tmp_path / "mnist.npz").write_bytes(b"this is not a zip archive")
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path))
    with pytest.raises(D.DataError, match="could not be read"):
        D.load("mnist")


def test_wrong_shape_is_an_error(tmp_path, monkeypatch):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((10, 32, 32), np.uint8), y_train=np.zeros(10, np.uint8),
             x_test=np.zeros((10, 32, 32), np.uint8), y_test=np.zeros(10, np.uint8))
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path))
    with pytest.raises(D.DataError, match="shape"):
        D.load("mnist", val_per_class=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load("imagenet")
    with pytest.raises(ValueError, match="per_class"):
        D.load("mnist", per_class=0)
    with pytest.raises(ValueError, match="fewer than"):
        D.load("mnist", per_class=100000)


def test_download_path_converts_torchvision_data_to_the_npz_layout(tmp_path, monkeypatch):
    """The online path, with torchvision's dataset class replaced by a stand-in (no network here)."""
    torchvision = pytest.importorskip("torchvision")
    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            calls.append((train, download))
            n = 30 if train else 10
            rng = np.random.default_rng(0 if train else 1)
            self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # numpy HWC, as torchvision's
            self.targets = [i % 10 for i in range(n)]                          # a list, as torchvision's

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(D, "SHARED_DIR", tmp_path / "nowhere")
    # the course layout in miniature: the first 2 training and 1 test image of each class (the real one: 2000 / 500)
    monkeypatch.setitem(D.LAYOUT, "cifar10", dict(train_per_class=2, test_per_class=1, jpeg_quality=75))
    data = D.load("cifar10", val_per_class=1)
    assert calls == [(True, True), (False, True)]
    assert (tmp_path / "cifar10.npz").is_file() and data.source == str(tmp_path / "cifar10.npz")
    assert data.x_train.shape == (10, 3, 32, 32) and data.x_test.shape == (10, 3, 32, 32)
    fake = FakeCIFAR10(None, False, False)
    assert torch.equal(data.y_test, torch.arange(10))                      # grouped by class
    jpeg = D._jpeg(fake.data[:1], 75)[0]                                   # through JPEG, as the offline copy
    assert torch.equal(data.x_test[0], torch.from_numpy(jpeg).permute(2, 0, 1))
    assert not torch.equal(data.x_test[0], torch.from_numpy(fake.data[0]).permute(2, 0, 1))
    # a second load reads the cached file, no second download
    D.load("cifar10", val_per_class=1)
    assert len(calls) == 3  # (the one extra call above is ours)
