"""Tests for tutorlib.two_stage: RoI align against a plain loop, closed forms and gradcheck;
batched NMS against detection.nms; balanced sampling; proposals; a short training run."""

from __future__ import annotations

import math

import pytest
import torch

from tutorlib import detection as det
from tutorlib import detection_models as dm
from tutorlib import two_stage as ts


# --------------------------------------------------------------------------------------------
# RoI align
# --------------------------------------------------------------------------------------------
def bilinear_loop(fmap: list[list[float]], y: float, x: float) -> float:
    """torchvision's bilinear_interpolate, written out for one point (cell (i, j) at (i, j))."""
    h, w = len(fmap), len(fmap[0])
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = math.floor(y), math.floor(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * fmap[y0][x0] + (1 - ly) * lx * fmap[y0][x1]
            + ly * (1 - lx) * fmap[y1][x0] + ly * lx * fmap[y1][x1])


def roi_align_loop(features, rois, size, scale, ratio, aligned):
    """Mask R-CNN's RoI align with plain Python loops over regions, channels, bins and points."""
    out = torch.zeros(len(rois), features.shape[1], size, size, dtype=torch.float64)
    off = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        x1, y1, x2, y2 = x1 * scale - off, y1 * scale - off, x2 * scale - off, y2 * scale - off
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bw, bh = rw / size, rh / size
        for c in range(features.shape[1]):
            fmap = features[int(b), c].tolist()
            for p in range(size):
                for q in range(size):
                    total = 0.0
                    for a in range(ratio):
                        for bb in range(ratio):
                            yy = y1 + p * bh + (a + 0.5) * bh / ratio
                            xx = x1 + q * bw + (bb + 0.5) * bw / ratio
                            total += bilinear_loop(fmap, yy, xx)
                    out[k, c, p, q] = total / ratio**2
    return out


def random_rois(n, batch, extent, generator):
    x1 = torch.rand(n, 1, generator=generator, dtype=torch.float64) * (extent + 20) - 10
    y1 = torch.rand(n, 1, generator=generator, dtype=torch.float64) * (extent + 20) - 10
    wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * extent / 2
    index = torch.randint(0, batch, (n, 1), generator=generator).double()
    return torch.cat([index, x1, y1, x1 + wh[:, :1], y1 + wh[:, 1:]], 1)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("ratio", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_batched_roi_align_matches_plain_loop_and_detection(aligned, ratio, seed):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(3, 2, 6, 7, generator=g, dtype=torch.float64)
    rois = random_rois(12, 3, 28, g)  # stride 4: some regions partly or wholly outside
    ours = ts.batched_roi_align(features, rois, 3, 0.25, ratio, aligned)
    loop = roi_align_loop(features, rois, 3, 0.25, ratio, aligned)
    torch.testing.assert_close(ours, loop, rtol=1e-12, atol=1e-12)
    reference = det.roi_align(features, rois, 3, 0.25, ratio, aligned)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)


def test_batched_roi_align_closed_forms():
    # on a linear ramp F_ij = 2 i - 3 j + 1, bilinear interpolation is exact, so each bin's
    # average is the ramp at the bin's centre (points stay inside [0, H-1] x [0, W-1])
    h = 10
    axis = torch.arange(h, dtype=torch.float64)
    i, j = torch.meshgrid(axis, axis, indexing="ij")
    ramp = (2 * i - 3 * j + 1)[None, None]
    rois = torch.tensor([[0.0, 6.0, 10.0, 30.0, 22.0], [0.0, 3.0, 2.5, 35.0, 37.0]], dtype=torch.float64)
    size, stride = 4, 4
    out = ts.batched_roi_align(ramp, rois, size, 1 / stride, 2, aligned=True)
    for k, (_, x1, y1, x2, y2) in enumerate(rois.tolist()):
        centre = (torch.arange(size, dtype=torch.float64) + 0.5) / size
        yc = y1 / stride - 0.5 + centre * (y2 - y1) / stride  # bin centres in cell coordinates
        xc = x1 / stride - 0.5 + centre * (x2 - x1) / stride
        expected = 2 * yc[:, None] - 3 * xc[None, :] + 1
        torch.testing.assert_close(out[k, 0], expected, rtol=0, atol=1e-12)
    # a constant map stays constant wherever the points are within one cell of the map
    const = torch.full((2, 3, 5, 5), 2.5, dtype=torch.float64)
    rois = torch.tensor([[1.0, -3.0, -3.0, 22.0, 22.0], [0.0, 5.0, 5.0, 6.0, 9.0]], dtype=torch.float64)
    torch.testing.assert_close(ts.batched_roi_align(const, rois, 3, 0.25, 2), torch.full((2, 3, 3, 3), 2.5,
                                                                                        dtype=torch.float64))
    # a region far outside reads 0
    far = torch.tensor([[0.0, 100.0, 100.0, 120.0, 120.0]], dtype=torch.float64)
    assert ts.batched_roi_align(const, far, 2, 0.25).abs().max() == 0


