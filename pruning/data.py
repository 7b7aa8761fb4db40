"""Datasets as in-memory uint8 tensors, and a fast batch iterator over them.

The course runs on small, real datasets (reduced CIFAR-10 and MNIST) held entirely in memory,
so that an epoch is a loop over tensor slices with no per-image Python work.

Where the data comes from, in this order:

1. the directory named by the environment variable ``PRUNING_DATA_DIR``;
2. ``../shared/data`` beside the repository, when present (the course's offline copy);
3. a torchvision download (CIFAR10 / MNIST), converted once to the **same reduced layout** as the offline files
   (:func:`course_layout`) and cached in ``PRUNING_DATA_DIR`` or, if unset, ``~/.cache/pruning-course``.

Every ``.npz`` file holds the Keras-style keys ``x_train``, ``y_train``, ``x_test``, ``y_test``
with uint8 images (N, H, W) or (N, H, W, C) and uint8 labels. Both routes give the same images at the same
positions, so an index into ``x_train`` names the same picture on a laptop offline and on Colab; that is what lets
a checkpoint's record name the exact images it was trained on (:mod:`pruning.zoo` checks them against every split).

The reduced layout, from the official splits:

* CIFAR-10: the first 2,000 training and the first 500 test images of each class, in the official order,
  grouped by class; each image goes through JPEG at quality 75 with 4:2:0 chroma subsampling, as the offline copy
  did (that copy came from a public JPEG mirror; our encoder is Pillow's, so pixels may differ slightly);
* MNIST: the official **test** images only (the offline copy had no official training images), split 80/20 per
  class: the 8,000 training images are those whose content hash is listed in ``layouts/mnist-train.sha1`` (the
  offline split, made with ``numpy.random.default_rng(0)``), in the official order, the other 2,000 are the test
  split. The result is bit-identical to the offline file.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Union

import numpy as np
import torch

ENV_VAR = "PRUNING_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared" / "data"
CACHE_DIR = Path.home() / ".cache" / "pruning-course"
LAYOUT_DIR = Path(__file__).resolve().parent / "layouts"
LAYOUT = {"cifar10": dict(train_per_class=2000, test_per_class=500, jpeg_quality=75), "mnist": dict(train_share=0.8)}


@dataclass(frozen=True)
class Spec:
    """What a dataset looks like, and how to normalise it."""

    name: str
    image_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]


SPECS = {
    "cifar10": Spec(
        "cifar10", (3, 32, 32), 10,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
        classes=("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"),
    ),
    "mnist": Spec(
        "mnist", (1, 28, 28), 10,
        mean=(0.1307,), std=(0.3081,),
        classes=tuple(str(d) for d in range(10)),
    ),
}


class DataError(RuntimeError):
    """A dataset could not be found or is not what it should be."""


@dataclass
class Dataset:
    """Train / validation / test splits as uint8 image tensors (N, C, H, W) and int64 labels.

    The validation split is carved from the training data (never from the test data): use it
    for thresholds, searches and any other choice, and keep the test split for the final figure.
    """

    spec: Spec
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str
    train_index: torch.Tensor | None = None   # positions of x_train's images in the source file's x_train
    val_index: torch.Tensor | None = None     # positions of x_val's images in the source file's x_train
    test_index: torch.Tensor | None = None    # positions of x_test's images in the source file's x_test
    provenance: object | None = None          # set by pruning.zoo: how these splits relate to a checkpoint's images

    @property
    def name(self) -> str:
        return self.spec.name

    def split(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x, y)`` for ``"train"``, ``"val"`` or ``"test"``."""
        if which not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {which!r}")
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    def __repr__(self) -> str:
        return (f"Dataset({self.name}: train {len(self.y_train)}, val {len(self.y_val)}, "
                f"test {len(self.y_test)}, images {tuple(self.spec.image_shape)}, from {self.source})")


# --------------------------------------------------------------------------- finding the files

