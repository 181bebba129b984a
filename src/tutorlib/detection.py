"""Object detection from boxes to mAP: the code behind the chapter ``book/detection.md``.

Everything a detector does around its network lives here, each piece as a small function:

- boxes: :func:`box_convert` (xyxy / xywh / cxcywh), :func:`box_area`, :func:`box_iou`,
  :func:`generalized_box_iou`;
- removing duplicates: :func:`nms` (greedy non-maximum suppression, torchvision's semantics),
  :func:`batched_nms` (per class), :func:`nms_steps` (the same, step by step);
- anchors and the region proposal network: :func:`make_anchors`, :func:`encode_boxes` /
  :func:`decode_boxes` (Faster R-CNN's box parametrisation), :func:`match_anchors`;
- features of a region: :func:`roi_pool` (Fast R-CNN), :func:`roi_align` (Mask R-CNN),
  :func:`spatial_pyramid_pool` (SPP-net);
- the metric: :func:`match_detections`, :func:`average_precision` (COCO 101-point, VOC 11-point,
  VOC all-point), :func:`mean_average_precision` (COCO's AP@[.5:.95], AP@.5, AP@.75, equal to
  pycocotools' ``COCOeval``), :func:`recall_by_size`;
- set prediction (DETR): :func:`hungarian_match` (the matching cost and the set loss are
  :func:`tutorlib.detection_models.detr_cost_matrix` and ``set_prediction_loss``).

The networks, the synthetic data set and the training loop are in
:mod:`tutorlib.detection_models`.

Conventions: a set of boxes is a floating-point tensor of shape ``(N, 4)``; in the ``xyxy``
format a row is :math:`(x_1, y_1, x_2, y_2)` with :math:`x_1 \\le x_2`, :math:`y_1 \\le y_2`, in
pixels, where the image spans :math:`[0, W] \\times [0, H]` and pixel ``(i, j)`` has its centre at
:math:`(j + \\tfrac12, i + \\tfrac12)`. A detection set is a dict with ``boxes`` ``(N, 4)``,
``scores`` ``(N,)`` and ``labels`` ``(N,)``; a ground-truth set has ``boxes`` and ``labels`` (the
layout of torchmetrics' ``MeanAveragePrecision``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from scipy.optimize import linear_sum_assignment
from torch.nn import functional as F

from tutorlib.validation import (
    check_choice,
    check_finite,
    check_int,
    check_nonnegative,
    check_positive,
    check_probability,
    check_tensor,
)

__all__ = [
    "BOX_FORMATS",
    "average_precision",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "decode_boxes",
    "encode_boxes",
    "generalized_box_iou",
    "hungarian_match",
    "make_anchors",
    "match_anchors",
    "match_detections",
    "match_image",
    "mean_average_precision",
    "nms",
    "nms_steps",
    "precision_recall",
    "recall_by_size",
    "roi_align",
    "roi_pool",
    "spatial_pyramid_pool",
]

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------
def _check_tensor(x: object, name: str, shape: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape}, got {type(x).__name__}")
    return x


def _check_scores(x: object, name: str, n: int, other: str) -> torch.Tensor:
    """Finite float scores ``(n,)``: a NaN score would sort anywhere and break NMS and AP."""
    x = _check_vector(x, name, n, other)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return check_finite(name, x)


def _check_labels(x: object, name: str, n: int, other: str) -> torch.Tensor:
    x = _check_vector(x, name, n, other)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {x.dtype}")
    return x


def _check_boxes(
    boxes: object, name: str = "boxes", fmt: str = "xyxy", batched: bool = False
) -> torch.Tensor:
    """Return ``boxes`` if it is a finite float ``(N, 4)`` tensor of valid boxes in ``fmt``
    (``(*, N, 4)`` with ``batched``)."""
    shape = "(*, N, 4)" if batched else "(N, 4)"
    boxes = _check_tensor(boxes, name, shape)
    if boxes.ndim < 2 or boxes.shape[-1] != 4 or (boxes.ndim != 2 and not batched):
        raise ValueError(f"{name} must have shape {shape}, got {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {boxes.dtype}")
    if not torch.isfinite(boxes).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    if fmt == "xyxy":
        bad = (boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])
        what = "x2 < x1 or y2 < y1; expected x1 <= x2 and y1 <= y2 in xyxy format"
    else:
        bad = (boxes[..., 2] < 0) | (boxes[..., 3] < 0)
        what = f"a negative width or height in {fmt} format"
    if bad.any():
        first = tuple(bad.nonzero()[0].tolist())
        row = first[0] if len(first) == 1 else first
        raise ValueError(
            f"{name} has {int(bad.sum())} degenerate box(es) with {what}; "
            f"first at row {row}: {boxes[first].tolist()}"
        )
    return boxes


def _check_vector(x: object, name: str, n: int, other: str) -> torch.Tensor:
    x = _check_tensor(x, name, f"({n},)")
    if x.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match {other}, got {tuple(x.shape)}")
    return x


def _check_threshold(value: object, name: str) -> float:
    return check_probability(name, value)


# --------------------------------------------------------------------------------------------
# 1. boxes
# --------------------------------------------------------------------------------------------
def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    """Convert boxes between the three common layouts.

    - ``xyxy``: corners :math:`(x_1, y_1, x_2, y_2)` (Pascal VOC, torchvision);
    - ``xywh``: top-left corner and size :math:`(x_1, y_1, w, h)` (COCO's json files);
    - ``cxcywh``: centre and size :math:`(c_x, c_y, w, h)` (YOLO, DETR).

    with :math:`w = x_2 - x_1`, :math:`h = y_2 - y_1`, :math:`c_x = (x_1 + x_2)/2`,
    :math:`c_y = (y_1 + y_2)/2`.

    Args:
        boxes: ``(N, 4)`` in ``in_fmt``.
        in_fmt, out_fmt: one of ``"xyxy"``, ``"xywh"``, ``"cxcywh"``.

    Returns:
        ``(N, 4)`` in ``out_fmt`` (a new tensor).

    Raises:
        ValueError: unknown format, wrong shape, or a degenerate box (negative size).
    """
    for name, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in BOX_FORMATS:
            raise ValueError(f"{name} must be one of {BOX_FORMATS}, got {fmt!r}")
    boxes = _check_boxes(boxes, "boxes", in_fmt)
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        x1, y1, x2, y2 = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    else:
        x1, y1, x2, y2 = a, b, c, d
    if out_fmt == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    elif out_fmt == "cxcywh":
        out = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    else:
        out = (x1, y1, x2, y2)
    return torch.stack(out, dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas :math:`(x_2 - x_1)(y_2 - y_1)` of ``(N, 4)`` xyxy boxes, shape ``(N,)``."""
    boxes = _check_boxes(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _iou_and_union(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and union area of ``(*, N, 4)`` and ``(*, M, 4)`` xyxy boxes, both ``(*, N, M)``:
    the arithmetic of :func:`box_iou`, shared with :func:`generalized_box_iou`."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])  # (*, N, M, 2) top-left of the overlap
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])  # (*, N, M, 2) bottom-right
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    # two boxes of zero area have an empty union: IoU 0, as in pycocotools
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0), union


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every pair of boxes: the library's one IoU (NMS, anchors,
    mAP, the data set's overlap test and YOLO's responsible box all call it).

    .. math::  \\mathrm{IoU}(A, B) = \\frac{|A \\cap B|}{|A \\cup B|}
               = \\frac{|A \\cap B|}{|A| + |B| - |A \\cap B|} \\in [0, 1].

    Two boxes with an empty union (both of zero area) get IoU 0, as in pycocotools.

    Args:
        a: ``(N, 4)`` xyxy boxes.
        b: ``(M, 4)`` xyxy boxes. Both may carry the same leading batch dimensions,
            ``(*, N, 4)`` and ``(*, M, 4)``, for many small independent problems at once.

    Returns:
        ``(N, M)`` tensor (``(*, N, M)`` batched), entry ``[i, j] = IoU(a[i], b[j])``.
    """
    a, b = _check_boxes(a, "a", batched=True), _check_boxes(b, "b", batched=True)
    if a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"a and b must have the same leading (batch) dimensions, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}; no broadcasting")
    iou, _ = _iou_and_union(a, b)
    return iou


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalized IoU (Rezatofighi et al., 2019) of every pair of boxes.

    .. math::  \\mathrm{GIoU}(A, B) = \\mathrm{IoU}(A, B) - \\frac{|C \\setminus (A \\cup B)|}{|C|}
               \\in (-1, 1],

    where :math:`C` is the smallest box that encloses both. Unlike IoU it keeps decreasing as
    two disjoint boxes move apart, so :math:`1 - \\mathrm{GIoU}` is a loss with a gradient even
    when the boxes do not overlap (DETR uses it).

    Args:
        a: ``(N, 4)`` xyxy boxes.
        b: ``(M, 4)`` xyxy boxes.

    Returns:
        ``(N, M)`` tensor.

    References:
        Rezatofighi et al., "Generalized intersection over union", CVPR 2019.
    """
    a, b = _check_boxes(a, "a"), _check_boxes(b, "b")
    iou, union = _iou_and_union(a, b)
    tiny = torch.finfo(union.dtype).tiny
    lt = torch.minimum(a[:, None, :2], b[None, :, :2])  # (N, M, 2) the enclosing box C
    rb = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    wh = rb - lt
    hull = wh[..., 0] * wh[..., 1]
    return torch.where(hull > 0, iou - (hull - union) / hull.clamp(min=tiny), iou)


