"""A small Faster R-CNN for the digit-detection set: model, training, mAP@0.5, latency, shipped checkpoint.

    python -m pruning.detector train     # retrain the shipped checkpoint with its recipe (about 9 min, 2 cores)
    python -m pruning.detector info      # its recorded recipe, mAP, storage and training time

The detector is torchvision's :class:`~torchvision.models.detection.FasterRCNN` (Ren et al., 2015) with a
small VGG-style backbone (3x3 conv + BatchNorm + ReLU, two max-pools: stride 4), one feature map, anchors
sized for digits, RoIAlign to 4 x 4 and a two-layer box head. It is built to train on 2 CPU cores in minutes,
and it keeps the shape of paper 3's detector: a backbone of convolutions that grow wider with depth, a
region-proposal network (RPN) whose 3x3 conv reads the last feature map, and fully connected box heads.

Channel surgery needs to know who reads each conv's output (:class:`~pruning.models.ChannelGroup`); the
last backbone conv feeds both the RPN's conv and the box head's first linear layer (through RoIAlign and a
flatten, channel-major like the VGG classifier), and the RPN conv feeds its two 1x1 prediction convs.

mAP@0.5 is computed by torchmetrics' ``MeanAveragePrecision`` (pycocotools underneath): COCO-style
101-point interpolated average precision at IoU 0.5, averaged over the ten digit classes. PASCAL VOC 2007,
which the paper reports on, used 11-point interpolation; the two differ slightly in the last digit.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torchmetrics.detection import MeanAveragePrecision
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from tqdm.auto import tqdm

from . import digits, measure, provenance, zoo
from .core import ChannelGroup, device_of
from .models import vgg_features
from .train import bn_statistics
from .zoo import CHECKPOINT_DIR, sha256

NAME = "fasterrcnn-digits"
RECIPE = dict(widths=(16, 16, "M", 32, 32, "M", 64, 64, 64), size=64, n_train=3000, n_val=200, n_test=500,
              epochs=12, batch_size=16, lr=0.02, momentum=0.9, weight_decay=1e-4, seed=0)


class Backbone(nn.Module):
    """VGG-style features: ``features.i`` as in :class:`pruning.models.VGG` ("M" = 2x2 max-pool)."""

    def __init__(self, widths=RECIPE["widths"], in_channels: int = 1):
        super().__init__()
        self.features, self.out_channels = vgg_features(widths, in_channels)   # FasterRCNN reads out_channels

    def forward(self, x):
        return self.features(x)


class DigitFasterRCNN(FasterRCNN):
    """torchvision's Faster R-CNN plus ``channel_groups()``, so that :mod:`pruning.surgery` can shrink it."""

    def channel_groups(self) -> list[ChannelGroup]:
        name = lambda i: f"backbone.features.{i}"   # noqa: E731
        convs = [i for i, m in enumerate(self.backbone.features) if isinstance(m, nn.Conv2d)]
        groups = []
        for k, i in enumerate(convs):   # each backbone conv, its BatchNorm (the next module), and who reads it
            readers = (name(convs[k + 1]),) if k + 1 < len(convs) else ("rpn.head.conv.0.0", "roi_heads.box_head.fc6")
            groups.append(ChannelGroup(name(i), name(i + 1), readers))
        groups.append(ChannelGroup("rpn.head.conv.0.0", None, ("rpn.head.cls_logits", "rpn.head.bbox_pred")))
        return groups


def build(widths=RECIPE["widths"], size: int = RECIPE["size"], num_classes: int = len(digits.CLASSES)) -> DigitFasterRCNN:
    """The course's detector for ``size x size`` grayscale canvases (images are not resized)."""
    backbone = Backbone(widths)
    anchors = AnchorGenerator(sizes=((8, 16, 32),), aspect_ratios=((1.0, 2.0),))   # ratio = height / width
    pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=4, sampling_ratio=2)
    head = TwoMLPHead(backbone.out_channels * 4 * 4, 64)
    return DigitFasterRCNN(
        backbone, rpn_anchor_generator=anchors, box_roi_pool=pool, box_head=head,
        box_predictor=FastRCNNPredictor(64, num_classes),
        min_size=size, max_size=size, image_mean=[0.1], image_std=[0.25],
        rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=50,
        rpn_batch_size_per_image=64, box_batch_size_per_image=64, box_detections_per_img=20)


def _images(s: digits.DetectionSet, idx, device=None) -> list[torch.Tensor]:
    """Canvases ``idx`` as the float images in [0, 1] a torchvision detector takes, on ``device``."""
    return list(s.images[idx].to(device).float().div_(255))


