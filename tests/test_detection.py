"""tutorlib.detection: boxes, NMS, anchors, RoI ops, mAP (against pycocotools), Hungarian matching.

torchvision is not installable beside our torch, so the references are written here,
independently: a brute-force NMS, a grid_sample-based RoI align, hand-computed examples, and
pycocotools' COCOeval for the metric.
"""

import contextlib
import io
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.nn import functional as F

from tutorlib import detection as D
from tutorlib import detection_models as M

pytestmark = pytest.mark.usefixtures("one_thread")

coord = st.floats(-100, 100, allow_nan=False, width=64)
size = st.floats(0.01, 50, allow_nan=False, width=64)


def xyxy_strategy(min_n=1, max_n=12):
    box = st.tuples(coord, coord, size, size).map(lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])
    return st.lists(box, min_size=min_n, max_size=max_n).map(
        lambda rows: torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)
    )


def random_boxes(n, generator, scale=50.0, grid=None):
    """n random xyxy boxes; with ``grid`` the coordinates are multiples of 1/grid (exact in float)."""
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * scale
    wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * scale / 2 + 0.5
    boxes = torch.cat([xy, xy + wh], 1)
    return torch.round(boxes * grid) / grid if grid else boxes


def scalar_iou(a, b):
    """IoU of two boxes from the definition, one scalar at a time."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# ---------------------------------------------------------------------------------- boxes
@settings(max_examples=60, deadline=None)
@given(xyxy_strategy(), st.sampled_from(D.BOX_FORMATS))
def test_box_convert_round_trips(boxes, fmt):
    there = D.box_convert(boxes, "xyxy", fmt)
    back = D.box_convert(there, fmt, "xyxy")
    torch.testing.assert_close(back, boxes, rtol=0, atol=1e-9)
    for other in D.BOX_FORMATS:  # any path between formats agrees
        torch.testing.assert_close(
            D.box_convert(D.box_convert(there, fmt, other), other, fmt), there, rtol=0, atol=1e-9
        )


@settings(max_examples=60, deadline=None)
@given(xyxy_strategy())
def test_box_convert_preserves_size_and_centre(boxes):
    xywh = D.box_convert(boxes, "xyxy", "xywh")
    cxcywh = D.box_convert(boxes, "xyxy", "cxcywh")
    torch.testing.assert_close(xywh[:, 2:], cxcywh[:, 2:])
    torch.testing.assert_close(xywh[:, 2] * xywh[:, 3], D.box_area(boxes))
    torch.testing.assert_close(cxcywh[:, :2], (boxes[:, :2] + boxes[:, 2:]) / 2)


def test_box_convert_known_values():
    b = torch.tensor([[1.0, 2.0, 4.0, 8.0]])
    assert D.box_convert(b, "xyxy", "xywh").tolist() == [[1.0, 2.0, 3.0, 6.0]]
    assert D.box_convert(b, "xyxy", "cxcywh").tolist() == [[2.5, 5.0, 3.0, 6.0]]


def test_box_errors_name_the_argument():
    with pytest.raises(ValueError, match="in_fmt"):
        D.box_convert(torch.zeros(1, 4), "xyzw", "xyxy")
    with pytest.raises(ValueError, match=r"boxes has 1 degenerate.*x2 < x1"):
        D.box_convert(torch.tensor([[2.0, 0.0, 1.0, 1.0]]), "xyxy", "xywh")
    with pytest.raises(ValueError, match="negative width"):
        D.box_convert(torch.tensor([[0.0, 0.0, -1.0, 1.0]]), "xywh", "xyxy")
    with pytest.raises(ValueError, match=r"b has 1 degenerate.*row 1"):
        D.box_iou(torch.zeros(1, 4), torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 3.0, 1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"a must have shape \(\*, N, 4\)"):
        D.box_iou(torch.zeros(3, 5), torch.zeros(1, 4))
    with pytest.raises(TypeError, match=r"a must be a torch\.Tensor"):
        D.box_iou([[0, 0, 1, 1]], torch.zeros(1, 4))
    with pytest.raises(TypeError, match="floating-point"):
        D.box_area(torch.zeros(1, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN"):
        D.box_area(torch.tensor([[0.0, 0.0, math.nan, 1.0]]))


def test_iou_and_giou_hand_computed():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [3.0, 0.0, 4.0, 2.0], [0.5, 0.5, 1.5, 1.5]])
    # overlap 1, union 7; disjoint; inside (1/4)
    torch.testing.assert_close(D.box_iou(a, b), torch.tensor([[1 / 7, 0.0, 0.25]]))
    # GIoU: hull 9 -> 1/7 - 2/9; hull 8, union 6 -> -2/8; nested: hull = union -> IoU
    torch.testing.assert_close(D.generalized_box_iou(a, b), torch.tensor([[1 / 7 - 2 / 9, -0.25, 0.25]]))


@settings(max_examples=60, deadline=None)
@given(xyxy_strategy(), xyxy_strategy(), st.floats(0.1, 10))
def test_iou_properties(a, b, scale):
    iou = D.box_iou(a, b)
    ref = torch.tensor([[scalar_iou(x, y) for y in b.tolist()] for x in a.tolist()], dtype=torch.float64)
    torch.testing.assert_close(iou, ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(D.box_iou(b, a), iou.T)
    torch.testing.assert_close(D.box_iou(a * scale, b * scale), iou, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(torch.diag(D.box_iou(a, a)), torch.ones(len(a), dtype=torch.float64))
    giou = D.generalized_box_iou(a, b)
    assert torch.all(giou <= iou + 1e-12) and torch.all(giou > -1) and torch.all(iou <= 1)


@settings(max_examples=20, deadline=None)
@given(xyxy_strategy(), xyxy_strategy())
def test_batched_iou_is_the_iou_of_each_problem(a, b):
    # a batch of (2, 3) independent problems: each slice against the scalar reference
    g = torch.Generator().manual_seed(len(a) * 7 + len(b))
    shift = torch.rand(2, 3, 1, 2, generator=g, dtype=torch.float64) * 5
    batch_a = a.expand(2, 3, -1, -1) + shift.repeat(1, 1, 1, 2)
    batch_b = b.expand(2, 3, -1, -1)
    iou = D.box_iou(batch_a, batch_b)
    assert iou.shape == (2, 3, len(a), len(b))
    for i in range(2):
        for j in range(3):
            ref = [[scalar_iou(x, y) for y in b.tolist()] for x in batch_a[i, j].tolist()]
            ref = torch.tensor(ref, dtype=torch.float64)
            torch.testing.assert_close(iou[i, j], ref, rtol=1e-9, atol=1e-12)


def test_batched_iou_refuses_broadcasting_and_names_the_box():
    with pytest.raises(ValueError, match=r"same leading \(batch\) dimensions"):
        D.box_iou(torch.zeros(2, 3, 4), torch.zeros(1, 3, 4))
    bad = torch.zeros(2, 1, 4)
    bad[1, 0, 2] = -1.0
    with pytest.raises(ValueError, match=r"b has 1 degenerate.*row \(1, 0\)"):
        D.box_iou(torch.zeros(2, 1, 4), bad)
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\)"):
        D.box_area(torch.zeros(2, 1, 4))  # only box_iou takes a batch


def test_giou_keeps_decreasing_where_iou_is_flat():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    far = torch.tensor([[d, 0.0, d + 1.0, 1.0] for d in (2.0, 3.0, 5.0, 9.0)])
    assert torch.all(D.box_iou(a, far) == 0)
    giou = D.generalized_box_iou(a, far)[0]
    assert torch.all(giou[1:] < giou[:-1])


# ------------------------------------------------------------------------------------ NMS
def brute_force_nms(boxes, scores, threshold):
    """Reference written from the definition: repeatedly take the best remaining box and
    delete everything that overlaps it by more than the threshold."""
    boxes, scores = boxes.tolist(), scores.tolist()
    remaining = list(range(len(boxes)))
    keep = []
    while remaining:
        best = max(remaining, key=lambda i: (scores[i], -i))  # ties: the earlier box first
        keep.append(best)
        remaining = [i for i in remaining if i != best and scalar_iou(boxes[best], boxes[i]) <= threshold]
    return keep


@settings(max_examples=80, deadline=None)
@given(xyxy_strategy(0, 25), st.floats(0.0, 1.0), st.data())
def test_nms_matches_brute_force(boxes, threshold, data):
    scores = torch.tensor(
        data.draw(st.lists(st.floats(0, 1), min_size=len(boxes), max_size=len(boxes))), dtype=torch.float64
    )
    keep = D.nms(boxes, scores, threshold)
    assert keep.dtype == torch.int64
    assert keep.tolist() == brute_force_nms(boxes, scores, threshold)
    # and the properties that define the greedy result
    kept_iou = D.box_iou(boxes[keep], boxes[keep]).fill_diagonal_(0)
    assert torch.all(kept_iou <= threshold)
    assert torch.all(scores[keep][1:] <= scores[keep][:-1])
    assert [i for i, _ in D.nms_steps(boxes, scores, threshold)] == keep.tolist()


def test_nms_on_a_hand_made_example():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # box 3 (0.95) suppresses 0 (IoU 0.9) but not 1 (IoU 72/(90+100-72) = 0.61 < 0.7)
    assert D.nms(boxes, scores, 0.7).tolist() == [3, 1, 2]
    assert D.nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert D.nms_steps(boxes, scores, 0.5) == [(3, [0, 1]), (2, [])]
    assert D.nms(boxes, scores, 1.0).tolist() == [3, 0, 1, 2]  # nothing has IoU > 1
    assert D.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


@settings(max_examples=40, deadline=None)
@given(xyxy_strategy(0, 25), st.floats(0.0, 1.0), st.data())
def test_batched_nms_is_nms_per_class(boxes, threshold, data):
    n = len(boxes)
    scores = torch.tensor(data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)), dtype=torch.float64)
    labels = torch.tensor(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype=torch.int64)
    keep = D.batched_nms(boxes, scores, labels, threshold)
    expected = []
    for c in range(4):
        idx = [i for i in range(n) if labels[i] == c]
        expected += [idx[j] for j in brute_force_nms(boxes[idx], scores[idx], threshold)] if idx else []
    assert sorted(keep.tolist()) == sorted(expected)
    assert torch.all(scores[keep][1:] <= scores[keep][:-1])


def test_nms_errors():
    boxes = torch.tensor([[0.0, 0, 1, 1], [0, 0, 2, 2]])
    with pytest.raises(ValueError, match=r"scores must have shape \(2,\) to match boxes"):
        D.nms(boxes, torch.ones(3), 0.5)
    with pytest.raises(ValueError, match="iou_threshold must be a finite number in"):
        D.nms(boxes, torch.ones(2), 1.5)
    with pytest.raises(TypeError, match="iou_threshold"):
        D.nms(boxes, torch.ones(2), "0.5")
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        D.batched_nms(boxes, torch.ones(2), torch.zeros(1, dtype=torch.int64), 0.5)
    with pytest.raises(ValueError, match="boxes has 1 degenerate"):
        D.nms(torch.tensor([[0.0, 0, 1, 1], [0, 5, 2, 2]]), torch.ones(2), 0.5)


# ---------------------------------------------------------------- anchors and box encoding
def test_anchors_layout_sizes_and_ratios():
    anchors = D.make_anchors((3, 4), stride=16, sizes=(16.0, 32.0), aspect_ratios=(0.5, 1.0, 2.0))
    assert anchors.shape == (3 * 4 * 6, 4)
    grid = anchors.view(3, 4, 6, 4)
    centre = (grid[..., :2] + grid[..., 2:]) / 2
    torch.testing.assert_close(centre[2, 1, 0], torch.tensor([1.5 * 16, 2.5 * 16]))
    wh = grid[0, 0, :, 2:] - grid[0, 0, :, :2]
    torch.testing.assert_close(wh[:, 0] * wh[:, 1], torch.tensor([256.0] * 3 + [1024.0] * 3))
    torch.testing.assert_close(wh[:, 1] / wh[:, 0], torch.tensor([0.5, 1.0, 2.0] * 2))
    with pytest.raises(ValueError, match="feature_size"):
        D.make_anchors((3,), 16)
    with pytest.raises(TypeError, match="stride must be an int"):
        D.make_anchors((3, 3), 16.0)
    with pytest.raises(ValueError, match="aspect_ratios"):
        D.make_anchors((3, 3), 16, aspect_ratios=(0.0,))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 10).flatmap(lambda n: st.tuples(xyxy_strategy(n, n), xyxy_strategy(n, n))),
    st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]),
)
def test_encode_decode_round_trip(pair, weights):
    reference, boxes = pair
    deltas = D.encode_boxes(reference, boxes, weights)
    torch.testing.assert_close(
        D.decode_boxes(reference, deltas, weights, max_log_scale=100.0), boxes, rtol=1e-9, atol=1e-7
    )
    torch.testing.assert_close(D.encode_boxes(boxes, boxes, weights), torch.zeros_like(boxes))


def test_encoding_is_relative_to_the_anchor_size():
    anchor = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    box = torch.tensor([[5.0, 10.0, 15.0, 30.0]])  # shifted by half a width and half a height
    torch.testing.assert_close(D.encode_boxes(anchor, box), torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
    torch.testing.assert_close(D.encode_boxes(anchor * 3, box * 3), torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
    big = D.decode_boxes(anchor, torch.tensor([[0.0, 0.0, 50.0, 50.0]]))  # exp clamped
    assert torch.isfinite(big).all()
    with pytest.raises(ValueError, match="positive width"):
        D.encode_boxes(anchor, torch.tensor([[1.0, 1.0, 1.0, 5.0]]))
    with pytest.raises(ValueError, match="same shape"):
        D.encode_boxes(anchor, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="deltas must have shape"):
        D.decode_boxes(anchor, torch.zeros(1, 3))


def test_match_anchors():
    anchors = torch.tensor(
        [[0.0, 0, 10, 10], [0, 0, 10, 12], [5, 5, 15, 15], [40, 40, 50, 50], [0, 30, 4, 34]]
    )
    gt = torch.tensor([[0.0, 0, 10, 10], [30, 30, 32, 32]])
    labels, matched = D.match_anchors(anchors, gt, high=0.7, low=0.3)
    # IoU with gt0: 1, 10/12, 25/175, 0, 0; gt1 overlaps nothing (best IoU 0 -> no forced match)
    assert labels.tolist() == [1, 1, 0, 0, 0]
    assert matched[:2].tolist() == [0, 0]
    # best anchor IoU 16/100 < 0.3 (others 16/120, 9/107): kept by the low-quality rule alone
    gt_small = torch.tensor([[4.0, 4, 8, 8]])
    labels, _ = D.match_anchors(anchors, gt_small)
    assert labels.tolist() == [1, 0, 0, 0, 0]
    # a tie for the best anchor: both become positive
    labels, _ = D.match_anchors(
        torch.tensor([[0.0, 0, 4, 4], [4, 0, 8, 4], [20, 20, 30, 30]]), torch.tensor([[2.0, 0, 6, 4]])
    )
    assert labels.tolist() == [1, 1, 0]
    labels, _ = D.match_anchors(anchors, gt_small, allow_low_quality=False)
    assert labels.tolist() == [0, 0, 0, 0, 0]
    labels, matched = D.match_anchors(anchors, torch.zeros(0, 4))
    assert labels.tolist() == [0] * 5 and matched.tolist() == [-1] * 5
    with pytest.raises(ValueError, match="low must be <= high"):
        D.match_anchors(anchors, gt, high=0.3, low=0.7)


# ------------------------------------------------------------------------------ RoI ops
def test_roi_align_hand_computed_bilinear():
    f = torch.arange(16.0).reshape(1, 1, 4, 4)  # f[i, j] = 4 i + j: bilinear is exact on it
    # one bin, one sample at the centre of the box [1, 1, 3, 2] (aligned: minus half a cell)
    # -> point (x, y) = (2 - 0.5, 1.5 - 0.5) = (1.5, 1.0) -> 4 * 1.0 + 1.5 = 5.5
    out = D.roi_align(
        f, torch.tensor([[0.0, 1, 1, 3, 2]]), output_size=1, spatial_scale=1.0, sampling_ratio=1
    )
    assert out.item() == pytest.approx(5.5)
    # a non-linear map, by hand: g = [[0, 1], [2, 9]]; at (y, x) = (0.25, 0.5):
    # (0.75)(0.5)0 + (0.75)(0.5)1 + (0.25)(0.5)2 + (0.25)(0.5)9 = 0.375 + 0.25 + 1.125 = 1.75
    g = torch.tensor([[[[0.0, 1.0], [2.0, 9.0]]]])
    box = torch.tensor([[0.0, 0.5, 0.25, 1.5, 1.25]])  # centre (1.0, 0.75) -> minus 0.5 -> (0.5, 0.25)
    assert D.roi_align(g, box, 1, 1.0, 1).item() == pytest.approx(1.75)
    # 2x2 bins with 2x2 samples each, averaged: on a linear map = the value at each bin's centre
    out = D.roi_align(f, torch.tensor([[0.0, 0.5, 0.5, 3.5, 3.5]]), output_size=2, spatial_scale=1.0)
    # bin centres (x, y) = (1.25, 1.25) etc. minus 0.5 -> (0.75, 0.75), (2.25, 0.75), ...
    expected = torch.tensor([[4 * 0.75 + 0.75, 4 * 0.75 + 2.25], [4 * 2.25 + 0.75, 4 * 2.25 + 2.25]])
    torch.testing.assert_close(out[0, 0], expected)


def roi_align_grid_sample(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """Independent RoI align: sample points by F.grid_sample (bilinear, border), then average."""
    out = []
    n = output_size * sampling_ratio
    _, _, h, w = features.shape
    for roi in rois.tolist():
        b, x1, y1, x2, y2 = roi
        off = 0.5 if aligned else 0.0
        x1, y1, x2, y2 = (v * spatial_scale - off for v in (x1, y1, x2, y2))
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        px = [x1 + (k + 0.5) * rw / n for k in range(n)]
        py = [y1 + (k + 0.5) * rh / n for k in range(n)]
        # align_corners=True: -1 and +1 are the centres of the first and last cells
        gx = torch.tensor([2 * x / (w - 1) - 1 for x in px], dtype=features.dtype)
        gy = torch.tensor([2 * y / (h - 1) - 1 for y in py], dtype=features.dtype)
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]  # (1, n, n, 2)
        samples = F.grid_sample(
            features[int(b)][None], grid, mode="bilinear", padding_mode="border", align_corners=True
        )
        out.append(F.avg_pool2d(samples, sampling_ratio)[0])
    return torch.stack(out)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
def test_roi_align_matches_grid_sample(aligned, sampling_ratio):
    g = torch.Generator().manual_seed(sampling_ratio)
    features = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64)
    stride = 8
    xy = torch.rand(20, 2, generator=g, dtype=torch.float64) * torch.tensor([60.0, 50.0]) + 4
    wh = torch.rand(20, 2, generator=g, dtype=torch.float64) * 20 + 0.5
    boxes = torch.cat([xy, torch.minimum(xy + wh, torch.tensor([11 * 8 - 4.0, 9 * 8 - 4.0]))], 1)
    rois = torch.cat([torch.randint(0, 2, (20, 1), generator=g).double(), boxes], 1)
    ours = D.roi_align(features, rois, 3, 1 / stride, sampling_ratio, aligned)
    ref = roi_align_grid_sample(features, rois, 3, 1 / stride, sampling_ratio, aligned)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_roi_align_far_outside_is_zero_and_gradients_flow():
    f = torch.ones(1, 1, 4, 4, requires_grad=True)
    out = D.roi_align(f, torch.tensor([[0.0, 20, 20, 30, 30]]), 2, 1.0)
    assert torch.all(out == 0)
    out = D.roi_align(f, torch.tensor([[0.0, 0.3, 0.7, 2.9, 3.1]]), 2, 1.0)
    out.sum().backward()
    assert f.grad.abs().sum() > 0


def test_roi_pool_hand_computed():
    f = torch.arange(36.0).reshape(1, 1, 6, 6)  # increasing to the right and down
    # box [0.6, 0.6, 3.4, 3.4] rounds to cells 1..3 (3 x 3), 2 x 2 bins: rows/cols {1,2}, {2,3}
    out = D.roi_pool(f, torch.tensor([[0.0, 0.6, 0.6, 3.4, 3.4]]), 2, 1.0)
    assert out[0, 0].tolist() == [[14.0, 15.0], [20.0, 21.0]]
    whole = D.roi_pool(f, torch.tensor([[0.0, 0, 0, 5, 5]]), 1, 1.0)
    assert whole.item() == 35.0
    # round half away from zero (C's round), not half to even: 2.5 -> 3
    out = D.roi_pool(f, torch.tensor([[0.0, 2.5, 2.5, 2.5, 2.5]]), 1, 1.0)
    assert out.item() == f[0, 0, 3, 3].item()
    # regions off the map give empty bins -> 0
    assert D.roi_pool(f, torch.tensor([[0.0, 40, 40, 50, 50]]), 2, 1.0).abs().sum() == 0


def test_roi_errors():
    f = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"rois must have shape \(K, 5\)"):
        D.roi_align(f, torch.zeros(3, 4), 2, 1.0)
    with pytest.raises(ValueError, match=r"rois\[:, 0\] must be batch indices in \[0, 2\)"):
        D.roi_align(f, torch.tensor([[2.0, 0, 0, 1, 1]]), 2, 1.0)
    with pytest.raises(ValueError, match=r"rois\[:, 1:\] has 1 degenerate"):
        D.roi_pool(f, torch.tensor([[0.0, 3, 0, 1, 1]]), 2, 1.0)
    with pytest.raises(ValueError, match=r"features must have shape \(B, C, H, W\)"):
        D.roi_pool(torch.zeros(4, 4), torch.zeros(1, 5), 2, 1.0)
    with pytest.raises(ValueError, match="sampling_ratio must be >= 1"):
        D.roi_align(f, torch.zeros(1, 5), 2, 1.0, sampling_ratio=0)


def test_spatial_pyramid_pool_fixed_length_and_bins():
    g = torch.Generator().manual_seed(0)
    for h, w in ((4, 4), (7, 13), (16, 9)):
        x = torch.randn(2, 3, h, w, generator=g)
        out = D.spatial_pyramid_pool(x, (1, 2, 4))
        assert out.shape == (2, 3 * 21)
        torch.testing.assert_close(out[:, :3], x.amax(dim=(2, 3)))  # level 1: global max
    x = torch.randn(1, 1, 8, 8, generator=g)
    level2 = D.spatial_pyramid_pool(x, (2,))[0]
    expected = torch.stack(
        [x[0, 0, :4, :4].max(), x[0, 0, :4, 4:].max(), x[0, 0, 4:, :4].max(), x[0, 0, 4:, 4:].max()]
    )
    torch.testing.assert_close(level2, expected)
    with pytest.raises(ValueError, match="smaller than the finest level"):
        D.spatial_pyramid_pool(torch.zeros(1, 1, 3, 3), (1, 2, 4))
    with pytest.raises(TypeError, match=r"levels\[1\] must be an int"):
        D.spatial_pyramid_pool(torch.zeros(1, 1, 8, 8), (1, 2.0))


# -------------------------------------------------------------------- mAP vs pycocotools
def coco_reference(preds, targets, num_classes, iou_thresholds=None):
    """COCOeval on the same detections: stats[0:3] = AP, AP50, AP75 and the precision array."""
    images, anns, dets = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        images.append({"id": i + 1})
        for b, label in zip(t["boxes"].tolist(), t["labels"].tolist(), strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": label + 1,
                    "bbox": [b[0], b[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for b, s, label in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist(), strict=True):
            dets.append(
                {
                    "image_id": i + 1,
                    "category_id": label + 1,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "score": s,
                }
            )
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c + 1} for c in range(num_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        if iou_thresholds is not None:
            ev.params.iouThrs = np.array(iou_thresholds)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def random_detection_problem(seed, n_images=15, num_classes=5, grid=None):
    """Targets of classes 0..3 (class 4 never has targets), jittered and random detections,
    some images with no targets, some with no detections, some classes with no detections."""
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for i in range(n_images):
        m = int(torch.randint(0, 7, (1,), generator=g)) if i % 5 else 0
        gt = random_boxes(m, g, grid=grid)
        gt_labels = torch.randint(0, num_classes - 1, (m,), generator=g)
        n_random = int(torch.randint(0, 10, (1,), generator=g)) if i % 4 else 0
        jitter = gt + torch.randn(m, 4, generator=g, dtype=torch.float64) * 3
        if grid:
            jitter = torch.round(jitter * grid) / grid
        jitter = torch.cat(
            [torch.minimum(jitter[:, :2], jitter[:, 2:]), torch.maximum(jitter[:, :2], jitter[:, 2:])], 1
        )
        keep = torch.rand(m, generator=g) < 0.8
        boxes = torch.cat(
            [jitter[keep], gt[:2] if i % 3 == 0 else gt[:0], random_boxes(n_random, g, grid=grid)]
        )
        labels = torch.cat(
            [
                gt_labels[keep],
                gt_labels[:2] if i % 3 == 0 else gt_labels[:0],
                torch.randint(0, num_classes, (n_random,), generator=g),
            ]
        )
        scores = torch.rand(len(boxes), generator=g, dtype=torch.float64)
        if i % 7 == 6:  # an image with targets and no detections at all
            boxes, labels, scores = boxes[:0], labels[:0], scores[:0]
        preds.append({"boxes": boxes, "scores": scores, "labels": labels})
        targets.append({"boxes": gt, "labels": gt_labels})
    return preds, targets


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("grid", [None, 2])
def test_map_equals_cocoeval(seed, grid):
    preds, targets = random_detection_problem(seed, grid=grid)
    assert any(len(p["scores"]) == 0 for p in preds) and any(len(t["labels"]) == 0 for t in targets)
    assert 4 not in torch.cat([t["labels"] for t in targets]).tolist()
    ours = D.mean_average_precision(preds, targets)
    ev = coco_reference(preds, targets, num_classes=5)
    assert ours["map"] == pytest.approx(ev.stats[0], abs=1e-6)
    assert ours["map_50"] == pytest.approx(ev.stats[1], abs=1e-6)
    assert ours["map_75"] == pytest.approx(ev.stats[2], abs=1e-6)
    # per class and threshold: COCO's precision array averaged over recall
    coco_ap = ev.eval["precision"][:, :, :, 0, 2].mean(axis=1)  # (T, K), area "all", 100 dets
    for k, label in enumerate(ours["classes"]):
        np.testing.assert_allclose(ours["ap"][:, k].numpy(), coco_ap[:, label], atol=1e-12)
    assert np.all(coco_ap[:, 4] == -1)  # the class without targets is skipped by both
    assert 4 not in ours["classes"]


def test_map_equals_cocoeval_with_many_detections_and_custom_thresholds():
    g = torch.Generator().manual_seed(7)
    preds, targets = [], []
    for _ in range(4):  # more than 100 detections per image and class: only the best 100 count
        gt = random_boxes(20, g)
        boxes = torch.cat([gt + torch.randn(20, 4, generator=g, dtype=torch.float64), random_boxes(130, g)])
        boxes = torch.cat(
            [torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])], 1
        )
        preds.append(
            {
                "boxes": boxes,
                "scores": torch.rand(150, generator=g, dtype=torch.float64),
                "labels": torch.zeros(150, dtype=torch.int64),
            }
        )
        targets.append({"boxes": gt, "labels": torch.zeros(20, dtype=torch.int64)})
    ours = D.mean_average_precision(preds, targets)
    ev = coco_reference(preds, targets, 1)
    assert ours["map"] == pytest.approx(ev.stats[0], abs=1e-6)
    assert ours["map_50"] == pytest.approx(ev.stats[1], abs=1e-6)
    thresholds = [0.3, 0.5, 0.7]
    ours = D.mean_average_precision(preds, targets, iou_thresholds=thresholds)
    ev = coco_reference(preds, targets, 1, iou_thresholds=thresholds)
    assert ours["map"] == pytest.approx(ev.stats[0], abs=1e-6)
    assert ours["map_50"] == pytest.approx(ev.stats[1], abs=1e-6)
    assert math.isnan(ours["map_75"])


def test_map_extremes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 35]])
    labels = torch.tensor([0, 1])
    perfect = [{"boxes": boxes, "scores": torch.tensor([0.9, 0.8]), "labels": labels}]
    targets = [{"boxes": boxes, "labels": labels}]
    result = D.mean_average_precision(perfect, targets)
    assert result["map"] == pytest.approx(1.0) and result["map_50"] == pytest.approx(1.0)
    empty = [
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    ]
    assert D.mean_average_precision(empty, targets)["map"] == 0.0
    no_targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    assert math.isnan(D.mean_average_precision(perfect, no_targets)["map"])


def test_average_precision_hand_computed():
    # detections: hit, miss, hit with 2 objects -> recall .5 .5 1, precision 1 .5 2/3
    recall, precision = D.precision_recall(torch.tensor([True, False, True]), n_gt=2)
    torch.testing.assert_close(recall, torch.tensor([0.5, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(precision, torch.tensor([1.0, 0.5, 2 / 3], dtype=torch.float64))
    # envelope 1, 2/3, 2/3. All-point: 0.5 * 1 + 0.5 * 2/3
    assert D.average_precision(recall, precision, "all") == pytest.approx(0.5 + 1 / 3)
    # 11-point: recalls 0..0.5 (6 points) -> 1, 0.6..1.0 (5 points) -> 2/3
    assert D.average_precision(recall, precision, "voc11") == pytest.approx((6 + 5 * 2 / 3) / 11)
    # 101-point: 0..0.50 (51 points) -> 1, 0.51..1.00 (50 points) -> 2/3
    assert D.average_precision(recall, precision, "coco") == pytest.approx((51 + 50 * 2 / 3) / 101)
    # recall never reaches 1: beyond the last recall precision counts as 0
    recall, precision = D.precision_recall(torch.tensor([True]), n_gt=4)
    assert D.average_precision(recall, precision, "coco") == pytest.approx(26 / 101)
    assert D.average_precision(recall, precision, "voc11") == pytest.approx(3 / 11)
    assert D.average_precision(recall, precision, "all") == pytest.approx(0.25)
    with pytest.raises(ValueError, match="method"):
        D.average_precision(recall, precision, "voc")
    with pytest.raises(ValueError, match=r"precision must have shape \(D,\) with D = 1"):
        D.average_precision(recall, torch.zeros(2), "all")


def test_match_image_greedy_and_ties():
    gt = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])  # two identical objects
    dets = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    det_matched, gt_matched = D.match_image(dets, gt, 0.5)
    assert det_matched.tolist() == [True, True, False]  # the third is a duplicate
    assert gt_matched.tolist() == [True, True]
    # a detection takes the best *unmatched* object, even when a worse one is the only one left
    gt = torch.tensor([[0.0, 0, 10, 10], [2, 0, 12, 10]])
    det_matched, gt_matched = D.match_image(torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]]), gt, 0.5)
    assert det_matched.tolist() == [True, True]


def test_map_input_errors():
    t = [{"boxes": torch.zeros(1, 4), "labels": torch.zeros(1, dtype=torch.int64)}]
    p = [{"boxes": torch.zeros(1, 4), "scores": torch.zeros(1), "labels": torch.zeros(1, dtype=torch.int64)}]
    with pytest.raises(ValueError, match="one entry per image, got 2 and 1"):
        D.mean_average_precision(p * 2, t)
    with pytest.raises(ValueError, match=r"preds\[0\] is missing the key\(s\) \['scores'\]"):
        D.mean_average_precision([{"boxes": torch.zeros(1, 4), "labels": torch.zeros(1)}], t)
    with pytest.raises(ValueError, match=r"preds\[0\]\['scores'\] must have shape \(1,\)"):
        D.mean_average_precision([{**p[0], "scores": torch.zeros(2)}], t)
    with pytest.raises(TypeError, match=r"targets\[0\]\['labels'\] must be an integer tensor"):
        D.mean_average_precision(p, [{**t[0], "labels": torch.zeros(1)}])
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\] has 1 degenerate"):
        D.mean_average_precision(p, [{**t[0], "boxes": torch.tensor([[5.0, 0, 1, 1]])}])
    with pytest.raises(TypeError, match="preds must be a list of dicts"):
        D.mean_average_precision(p[0], t)
    with pytest.raises(ValueError, match="iou_thresholds must be a finite number in"):
        D.mean_average_precision(p, t, iou_thresholds=[1.5])


def test_recall_by_size():
    targets = [
        {
            "boxes": torch.tensor([[0.0, 0, 4, 4], [10, 10, 14, 14], [20, 20, 50, 50]]),
            "labels": torch.tensor([0, 0, 1]),
        }
    ]
    preds = [
        {
            "boxes": torch.tensor([[0.0, 0, 4, 4], [20, 20, 50, 50], [10, 10, 14, 14]]),
            "scores": torch.tensor([0.9, 0.8, 0.7]),
            "labels": torch.tensor([0, 1, 1]),
        }
    ]  # last: wrong class
    recall = D.recall_by_size(preds, targets, {"small": (0, 10), "large": (10, 100), "none": (100, 200)})
    assert recall["small"] == 0.5 and recall["large"] == 1.0 and math.isnan(recall["none"])


# -------------------------------------------------------------------- DETR's matching
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4).flatmap(lambda g: st.tuples(st.integers(g, 6), st.just(g))), st.integers(0, 10**6))
def test_hungarian_is_the_best_assignment(shape, seed):
    q, g = shape
    cost = torch.rand(q, g, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    rows, cols = D.hungarian_match(cost)
    assert cols.tolist() == list(range(g)) and len(set(rows.tolist())) == g
    best = min(sum(cost[p[j], j].item() for j in range(g)) for p in itertools.permutations(range(q), g))
    assert cost[rows, cols].sum().item() == pytest.approx(best, abs=1e-12)


def test_detr_cost_matrix_by_hand():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))  # 2 classes + no-object
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]])
    tgt = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    cost = M.detr_cost_matrix(logits, pred, torch.tensor([0]), tgt, 1.0, 5.0, 2.0)
    # query 0: -0.7 + 0 - 2 * 1. query 1: xyxy [.25, .25, .35, .35] vs [.4, .4, .6, .6]: L1 distance
    # 0.6, no overlap, union 0.05, hull 0.35^2 -> GIoU = -(0.1225 - 0.05) / 0.1225
    torch.testing.assert_close(cost, torch.tensor([[-2.7], [-0.1 + 3.0 + 2 * 0.0725 / 0.1225]]))
    with pytest.raises(ValueError, match="tgt_labels must be in"):
        M.detr_cost_matrix(logits, pred, torch.tensor([2]), tgt)
    with pytest.raises(ValueError, match="pred_boxes must have 2 rows"):
        M.detr_cost_matrix(logits, pred[:1], torch.tensor([0]), tgt)
    with pytest.raises(ValueError, match="cost must be finite"):
        D.hungarian_match(torch.tensor([[math.inf]]))


def test_set_loss_sends_duplicates_to_no_object():
    tgt = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]])
    labels = torch.tensor([0, 1])
    pred = torch.tensor(
        [[0.3, 0.3, 0.2, 0.2], [0.31, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]], requires_grad=True
    )
    logits = torch.zeros(3, 3, requires_grad=True)
    loss, (rows, cols) = M.set_prediction_loss(logits, pred, labels, tgt)
    assert rows.tolist() == [0, 2] and cols.tolist() == [0, 1]  # query 1, the duplicate, is unmatched
    loss.backward()
    # gradient descent raises query 1's no-object logit (its gradient on it is negative)
    assert logits.grad[1, 2] < 0 and logits.grad[1, :2].sum() > 0
    assert pred.grad[1].abs().sum() == 0  # an unmatched query's box gets no box loss


def test_nan_scores_are_refused_everywhere():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10.5]])
    scores = torch.tensor([0.9, float("nan"), 0.95])  # NaN used to keep its box and drop the 0.95 one
    with pytest.raises(ValueError, match="scores must be finite, got a tensor containing NaN"):
        D.nms(boxes, scores, 0.5)
    with pytest.raises(ValueError, match="scores must be finite"):
        D.batched_nms(boxes, scores, torch.zeros(3, dtype=torch.long), 0.5)
    with pytest.raises(TypeError, match="scores must be a floating-point tensor"):
        D.nms(boxes, torch.tensor([1, 2, 3]), 0.5)
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        D.batched_nms(boxes, torch.ones(3), torch.zeros(3), 0.5)
    # a NaN score on a false positive used to halve the mAP (1.0 -> 0.5)
    t = [{"boxes": boxes[:1], "labels": torch.tensor([0])}]
    p = [{"boxes": boxes[[0, 1]] + torch.tensor([0.0, 0, 0, 0]), "scores": torch.tensor([0.9, float("nan")]),
          "labels": torch.tensor([0, 0])}]
    with pytest.raises(ValueError, match=r"preds\[0\]\['scores'\] must be finite"):
        D.mean_average_precision(p, t)


def test_recall_by_size_and_match_detections_check_their_arguments():
    t = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0])}]
    p = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.9]),
          "labels": torch.tensor([0])}]
    # max_detections=-1 used to slice [:-1] and drop the only detection
    with pytest.raises(ValueError, match="max_detections must be >= 1, got -1"):
        D.recall_by_size(p, t, {"all": (0.0, math.inf)}, max_detections=-1)
    assert D.recall_by_size(p, t, {"all": (0.0, math.inf)}) == {"all": 1.0}
    with pytest.raises(ValueError, match=r"size_ranges\['x'\] must have low < high"):
        D.recall_by_size(p, t, {"x": (5.0, 1.0)})
    with pytest.raises(ValueError, match="max_detections must be >= 1"):
        D.match_detections(p, t, 0, max_detections=0)
    with pytest.raises(ValueError, match="label must be >= 0"):
        D.match_detections(p, t, -1)


def test_match_detections_pools_images_and_sorts_by_score():
    # image 0: one object, a good detection (0.6) and a duplicate (0.9, also a hit but matched first);
    # image 1: one object, a miss (0.8) and a hit (0.7); a class-1 detection is ignored
    gt0, gt1 = torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[20.0, 20, 30, 30]])
    t = [{"boxes": gt0, "labels": torch.tensor([0])}, {"boxes": gt1, "labels": torch.tensor([0])}]
    p = [
        {"boxes": torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 9]]), "scores": torch.tensor([0.6, 0.9]),
         "labels": torch.tensor([0, 0])},
        {"boxes": torch.tensor([[50.0, 50, 60, 60], [20.0, 20, 30, 30], [20.0, 20, 30, 30]]),
         "scores": torch.tensor([0.8, 0.7, 0.99]), "labels": torch.tensor([0, 0, 1])},
    ]
    scores, tp, n_gt = D.match_detections(p, t, 0, iou_thresholds=(0.5, 0.95))
    assert n_gt == 2
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])
    # at 0.5 the 0.9 box (IoU 0.9) takes image 0's object, the 0.6 one is a duplicate;
    # at 0.95 the 0.9 box misses (IoU 0.9 < 0.95) and the exact 0.6 box matches
    assert tp.tolist() == [[True, False, True, False], [False, False, True, True]]
    # max_detections=1 keeps only the best detection of each image
    scores, tp, _ = D.match_detections(p, t, 0, max_detections=1)
    assert scores.tolist() == pytest.approx([0.9, 0.8]) and tp.tolist() == [[True, False]]


def test_box_helpers_refuse_bad_numbers():
    ref = torch.tensor([[0.0, 0, 10, 10]])
    with pytest.raises(ValueError, match="max_log_scale must be finite and > 0"):
        D.decode_boxes(ref, torch.zeros(1, 4), max_log_scale=-1.0)
    with pytest.raises(ValueError, match="deltas must be finite"):
        D.decode_boxes(ref, torch.full((1, 4), float("nan")))
    with pytest.raises(ValueError, match="weights entries must be finite and > 0"):
        D.encode_boxes(ref, ref, weights=(1.0, 1.0, 0.0, 1.0))
    feats = torch.rand(1, 2, 8, 8)
    rois = torch.tensor([[0.0, 0, 0, 16, 16]])
    with pytest.raises(ValueError, match="spatial_scale must be finite and > 0"):
        D.roi_align(feats, rois, 2, -0.25)
    with pytest.raises(ValueError, match="spatial_scale must be finite and > 0"):
        D.roi_pool(feats, rois, 2, float("nan"))
    with pytest.raises(ValueError, match="features must be finite"):
        D.spatial_pyramid_pool(torch.full((1, 1, 4, 4), float("nan")))
    with pytest.raises(TypeError, match="tp must be a bool tensor"):
        D.precision_recall(torch.tensor([1.0, 0.0]), 2)
    with pytest.raises(ValueError, match="recall must hold values in"):
        D.average_precision(torch.tensor([0.5, 1.5]), torch.tensor([1.0, 1.0]))