# --------------------------------------------------------------------------------------------
# 2. non-maximum suppression
# --------------------------------------------------------------------------------------------
def _check_nms_args(boxes, scores, iou_threshold) -> tuple[torch.Tensor, torch.Tensor, float]:
    boxes = _check_boxes(boxes)
    scores = _check_scores(scores, "scores", boxes.shape[0], "boxes")
    return boxes, scores, _check_threshold(iou_threshold, "iou_threshold")


def nms_steps(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> list[tuple[int, list[int]]]:
    """Greedy non-maximum suppression, one step at a time.

    Repeat until no box is left: take the remaining box with the highest score, keep it, and
    delete every remaining box whose IoU with it is *larger than* ``iou_threshold``.

    Returns:
        A list of ``(kept index, [indices it suppressed])``, in the order the boxes were kept.
    """
    boxes, scores, iou_threshold = _check_nms_args(boxes, scores, iou_threshold)
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    iou = box_iou(boxes, boxes)
    alive = set(order)
    steps = []
    for i in order:
        if i not in alive:
            continue
        alive.discard(i)
        suppressed = [j for j in order if j in alive and iou[i, j] > iou_threshold]
        alive.difference_update(suppressed)
        steps.append((i, suppressed))
    return steps


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression with torchvision's semantics.

    Args:
        boxes: ``(N, 4)`` xyxy boxes.
        scores: ``(N,)`` confidence of each box.
        iou_threshold: a box is discarded if its IoU with a kept, higher-scoring box is
            ``> iou_threshold``.

    Returns:
        ``(K,)`` int64 indices of the kept boxes, in decreasing order of score (ties keep their
        input order).

    Raises:
        TypeError, ValueError: bad shapes, degenerate boxes, threshold outside [0, 1].
    """
    boxes, scores, iou_threshold = _check_nms_args(boxes, scores, iou_threshold)
    order = torch.argsort(scores, descending=True, stable=True)
    iou = box_iou(boxes, boxes)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Non-maximum suppression within each class: boxes of different labels never suppress each other.

    Args:
        boxes: ``(N, 4)``; scores: ``(N,)``; labels: ``(N,)`` integer class of each box.

    Returns:
        ``(K,)`` int64 indices of the kept boxes, in decreasing order of score.
    """
    boxes, scores, iou_threshold = _check_nms_args(boxes, scores, iou_threshold)
    labels = _check_labels(labels, "labels", boxes.shape[0], "boxes")
    keep = [
        idx[nms(boxes[idx], scores[idx], iou_threshold)]
        for idx in (torch.nonzero(labels == c)[:, 0] for c in labels.unique())
    ]
    if not keep:
        return torch.zeros(0, dtype=torch.int64)
    keep = torch.cat(keep)
    # Sort the survivors of all classes by score; a stable sort on the sorted indices keeps
    # ties in input order, like nms.
    keep = keep.sort().values
    return keep[torch.argsort(scores[keep], descending=True, stable=True)]


# --------------------------------------------------------------------------------------------
# 3. anchors, box encoding, anchor matching (the RPN's targets)
# --------------------------------------------------------------------------------------------
def make_anchors(
    feature_size: tuple[int, int],
    stride: int,
    sizes: Sequence[float] = (16.0, 32.0),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
) -> torch.Tensor:
    """The anchors of Faster R-CNN's region proposal network on one feature map.

    At every cell :math:`(i, j)` of an :math:`H \\times W` map with stride :math:`s`, centred at
    :math:`((j + \\tfrac12)s, (i + \\tfrac12)s)` in the image, one anchor per size :math:`a` and
    aspect ratio :math:`r = h / w`, with area :math:`a^2`: :math:`w = a/\\sqrt r`,
    :math:`h = a\\sqrt r`.

    Returns:
        ``(H * W * A, 4)`` xyxy anchors with ``A = len(sizes) * len(aspect_ratios)``, ordered
        by row, then column, then size, then ratio (so ``.view(H, W, A, 4)`` recovers the grid).
    """
    if len(feature_size) != 2:
        raise ValueError(f"feature_size must be (H, W), got {feature_size!r}")
    h, w = (check_int(f"feature_size[{i}]", v) for i, v in enumerate(feature_size))
    stride = check_int("stride", stride)
    for name, values in (("sizes", sizes), ("aspect_ratios", aspect_ratios)):
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
            raise TypeError(f"{name} must be a non-empty sequence of positive numbers, got {values!r}")
        for v in values:
            check_positive(f"{name} entries", v)
    size = torch.tensor(sizes, dtype=torch.float32)[:, None]  # (S, 1)
    ratio = torch.tensor(aspect_ratios, dtype=torch.float32)[None, :]  # (1, R)
    aw, ah = (size / ratio.sqrt()).flatten(), (size * ratio.sqrt()).flatten()  # (A,)
    base = torch.stack([-aw, -ah, aw, ah], dim=-1) / 2  # (A, 4) anchors centred at 0
    cy, cx = torch.meshgrid((torch.arange(h) + 0.5) * stride, (torch.arange(w) + 0.5) * stride, indexing="ij")
    centres = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)  # (H*W, 1, 4)
    return (centres + base).reshape(-1, 4)