def test_batched_roi_align_gradcheck_and_empty():
    g = torch.Generator().manual_seed(3)
    features = torch.randn(2, 2, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    rois = random_rois(4, 2, 20, g)
    assert torch.autograd.gradcheck(lambda f: ts.batched_roi_align(f, rois, 2, 0.25, 2), (features,))
    empty = torch.zeros(0, 5, dtype=torch.float64)
    assert ts.batched_roi_align(features, empty, 3, 0.25).shape == (0, 2, 3, 3)


def test_batched_roi_align_errors():
    f = torch.zeros(2, 3, 4, 4)
    good = torch.tensor([[1.0, 0, 0, 8, 8]])
    with pytest.raises(ValueError, match="rois"):
        ts.batched_roi_align(f, torch.zeros(1, 4), 2, 0.25)
    with pytest.raises(ValueError, match=r"rois\[:, 0\]"):
        ts.batched_roi_align(f, torch.tensor([[2.0, 0, 0, 8, 8]]), 2, 0.25)
    with pytest.raises(ValueError, match="x2 < x1"):
        ts.batched_roi_align(f, torch.tensor([[0.0, 8, 0, 0, 8]]), 2, 0.25)
    with pytest.raises(ValueError, match="NaN"):
        ts.batched_roi_align(f, torch.tensor([[0.0, math.nan, 0, 8, 8]]), 2, 0.25)
    with pytest.raises(ValueError, match="features"):
        ts.batched_roi_align(torch.zeros(3, 4, 4), good, 2, 0.25)
    with pytest.raises(ValueError, match="output_size"):
        ts.batched_roi_align(f, good, 0, 0.25)
    with pytest.raises(ValueError, match="sampling_ratio"):
        ts.batched_roi_align(f, good, 2, 0.25, sampling_ratio=0)
    with pytest.raises(ValueError, match="spatial_scale"):
        ts.batched_roi_align(f, good, 2, -0.25)
    with pytest.raises(TypeError, match="aligned"):
        ts.batched_roi_align(f, good, 2, 0.25, aligned=1)


# --------------------------------------------------------------------------------------------
# NMS, sampling, proposals
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.3, 0.7])
def test_batched_greedy_nms_matches_nms_per_image(seed, threshold):
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(5, 40, 2, generator=g) * 30
    boxes = torch.cat([corner, corner + 1 + torch.rand(5, 40, 2, generator=g) * 15], -1)
    scores = torch.rand(5, 40, generator=g).round(decimals=1)  # ties too
    keep = ts.batched_greedy_nms(boxes, scores, threshold)
    for n in range(5):
        expected = torch.zeros(40, dtype=torch.bool)
        expected[det.nms(boxes[n], scores[n], threshold)] = True
        assert torch.equal(keep[n], expected)