def _candidate_dirs() -> list[Path]:
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]).expanduser())
    if SHARED_DIR.is_dir():
        dirs.append(SHARED_DIR)
    dirs.append(CACHE_DIR)
    return dirs


def image_hashes(x, digits: int = 16) -> list[str]:
    """An exact content fingerprint per image: the first ``digits`` hex digits of the sha1 of its raw uint8 bytes
    (64 bits by default: a chance collision among the course's images has a probability below 1e-10)."""
    x = np.ascontiguousarray(x.numpy() if isinstance(x, torch.Tensor) else x)
    return [hashlib.sha1(img.tobytes()).hexdigest()[:digits] for img in x]


def _jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    """Every HWC RGB image through JPEG (Pillow, 4:2:0 chroma subsampling) and back, as the offline copy was."""
    from PIL import Image
    out = np.empty_like(x)
    for i, img in enumerate(x):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality, subsampling=2)
        out[i] = np.asarray(Image.open(buf).convert("RGB"))
    return out


def course_layout(name: str, official: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The course's reduced layout (module docstring) from the official arrays ``x_train, y_train, x_test, y_test``
    (uint8, HWC or HW). Raises :class:`DataError` when the official data do not hold what the layout needs."""
    if name == "cifar10":
        cfg = LAYOUT["cifar10"]
        out = {}
        for split, per_class in (("train", cfg["train_per_class"]), ("test", cfg["test_per_class"])):
            y = official[f"y_{split}"]
            picks = [np.flatnonzero(y == c)[:per_class] for c in range(SPECS[name].num_classes)]
            if any(len(p) < per_class for p in picks):
                raise DataError(f"the official CIFAR-10 {split} split has fewer than {per_class} images of some class")
            idx = np.concatenate(picks)
            out[f"x_{split}"] = _jpeg(official[f"x_{split}"][idx], cfg["jpeg_quality"])
            out[f"y_{split}"] = y[idx].astype(np.uint8)
        return out
    if name == "mnist":
        listed = set((LAYOUT_DIR / "mnist-train.sha1").read_text().split())
        hashes = image_hashes(official["x_test"])
        in_train = np.array([h in listed for h in hashes])
        if in_train.sum() != len(listed):
            raise DataError(f"the official MNIST test images hold {int(in_train.sum())} of the {len(listed)} images of the "
                            f"course's MNIST training split; this is not the official MNIST test set")
        x, y = official["x_test"], official["y_test"].astype(np.uint8)
        return {"x_train": x[in_train], "y_train": y[in_train], "x_test": x[~in_train], "y_test": y[~in_train]}
    raise ValueError(f"unknown dataset {name!r}")


def _download(name: str) -> Path:
    """Download with torchvision and convert once to the course's reduced layout (:func:`course_layout`)."""
    import torchvision  # imported here: only this path needs it

    target_dir = Path(os.environ.get(ENV_VAR, CACHE_DIR)).expanduser()
    target_dir.mkdir(parents=True, exist_ok=True)
    raw = target_dir / "torchvision"
    cls = {"cifar10": torchvision.datasets.CIFAR10, "mnist": torchvision.datasets.MNIST}[name]
    official = {}
    for split, train in (("train", True), ("test", False)):
        ds = cls(root=str(raw), train=train, download=True)
        data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
        targets = ds.targets.numpy() if isinstance(ds.targets, torch.Tensor) else np.asarray(ds.targets)
        official[f"x_{split}"] = data.astype(np.uint8)
        official[f"y_{split}"] = targets.astype(np.uint8)
    path = target_dir / f"{name}.npz"
    np.savez(path, **course_layout(name, official))
    return path


def find(name: str, download: bool = True) -> Path:
    """Return the path of ``<name>.npz``, downloading it if allowed and nothing local is found."""
    if name not in SPECS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(SPECS)}")
    for d in _candidate_dirs():
        if (d / f"{name}.npz").is_file():
            return d / f"{name}.npz"
    searched = ", ".join(str(d) for d in _candidate_dirs())
    if download:
        try:
            return _download(name)
        except Exception as exc:  # no network, no torchvision, disk full...
            reason = f"the torchvision download failed ({type(exc).__name__}: {exc})"
    else:
        reason = "downloading was not allowed (download=False)"
    raise DataError(
        f"No {name}.npz found (looked in: {searched}) and {reason}.\n"
        f"Two ways to get it:\n"
        f"  1. Offline: point {ENV_VAR} at a folder holding {name}.npz with keys x_train, y_train, "
        f"x_test, y_test (e.g. export {ENV_VAR}=/path/to/shared/data), or place the course's "
        f"shared/data folder beside the repository.\n"
        f"  2. Online: run on a machine with internet access; the loader downloads {name} with "
        f"torchvision and caches it as {name}.npz."
    )