def encode_boxes(
    reference: torch.Tensor, boxes: torch.Tensor, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)
) -> torch.Tensor:
    """Faster R-CNN's regression targets: where ``boxes`` lie relative to ``reference`` boxes.

    .. math::  t_x = w_x \\frac{x - x_a}{w_a}, \\quad t_y = w_y \\frac{y - y_a}{h_a}, \\quad
               t_w = w_w \\log\\frac{w}{w_a}, \\quad t_h = w_h \\log\\frac{h}{h_a},

    with centres :math:`(x, y)`, sizes :math:`(w, h)` of the box and :math:`(x_a, y_a, w_a, h_a)`
    of the reference (anchor or proposal), and :math:`(w_x, w_y, w_w, w_h)` = ``weights``
    (Faster R-CNN's second stage uses ``(10, 10, 5, 5)``). Offsets are relative to the anchor's
    size, so one regressor serves small and large anchors.

    Args:
        reference, boxes: ``(N, 4)`` xyxy, both with positive width and height.

    Returns:
        ``(N, 4)`` deltas :math:`(t_x, t_y, t_w, t_h)`.

    References:
        Girshick et al., R-CNN, CVPR 2014 (appendix C); Ren et al., Faster R-CNN, NeurIPS 2015.
    """
    reference, boxes = _check_boxes(reference, "reference"), _check_boxes(boxes, "boxes")
    if reference.shape != boxes.shape:
        raise ValueError(
            f"reference and boxes must have the same shape, got {tuple(reference.shape)} "
            f"and {tuple(boxes.shape)}"
        )
    ref, box = box_convert(reference, "xyxy", "cxcywh"), box_convert(boxes, "xyxy", "cxcywh")
    for name, b in (("reference", ref), ("boxes", box)):
        if (b[:, 2:] <= 0).any():
            raise ValueError(f"{name} must have positive width and height to take log(w / w_a)")
    wx, wy, ww, wh = _check_weights(weights)
    return torch.stack(
        [
            wx * (box[:, 0] - ref[:, 0]) / ref[:, 2],
            wy * (box[:, 1] - ref[:, 1]) / ref[:, 3],
            ww * torch.log(box[:, 2] / ref[:, 2]),
            wh * torch.log(box[:, 3] / ref[:, 3]),
        ],
        dim=-1,
    )


def _check_weights(weights: object) -> tuple[float, float, float, float]:
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence) or len(weights) != 4:
        raise ValueError(f"weights must be four positive numbers (w_x, w_y, w_w, w_h), got {weights!r}")
    return tuple(check_positive("weights entries", w) for w in weights)  # type: ignore[return-value]


