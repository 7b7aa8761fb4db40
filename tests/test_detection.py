"""The digit-detection set, the detector's surgery hooks and mAP@0.5 on hand-worked cases."""

import hashlib

import pytest
import torch

from pruning import detector, digits, surgery
from pruning.methods import hybrid


def _mnist_like(n=40, seed=0):
    """Fake 28x28 'digits': a filled rectangle of ink whose size depends on the index."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    for i in range(n):
        h, w = 8 + i % 12, 4 + i % 10
        top, left = int(torch.randint(0, 28 - h, (1,), generator=g)), int(torch.randint(0, 28 - w, (1,), generator=g))
        x[i, 0, top:top + h, left:left + w] = 255
    return x, torch.arange(n) % 10


def test_iou_and_ink_box_hand_cases():
    a = torch.tensor([[0., 0, 10, 10]])
    b = torch.tensor([[5., 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    assert torch.allclose(digits.iou(a, b), torch.tensor([[50 / 150, 0.0, 1.0]]))
    img = torch.zeros(28, 28, dtype=torch.uint8)
    img[3:7, 10:12] = 200
    img[0, 0] = 20                                   # faint: below the ink threshold
    assert digits.ink_box(img, ink=40) == (10, 3, 12, 7)
    with pytest.raises(ValueError, match="no ink"):
        digits.ink_box(torch.zeros(5, 5, dtype=torch.uint8))


def test_canvases_are_seeded_inside_and_boxes_hold_the_ink():
    x, y = _mnist_like()
    s = digits.make_canvases(x, y, 30, size=48, digits=(1, 3), scale=(12, 24), max_iou=0.1, seed=3)
    again = digits.make_canvases(x, y, 30, size=48, digits=(1, 3), scale=(12, 24), max_iou=0.1, seed=3)
    other = digits.make_canvases(x, y, 30, size=48, digits=(1, 3), scale=(12, 24), max_iou=0.1, seed=4)
    assert torch.equal(s.images, again.images) and all(torch.equal(a, b) for a, b in zip(s.boxes, again.boxes))
    assert not torch.equal(s.images, other.images)
    assert s.images.shape == (30, 1, 48, 48) and s.images.dtype == torch.uint8
    counts = [len(b) for b in s.boxes]
    assert min(counts) >= 1 and max(counts) <= 3 and len(set(counts)) > 1
    ink_everywhere = s.images[:, 0] > 40
    for img, boxes, labels, src in zip(ink_everywhere, s.boxes, s.labels, s.source_index):
        assert boxes.shape == (len(labels), 4) and (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 48).all()
        assert torch.equal(labels, y[src] + 1)                 # label = digit + 1 (0 is the background)
        inside = torch.zeros_like(img)
        for x1, y1, x2, y2 in boxes.long().tolist():
            assert img[y1:y2, x1:x2].any()                     # the box holds ink...
            assert img[y1, x1:x2].any() and img[y2 - 1, x1:x2].any()   # ...touching its top and bottom rows
            inside[y1:y2, x1:x2] = True
        assert not (img & ~inside).any()                       # and no ink lies outside every box
        if len(boxes) > 1:
            o = digits.iou(boxes, boxes)
            assert (o - torch.eye(len(boxes))).max() <= 0.1 + 1e-6


def test_canvases_use_every_source_once_before_reusing_one():
    x, y = _mnist_like(20)
    s = digits.make_canvases(x, y, 5, size=64, digits=(4, 4), scale=(10, 14), max_iou=1.0, seed=0)
    assert sorted(torch.cat(s.source_index).tolist()) == list(range(20))


def test_canvases_reject_bad_arguments():
    x, y = _mnist_like(5)
    with pytest.raises(ValueError, match="scale"):
        digits.make_canvases(x, y, 2, size=20, scale=(10, 30))
    with pytest.raises(ValueError, match="uint8"):
        digits.make_canvases(x.float(), y, 2)


def test_splits_keep_source_digits_apart():
    d = digits.load(n_train=300, n_val=30, n_test=60)
    def used(split, s):
        images, _ = d.mnist.split(split)
        return {hashlib.sha1(images[i].numpy().tobytes()).hexdigest() for i in torch.cat(s.source_index).tolist()}
    train, val, test = used("train", d.train), used("val", d.val), used("test", d.test)
    assert train and val and test
    assert not (train & test) and not (train & val) and not (val & test)


def test_average_precision_hand_worked_cases():
    gt = [{"boxes": torch.tensor([[0., 0, 10, 10]]), "labels": torch.tensor([1])}]
    def ap(boxes, scores, labels, targets=gt):
        pred = [{"boxes": torch.tensor(boxes, dtype=torch.float32), "scores": torch.tensor(scores),
                 "labels": torch.tensor(labels)}]
        return detector.average_precision(pred, targets)["map50"]
    assert ap([[0, 0, 10, 10]], [0.9], [1]) == pytest.approx(1.0)
    # a false positive ranked below the hit costs nothing; ranked above it, precision at full recall is 1/2
    assert ap([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [1, 1]) == pytest.approx(1.0)
    assert ap([[0, 0, 10, 10], [20, 20, 30, 30]], [0.8, 0.9], [1, 1]) == pytest.approx(0.5)
    # IoU 0.5 exactly counts as a hit (COCO), IoU 1/3 does not; the wrong class never does
    assert ap([[0, 0, 10, 5]], [0.9], [1]) == pytest.approx(1.0)
    assert ap([[5, 0, 15, 10]], [0.9], [1]) == pytest.approx(0.0)
    assert ap([[0, 0, 10, 10]], [0.9], [2]) == pytest.approx(0.0)
    # one of two objects found: precision 1 up to recall 0.5, then 0: 51 of the 101 recall points
    two = [{"boxes": torch.tensor([[0., 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([1, 1])}]
    assert ap([[0, 0, 10, 10]], [0.9], [1], two) == pytest.approx(51 / 101)
    with pytest.raises(ValueError, match="targets"):
        detector.average_precision([], gt)


def test_detector_trains_and_shrinks_through_its_channel_groups():
    torch.manual_seed(0)
    x, y = _mnist_like(24)
    data = digits.make_canvases(x, y, 8, size=32, digits=(1, 2), scale=(10, 16), seed=0)
    model = detector.build(widths=(8, "M", 16, 16), size=32)
    losses = detector.train_detector(model, data, 1, batch_size=4, progress=False)
    assert len(losses) == 1 and torch.isfinite(torch.tensor(losses)).all()
    groups = surgery.channel_groups(model)
    assert [g.conv for g in groups] == ["backbone.features.0", "backbone.features.4", "backbone.features.7",
                                        "rpn.head.conv.0.0"]
    small = surgery.remove_channels(model, {"backbone.features.4": [0, 2, 5], "backbone.features.7": list(range(10)),
                                            "rpn.head.conv.0.0": list(range(6))})
    assert small.roi_heads.box_head.fc6.in_features == 10 * 16
    assert detector.storage(small) < detector.storage(model)
    out = detector.predict(small, data)
    assert len(out) == len(data) and set(out[0]) == {"boxes", "scores", "labels"}
    # paper 3's hybrid on the detector: prune the first two convs, Tucker-2 the last backbone conv and the RPN conv
    compressed, plan = hybrid.compress(model, split=2, rule="ratio", value=0.5)
    assert set(plan.pruned) == {"backbone.features.0", "backbone.features.4"}
    assert set(plan.decomposed) == {"backbone.features.7", "rpn.head.conv.0.0"}
    assert len(detector.predict(compressed, data)) == len(data)


def test_detection_explorer_and_selfchecks(capsys):
    from pruning import selfcheck
    from pruning.widgets import DetectionExplorer
    x, y = _mnist_like(12)
    data = digits.make_canvases(x, y, 4, size=48, digits=(2, 2), scale=(12, 16), seed=0)
    perfect = [{"boxes": b, "labels": l, "scores": torch.linspace(0.9, 0.3, len(b))} for b, l in zip(data.boxes, data.labels)]
    ex = DetectionExplorer(data, {"truth as predictions": perfect}, names=digits.CLASSES)
    ex.canvas.value = 2
    assert ex.shown == {"truth as predictions": 1}            # scores 0.9 and 0.3: one at or above 0.5
    ex.score.value = 0.25
    assert ex.shown == {"truth as predictions": 2}
    assert len(ex.figure.axes[0].patches) == 4                # two true boxes + two predicted
    assert selfcheck.check_iou(50 / 150, (0, 0, 10, 10), (5, 0, 15, 10))
    assert not selfcheck.check_iou(0.5, (0, 0, 10, 10), (5, 0, 15, 10))
    assert "Not yet" in capsys.readouterr().out
    two = [{"boxes": torch.tensor([[0., 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([1, 1])}]
    pred = [{"boxes": torch.tensor([[0., 0, 10, 10]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]
    assert selfcheck.check_average_precision(51 / 101, pred, two)
    assert not selfcheck.check_average_precision(0.5 + 0.01, pred, two)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
def test_detector_follows_the_model_to_a_gpu():
    torch.manual_seed(0)
    x, y = _mnist_like(12)
    data = digits.make_canvases(x, y, 4, size=32, digits=(1, 2), scale=(10, 16), seed=0)
    model = detector.build(widths=(8, "M", 16), size=32).to("cuda")
    detector.train_detector(model, data, 1, batch_size=2, progress=False)
    detector.recalibrate_bn(model, data, batches=1)
    out = detector.predict(model, data)
    assert len(out) == len(data) and out[0]["boxes"].device.type == "cpu"
