"""Pretrained baselines, trained by this package on the reduced data and shipped as checkpoints.

    python -m pruning.zoo list            # what exists, with recorded accuracy and cost
    python -m pruning.zoo train NAME      # retrain NAME with its recipe and write the checkpoint
    python -m pruning.zoo fingerprint NAME  # record which images NAME was trained on (NAME.images.npz)

Each checkpoint ``pruning/checkpoints/NAME.pt`` sits next to ``NAME.json``, which records the
recipe, the seed, the measured test accuracy, MACs, parameters, training time, the torch
version and the checkpoint's sha256, and ``NAME.images.npz`` names the images it was trained on
(:mod:`pruning.provenance`): :func:`dataset` refuses splits that would evaluate it on them.
:func:`pretrained` checks the sha256 before loading.
Weights are stored in float16 to keep the repository small; they are loaded back as float32
and every recorded accuracy is measured on the model as loaded, not before rounding.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

from . import data as data_mod
from . import provenance
from .measure import macs, parameters
from .models import build
from .train import evaluate, fit, seed_everything

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
CACHE_DIR = data_mod.CACHE_DIR / "checkpoints"

# One recipe per baseline. Data splits use the loader's defaults (100 validation images per
# class carved from the training data, seed 0), which every notebook uses too.
RECIPES: dict[str, dict] = {
    "lenet5-mnist": dict(model="lenet5", kwargs={}, dataset="mnist", val_per_class=50,
                         epochs=15, lr=0.05, schedule="onecycle", weight_decay=5e-4, batch_size=128, seed=0),
    "vgg16-cifar10": dict(model="vgg16", kwargs={"width": 0.5}, dataset="cifar10", val_per_class=100,
                          epochs=30, lr=0.1, schedule="onecycle", weight_decay=5e-4, batch_size=128, seed=0),
    "resnet20-cifar10": dict(model="resnet20", kwargs={}, dataset="cifar10", val_per_class=100,
                             epochs=30, lr=0.1, schedule="onecycle", weight_decay=5e-4, batch_size=128, seed=0),
}


def _check_name(name: str) -> dict:
    if name not in RECIPES:
        raise ValueError(f"unknown pretrained model {name!r}; choose one of {sorted(RECIPES)}")
    return RECIPES[name]


def input_size(name: str) -> tuple[int, int, int]:
    """(C, H, W) of the images ``name`` was trained on."""
    return data_mod.SPECS[_check_name(name)["dataset"]].image_shape


def dataset(name: str, **kw) -> data_mod.Dataset:
    """The dataset (with the same validation split) that ``name`` was trained on, checked against the checkpoint's
    record: a validation or test image it was trained on raises :class:`pruning.provenance.LeakError`, and
    ``data.provenance`` says whether the pixels are exactly those it saw (see :func:`same_data`)."""
    recipe = _check_name(name)
    kw.setdefault("val_per_class", recipe["val_per_class"])
    kw.setdefault("seed", recipe["seed"])
    data = data_mod.load(recipe["dataset"], **kw)
    data.provenance = provenance.check_record(_paths(name)[1], data, what=f"the checkpoint {name}")
    return data


def same_data(name: str, data: data_mod.Dataset) -> bool:
    """True when ``data`` holds exactly the pixels ``name`` was trained and recorded on (and the recorded test split
    size), so that a notebook may check its accuracy against the record; False on another route."""
    record = info(name)
    exact = bool(data.provenance) if data.provenance is not None else False
    return exact and record["data"]["test"] == len(data.y_test)


def write_fingerprint(name: str, data: data_mod.Dataset | None = None, folder: Path | None = None) -> dict:
    """Write ``NAME.images.npz`` (the positions and mean pixel of the images ``name`` was trained on) and add it to
    the record. Without ``data``, the split is rebuilt from the recipe (the loader is deterministic in its seed),
    which is how the fingerprints of checkpoints trained before fingerprints existed were made."""
    recipe = _check_name(name)
    if data is None:
        data = data_mod.load(recipe["dataset"], val_per_class=recipe["val_per_class"], seed=recipe["seed"])
    meta = (Path(folder) / f"{name}.json") if folder else _paths(name)[1]
    return provenance.write(meta, data)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_half(model: nn.Module, path: Path) -> dict:
    """Write ``model``'s state dict with floating tensors in float16 (how the course ships checkpoints: half the
    bytes, and accuracy within a few hundredths of a point); return the float32 state dict a load will give back."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_half(path: Path, record: dict, retrain: str) -> dict:
    """The float32 state dict of a float16 checkpoint, after checking the file against its record's sha256
    (``retrain`` is the command that rebuilds it, for the error message)."""
    digest = sha256(path)
    if digest != record["sha256"]:
        raise RuntimeError(f"{path} is corrupt or was changed: sha256 {digest[:12]}... differs from the "
                           f"recorded {record['sha256'][:12]}...; retrain with `{retrain}`")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.float() if v.is_floating_point() else v for k, v in blob.items()}