def decode_boxes(
    reference: torch.Tensor,
    deltas: torch.Tensor,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    max_log_scale: float = math.log(1000.0 / 16),
) -> torch.Tensor:
    """Invert :func:`encode_boxes`: apply predicted deltas ``(N, 4)`` to reference boxes ``(N, 4)``.

    :math:`t_w, t_h` are clamped at ``max_log_scale`` before the exponential (as torchvision
    does), so an untrained regressor cannot produce infinite boxes.

    Returns:
        ``(N, 4)`` xyxy boxes.
    """
    reference = _check_boxes(reference, "reference")
    deltas = _check_tensor(deltas, "deltas", "(N, 4)")
    if deltas.shape != reference.shape:
        raise ValueError(
            f"deltas must have shape {tuple(reference.shape)} to match reference, got {tuple(deltas.shape)}"
        )
    check_tensor("deltas", deltas)
    max_log_scale = check_positive("max_log_scale", max_log_scale)
    ref = box_convert(reference, "xyxy", "cxcywh")
    wx, wy, ww, wh = _check_weights(weights)
    cx = deltas[:, 0] / wx * ref[:, 2] + ref[:, 0]
    cy = deltas[:, 1] / wy * ref[:, 3] + ref[:, 1]
    w = torch.exp((deltas[:, 2] / ww).clamp(max=max_log_scale)) * ref[:, 2]
    h = torch.exp((deltas[:, 3] / wh).clamp(max=max_log_scale)) * ref[:, 3]
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def match_anchors(
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    high: float = 0.7,
    low: float = 0.3,
    allow_low_quality: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label anchors for the RPN: object (1), background (0) or ignored (-1).

    An anchor is positive if its best IoU with a ground-truth box is :math:`\\ge` ``high``,
    negative if it is :math:`<` ``low``, ignored in between. With ``allow_low_quality`` the
    anchor(s) with the highest IoU for each ground-truth box are made positive too, so that
    every object has at least one anchor, however badly the anchor shapes fit it.

    Args:
        anchors: ``(A, 4)`` xyxy; gt_boxes: ``(G, 4)`` xyxy.

    Returns:
        ``labels`` ``(A,)`` int64 in {1, 0, -1} and ``matched`` ``(A,)`` int64: the index of each
        anchor's best ground-truth box (-1 where there is none).
    """
    anchors, gt_boxes = _check_boxes(anchors, "anchors"), _check_boxes(gt_boxes, "gt_boxes")
    high, low = _check_threshold(high, "high"), _check_threshold(low, "low")
    if low > high:
        raise ValueError(f"low must be <= high, got low={low}, high={high}")
    n = anchors.shape[0]
    if gt_boxes.shape[0] == 0:
        return torch.zeros(n, dtype=torch.int64), torch.full((n,), -1, dtype=torch.int64)
    iou = box_iou(anchors, gt_boxes)  # (A, G)
    best, matched = iou.max(dim=1)
    labels = torch.full((n,), -1, dtype=torch.int64)
    labels[best < low] = 0
    labels[best >= high] = 1
    if allow_low_quality:
        best_per_gt = iou.max(dim=0).values  # (G,)
        is_best = (iou == best_per_gt[None, :]) & (best_per_gt[None, :] > 0)  # (A, G)
        labels[is_best.any(dim=1)] = 1
    return labels, matched


# --------------------------------------------------------------------------------------------
# 4. features of a region: RoI pooling, RoI align, spatial pyramid pooling
# --------------------------------------------------------------------------------------------
def _check_rois(features: object, rois: object) -> tuple[torch.Tensor, torch.Tensor]:
    features = _check_tensor(features, "features", "(B, C, H, W)")
    if features.ndim != 4:
        raise ValueError(f"features must have shape (B, C, H, W), got {tuple(features.shape)}")
    check_tensor("features", features)
    rois = _check_tensor(rois, "rois", "(K, 5)")
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(
            f"rois must have shape (K, 5): (batch index, x1, y1, x2, y2), got {tuple(rois.shape)}"
        )
    _check_boxes(rois[:, 1:], "rois[:, 1:]")
    index = rois[:, 0]
    if ((index != index.round()) | (index < 0) | (index >= features.shape[0])).any():
        raise ValueError(f"rois[:, 0] must be batch indices in [0, {features.shape[0]})")
    return features, rois


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.floor(x.abs() + 0.5)  # C's round(), not torch's half-to-even


def roi_pool(
    features: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float
) -> torch.Tensor:
    """Fast R-CNN's RoI max pooling (torchvision's ``roi_pool`` semantics).

    Each region, given in image pixels, is scaled by ``spatial_scale`` (1 / stride) and its
    corners are **rounded to whole feature cells**; the rounded region (corners inclusive) is
    cut into ``output_size`` × ``output_size`` bins whose edges are rounded again (floor and
    ceil), and each bin takes the maximum of its cells (0 for an empty bin). The roundings
    (the corners, and the inclusive end cell) shift each bin by about half a cell on average and
    by more than a cell at worst: the misalignment that :func:`roi_align` removes.

    Args:
        features: ``(B, C, H, W)``.
        rois: ``(K, 5)`` rows ``(batch index, x1, y1, x2, y2)`` in image pixels.
        output_size: bins per side.
        spatial_scale: feature cells per image pixel.

    Returns:
        ``(K, C, output_size, output_size)``.

    References:
        Girshick, "Fast R-CNN", ICCV 2015.
    """
    features, rois = _check_rois(features, rois)
    size = check_int("output_size", output_size)
    spatial_scale = check_positive("spatial_scale", spatial_scale)
    _, c, height, width = features.shape
    out = features.new_zeros(len(rois), c, size, size)
    bins = torch.arange(size + 1, dtype=torch.float64)
    for k, roi in enumerate(rois.double()):
        x1, y1, x2, y2 = _round_half_away(roi[1:] * spatial_scale).tolist()
        roi_w, roi_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        hs = (torch.floor(bins[:-1] * roi_h / size) + y1).clamp(0, height).long()  # bin starts
        he = (torch.ceil(bins[1:] * roi_h / size) + y1).clamp(0, height).long()  # bin ends
        ws = (torch.floor(bins[:-1] * roi_w / size) + x1).clamp(0, width).long()
        we = (torch.ceil(bins[1:] * roi_w / size) + x1).clamp(0, width).long()
        rows = torch.arange(height)
        cols = torch.arange(width)
        in_row = (rows[None, :] >= hs[:, None]) & (rows[None, :] < he[:, None])  # (size, H)
        in_col = (cols[None, :] >= ws[:, None]) & (cols[None, :] < we[:, None])  # (size, W)
        mask = in_row[:, None, :, None] & in_col[None, :, None, :]  # (size, size, H, W)
        fmap = features[int(roi[0])][:, None, None]  # (C, 1, 1, H, W)
        pooled = fmap.masked_fill(~mask, -torch.inf).amax(dim=(-2, -1))  # (C, size, size)
        out[k] = torch.where(mask.any(dim=(-2, -1)), pooled, 0.0)
    return out


def _bilinear(fmap: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sample ``fmap`` ``(C, H, W)`` at points ``y``, ``x`` (any shape S), in cell coordinates
    where cell ``(i, j)`` sits at ``(y, x) = (i, j)``; returns ``(C, *S)``.

    Like torchvision: points up to one cell outside are clamped to the border, points further
    out give 0.
    """
    c, h, w = fmap.shape
    outside = (y < -1.0) | (y > h) | (x < -1.0) | (x > w)
    y, x = y.clamp(min=0), x.clamp(min=0)
    y0, x0 = y.floor().long().clamp(max=h - 1), x.floor().long().clamp(max=w - 1)
    y1, x1 = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
    ly, lx = (y - y0).clamp(max=1) * (y0 < h - 1), (x - x0).clamp(max=1) * (x0 < w - 1)
    hy, hx = 1 - ly, 1 - lx
    flat = fmap.reshape(c, h * w)

    def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        return flat[:, (yy * w + xx).flatten()].reshape(c, *y.shape)

    value = (hy * hx) * at(y0, x0) + (hy * lx) * at(y0, x1) + (ly * hx) * at(y1, x0) + (ly * lx) * at(y1, x1)
    return value.masked_fill(outside, 0.0)


def roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> torch.Tensor:
    """Mask R-CNN's RoI align (torchvision's ``roi_align`` semantics, fixed ``sampling_ratio``).

    No rounding: the region is scaled by ``spatial_scale`` and cut into ``output_size`` ×
    ``output_size`` equal bins; in each bin a ``sampling_ratio`` × ``sampling_ratio`` grid of
    points is sampled by **bilinear interpolation** and averaged. Bilinear interpolation of
    the four cells around a point :math:`(y, x)`, with :math:`y_0 = \\lfloor y \\rfloor`,
    :math:`l_y = y - y_0` (same for :math:`x`):

    .. math::  f(y, x) = (1-l_y)(1-l_x) f_{y_0 x_0} + (1-l_y) l_x f_{y_0, x_0+1}
               + l_y (1-l_x) f_{y_0+1, x_0} + l_y l_x f_{y_0+1, x_0+1}.

    With ``aligned=True`` (Detectron2's default) the region is shifted by half a cell, because
    cell :math:`j` covers image pixels :math:`[j s, (j+1) s)` and has its centre at
    :math:`(j + \\tfrac12) s`.

    Args:
        features: ``(B, C, H, W)``; rois: ``(K, 5)`` rows ``(batch index, x1, y1, x2, y2)``.
        output_size: bins per side; spatial_scale: cells per image pixel.
        sampling_ratio: sample points per bin and axis (>= 1).
        aligned: subtract half a cell (True) or not (torchvision's default, False).

    Returns:
        ``(K, C, output_size, output_size)``.

    References:
        He et al., "Mask R-CNN", ICCV 2017.
    """
    features, rois = _check_rois(features, rois)
    size = check_int("output_size", output_size)
    ratio = check_int("sampling_ratio", sampling_ratio)
    spatial_scale = check_positive("spatial_scale", spatial_scale)
    offset = 0.5 if aligned else 0.0
    box = rois[:, 1:] * spatial_scale - offset  # (K, 4) in cell coordinates
    roi_w, roi_h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    if not aligned:  # torchvision's legacy behaviour: regions at least one cell wide
        roi_w, roi_h = roi_w.clamp(min=1), roi_h.clamp(min=1)
    # positions of the sample points inside [0, 1] of one region, (size * ratio,)
    t = (torch.arange(size * ratio, dtype=features.dtype) + 0.5) / (size * ratio)
    ys = box[:, 1:2] + t[None, :] * roi_h[:, None]  # (K, size * ratio)
    xs = box[:, 0:1] + t[None, :] * roi_w[:, None]
    out = []
    for k in range(len(rois)):
        y, x = torch.meshgrid(ys[k], xs[k], indexing="ij")  # (size * ratio, size * ratio)
        samples = _bilinear(features[int(rois[k, 0])], y, x)  # (C, size * ratio, size * ratio)
        out.append(F.avg_pool2d(samples[None], ratio)[0])  # mean over each bin's points
    if not out:
        return features.new_zeros(0, features.shape[1], size, size)
    return torch.stack(out)


def spatial_pyramid_pool(features: torch.Tensor, levels: Sequence[int] = (1, 2, 4)) -> torch.Tensor:
    """SPP-net's spatial pyramid pooling: a fixed-length vector from a map of any size.

    For each level :math:`n` the map is cut into :math:`n \\times n` bins and each bin is
    max-pooled, giving :math:`C n^2` numbers; the levels are concatenated, so the output has
    :math:`C \\sum_n n^2` entries whatever :math:`H, W` are (:math:`C(1 + 4 + 16) = 21C` for the
    default levels). Bins are those of ``adaptive_max_pool2d``: bin :math:`i` spans
    :math:`[\\lfloor iH/n \\rfloor, \\lceil (i+1)H/n \\rceil)`.

    Args:
        features: ``(B, C, H, W)`` with ``H, W >= max(levels)``.
        levels: bins per side at each level.

    Returns:
        ``(B, C * sum(n * n for n in levels))``.

    References:
        He et al., "Spatial pyramid pooling in deep convolutional networks for visual recognition",
        TPAMI 2015 (ECCV 2014).
    """
    features = _check_tensor(features, "features", "(B, C, H, W)")
    if features.ndim != 4:
        raise ValueError(f"features must have shape (B, C, H, W), got {tuple(features.shape)}")
    check_tensor("features", features)
    levels = [check_int(f"levels[{i}]", n) for i, n in enumerate(levels)]
    if not levels:
        raise ValueError("levels must contain at least one level, e.g. (1, 2, 4)")
    if min(features.shape[-2:]) < max(levels):
        raise ValueError(
            f"features of size {tuple(features.shape[-2:])} are smaller than the finest level {max(levels)}"
        )
    return torch.cat([F.adaptive_max_pool2d(features, n).flatten(1) for n in levels], dim=1)