def test_anchor_targets_match_match_anchors_and_encode_boxes():
    _, targets = dm.make_shapes(30, dm.ShapesConfig(min_size=4.0), torch.Generator().manual_seed(2))
    targets.append({"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)})  # no object
    anchors = det.make_anchors((16, 16), 4, (8.0, 16.0, 32.0), (0.5, 1.0, 2.0))
    boxes, _, valid = ts._padded_targets(targets)
    labels, deltas = ts._anchor_targets(anchors, boxes, valid, 0.7, 0.3)
    for n, t in enumerate(targets):
        expected, matched = det.match_anchors(anchors, t["boxes"], 0.7, 0.3)
        assert torch.equal(labels[n], expected)
        if len(t["boxes"]):
            torch.testing.assert_close(deltas[n], det.encode_boxes(anchors, t["boxes"][matched]))
        else:
            assert deltas[n].abs().max() == 0


def test_sample_balanced_counts():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(-1, 2, (50, 60), generator=g)
    labels[:10] = torch.where(labels[:10] == 1, 0, labels[:10])  # rows without positives
    picked = ts.sample_balanced(labels, 20, 0.25, g)
    n_pos, n_neg = (labels == 1).sum(1), (labels == 0).sum(1)
    pos, neg = (picked & (labels == 1)).sum(1), (picked & (labels == 0)).sum(1)
    assert not (picked & (labels == -1)).any()
    assert torch.equal(pos, n_pos.clamp(max=5))
    assert torch.equal(neg, n_neg.clamp(max=20 - pos))
    # every positive is equally likely to be drawn: over many draws, each near 5 / 12
    labels = torch.tensor([[1] * 12 + [0] * 30]).expand(4000, 42).contiguous()
    rate = ts.sample_balanced(labels, 20, 0.25, g)[:, :12].float().mean(0)
    assert (rate - 5 / 12).abs().max() < 0.04


def test_sample_balanced_errors():
    with pytest.raises(ValueError, match="labels"):
        ts.sample_balanced(torch.tensor([[2, 0]]), 2, 0.5)
    with pytest.raises(TypeError, match="labels"):
        ts.sample_balanced(torch.tensor([[1.0, 0.0]]), 2, 0.5)
    with pytest.raises(ValueError, match="labels has no positive"):
        ts.sample_balanced(torch.tensor([[-1, -1]]), 2, 0.5)
    with pytest.raises(ValueError, match="num_samples"):
        ts.sample_balanced(torch.tensor([[1, 0]]), 0, 0.5)
    with pytest.raises(ValueError, match="positive_fraction"):
        ts.sample_balanced(torch.tensor([[1, 0]]), 2, 1.5)
    with pytest.raises(TypeError, match="generator"):
        ts.sample_balanced(torch.tensor([[1, 0]]), 2, 0.5, generator=3)


def test_propose_decodes_clips_and_suppresses():
    anchors = det.make_anchors((4, 4), 16, (16.0, 32.0), (1.0,))  # (32, 4)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 32, generator=g)
    boxes, scores = ts.propose(anchors, logits, torch.zeros(2, 32, 4), 64, 32, 32, 0.7)
    for n in range(2):
        finite = torch.isfinite(scores[n])
        assert (scores[n][finite][:-1] >= scores[n][finite][1:]).all()  # best first
        kept = boxes[n][finite]
        iou = det.box_iou(kept, kept).fill_diagonal_(0)
        assert iou.max() <= 0.7
        expected = det.nms(anchors.clamp(0, 64), logits[n], 0.7)  # zero deltas: clipped anchors
        torch.testing.assert_close(kept, anchors.clamp(0, 64)[expected])
    assert ((boxes >= 0) & (boxes <= 64)).all()
    with pytest.raises(ValueError, match="post_nms"):
        ts.propose(anchors, logits, torch.zeros(2, 32, 4), 64, 8, 16)
    with pytest.raises(ValueError, match="deltas"):
        ts.propose(anchors, logits, torch.zeros(2, 31, 4), 64, 8, 4)
    with pytest.raises(ValueError, match="objectness"):
        ts.propose(anchors, logits[:, :5], torch.zeros(2, 32, 4), 64, 8, 4)


# --------------------------------------------------------------------------------------------
# model, training, inference
# --------------------------------------------------------------------------------------------
def test_model_shapes_and_anchor_order():
    torch.manual_seed(0)
    model = ts.TwoStageDetector(3, ts.TwoStageConfig(width=8, hidden=16))
    images = torch.rand(2, 3, 32, 32)
    logits, deltas = model(images)
    assert logits.shape == (2, 8 * 8 * 9) and deltas.shape == (2, 8 * 8 * 9, 4)
    anchors = model.anchors(32)
    assert anchors.shape == (8 * 8 * 9, 4)
    # the ordering (row, column, anchor) of the outputs matches make_anchors': the logit of
    # anchor a at cell (i, j) is channel a of the RPN's map at (i, j)
    features = model.backbone(images)
    raw = model.rpn_logits(torch.relu(model.rpn_conv(features)))  # (2, 9, 8, 8)
    assert torch.equal(logits.view(2, 8, 8, 9)[1, 3, 5], raw[1, :, 3, 5])
    cls, box = model.head(features, torch.tensor([[1.0, 2, 2, 20, 30]]))
    assert cls.shape == (1, 4) and box.shape == (1, 3, 4)


def test_train_and_detect():
    shapes = dm.ShapesConfig(image_size=32, min_size=6, max_size=14, max_objects=3)
    images, targets = dm.make_shapes(24, shapes, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = ts.TwoStageDetector(3, ts.TwoStageConfig(width=8, hidden=16))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is several times faster
    try:
        history = ts.train_two_stage(model, images, targets, dm.TrainConfig(steps=30, batch_size=4, lr=5e-3),
                                     progress=False)
    finally:
        torch.set_num_threads(threads)
    assert len(history) == 30 and set(history[0]) == {"rpn_cls", "rpn_box", "roi_cls", "roi_box", "loss"}
    first = sum(h["loss"] for h in history[:5]) / 5
    last = sum(h["loss"] for h in history[-5:]) / 5
    assert last < 0.7 * first
    both = ts.detect_two_stage(model, images[:4])
    rpn = ts.detect_two_stage(model, images[:4], stage="rpn")
    assert len(both) == len(rpn) == 4
    for r in both:
        assert len(r["boxes"]) <= 100 and ((r["scores"] >= 0.05) & (r["scores"] <= 1)).all()
        assert ((r["labels"] >= 0) & (r["labels"] < 3)).all()
    for r in rpn:
        assert len(r["boxes"]) <= 50 and (r["labels"] == 0).all()
        assert ((r["scores"] > 0) & (r["scores"] < 1)).all()


def test_config_model_and_training_errors():
    with pytest.raises(ValueError, match="rpn_low"):
        ts.TwoStageConfig(rpn_low=0.8, rpn_high=0.7)
    with pytest.raises(ValueError, match="post_nms_test"):
        ts.TwoStageConfig(pre_nms=10, post_nms_train=5, post_nms_test=20)
    with pytest.raises(ValueError, match="anchor_sizes"):
        ts.TwoStageConfig(anchor_sizes=(8.0, -1.0))
    with pytest.raises(TypeError, match="aspect_ratios"):
        ts.TwoStageConfig(aspect_ratios="1")
    with pytest.raises(ValueError, match="weights"):
        ts.TwoStageConfig(box_weights=(1.0, 1.0))
    with pytest.raises(ValueError, match="pool_size"):
        ts.TwoStageConfig(pool_size=0)
    with pytest.raises(ValueError, match="num_classes"):
        ts.TwoStageDetector(0)
    with pytest.raises(TypeError, match="config"):
        ts.TwoStageDetector(3, config={"width": 8})
    model = ts.TwoStageDetector(3, ts.TwoStageConfig(width=8, hidden=16))
    images, targets = dm.make_shapes(2, dm.ShapesConfig(image_size=32, min_size=6, max_size=14),
                                     torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match="model"):
        ts.train_two_stage(dm.TinyDetector(7, fpn=True), images, targets)
    with pytest.raises(ValueError, match="same length"):
        ts.train_two_stage(model, images, targets[:1])
    with pytest.raises(ValueError, match="labels"):
        bad = [{"boxes": t["boxes"], "labels": t["labels"] + 3} for t in targets]
        ts.train_two_stage(model, images, bad)
    with pytest.raises(TypeError, match="config"):
        ts.train_two_stage(model, images, targets, config=3)
    with pytest.raises(TypeError, match="progress"):
        ts.train_two_stage(model, images, targets, dm.TrainConfig(steps=1), progress="yes")
    with pytest.raises(ValueError, match="stage"):
        ts.detect_two_stage(model, images, stage="second")
    with pytest.raises(ValueError, match="batch_size"):
        ts.detect_two_stage(model, images, batch_size=0)
    with pytest.raises(ValueError, match="images"):
        ts.detect_two_stage(model, torch.rand(1, 3, 24, 24))
    with pytest.raises(ValueError, match="image_size"):
        model.anchors(0)