def _paths(name: str) -> tuple[Path, Path]:
    for d in (CHECKPOINT_DIR, CACHE_DIR):
        if (d / f"{name}.pt").is_file():
            return d / f"{name}.pt", d / f"{name}.json"
    return CHECKPOINT_DIR / f"{name}.pt", CHECKPOINT_DIR / f"{name}.json"


def info(name: str) -> dict:
    """The recorded recipe and measurements of a checkpoint (its ``.json``)."""
    _check_name(name)
    _, meta = _paths(name)
    if not meta.is_file():
        raise FileNotFoundError(f"no record for {name}: train it with `python -m pruning.zoo train {name}`")
    return json.loads(meta.read_text())


def pretrained(name: str, train_if_missing: bool = True, progress: bool = True) -> nn.Module:
    """A trained course model in eval mode: ``lenet5-mnist``, ``vgg16-cifar10`` or ``resnet20-cifar10``.

    Loads the shipped checkpoint after checking its sha256. If it is missing, trains the model
    with its recipe (progress bar) and caches it in ``~/.cache/pruning-course/checkpoints``.
    """
    recipe = _check_name(name)
    ckpt, meta = _paths(name)
    if not ckpt.is_file():
        if not train_if_missing:
            raise FileNotFoundError(f"no checkpoint for {name}; run `python -m pruning.zoo train {name}`")
        print(f"No checkpoint for {name}: training it now with its recipe (this happens once).")
        train(name, out_dir=CACHE_DIR, progress=progress)
        ckpt, meta = _paths(name)
    state = load_half(ckpt, json.loads(meta.read_text()), f"python -m pruning.zoo train {name}")
    model = build(recipe["model"], **recipe["kwargs"])
    model.load_state_dict(state)
    return model.eval()


def train(name: str, out_dir: Path = CHECKPOINT_DIR, progress: bool = True) -> dict:
    """Train ``name`` with its recipe, save the float16 checkpoint and its record; return the record."""
    recipe = _check_name(name)
    data = dataset(name, seed=recipe["seed"])
    seed_everything(recipe["seed"])
    model = build(recipe["model"], **recipe["kwargs"])
    start = time.perf_counter()
    history = fit(model, data, recipe["epochs"], lr=recipe["lr"], schedule=recipe["schedule"],
                  weight_decay=recipe["weight_decay"], batch_size=recipe["batch_size"],
                  seed=recipe["seed"], progress=progress, desc=f"train {name}")
    seconds = time.perf_counter() - start
    out_dir = Path(out_dir)
    ckpt = out_dir / f"{name}.pt"
    # measure the model exactly as it will be loaded (float16-rounded weights)
    loaded = build(recipe["model"], **recipe["kwargs"])
    loaded.load_state_dict(save_half(model, ckpt))
    loaded.eval()
    size = data.spec.image_shape
    record = {
        "name": name,
        "recipe": copy.deepcopy(recipe),
        "data": {"source": Path(data.source).name, "train": len(data.y_train), "val": len(data.y_val),
                 "test": len(data.y_test)},
        "test_accuracy": evaluate(loaded, data, "test"),
        "val_accuracy": evaluate(loaded, data, "val"),
        "accuracy_before_fp16": evaluate(model, data, "test"),
        "macs": macs(loaded, size),
        "params": parameters(loaded),
        "train_seconds": round(seconds, 1),
        "seconds_per_epoch": round(seconds / max(1, recipe["epochs"]), 1),
        "final_train_loss": history.train_loss[-1] if history.train_loss else None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {platform.system()}",
        "date": datetime.date.today().isoformat(),
        "sha256": sha256(ckpt),
    }
    (out_dir / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return write_fingerprint(name, data, out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pruning.zoo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the baselines and their recorded figures")
    t = sub.add_parser("train", help="train a baseline with its recipe and write its checkpoint")
    t.add_argument("name", choices=sorted(RECIPES))
    t.add_argument("--out", type=Path, default=CHECKPOINT_DIR, help="folder for NAME.pt and NAME.json")
    f = sub.add_parser("fingerprint", help="(re)write NAME.images.npz, the images NAME was trained on, from its recipe")
    f.add_argument("name", choices=sorted(RECIPES))
    args = parser.parse_args(argv)
    if args.cmd == "fingerprint":
        print(json.dumps(write_fingerprint(args.name)["trained_on"]))
        return 0
    if args.cmd == "train":
        record = train(args.name, args.out)
        print(json.dumps({k: record[k] for k in ("name", "test_accuracy", "macs", "params", "train_seconds")}))
        return 0
    for name in sorted(RECIPES):
        try:
            r = info(name)
            print(f"{name:18s} test acc {r['test_accuracy']:.2%}  MACs {r['macs'] / 1e6:.1f} M  "
                  f"params {r['params'] / 1e6:.3f} M  trained in {r['train_seconds']:.0f} s")
        except FileNotFoundError:
            print(f"{name:18s} (no checkpoint yet)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