# --------------------------------------------------------------------------------------------
# 5. the metric: matching, precision-recall, average precision, COCO mAP
# --------------------------------------------------------------------------------------------
def _check_sets(sets: object, name: str, keys: tuple[str, ...]) -> list[dict[str, torch.Tensor]]:
    if not isinstance(sets, Sequence) or isinstance(sets, str | bytes):
        raise TypeError(f"{name} must be a list of dicts (one per image), got {type(sets).__name__}")
    out = []
    for i, item in enumerate(sets):
        where = f"{name}[{i}]"
        if not isinstance(item, Mapping):
            raise TypeError(f"{where} must be a dict with keys {keys}, got {type(item).__name__}")
        missing = [k for k in keys if k not in item]
        if missing:
            raise ValueError(f"{where} is missing the key(s) {missing}; expected {keys}")
        boxes = _check_boxes(item["boxes"], f"{where}['boxes']")
        entry = {"boxes": boxes.double()}
        for key in keys[1:]:
            check = _check_scores if key == "scores" else _check_labels
            entry[key] = check(item[key], f"{where}[{key!r}]", len(boxes), f"{where}['boxes']")
        out.append(entry)
    return out


def _check_preds_targets(preds: object, targets: object):
    p = _check_sets(preds, "preds", ("boxes", "scores", "labels"))
    t = _check_sets(targets, "targets", ("boxes", "labels"))
    if len(p) != len(t):
        raise ValueError(f"preds and targets must have one entry per image, got {len(p)} and {len(t)}")
    return p, t