def _read_npz(path: Path, spec: Spec) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except KeyError as exc:
        raise DataError(f"{path} lacks the key {exc}; expected x_train, y_train, x_test, y_test") from exc
    except Exception as exc:
        raise DataError(f"{path} could not be read as a .npz archive ({type(exc).__name__}: {exc}); "
                        f"delete it or replace it with a good copy") from exc
    c, h, w = spec.image_shape
    ok_shapes = {(h, w, c), (h, w)} if c == 1 else {(h, w, c)}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or tuple(x.shape[1:]) not in ok_shapes:
            raise DataError(f"{path}: x_{split} has dtype {x.dtype} and shape {x.shape}; "
                            f"expected uint8 images of shape (N, {h}, {w}{'' if c == 1 else f', {c}'})")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{path}: y_{split} has shape {y.shape}; expected ({len(x)},) labels")
        if len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
            raise DataError(f"{path}: y_{split} holds labels outside 0..{spec.num_classes - 1}")
    return arrays


def _to_nchw(x: np.ndarray, spec: Spec) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.ndim == 3:
        t = t.unsqueeze(1)
    else:
        t = t.permute(0, 3, 1, 2)
    return t.contiguous()


def _balanced_pick(y: torch.Tensor, per_class: int, gen: torch.Generator,
                   num_classes: int) -> torch.Tensor:
    """Indices of ``per_class`` random examples of every class (sorted), seeded by ``gen``."""
    picks = []
    for c in range(num_classes):
        idx = torch.nonzero(y == c).flatten()
        if len(idx) < per_class:
            raise ValueError(f"class {c} has only {len(idx)} examples, fewer than the {per_class} asked for")
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    return torch.cat(picks).sort().values