def train_detector(model: nn.Module, data: digits.DetectionSet, epochs: float, lr: float = RECIPE["lr"],
                   batch_size: int = RECIPE["batch_size"], momentum: float = RECIPE["momentum"],
                   weight_decay: float = RECIPE["weight_decay"], seed: int = 0, progress: bool = True,
                   desc: str = "train detector") -> list[float]:
    """Train in place with SGD + momentum and a cosine learning rate; return the mean loss of every epoch.

    The loss is the sum of torchvision's four Faster R-CNN losses (RPN objectness and box regression,
    box-head classification and regression). ``epochs`` may be fractional (e.g. 0.5 = half the canvases).
    """
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    steps_per_epoch = -(-len(data) // batch_size)
    total = max(1, round(epochs * steps_per_epoch))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    gen = torch.Generator().manual_seed(seed)
    device = device_of(model)   # the CPU here; a model moved to a GPU trains there
    model.train()
    losses, step = [], 0
    with tqdm(total=total, desc=desc, disable=not progress, leave=False) as bar:
        while step < total:
            order, running, seen = torch.randperm(len(data), generator=gen), 0.0, 0
            for start in range(0, len(data), batch_size):
                if step == total:
                    break
                idx = order[start:start + batch_size]
                targets = [{k: v.to(device) for k, v in t.items()} for t in data.targets(idx)]
                loss = sum(model(_images(data, idx, device), targets).values())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                running, seen, step = running + loss.item(), seen + 1, step + 1
                bar.update(1)
            losses.append(running / seen)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


@torch.no_grad()
def predict(model: nn.Module, data: digits.DetectionSet, batch_size: int = 50) -> list[dict[str, torch.Tensor]]:
    """The detector's boxes, scores and labels for every canvas (eval mode)."""
    was_training = model.training
    model.eval()
    out, device = [], device_of(model)
    for start in range(0, len(data), batch_size):
        out += [{k: v.cpu() for k, v in o.items()}
                for o in model(_images(data, range(start, min(start + batch_size, len(data))), device))]
    model.train(was_training)
    return out


def average_precision(predictions: list[dict], targets: list[dict], curves: bool = False) -> dict:
    """mAP@0.5 over the classes that occur, and the AP of each class, for torchvision-style dicts.

    ``predictions``: ``boxes`` (k, 4), ``scores`` (k,), ``labels`` (k,) per image; ``targets``: ``boxes``,
    ``labels``. Computed by torchmetrics (COCO-style 101-point interpolation at IoU 0.5). With ``curves``, also
    the interpolated precision at the 101 recalls 0, 0.01, ..., 1 for each class (``"recall"``, ``"precision"``).
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    metric = MeanAveragePrecision(iou_thresholds=[0.5], class_metrics=True, extended_summary=curves,
                                  backend="pycocotools")
    metric.update(predictions, targets)
    result = metric.compute()
    classes = [digits.CLASSES[int(c)] for c in result["classes"].flatten()]
    out = {"map50": float(result["map_50"]),
           "per_class": dict(zip(classes, result["map_per_class"].flatten().tolist()))}
    if curves:   # precision[iou, recall, class, area, max detections]: all areas, the most detections
        out["recall"] = torch.linspace(0, 1, 101).tolist()
        out["precision"] = {c: result["precision"][0, :, j, 0, -1].clamp(min=0).tolist() for j, c in enumerate(classes)}
    return out


def evaluate(model: nn.Module, data: digits.DetectionSet, curves: bool = False) -> dict:
    """mAP@0.5 of ``model`` on ``data`` (see :func:`average_precision`)."""
    return average_precision(predict(model, data), data.targets(range(len(data))), curves)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: digits.DetectionSet, batches: int = 10, batch_size: int = 32) -> nn.Module:
    """Recompute the backbone's BatchNorm statistics on ``batches`` batches of canvases (no weight changes).

    The detector's version of :func:`pruning.train.recalibrate_bn`: after surgery a layer sees other inputs
    than its statistics were measured on. Only the backbone has BatchNorm; the images go through the
    detector's own transform (normalisation) first.
    """
    with bn_statistics(model):   # the detector's BatchNorms are all in its backbone
        for start in range(0, min(len(data), batches * batch_size), batch_size):
            images, _ = model.transform(_images(data, range(start, min(start + batch_size, len(data))), device_of(model)))
            model.backbone(images.tensors)
    return model


@torch.no_grad()
def latency(models: dict[str, nn.Module], images: torch.Tensor, threads: int = 1, warmup: int = 3,
            rounds: int = 5, backbone_only: bool = False) -> dict[str, float]:
    """Median single-image CPU latency (ms) of whole detectors (transform, backbone, RPN, heads, NMS).

    Real canvases (uint8, N x 1 x H x W), not zeros: how many proposals survive depends on the image. Each round
    times every model on every image in turn (interleaved, as :func:`pruning.measure.latency_many` does), so a
    slow spell of the machine hits all models alike. ``backbone_only`` times just the backbone, on the images
    as the detector's transform hands them over. A detector on a GPU is timed as a CPU copy (``measure.on_cpu``).
    """
    import statistics
    calls = {}
    for name, m in models.items():
        m = measure.on_cpu(m)
        m.eval()
        for i, x in enumerate(images.float() / 255):
            if backbone_only:
                calls[name, i] = partial(m.backbone, m.transform([x])[0].tensors)
            else:
                calls[name, i] = partial(m, [x])
    times = measure.interleaved(calls, runs=rounds, warmup=warmup, threads=threads)
    return {name: statistics.median(t for (n, _), ts in times.items() if n == name for t in ts) for name in models}


def storage(model: nn.Module) -> int:
    """Parameters plus BatchNorm buffers: the numbers a checkpoint has to store."""
    return sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())


# --------------------------------------------------------------------------- the shipped checkpoint

def _paths(out_dir: Path = CHECKPOINT_DIR) -> tuple[Path, Path]:
    return Path(out_dir) / f"{NAME}.pt", Path(out_dir) / f"{NAME}.json"


def dataset(**kw) -> digits.DigitDetection:
    """The detection set of the recipe (``kw`` overrides, e.g. ``n_test=200``). Its MNIST digits are checked against
    the shipped checkpoint's record: validation or test canvases built from a digit the detector was trained on raise
    :class:`pruning.provenance.LeakError`."""
    args = {k: RECIPE[k] for k in ("n_train", "n_val", "n_test", "size", "seed")} | kw
    data = digits.load(**args)
    data.mnist.provenance = provenance.check_record(_paths()[1], data.mnist, what=f"the detector {NAME}")
    return data


def write_fingerprint(data: digits.DigitDetection | None = None, out_dir: Path = CHECKPOINT_DIR) -> dict:
    """Add to the record the MNIST digits the detector's training canvases were pasted from (``NAME.images.npz``);
    without ``data`` they are rebuilt from the recipe (the canvases are seeded)."""
    if data is None:
        data = digits.load(**{k: RECIPE[k] for k in ("n_train", "n_val", "n_test", "size", "seed")})
    return provenance.write(_paths(out_dir)[1], data.mnist)


def info() -> dict:
    """The recorded recipe and measurements of the shipped checkpoint."""
    _, meta = _paths()
    return json.loads(meta.read_text())


def pretrained() -> DigitFasterRCNN:
    """The shipped detector in eval mode, after checking the checkpoint's sha256."""
    ckpt, meta = _paths()
    if not ckpt.is_file():
        raise FileNotFoundError(f"no detector checkpoint at {ckpt}; train it with `python -m pruning.detector train`")
    state = zoo.load_half(ckpt, json.loads(meta.read_text()), "python -m pruning.detector train")
    model = build(RECIPE["widths"], RECIPE["size"])
    model.load_state_dict(state)
    return model.eval()


def train(out_dir: Path = CHECKPOINT_DIR, progress: bool = True) -> dict:
    """Train the detector with :data:`RECIPE`, save it in float16 with its record, and return the record."""
    torch.manual_seed(RECIPE["seed"])
    data = dataset()
    model = build(RECIPE["widths"], RECIPE["size"])
    start = time.perf_counter()
    losses = train_detector(model, data.train, RECIPE["epochs"], seed=RECIPE["seed"], progress=progress)
    seconds = time.perf_counter() - start
    ckpt, meta = _paths(out_dir)
    loaded = build(RECIPE["widths"], RECIPE["size"])   # measure the model as shipped (float16-rounded)
    loaded.load_state_dict(zoo.save_half(model, ckpt))
    record = {"name": NAME, "recipe": {k: list(v) if isinstance(v, tuple) else v for k, v in RECIPE.items()},
              "test_map50": evaluate(loaded, data.test)["map50"], "val_map50": evaluate(loaded, data.val)["map50"],
              "storage": storage(loaded), "train_seconds": round(seconds, 1),
              "epoch_losses": [round(x, 4) for x in losses], "torch": torch.__version__,
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
              "date": datetime.date.today().isoformat(), "sha256": sha256(ckpt)}
    meta.write_text(json.dumps(record, indent=2) + "\n")
    return write_fingerprint(data, out_dir)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pruning.detector", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["train", "info", "fingerprint"],
                        help="fingerprint: (re)write the record of the digits its training canvases came from")
    args = parser.parse_args(argv)
    run = {"train": train, "info": info, "fingerprint": lambda: write_fingerprint()["trained_on"]}[args.command]
    print(json.dumps(run(), indent=2))


if __name__ == "__main__":
    main()
