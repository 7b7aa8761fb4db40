"""Which images a checkpoint was trained on, and the proof that no evaluation or choice split contains one.

A shipped checkpoint is only honest on images it never saw. Its record therefore carries a **fingerprint** of its
training images (``NAME.images.npz`` beside the checkpoint):

* ``train_index``: their positions in the source file's ``x_train`` (the course layout, the same on every route:
  see :mod:`pruning.data`);
* ``image_mean``: each one's mean pixel value, rounded (a JPEG-robust check that the positions still hold the same
  pictures when another route encoded them slightly differently);
* in the record, the sha256 of their labels (must match exactly) and of their pixels (matches on the route the
  checkpoint was trained on).

:func:`check` compares a loaded :class:`~pruning.data.Dataset` with a fingerprint and raises :class:`LeakError` when
a validation or test image is one the checkpoint was trained on, by position (validation) and by exact content on
this route (validation and test). It returns a :class:`Provenance` saying whether the pixels are the ones the
checkpoint saw, and what that means for the figures a notebook checks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import data as data_mod

MEAN_TOLERANCE = 4        # grey levels: JPEG at quality 75 moves an image's mean by about one level
SAME_IMAGES_SHARE = 0.99  # share of training positions whose mean must agree for "the same pictures"


class LeakError(data_mod.DataError):
    """An evaluation or choice split holds images the checkpoint was trained on."""


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _file_layout(x: torch.Tensor) -> np.ndarray:
    """A Dataset's (N, C, H, W) uint8 tensor back in the source file's (N, H, W, C) or (N, H, W) layout."""
    x = x.permute(0, 2, 3, 1) if x.shape[1] == 3 else x[:, 0]
    return np.ascontiguousarray(x.numpy())


def _means(x: np.ndarray) -> np.ndarray:
    return np.rint(x.reshape(len(x), -1).mean(axis=1)).astype(np.uint8)


@dataclass
class Fingerprint:
    dataset: str
    train_index: np.ndarray          # int positions in the source file's x_train
    image_mean: np.ndarray           # uint8, one per training image
    labels_sha256: str
    images_sha256: str

    def record(self, file_name: str) -> dict:
        """The part of a checkpoint's JSON record that names the fingerprint file and its exact hashes."""
        return {"dataset": self.dataset, "file": file_name, "n": int(len(self.train_index)),
                "labels_sha256": self.labels_sha256, "images_sha256": self.images_sha256}

    def save(self, path: Path) -> None:
        np.savez_compressed(path, train_index=self.train_index.astype(np.int32), image_mean=self.image_mean)

    @classmethod
    def load(cls, record: dict, folder: Path) -> "Fingerprint":
        with np.load(Path(folder) / record["file"]) as f:
            return cls(record["dataset"], f["train_index"].astype(np.int64), f["image_mean"],
                       record["labels_sha256"], record["images_sha256"])


def fingerprint(data: data_mod.Dataset) -> Fingerprint:
    """The fingerprint of the training split of ``data`` (loaded by :func:`pruning.data.load`)."""
    if data.train_index is None:
        raise ValueError("this Dataset does not know where its images came from (train_index is None); "
                         "load it with pruning.data.load")
    x = _file_layout(data.x_train)
    return Fingerprint(data.name, data.train_index.numpy().astype(np.int64), _means(x),
                       _sha256(data.y_train.numpy().astype(np.uint8)), _sha256(x))


@dataclass
class Provenance:
    """What :func:`check` found."""

    same_pixels: bool     # the training images are bit-identical to those the checkpoint saw
    note: str             # one sentence for the reader

    def __bool__(self) -> bool:
        return self.same_pixels


def check(fp: Fingerprint, data: data_mod.Dataset, what: str = "this checkpoint") -> Provenance:
    """Refuse (``LeakError``) a ``data`` whose validation or test split holds an image ``fp`` was trained on;
    refuse (``DataError``) a source file whose training positions do not hold ``fp``'s pictures; say whether the
    pixels are exactly the ones trained on."""
    if data.name != fp.dataset:
        raise data_mod.DataError(f"{what} was trained on {fp.dataset}, not {data.name}")
    if data.val_index is None:
        raise ValueError("this Dataset does not know where its images came from; load it with pruning.data.load")
    arrays = data_mod._read_npz(Path(data.source), data.spec)
    if fp.train_index.max(initial=-1) >= len(arrays["y_train"]):
        raise data_mod.DataError(f"{data.source} has {len(arrays['y_train'])} training images, too few for the course "
                                 f"layout {what} was trained on: use the course's reduced files or the download route")
    seen_x, seen_y = arrays["x_train"][fp.train_index], arrays["y_train"][fp.train_index].astype(np.uint8)
    if _sha256(seen_y) != fp.labels_sha256:
        raise data_mod.DataError(f"{data.source} does not hold the images {what} was trained on at the recorded "
                                 f"positions (their labels differ): it is not the course's layout")
    same_pixels = _sha256(seen_x) == fp.images_sha256
    if not same_pixels:
        agree = np.mean(np.abs(_means(seen_x).astype(int) - fp.image_mean.astype(int)) <= MEAN_TOLERANCE)
        if agree < SAME_IMAGES_SHARE:
            raise data_mod.DataError(f"{data.source}: only {agree:.1%} of the {len(fp.train_index):,} images {what} was "
                                     f"trained on look like them (mean pixel within {MEAN_TOLERANCE} levels): "
                                     f"not the course's layout")
    leaks = {}
    by_position = np.intersect1d(data.val_index.numpy(), fp.train_index)
    if len(by_position):
        leaks["val (by position)"] = len(by_position)
    seen = set(data_mod.image_hashes(seen_x))
    for split in ("val", "test"):
        hits = sum(h in seen for h in data_mod.image_hashes(_file_layout(getattr(data, f"x_{split}"))))
        if hits:
            leaks[f"{split} (by content)"] = hits
    if leaks:
        found = ", ".join(f"{n:,} in {k}" for k, n in leaks.items())
        raise LeakError(f"{what} was trained on images that this data uses for evaluation or choices: {found}. "
                        f"Load the splits it was trained with (zoo.dataset / detector.dataset with the recipe's "
                        f"val_per_class and seed), which keep them apart.")
    note = ("the training images are exactly the ones it was trained on" if same_pixels else
            "the same pictures as it was trained on, but their pixels differ slightly (another JPEG encoder: the "
            "download route); accuracies may differ from the recorded ones by about a point, so checks against "
            "the record are skipped")
    return Provenance(same_pixels, note)


def write(meta: Path, data: data_mod.Dataset) -> dict:
    """Fingerprint ``data``'s training split beside the checkpoint record ``meta`` (``NAME.images.npz``) and add it
    to the record as ``trained_on``; returns the record."""
    import json
    meta = Path(meta)
    record = json.loads(meta.read_text())
    name = meta.stem
    fp = fingerprint(data)
    fp.save(meta.parent / f"{name}.images.npz")
    record["trained_on"] = fp.record(f"{name}.images.npz")
    meta.write_text(json.dumps(record, indent=2) + "\n")
    return record


def check_record(meta: Path, data: data_mod.Dataset, what: str) -> Provenance | None:
    """:func:`check` ``data`` against the fingerprint named by the checkpoint record ``meta``; None when the record
    has no fingerprint (or does not exist)."""
    import json
    meta = Path(meta)
    if not meta.is_file():
        return None
    record = json.loads(meta.read_text())
    if "trained_on" not in record:
        return None
    return check(Fingerprint.load(record["trained_on"], meta.parent), data, what=what)