def _class_interleaved(idx: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
    """``idx`` (a class-balanced set of positions) reordered so that every prefix is class-balanced too.

    Round ``r`` holds the ``r``-th image of every class, the classes in a seeded random order within the round,
    so the first ``m * num_classes`` images hold exactly ``m`` of each class. Code that scores on the first
    ``limit`` validation images (a sensitivity scan, a mending search, a widget) then sees every class, and
    the images after them (``Evaluator.rescore``) do too; a sorted split gave a prefix of the first classes
    only, because the source files store the images grouped by class. The set of images is unchanged.
    """
    labels = y[idx]
    rank = torch.empty(len(idx), dtype=torch.long)            # position of each image within its class
    for c in labels.unique():
        where = torch.nonzero(labels == c).flatten()
        rank[where] = torch.arange(len(where))
    # the class order inside a round, from a generator of its own so that the training and test picks that
    # follow in load() are the same images as before this reordering existed
    tiebreak = torch.rand(len(idx), generator=torch.Generator().manual_seed(seed + 7919))
    return idx[torch.argsort(rank.double() + tiebreak.double() * 0.5)]


def load(name: str, per_class: int | None = None, val_per_class: int = 100,
         test_per_class: int | None = None, seed: int = 0, download: bool = True) -> Dataset:
    """Load ``"cifar10"`` or ``"mnist"`` as uint8 tensors with a validation split.

    Args:
        name: ``"cifar10"`` or ``"mnist"``.
        per_class: if given, keep this many training images per class (class-balanced, seeded),
            *after* the validation images have been set aside.
        val_per_class: validation images per class, carved from the training data.
        test_per_class: if given, a class-balanced subset of the test data.
        seed: seed of every random choice above; the same seed gives the same splits.
        download: allow the torchvision download when no local file is found.
    """
    spec = SPECS.get(name)
    if spec is None:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(SPECS)}")
    for arg, value in (("per_class", per_class), ("test_per_class", test_per_class)):
        if value is not None and value < 1:
            raise ValueError(f"{arg} must be a positive number of images, got {value}")
    if val_per_class < 0:
        raise ValueError(f"val_per_class must be >= 0, got {val_per_class}")
    path = find(name, download=download)
    arrays = _read_npz(path, spec)
    x_all, y_all = _to_nchw(arrays["x_train"], spec), torch.from_numpy(arrays["y_train"].astype(np.int64))
    x_test, y_test = _to_nchw(arrays["x_test"], spec), torch.from_numpy(arrays["y_test"].astype(np.int64))

    gen = torch.Generator().manual_seed(seed)
    val_idx = (_balanced_pick(y_all, val_per_class, gen, spec.num_classes)
               if val_per_class else torch.empty(0, dtype=torch.long))
    rest = torch.ones(len(y_all), dtype=torch.bool)
    rest[val_idx] = False
    val_idx = _class_interleaved(val_idx, y_all, seed) if val_per_class else val_idx
    train_idx = torch.nonzero(rest).flatten()
    if per_class is not None:
        train_idx = train_idx[_balanced_pick(y_all[train_idx], per_class, gen, spec.num_classes)]
    test_idx = torch.arange(len(y_test))
    if test_per_class is not None:
        test_idx = _balanced_pick(y_test, test_per_class, gen, spec.num_classes)
        x_test, y_test = x_test[test_idx], y_test[test_idx]
    return Dataset(spec, x_all[train_idx], y_all[train_idx], x_all[val_idx], y_all[val_idx],
                   x_test, y_test, source=str(path), train_index=train_idx, val_index=val_idx, test_index=test_idx)


# --------------------------------------------------------------------------- batches

