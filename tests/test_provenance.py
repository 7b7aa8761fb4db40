"""Every shipped checkpoint's training images stay out of every split used to evaluate it or to choose anything,
on the offline route and on a simulated download route (fake torchvision datasets, no internet)."""
import numpy as np
import pytest
import torch

from pruning import data, detector, provenance, zoo

CHECKPOINTS = ["lenet5-mnist", "vgg16-cifar10", "resnet20-cifar10"]


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_the_recipe_splits_hold_no_training_image(name):
    d = zoo.dataset(name)
    assert d.provenance is not None and d.provenance.same_pixels and zoo.same_data(name, d)
    fp = provenance.Fingerprint.load(zoo.info(name)["trained_on"], zoo.CHECKPOINT_DIR)
    assert len(fp.train_index) == len(d.y_train) and torch.equal(torch.from_numpy(fp.train_index), d.train_index)
    assert not set(d.val_index.tolist()) & set(fp.train_index.tolist())


def test_the_detector_digits_hold_no_training_digit():
    d = detector.dataset(n_train=10, n_val=10, n_test=10)
    assert d.mnist.provenance.same_pixels


def test_another_validation_split_is_refused_by_position():
    with pytest.raises(provenance.LeakError, match="val \\(by position\\)"):
        zoo.dataset("lenet5-mnist", seed=1)     # another seed carves another validation split out of the same images


def test_a_training_image_in_the_test_split_is_refused_by_content():
    d = zoo.dataset("lenet5-mnist")
    d.x_test = d.x_test.clone()
    d.x_test[5] = d.x_train[123]
    fp = provenance.Fingerprint.load(zoo.info("lenet5-mnist")["trained_on"], zoo.CHECKPOINT_DIR)
    with pytest.raises(provenance.LeakError, match="1 in test \\(by content\\)"):
        provenance.check(fp, d)


# --- the download route, simulated ---------------------------------------------------------------------------------

def _merge(a, b, rng):
    """Interleave a and b at random positions, keeping the order within each: how the offline MNIST splits sit
    inside the official test set."""
    is_a = np.zeros(len(a) + len(b), dtype=bool)
    is_a[rng.choice(len(is_a), len(a), replace=False)] = True
    out = np.empty((len(is_a), *a.shape[1:]), dtype=a.dtype)
    out[is_a], out[~is_a] = a, b
    return out, is_a


@pytest.fixture
def fake_torchvision(tmp_path, monkeypatch):
    """torchvision's CIFAR10 and MNIST replaced by classes serving 'official' arrays built from the offline files:
    MNIST's official test = the offline train and test interleaved; CIFAR-10's official splits = the offline images
    with the classes mixed (each class keeping its order), followed by further images of some classes."""
    import torchvision
    rng = np.random.default_rng(0)
    offline = {n: dict(np.load(data.find(n, download=False))) for n in ("mnist", "cifar10")}
    m = offline["mnist"]
    x_test, is_train = _merge(m["x_train"], m["x_test"], rng)
    y_test = np.empty(len(is_train), dtype=np.uint8)
    y_test[is_train], y_test[~is_train] = m["y_train"], m["y_test"]
    official = {"mnist": {True: (m["x_test"][:50], m["y_test"][:50]), False: (x_test, y_test)}}
    official["cifar10"] = {}
    for split, train in (("train", True), ("test", False)):
        x, y = offline["cifar10"][f"x_{split}"], offline["cifar10"][f"y_{split}"]
        labels = rng.permutation(y)                       # the "official" order: classes mixed
        xo = np.empty_like(x)
        for k in range(10):
            xo[labels == k] = x[y == k]                   # the k-th image of a class stays its k-th
        official["cifar10"][train] = (np.concatenate([xo, 255 - x[:20]]), np.concatenate([labels, y[:20]]))

    def fake(name):
        class Fake:
            def __init__(self, root, train, download):
                self.data, self.targets = official[name][train]
                self.data = torch.from_numpy(self.data) if name == "mnist" else self.data
                self.targets = torch.from_numpy(self.targets.astype(np.int64)) if name == "mnist" else list(self.targets)
        return Fake

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake("mnist"))
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake("cifar10"))
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    return offline, official, is_train


def test_download_route_rebuilds_the_offline_mnist_bit_for_bit_and_stays_leak_free(fake_torchvision, tmp_path, monkeypatch):
    offline, official, _ = fake_torchvision
    path = data._download("mnist")
    got = dict(np.load(path))
    assert all(np.array_equal(got[k], offline["mnist"][k]) for k in ("x_train", "y_train", "x_test", "y_test"))
    monkeypatch.setattr(data, "SHARED_DIR", tmp_path / "nowhere")        # only the downloaded file is found now
    d = zoo.dataset("lenet5-mnist")
    assert d.source == str(path) and d.provenance.same_pixels
    # the former download route used the whole official test set as the test split: refused
    leaky = dict(got)
    leaky["x_test"], leaky["y_test"] = official["mnist"][False]
    np.savez(path, **leaky)
    with pytest.raises(provenance.LeakError, match="in test \\(by content\\)"):
        zoo.dataset("lenet5-mnist")


def test_download_route_rebuilds_the_cifar_layout_with_other_pixels(fake_torchvision, tmp_path, monkeypatch):
    offline, _, _ = fake_torchvision
    path = data._download("cifar10")
    got = dict(np.load(path))
    assert np.array_equal(got["y_train"], offline["cifar10"]["y_train"])
    assert np.array_equal(got["y_test"], offline["cifar10"]["y_test"])
    assert not np.array_equal(got["x_train"], offline["cifar10"]["x_train"])   # JPEG once more: other pixels
    monkeypatch.setattr(data, "SHARED_DIR", tmp_path / "nowhere")
    d = zoo.dataset("vgg16-cifar10")
    assert not d.provenance.same_pixels and "differ" in d.provenance.note and not zoo.same_data("vgg16-cifar10", d)
    # a validation split carved from all training images, as the former route did, overlaps the VGG's: refused
    with pytest.raises(provenance.LeakError, match="by position"):
        zoo.dataset("vgg16-cifar10", val_per_class=300)


def test_a_foreign_file_is_not_taken_for_the_course_layout(fake_torchvision, tmp_path, monkeypatch):
    offline, official, _ = fake_torchvision
    x, y = official["mnist"][False]
    np.savez(tmp_path / "mnist.npz", x_train=x[::-1].copy(), y_train=y[::-1].copy(), x_test=x[:100], y_test=y[:100])
    monkeypatch.setattr(data, "SHARED_DIR", tmp_path / "nowhere")
    with pytest.raises(data.DataError, match="not the course's layout"):
        zoo.dataset("lenet5-mnist")
    with pytest.raises(data.DataError, match="not the official MNIST test set"):
        data.course_layout("mnist", {"x_test": x[:500], "y_test": y[:500], "x_train": x[:1], "y_train": y[:1]})