def match_image(
    det_boxes: torch.Tensor, gt_boxes: torch.Tensor, iou_threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """COCO's greedy matching of one image's detections of one class to its ground truth.

    Detections, **already sorted by decreasing score**, are taken one at a time; each is
    matched to the still unmatched ground-truth box with the highest IoU, if that IoU is
    :math:`\\ge` ``iou_threshold`` (ties go to the later box, as in pycocotools). A matched
    detection is a true positive; the rest are false positives (duplicates included).

    Args:
        det_boxes: ``(D, 4)`` xyxy, sorted by decreasing score; gt_boxes: ``(G, 4)`` xyxy.

    Returns:
        ``det_matched`` ``(D,)`` bool and ``gt_matched`` ``(G,)`` bool.
    """
    threshold = _check_threshold(iou_threshold, "iou_threshold")
    _check_boxes(det_boxes, "det_boxes")
    _check_boxes(gt_boxes, "gt_boxes")
    det_matched, gt_matched = _greedy_match(box_iou(det_boxes, gt_boxes).tolist(), len(gt_boxes), threshold)
    return torch.tensor(det_matched, dtype=torch.bool), torch.tensor(gt_matched, dtype=torch.bool)


def _greedy_match(iou: list[list[float]], n_gt: int, threshold: float) -> tuple[list[bool], list[bool]]:
    threshold = min(threshold, 1 - 1e-10)  # as pycocotools: IoU 1 still matches at t = 1
    gt_matched = [False] * n_gt
    det_matched = [False] * len(iou)
    for d, row in enumerate(iou):
        best, m = threshold, -1
        for g, value in enumerate(row):
            if gt_matched[g] or value < best:
                continue
            best, m = value, g
        if m >= 0:
            gt_matched[m] = det_matched[d] = True
    return det_matched, gt_matched


def match_detections(
    preds: Sequence[Mapping[str, torch.Tensor]],
    targets: Sequence[Mapping[str, torch.Tensor]],
    label: int,
    iou_thresholds: Sequence[float] = (0.5,),
    max_detections: int = 100,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Pool the detections of one class over all images and mark each true or false positive.

    Per image, the ``max_detections`` highest-scoring detections of class ``label`` are matched
    with :func:`match_image`; then all are sorted by score (a stable sort, images in order).

    Returns:
        ``scores`` ``(D,)`` in decreasing order, ``tp`` ``(T, D)`` bool (one row per threshold)
        and the number of ground-truth boxes of the class, :math:`N_{gt}`.
    """
    preds, targets = _check_preds_targets(preds, targets)
    thresholds = [_check_threshold(t, "iou_thresholds") for t in iou_thresholds]
    if not thresholds:
        raise ValueError("iou_thresholds must not be empty")
    check_int("max_detections", max_detections)
    label = check_int("label", label, minimum=0)
    return _match_class(preds, targets, label, thresholds, max_detections)


def _match_class(preds, targets, label, thresholds, max_detections):
    scores, tps, n_gt = [], [], 0
    for p, t in zip(preds, targets, strict=True):
        gt = t["boxes"][t["labels"] == label]
        n_gt += len(gt)
        mine = p["labels"] == label
        s = p["scores"][mine].double()
        order = torch.argsort(s, descending=True, stable=True)[:max_detections]
        boxes = p["boxes"][mine][order]
        scores.append(s[order])
        iou = box_iou(boxes, gt).tolist()  # (D, G), once for all thresholds
        tps.append(
            torch.tensor(
                [_greedy_match(iou, len(gt), thr)[0] for thr in thresholds], dtype=torch.bool
            ).reshape(len(thresholds), len(boxes))
        )
    scores, tp = torch.cat(scores), torch.cat(tps, dim=1)  # (D,), (T, D)
    order = torch.argsort(scores, descending=True, stable=True)
    return scores[order], tp[:, order], n_gt


def precision_recall(tp: torch.Tensor, n_gt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision and recall after each detection, sorted by decreasing score.

    .. math::  \\mathrm{recall}_k = \\frac{TP_k}{N_{gt}}, \\qquad
               \\mathrm{precision}_k = \\frac{TP_k}{TP_k + FP_k} = \\frac{TP_k}{k},

    where :math:`TP_k` counts the true positives among the :math:`k` best detections. (The
    denominator gets pycocotools' :math:`+\\epsilon`, machine epsilon, to agree with it to the bit.)

    Args:
        tp: ``(..., D)`` bool, true positive flags in score order.
        n_gt: number of ground-truth boxes (> 0).

    Returns:
        ``recall``, ``precision``: float64 tensors of the shape of ``tp``.
    """
    n_gt = check_int("n_gt", n_gt)
    if not isinstance(tp, torch.Tensor) or tp.dtype != torch.bool or tp.ndim == 0:
        raise TypeError(f"tp must be a bool tensor (..., D), got {getattr(tp, 'dtype', type(tp).__name__)}"
                        f"{'' if not isinstance(tp, torch.Tensor) else f' of shape {tuple(tp.shape)}'}")
    if bool((tp.sum(-1) > n_gt).any()):
        raise ValueError(f"tp has more true positives than n_gt={n_gt} ground-truth boxes")
    tp_sum = tp.double().cumsum(-1)
    fp_sum = (~tp).double().cumsum(-1)
    eps = torch.finfo(torch.float64).eps
    return tp_sum / n_gt, tp_sum / (tp_sum + fp_sum + eps)


def _coco_recall_thresholds() -> torch.Tensor:
    # Exactly np.linspace(0, 1, 101), the values COCOeval uses: i * 0.01, and 1.0 at the end.
    r = torch.arange(101, dtype=torch.float64) * 0.01
    r[-1] = 1.0
    return r


def average_precision(recall: torch.Tensor, precision: torch.Tensor, method: str = "coco") -> float:
    """Area under a precision-recall curve, in one of three standard ways.

    All three first replace precision by its **envelope**
    :math:`p_{\\mathrm{interp}}(r) = \\max_{r' \\ge r} p(r')`, so that the curve never goes up.

    - ``"coco"``: mean of :math:`p_{\\mathrm{interp}}` at the 101 recalls
      :math:`0, 0.01, \\dots, 1` (0 beyond the highest recall reached);
    - ``"voc11"``: the same at the 11 recalls :math:`0, 0.1, \\dots, 1` (Pascal VOC 2007);
    - ``"all"``: the exact area under the envelope,
      :math:`\\sum_k (r_k - r_{k-1})\\, p_{\\mathrm{interp}}(r_k)` (Pascal VOC 2010 onwards).

    Args:
        recall, precision: ``(D,)`` values after each detection, in score order.
        method: ``"coco"``, ``"voc11"`` or ``"all"``.

    Returns:
        The average precision, a float in [0, 1].

    References:
        Everingham et al., "The Pascal VOC challenge", IJCV 2010; Lin et al., "Microsoft COCO", ECCV 2014.
    """
    dims: dict[str, int] = {}
    check_tensor("recall", recall, ("D",), dims=dims)
    check_tensor("precision", precision, ("D",), dims=dims)
    recall, precision = recall.double(), precision.double()
    for name, value in (("recall", recall), ("precision", precision)):
        if len(value) and (value.min() < 0 or value.max() > 1):
            raise ValueError(f"{name} must hold values in [0, 1], got [{value.min():g}, {value.max():g}]")
    if len(recall) > 1 and (recall[1:] < recall[:-1]).any():
        raise ValueError("recall must be non-decreasing (values after each detection, in score order)")
    check_choice("method", method, ("coco", "voc11", "all"))
    envelope = precision.flip(0).cummax(0).values.flip(0)  # max over this and later points
    if method == "all":
        r = torch.cat([recall.new_zeros(1), recall])
        return float(((r[1:] - r[:-1]) * envelope).sum())
    if method == "voc11":
        points = torch.arange(11, dtype=torch.float64) / 10
        return float(sum((envelope[recall >= t].max() if (recall >= t).any() else 0.0) for t in points) / 11)
    points = _coco_recall_thresholds()
    index = torch.searchsorted(recall, points, right=False)  # first detection with recall >= r
    valid = index < len(recall)
    q = torch.zeros_like(points)
    q[valid] = envelope[index[valid]]
    return float(q.mean())


def mean_average_precision(
    preds: Sequence[Mapping[str, torch.Tensor]],
    targets: Sequence[Mapping[str, torch.Tensor]],
    iou_thresholds: Sequence[float] | None = None,
    max_detections: int = 100,
) -> dict[str, object]:
    """COCO's mean average precision, equal to pycocotools' ``COCOeval`` (bbox, area "all").

    For each class :math:`c` and IoU threshold :math:`t`: match (:func:`match_detections`), get
    the precision-recall curve (:func:`precision_recall`) and its 101-point average precision
    :math:`AP_{c,t}` (:func:`average_precision`). Then

    .. math::  \\mathrm{mAP} = \\frac{1}{|T|\\,|\\mathcal C|}
               \\sum_{t \\in T} \\sum_{c \\in \\mathcal C} AP_{c,t},
               \\qquad T = \\{0.5, 0.55, \\dots, 0.95\\},

    where :math:`\\mathcal C` are the classes with at least one ground-truth box (a class that
    only appears in ``preds`` is skipped, as in COCO). A class with targets and no detections
    has AP 0. AP@.5 and AP@.75 are the same average at a single threshold.

    Args:
        preds: one dict per image with ``boxes`` ``(N, 4)`` xyxy, ``scores`` ``(N,)``, ``labels`` ``(N,)``.
        targets: one dict per image with ``boxes`` ``(M, 4)`` xyxy and ``labels`` ``(M,)``.
        iou_thresholds: default COCO's ten thresholds.
        max_detections: per image and class, only the best-scoring this many count (COCO: 100).

    Returns:
        A dict with ``map``, ``map_50``, ``map_75`` (floats; NaN if the threshold is not in
        ``iou_thresholds`` or no class has targets), ``classes`` (the evaluated class ids),
        ``ap`` ``(T, K)`` (the AP per threshold and class) and ``iou_thresholds``.

    Raises:
        TypeError, ValueError: malformed inputs, naming the offending image and key.
    """
    preds, targets = _check_preds_targets(preds, targets)
    if iou_thresholds is None:  # exactly np.linspace(0.5, 0.95, 10), COCOeval's thresholds
        step = (0.95 - 0.5) / 9
        iou_thresholds = [0.5 + i * step for i in range(9)] + [0.95]
    thresholds = [_check_threshold(t, "iou_thresholds") for t in iou_thresholds]
    if not thresholds:
        raise ValueError("iou_thresholds must not be empty")
    check_int("max_detections", max_detections)
    with_targets = sorted({int(c) for t in targets for c in t["labels"].tolist()})
    ap = torch.zeros(len(thresholds), len(with_targets), dtype=torch.float64)
    for k, label in enumerate(with_targets):
        _, tp, n_gt = _match_class(preds, targets, label, thresholds, max_detections)
        recall, precision = precision_recall(tp, n_gt)
        for i in range(len(thresholds)):
            ap[i, k] = average_precision(recall[i], precision[i], "coco") if tp.shape[1] else 0.0

    def at(t: float) -> float:
        rows = [i for i, u in enumerate(thresholds) if abs(u - t) < 1e-12]
        return float(ap[rows[0]].mean()) if rows and with_targets else math.nan

    return {
        "map": float(ap.mean()) if with_targets else math.nan,
        "map_50": at(0.5),
        "map_75": at(0.75),
        "classes": with_targets,
        "ap": ap,
        "iou_thresholds": thresholds,
    }


def recall_by_size(
    preds: Sequence[Mapping[str, torch.Tensor]],
    targets: Sequence[Mapping[str, torch.Tensor]],
    size_ranges: Mapping[str, tuple[float, float]],
    iou_threshold: float = 0.5,
    max_detections: int = 100,
) -> dict[str, float]:
    """Fraction of ground-truth boxes found (matched at ``iou_threshold``), by object size.

    The size of a box is :math:`\\sqrt{wh}` in pixels; ``size_ranges`` maps a name to
    ``[low, high)``. Matching is :func:`match_image`'s, per image and class.

    Returns:
        ``{name: recall}`` (NaN for a range without objects).
    """
    preds, targets = _check_preds_targets(preds, targets)
    threshold = _check_threshold(iou_threshold, "iou_threshold")
    check_int("max_detections", max_detections)
    if not isinstance(size_ranges, Mapping):
        raise TypeError(f"size_ranges must be a dict name -> (low, high), got {type(size_ranges).__name__}")
    for name, bounds in size_ranges.items():
        if not isinstance(bounds, Sequence) or len(bounds) != 2:
            raise ValueError(f"size_ranges[{name!r}] must be (low, high), got {bounds!r}")
        low = check_nonnegative(f"size_ranges[{name!r}] low", bounds[0])
        high = bounds[1]
        if high != math.inf:
            high = check_positive(f"size_ranges[{name!r}] high", high)
        if not low < high:
            raise ValueError(f"size_ranges[{name!r}] must have low < high, got {bounds!r}")
    found, sizes = [], []
    for p, t in zip(preds, targets, strict=True):
        for label in t["labels"].unique().tolist():
            gt = t["boxes"][t["labels"] == label]
            mine = p["labels"] == label
            order = torch.argsort(p["scores"][mine], descending=True, stable=True)[:max_detections]
            found.append(match_image(p["boxes"][mine][order], gt, threshold)[1])
            sizes.append(box_area(gt).sqrt())
    found = torch.cat(found) if found else torch.zeros(0, dtype=torch.bool)
    sizes = torch.cat(sizes) if sizes else torch.zeros(0, dtype=torch.float64)
    out = {}
    for name, (low, high) in size_ranges.items():
        inside = (sizes >= low) & (sizes < high)
        out[name] = float(found[inside].double().mean()) if inside.any() else math.nan
    return out


# --------------------------------------------------------------------------------------------
# 6. DETR: set prediction with a Hungarian matching (the cost and the loss are in detection_models)
# --------------------------------------------------------------------------------------------
def hungarian_match(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The one-to-one assignment of rows (predictions) to columns (targets) of least total cost.

    .. math::  \\hat\\sigma = \\arg\\min_{\\sigma} \\sum_{j} C_{\\sigma(j), j},

    over injective maps :math:`\\sigma` from targets to predictions (needs :math:`Q \\ge G`),
    solved exactly by ``scipy.optimize.linear_sum_assignment`` (the same assignment problem as
    Kuhn's Hungarian method; SciPy uses a modified Jonker–Volgenant algorithm, :math:`O(Q^3)`).
    With fewer rows than columns only ``Q`` targets are matched.

    Returns:
        ``(pred_index, target_index)``, int64 tensors of length ``min(Q, G)``, sorted by target.
    """
    cost = _check_tensor(cost, "cost", "(Q, G)")
    if cost.ndim != 2:
        raise ValueError(f"cost must have shape (Q, G), got {tuple(cost.shape)}")
    check_tensor("cost", cost)
    rows, cols = linear_sum_assignment(cost.detach().cpu().double().numpy())
    order = cols.argsort()
    return torch.as_tensor(rows[order], dtype=torch.int64), torch.as_tensor(cols[order], dtype=torch.int64)
