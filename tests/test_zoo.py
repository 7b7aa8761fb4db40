import json

import pytest
import torch

from pruning import zoo


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch):
    """A zoo with one tiny recipe whose checkpoint lives in a temporary folder."""
    monkeypatch.setattr(zoo, "CHECKPOINT_DIR", tmp_path / "shipped")
    monkeypatch.setattr(zoo, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setitem(zoo.RECIPES, "tiny-lenet", dict(
        model="lenet5", kwargs={}, dataset="mnist", val_per_class=10,
        epochs=1, lr=0.05, schedule="onecycle", weight_decay=5e-4, batch_size=256, seed=0))
    return tmp_path


def test_missing_checkpoint_is_trained_cached_and_reloaded(tiny_zoo, capsys):
    model = zoo.pretrained("tiny-lenet", progress=False)
    assert "training it now" in capsys.readouterr().out
    ckpt = tiny_zoo / "cache" / "tiny-lenet.pt"
    record = json.loads((tiny_zoo / "cache" / "tiny-lenet.json").read_text())
    assert ckpt.is_file() and record["sha256"] == zoo.sha256(ckpt)
    assert record["test_accuracy"] > 0.5 and record["recipe"]["seed"] == 0 and record["macs"] > 0
    again = zoo.pretrained("tiny-lenet")  # loads, does not train
    assert "training" not in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert not again.training


def test_corrupt_checkpoint_is_refused(tiny_zoo):
    zoo.train("tiny-lenet", out_dir=tiny_zoo / "shipped", progress=False)
    ckpt = tiny_zoo / "shipped" / "tiny-lenet.pt"
    data = bytearray(ckpt.read_bytes())
    data[-10] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="sha256"):
        zoo.pretrained("tiny-lenet")


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown pretrained model"):
        zoo.pretrained("alexnet-imagenet")


@pytest.mark.parametrize("name", sorted(zoo.RECIPES))
def test_shipped_checkpoints_match_their_records(name):
    ckpt = zoo.CHECKPOINT_DIR / f"{name}.pt"
    assert ckpt.is_file(), f"{name} must ship with the repository (python -m pruning.zoo train {name})"
    record = zoo.info(name)
    assert zoo.sha256(ckpt) == record["sha256"]
    assert record["recipe"] == zoo.RECIPES[name]  # the recipe in the code is the one that was run