def normalize(x: torch.Tensor, spec: Spec) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 standardised with the dataset's channel mean and std."""
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    return (x.float().div_(255.0) - mean) / std


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, for a whole batch at once.

    Each image gets its own offset and flip; all crops are taken in one advanced-indexing gather
    over the padded batch, so there is no Python loop over images.
    """
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h))  # (n, h)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w))  # (n, w)
    out = padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(c).view(1, c, 1, 1),
                 rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
    if flip:
        mirror = torch.rand(n, generator=gen) < 0.5
        out[mirror] = out[mirror].flip(-1)
    return out


@dataclass
class Loaders:
    """Your own data for the engine: any iterables of ``(x, y)`` batches, one per split, e.g.
    ``torch.utils.data.DataLoader`` objects. Every loop that takes a :class:`Dataset` (gradient and curvature
    scores, BN recalibration, fine-tuning, evaluation) takes a ``Loaders`` too.

    The loaders decide what a :class:`Dataset` decides for the course's data: batch size, shuffling,
    augmentation and normalisation (give ``x`` ready for the model, as float tensors). A loop that wants a fixed
    number of images (``num_batches`` scoring batches, ``samples_per_epoch``) stops after that many. Give the
    training loader a fresh shuffle per epoch (``DataLoader(..., shuffle=True)``) if you want one: the engine's
    ``seed`` arguments do not reach it. ``val`` and ``test`` may be left out; then the loops that need them say
    so. Keep the rules of the course: choose on ``val``, report on ``test``, and never let them overlap ``train``.
    """

    train: Iterable
    val: Iterable | None = None
    test: Iterable | None = None
    name: str = "loaders"

    def loader(self, which: str) -> Iterable:
        if which not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {which!r}")
        it = getattr(self, which)
        if it is None:
            raise ValueError(f"these Loaders have no {which!r} loader: pass Loaders(train=..., val=..., test=...)")
        return it

    def __repr__(self) -> str:
        sizes = {k: size(self, k) if getattr(self, k) is not None else None for k in ("train", "val", "test")}
        return f"Loaders({self.name}: " + ", ".join(f"{k} {v}" for k, v in sizes.items() if v is not None) + ")"


Data = Union[Dataset, Loaders]


def size(data: Data, split: str) -> int | None:
    """Number of examples in a split: exact for a :class:`Dataset` (0 for an empty split); for :class:`Loaders`,
    the length of the loader's ``dataset`` (a DataLoader's), else None (unknown), and 0 for a missing split."""
    if isinstance(data, Dataset):
        return len(data.split(split)[1])
    if getattr(data, split, None) is None:
        return 0
    inner = getattr(data.loader(split), "dataset", None)
    try:
        return len(inner) if inner is not None else None
    except TypeError:
        return None


def _from_loader(data: Loaders, split: str, limit: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    seen = 0
    for k, item in enumerate(data.loader(split)):
        if limit is not None and seen >= limit:
            return
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(t, torch.Tensor) for t in item)):
            raise TypeError(f"the {split!r} loader must yield (x, y) pairs of tensors; batch {k} is a "
                            f"{type(item).__name__}" + (f" of {len(item)}" if isinstance(item, (tuple, list)) else ""))
        x, y = item
        if len(x) != len(y):
            raise ValueError(f"the {split!r} loader's batch {k} has {len(x)} inputs but {len(y)} labels")
        if limit is not None and seen + len(y) > limit:
            x, y = x[:limit - seen], y[:limit - seen]
        seen += len(y)
        yield x, y


def batches(data: Data, split: str = "train", batch_size: int = 128, train: bool | None = None,
            shuffle: bool | None = None, augmentation: bool | None = None, limit: int | None = None,
            seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield normalised float batches ``(x, y)`` of one split.

    For :class:`Loaders`, the split's own loader is iterated (its batches, shuffle and augmentation) and only
    ``limit`` applies: the other arguments describe how the course's in-memory data are batched.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        train: shorthand; defaults to ``split == "train"``. Training batches are shuffled and
            (for CIFAR-10) augmented with random crop (padding 4) and horizontal flip.
        shuffle, augmentation: override what ``train`` implies.
        limit: use only the first ``limit`` examples of the (shuffled) split.
        seed: seeds the shuffle and the augmentation.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(data, Loaders):
        yield from _from_loader(data, split, limit)
        return
    x, y = data.split(split)
    train = (split == "train") if train is None else train
    shuffle = train if shuffle is None else shuffle
    augmentation = (train and data.name == "cifar10") if augmentation is None else augmentation
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=gen) if shuffle else torch.arange(len(y))
    if limit is not None:
        order = order[:limit]
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        xb = x[idx]
        if augmentation:
            xb = augment(xb, gen)
        yield normalize(xb, data.spec), y[idx]


def num_batches(data: Data, split: str = "train", batch_size: int = 128, limit: int | None = None) -> int:
    """How many batches :func:`batches` yields (for a :class:`Loaders`, the loader's ``len`` and ``batch_size``:
    a loader without a length cannot drive a learning-rate schedule, and is refused)."""
    if isinstance(data, Loaders):
        loader = data.loader(split)
        try:
            n_batches = len(loader)
        except TypeError:
            raise TypeError(f"the {split!r} loader has no len(): the schedule needs the number of steps; "
                            f"use a DataLoader over a Dataset with a length") from None
        per = getattr(loader, "batch_size", None)
        if limit is None or not per:
            return n_batches
        return min(n_batches, (limit + per - 1) // per)
    n = len(data.split(split)[1])
    n = n if limit is None else min(n, limit)
    return (n + batch_size - 1) // batch_size
