"""A small object-detection set made from MNIST: digits pasted on larger canvases, with known boxes.

Paper 3's headline result is on a detector (Faster R-CNN on PASCAL VOC). PASCAL VOC does not fit a
2-core CPU lab, so the course builds a detection task with the same ingredients (several objects per
image, of different sizes, each with a class and a box) from the reduced MNIST:

1. take a blank ``size x size`` canvas;
2. draw how many digits it holds (``digits`` range) and, for each, a side length (``scale`` range);
3. resize the 28 x 28 digit to that side, and place it at a random spot where its box overlaps no
   box already placed by more than ``max_iou`` (IoU); paste it with a pixel-wise maximum;
4. its box is the tight box of its ink (pixels above ``ink``), in pixel coordinates ``x1, y1, x2, y2``,
   and its label is the digit + 1 (torchvision's detectors keep label 0 for the background).

Splits keep source digits apart: train canvases use only the MNIST training digits (without the
validation digits), validation canvases only the validation digits, test canvases only the MNIST
test digits. Within a split each digit is used once before any digit is used again.
Everything is seeded: the same arguments give the same canvases.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import data as data_mod

CLASSES = ("background",) + tuple(str(d) for d in range(10))   # label k is digit k - 1


@dataclass
class DetectionSet:
    """Canvases (N, 1, H, W) uint8, and per canvas a float box tensor (k, 4) and an int64 label tensor (k,)."""

    images: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    source_index: list[torch.Tensor]   # which source digit (index into the split's MNIST images) each box is

    def __len__(self) -> int:
        return len(self.images)

    def targets(self, idx) -> list[dict[str, torch.Tensor]]:
        """torchvision-style targets (``boxes``, ``labels``) for the canvases ``idx``."""
        return [{"boxes": self.boxes[i], "labels": self.labels[i]} for i in idx]

    def subset(self, n: int) -> "DetectionSet":
        """The first ``n`` canvases."""
        return DetectionSet(self.images[:n], self.boxes[:n], self.labels[:n], self.source_index[:n])

    def __repr__(self) -> str:
        k = sum(len(b) for b in self.boxes)
        return f"DetectionSet({len(self)} canvases {tuple(self.images.shape[-2:])}, {k} digits)"


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every box in ``a`` (n, 4) with every box in ``b`` (m, 4), boxes x1 y1 x2 y2."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])   # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def ink_box(digit: torch.Tensor, ink: int = 40) -> tuple[int, int, int, int]:
    """The tight box ``(x1, y1, x2, y2)`` of a (H, W) uint8 image's pixels above ``ink`` (x2, y2 exclusive)."""
    ys, xs = torch.nonzero(digit > ink, as_tuple=True)
    if len(ys) == 0:
        raise ValueError("the digit has no ink above the threshold")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _resize(digit: torch.Tensor, side: int) -> torch.Tensor:
    x = digit.float()[None, None]
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)[0, 0].round().clamp(0, 255).to(torch.uint8)


def make_canvases(images: torch.Tensor, labels: torch.Tensor, n: int, size: int = 64,
                  digits: tuple[int, int] = (1, 4), scale: tuple[int, int] = (14, 32),
                  max_iou: float = 0.1, ink: int = 40, seed: int = 0, tries: int = 30) -> DetectionSet:
    """Paste the MNIST ``images`` (N, 1, 28, 28) uint8 with digit ``labels`` onto ``n`` canvases.

    Args:
        size: canvas side in pixels.
        digits: the least and most digits per canvas (inclusive).
        scale: the least and most side length of a pasted digit's 28 x 28 frame (inclusive).
        max_iou: a new digit's box may overlap any earlier box by at most this IoU; a digit that finds
            no such place in ``tries`` draws is left out (so a canvas can hold fewer digits than drawn).
        ink: pixel value above which a pixel counts as ink (for the tight box).
    """
    if n < 1 or not 1 <= digits[0] <= digits[1] or not 1 <= scale[0] <= scale[1] <= size:
        raise ValueError(f"need n >= 1, 1 <= digits[0] <= digits[1] and 1 <= scale[0] <= scale[1] <= size; "
                         f"got n={n}, digits={digits}, scale={scale}, size={size}")
    if images.ndim != 4 or images.shape[1] != 1 or images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 (N, 1, H, W), got {images.dtype} {tuple(images.shape)}")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=gen)
    cursor = 0
    canvases = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    all_boxes, all_labels, all_sources = [], [], []
    draw = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=gen))   # noqa: E731
    for c in range(n):
        boxes, labs, srcs = [], [], []
        for _ in range(draw(*digits)):
            src = int(order[cursor % len(order)])
            cursor += 1
            side = draw(*scale)
            digit = _resize(images[src, 0], side)
            x1, y1, x2, y2 = ink_box(digit, ink)
            for _ in range(tries):
                ox, oy = draw(-x1, size - x2), draw(-y1, size - y2)   # keep the ink inside the canvas
                box = torch.tensor([[ox + x1, oy + y1, ox + x2, oy + y2]], dtype=torch.float32)
                if not boxes or iou(box, torch.cat(boxes)).max() <= max_iou:
                    break
            else:
                continue
            # paste the part of the frame that lies on the canvas
            fx1, fy1 = max(0, -ox), max(0, -oy)
            fx2, fy2 = min(side, size - ox), min(side, size - oy)
            region = canvases[c, 0, oy + fy1:oy + fy2, ox + fx1:ox + fx2]
            torch.maximum(region, digit[fy1:fy2, fx1:fx2], out=region)
            boxes.append(box)
            labs.append(int(labels[src]) + 1)
            srcs.append(src)
        all_boxes.append(torch.cat(boxes) if boxes else torch.zeros(0, 4))
        all_labels.append(torch.tensor(labs, dtype=torch.int64))
        all_sources.append(torch.tensor(srcs, dtype=torch.int64))
    return DetectionSet(canvases, all_boxes, all_labels, all_sources)


@dataclass
class DigitDetection:
    """The three splits of the detection task, and the MNIST :class:`~pruning.data.Dataset` they came from."""

    train: DetectionSet
    val: DetectionSet
    test: DetectionSet
    mnist: data_mod.Dataset

    def __repr__(self) -> str:
        return f"DigitDetection(train {self.train}, val {self.val}, test {self.test})"


def load(n_train: int = 3000, n_val: int = 200, n_test: int = 500, size: int = 64, seed: int = 0,
         **kw) -> DigitDetection:
    """The course's digit-detection set: canvases from the reduced MNIST, source digits apart per split.

    ``kw`` goes to :func:`make_canvases` (``digits``, ``scale``, ``max_iou``, ``ink``). The MNIST
    validation digits (50 per class) are carved as :func:`pruning.data.load` does for the classifiers.
    """
    mnist = data_mod.load("mnist", val_per_class=50, seed=seed)
    make = lambda split, n, s: make_canvases(*mnist.split(split), n, size=size, seed=seed * 10 + s, **kw)   # noqa: E731
    return DigitDetection(make("train", n_train, 1), make("val", n_val, 2), make("test", n_test, 3), mnist)
