"""A two-stage detector at toy scale: region proposal network + RoI align + box head.

Faster R-CNN (Ren et al., NeurIPS 2015) detects in two stages on one shared backbone:

1. the **region proposal network** (RPN) scores every anchor of one feature map as object or
   background and regresses its box; decoding the anchors, keeping the best-scored ones and
   removing duplicates with NMS gives a few hundred **proposals** per image, without classes;
2. the **second stage** cuts a fixed-size feature grid out of the backbone's map for every
   proposal (Fast R-CNN's RoI pooling; here Mask R-CNN's RoI align, He et al., ICCV 2017),
   and a small fully connected head classifies it (K classes + background) and refines its box,
   one regressor per class.

This module reuses :mod:`tutorlib.detection` for anchors (:func:`~tutorlib.detection.make_anchors`),
the box parametrisation (:func:`~tutorlib.detection.encode_boxes` / ``decode_boxes``), anchor
labels (:func:`~tutorlib.detection.match_anchors`), IoU and NMS, and the backbone of
:class:`tutorlib.detection_models.TinyDetector` (the stride-4 map without the top-down path).
What it adds is what training needs to be fast: :func:`batched_roi_align` (RoI align for many
regions at once, equal to :func:`tutorlib.detection.roi_align`), a greedy NMS over a batch of
images at once (:func:`batched_greedy_nms`, equal to :func:`tutorlib.detection.nms` per image),
Faster R-CNN's balanced sampling (:func:`sample_balanced`), the model
(:class:`TwoStageDetector`), its training loop (:func:`train_two_stage`, approximate joint
training: the proposals are treated as constants) and inference (:func:`detect_two_stage`).

Shapes: ``B`` images of ``S × S`` pixels, a stride-4 feature map of ``C × G × G`` cells
(``G = S / 4``), ``A`` anchors per cell, ``K`` classes. Boxes are xyxy in image pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from tutorlib import detection as det
from tutorlib import detection_models as dm
from tutorlib.validation import (
    check_fields,
    check_int,
    check_positive,
    check_probability,
    check_tensor,
)

__all__ = [
    "TwoStageConfig",
    "TwoStageDetector",
    "batched_greedy_nms",
    "batched_roi_align",
    "detect_two_stage",
    "propose",
    "sample_balanced",
    "train_two_stage",
]


# --------------------------------------------------------------------------------------------
# 1. RoI align for many regions at once
# --------------------------------------------------------------------------------------------
def batched_roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> torch.Tensor:
    """Mask R-CNN's RoI align, all regions in one gather (same result as
    :func:`tutorlib.detection.roi_align`, which loops over regions).

    Region :math:`k` with corners :math:`(x_1, y_1, x_2, y_2)` in image pixels is mapped to cell
    coordinates :math:`u = x\\,s - o` (:math:`s` = ``spatial_scale``, :math:`o = \\tfrac12` with
    ``aligned``, else 0: cell :math:`j` has its centre at image pixel :math:`(j + \\tfrac12)/s`)
    and cut into :math:`P \\times P` equal bins (:math:`P` = ``output_size``). Bin :math:`(p, q)`
    averages the bilinear interpolation :math:`f(y, x)` of the map at an :math:`r \\times r` grid
    of points (:math:`r` = ``sampling_ratio``) at the centres of an :math:`r \\times r`
    subdivision of the bin:

    .. math::  \\mathrm{out}_{k,c,p,q} = \\frac{1}{r^2}\\sum_{a,b=0}^{r-1}
               f_c\\Big(v_1 + \\big(p + \\tfrac{a + 1/2}{r}\\big)\\tfrac{v_2 - v_1}{P},\\;
               u_1 + \\big(q + \\tfrac{b + 1/2}{r}\\big)\\tfrac{u_2 - u_1}{P}\\Big),

    with :math:`f(y, x) = \\sum_{i, j} \\max(0, 1 - |y - i|)\\max(0, 1 - |x - j|)\\, F_{ij}` (the
    four cells around the point). Points up to one cell outside the map are clamped to its
    border, points further out read 0 (torchvision's convention). Nothing is rounded, so the
    output is differentiable in the features (and piecewise in the box).

    Args:
        features: ``(B, C, H, W)``.
        rois: ``(K, 5)`` rows ``(batch index, x1, y1, x2, y2)``, image pixels, ``x1 <= x2``.
        output_size: :math:`P` >= 1; spatial_scale: cells per image pixel (1 / stride), > 0;
        sampling_ratio: :math:`r` >= 1; aligned: subtract half a cell (Detectron2's default).

    Returns:
        ``(K, C, P, P)``.

    References:
        He, Gkioxari, Dollár and Girshick, "Mask R-CNN", ICCV 2017 (RoIAlign, sampling ratio 2,
        7 × 7 bins in the box head).
    """
    features, rois = det._check_rois(features, rois)
    size = check_int("output_size", output_size)
    ratio = check_int("sampling_ratio", sampling_ratio)
    spatial_scale = check_positive("spatial_scale", spatial_scale)
    if not isinstance(aligned, bool):
        raise TypeError(f"aligned must be a bool, got {type(aligned).__name__} {aligned!r}")
    b, c, h, w = features.shape
    k = rois.shape[0]
    if k == 0:
        return features.new_zeros(0, c, size, size)
    offset = 0.5 if aligned else 0.0
    box = rois[:, 1:].to(features.dtype) * spatial_scale - offset  # (K, 4) cell coordinates
    roi_w, roi_h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    if not aligned:  # torchvision's legacy behaviour: regions at least one cell wide
        roi_w, roi_h = roi_w.clamp(min=1), roi_h.clamp(min=1)
    n = size * ratio
    t = (torch.arange(n, dtype=features.dtype) + 0.5) / n  # (n,) positions inside [0, 1]
    # bilinear sampling on a regular grid is separable: f(y, x) = sum_ij wy_i(y) wx_j(x) F_ij,
    # and so is the average over each bin's points, so every region is Wy @ F @ Wx^T
    wy = _axis_weights(box[:, 1:2] + t * roi_h[:, None], h).view(k, size, ratio, h).mean(2)  # (K, P, H)
    wx = _axis_weights(box[:, 0:1] + t * roi_w[:, None], w).view(k, size, ratio, w).mean(2)  # (K, P, W)
    # group the regions by image (padded to the busiest image) so that no feature map is copied
    image = rois[:, 0].long()
    counts = torch.bincount(image, minlength=b)
    order = torch.argsort(image, stable=True)
    slot = torch.empty_like(image)
    slot[order] = torch.arange(k) - (counts.cumsum(0) - counts)[image[order]]  # rank within its image
    most = int(counts.max())
    wy_b = wy.new_zeros(b, most, size, h).index_put((image, slot), wy)  # (B, R, P, H)
    wx_b = wx.new_zeros(b, most, size, w).index_put((image, slot), wx)  # (B, R, P, W)
    rows = torch.einsum("brph,bchw->brcpw", wy_b, features)  # each bin row: Wy @ F
    return torch.einsum("brcpw,brqw->brcpq", rows, wx_b)[image, slot]  # (K, C, P, P): (Wy F) Wx^T


def _axis_weights(points: torch.Tensor, n: int) -> torch.Tensor:
    """Bilinear weights ``(K, m, n)`` of sample points ``(K, m)`` (cell coordinates) on an axis
    of ``n`` cells: :math:`1 - l` on cell :math:`\\lfloor u \\rfloor`, :math:`l` on the next,
    with torchvision's border rules (clamped within one cell of the map, 0 further out)."""
    inside = (points >= -1.0) & (points <= n)
    u = points.clamp(min=0)
    u0 = u.floor().long().clamp(max=n - 1)
    u1 = (u0 + 1).clamp(max=n - 1)
    frac = (u - u0).clamp(max=1) * (u0 < n - 1)
    weights = points.new_zeros(*points.shape, n)
    weights = weights.scatter_add(-1, u0[..., None], ((1 - frac) * inside)[..., None])
    return weights.scatter_add(-1, u1[..., None], (frac * inside)[..., None])


# --------------------------------------------------------------------------------------------
# 2. NMS over a batch, balanced sampling, proposals
# --------------------------------------------------------------------------------------------
def batched_greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS (:func:`tutorlib.detection.nms`'s rule) on ``B`` images at once.

    Sort each image's ``N`` boxes by score; walking down the list, a box that is still alive
    deletes every later box whose IoU with it is :math:`>` ``iou_threshold``. The walk is one
    Python loop over the ``N`` ranks, each step a tensor operation over all ``B`` images.

    Args:
        boxes: ``(B, N, 4)`` xyxy; scores: ``(B, N)``; iou_threshold in [0, 1].

    Returns:
        ``(B, N)`` bool, True for the boxes kept (in the input order).
    """
    dims: dict[str, int] = {}
    boxes = check_tensor("boxes", boxes, ("B", "N", 4), dims=dims)
    scores = check_tensor("scores", scores, ("B", "N"), dims=dims)
    iou_threshold = check_probability("iou_threshold", iou_threshold)
    det._check_boxes(boxes.reshape(-1, 4), "boxes")
    bsz, n = scores.shape
    order = torch.argsort(scores, dim=1, descending=True, stable=True)  # (B, N)
    ranked = torch.gather(boxes, 1, order[..., None].expand(bsz, n, 4))
    iou = det._iou_and_union(ranked, ranked)[0]  # (B, N, N), box_iou's arithmetic
    later = torch.ones(n, n, dtype=torch.bool).triu(1)  # j after i
    over = (iou > iou_threshold) & later
    alive = torch.ones(bsz, n, dtype=torch.bool)
    for i in range(n):
        alive &= ~(over[:, i] & alive[:, i : i + 1])
    keep = torch.zeros_like(alive)
    keep.scatter_(1, order, alive)
    return keep


def sample_balanced(
    labels: torch.Tensor, num_samples: int, positive_fraction: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Faster R-CNN's mini-batch of anchors (or RoIs): per row, at most
    ``positive_fraction × num_samples`` positives (label 1) drawn at random, the rest of the
    ``num_samples`` from the negatives (label 0); ignored entries (-1) are never drawn. With
    too few positives the batch is padded with negatives (Ren et al.: 256 anchors per image,
    up to 1:1; Fast R-CNN: 64 RoIs per image, 25% foreground).

    Args:
        labels: ``(B, N)`` int64 in {1, 0, -1}.

    Returns:
        ``(B, N)`` bool mask of the sampled entries.
    """
    labels = check_tensor("labels", labels, (None, None), dtype="int")
    if ((labels < -1) | (labels > 1)).any():
        raise ValueError("labels must be 1 (positive), 0 (negative) or -1 (ignored)")
    if labels.numel() and not (labels >= 0).any():
        raise ValueError("labels has no positive (1) or negative (0) entry: nothing to sample")
    num_samples = check_int("num_samples", num_samples)
    positive_fraction = check_probability("positive_fraction", positive_fraction)
    dm._check_generator(generator)
    key = torch.rand(labels.shape, generator=generator)
    # one random order per row, positives first: the first n_pos positives and the first
    # n_neg negatives of that order are drawn
    order = torch.where(labels == 1, key, key + torch.where(labels == 0, 2.0, 4.0)).argsort(1)
    sorted_labels = labels.gather(1, order)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(labels.shape[1]).expand_as(order))
    n_pos_all = (sorted_labels == 1).sum(1, keepdim=True)
    rank_pos, rank_neg = rank, rank - n_pos_all  # positives occupy ranks 0..n_pos_all-1
    n_pos = (labels == 1).sum(1, keepdim=True).clamp(max=int(positive_fraction * num_samples))
    n_neg = (num_samples - n_pos).clamp(min=0)
    return ((labels == 1) & (rank_pos < n_pos)) | ((labels == 0) & (rank_neg < n_neg))


def propose(
    anchors: torch.Tensor,
    objectness: torch.Tensor,
    deltas: torch.Tensor,
    image_size: int,
    pre_nms: int,
    post_nms: int,
    iou_threshold: float = 0.7,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The RPN's proposals: decode every anchor, clip to the image, keep the ``pre_nms`` best
    by objectness, NMS at ``iou_threshold`` (Ren et al.: 0.7), keep the ``post_nms`` best.

    Boxes are clipped to :math:`[0, S]` and widened to at least 1 pixel (torchvision instead
    drops boxes below a minimum size; a fixed count per image keeps the batch rectangular).

    Args:
        anchors: ``(N, 4)``; objectness: ``(B, N)`` logits; deltas: ``(B, N, 4)``.

    Returns:
        ``boxes`` ``(B, post_nms, 4)`` and their objectness logits ``(B, post_nms)``, best
        first (``post_nms`` at most ``pre_nms``). If NMS leaves fewer boxes, suppressed boxes
        fill the rest with score ``-inf``: :func:`detect_two_stage` drops them, training keeps
        them as extra RoIs (near-duplicates of kept proposals).
    """
    anchors = det._check_boxes(anchors, "anchors")
    dims = {"N": anchors.shape[0]}
    objectness = check_tensor("objectness", objectness, ("B", "N"), dims=dims)
    deltas = check_tensor("deltas", deltas, ("B", "N", 4), dims=dims)
    image_size = check_int("image_size", image_size)
    pre_nms = check_int("pre_nms", pre_nms)
    post_nms = check_int("post_nms", post_nms)
    if post_nms > pre_nms:
        raise ValueError(f"post_nms must be <= pre_nms={pre_nms}, got {post_nms}")
    iou_threshold = check_probability("iou_threshold", iou_threshold)
    bsz, n = objectness.shape
    pre = min(pre_nms, n)
    top = objectness.topk(pre, dim=1).indices  # (B, pre)
    picked = deltas.gather(1, top[..., None].expand(bsz, pre, 4)).reshape(-1, 4)
    boxes = det.decode_boxes(anchors[top.flatten()], picked)
    boxes = boxes.clamp(0, image_size).view(bsz, pre, 4)
    x2 = torch.maximum(boxes[..., 2], boxes[..., 0] + 1)
    y2 = torch.maximum(boxes[..., 3], boxes[..., 1] + 1)
    boxes = torch.stack([boxes[..., 0], boxes[..., 1], x2, y2], -1)
    scores = objectness.gather(1, top)
    keep = batched_greedy_nms(boxes, scores, iou_threshold)
    ranked = torch.where(keep, scores, -torch.inf).topk(min(post_nms, pre), dim=1)
    idx = ranked.indices
    return boxes.gather(1, idx[..., None].expand(bsz, idx.shape[1], 4)), ranked.values


# --------------------------------------------------------------------------------------------
# 3. the model
# --------------------------------------------------------------------------------------------
@dataclass
class TwoStageConfig:
    """Settings of :class:`TwoStageDetector`, :func:`train_two_stage` and :func:`detect_two_stage`.

    Faster R-CNN's values (Ren et al., 2015) for a ~600-pixel image with stride 16 are in the
    comments; ours are scaled to 64-pixel images with a stride-4 map.
    """

    anchor_sizes: tuple[float, ...] = (8.0, 16.0, 32.0)  #: paper: 128, 256, 512 pixels
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  #: as the paper
    rpn_high: float = 0.7  #: anchor positive at IoU >= 0.7 (plus each object's best anchor)
    rpn_low: float = 0.3  #: anchor negative at IoU < 0.3
    rpn_samples: int = 256  #: anchors per image in the RPN loss, as the paper
    rpn_positive_fraction: float = 0.5  #: up to 1:1 positives to negatives, as the paper
    pre_nms: int = 100  #: Ren et al.'s released code: 6000 best anchors before NMS (test), 12000 (train)
    post_nms_train: int = 32  #: paper: 2000 proposals per image in training
    post_nms_test: int = 50  #: paper: 300 at test time
    rpn_nms: float = 0.7  #: NMS threshold on proposals, as the paper
    roi_samples: int = 16  #: RoIs per image in the second-stage loss (Fast R-CNN: 64)
    roi_positive_fraction: float = 0.25  #: foreground share of the sampled RoIs, as Fast R-CNN
    roi_foreground: float = 0.5  #: RoI foreground at IoU >= 0.5, background below, as Fast R-CNN
    box_weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)  #: second-stage delta weights (Detectron)
    pool_size: int = 7  #: RoI align bins per side, as Mask R-CNN's box head
    sampling_ratio: int = 2  #: sample points per bin and axis, as Mask R-CNN
    hidden: int = 64  #: width of the two fully connected layers (Mask R-CNN's FPN head: 1024)
    width: int = 32  #: backbone width, as the one-stage heads of the chapter
    score_threshold: float = 0.05  #: detections below this class probability are dropped
    nms_threshold: float = 0.5  #: per-class NMS on the final detections
    top_k: int = 100  #: detections per image at most

    def __post_init__(self) -> None:
        check_fields(self, {"rpn_high": check_probability, "rpn_low": check_probability,
                            "rpn_samples": check_int, "rpn_positive_fraction": check_probability,
                            "pre_nms": check_int, "post_nms_train": check_int, "post_nms_test": check_int,
                            "rpn_nms": check_probability, "roi_samples": check_int,
                            "roi_positive_fraction": check_probability, "roi_foreground": check_probability,
                            "pool_size": check_int, "sampling_ratio": check_int, "hidden": check_int,
                            "width": (check_int, 2), "score_threshold": check_probability,
                            "nms_threshold": check_probability, "top_k": check_int})
        for name in ("anchor_sizes", "aspect_ratios"):
            values = getattr(self, name)
            if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
                raise TypeError(f"{name} must be a non-empty sequence of positive numbers, got {values!r}")
            for v in values:
                check_positive(f"{name} entries", v)
        if self.rpn_low > self.rpn_high:
            raise ValueError(f"rpn_low must be <= rpn_high, got {self.rpn_low} > {self.rpn_high}")
        for name in ("post_nms_train", "post_nms_test"):
            if getattr(self, name) > self.pre_nms:
                raise ValueError(f"{name} must be <= pre_nms={self.pre_nms}, got {getattr(self, name)}")
        det._check_weights(self.box_weights)


class TwoStageDetector(nn.Module):
    """Backbone (:class:`tutorlib.detection_models.TinyDetector`, stride 4, no top-down path,
    its head giving ``width`` feature channels) + RPN + RoI-align box head.

    - RPN (Ren et al., 2015): a 3 × 3 convolution and ReLU, then two 1 × 1 convolutions giving,
      per cell and anchor, an objectness logit and four deltas :math:`(t_x, t_y, t_w, t_h)`.
    - Box head: :func:`batched_roi_align` to ``width × P × P``, two fully connected layers of
      ``hidden`` units with ReLU (Mask R-CNN's "2fc" head, narrower), then ``K + 1`` class
      logits (index 0 = background) and ``4 K`` class-specific deltas.
    """

    def __init__(self, num_classes: int, config: TwoStageConfig | None = None) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes)
        config = config or TwoStageConfig()
        if not isinstance(config, TwoStageConfig):
            raise TypeError(f"config must be a TwoStageConfig or None, got {type(config).__name__}")
        config.__post_init__()
        self.config = config
        width = config.width
        self.backbone = dm.TinyDetector(width, fpn=True, top_down=False, width=width)
        self.stride = self.backbone.stride
        self.num_anchors = len(config.anchor_sizes) * len(config.aspect_ratios)
        self.rpn_conv = nn.Conv2d(width, width, 3, padding=1)
        self.rpn_logits = nn.Conv2d(width, self.num_anchors, 1)
        self.rpn_deltas = nn.Conv2d(width, 4 * self.num_anchors, 1)
        for layer in (self.rpn_conv, self.rpn_logits, self.rpn_deltas):  # as the paper: N(0, 0.01)
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)
        self.box_head = nn.Sequential(
            nn.Flatten(), nn.Linear(width * config.pool_size**2, config.hidden), nn.ReLU(),
            nn.Linear(config.hidden, config.hidden), nn.ReLU(),
        )
        self.cls_logits = nn.Linear(config.hidden, num_classes + 1)
        self.box_deltas = nn.Linear(config.hidden, 4 * num_classes)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.normal_(self.box_deltas.weight, std=0.001)
        for layer in (self.cls_logits, self.box_deltas):
            nn.init.zeros_(layer.bias)

    def anchors(self, image_size: int) -> torch.Tensor:
        """``(G G A, 4)`` anchors of an ``image_size`` image, ordered like :meth:`rpn`'s outputs."""
        g = check_int("image_size", image_size) // self.stride
        return det.make_anchors((g, g), self.stride, self.config.anchor_sizes, self.config.aspect_ratios)

    def rpn(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, 3, S, S)`` -> features ``(B, C, G, G)``, objectness ``(B, G G A)`` and deltas
        ``(B, G G A, 4)``, anchors ordered by row, column, size, ratio (like ``make_anchors``)."""
        features = self.backbone(images)
        hidden = F.relu(self.rpn_conv(features))
        bsz, a = len(images), self.num_anchors
        logits = self.rpn_logits(hidden).permute(0, 2, 3, 1).reshape(bsz, -1)
        deltas = self.rpn_deltas(hidden).view(bsz, a, 4, *hidden.shape[-2:])
        deltas = deltas.permute(0, 3, 4, 1, 2).reshape(bsz, -1, 4)
        return features, logits, deltas

    def head(self, features: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Second stage on ``rois`` ``(R, 5)``: class logits ``(R, K + 1)``, deltas ``(R, K, 4)``."""
        pooled = batched_roi_align(features, rois, self.config.pool_size, 1 / self.stride,
                                   self.config.sampling_ratio, aligned=True)
        hidden = self.box_head(pooled)
        return self.cls_logits(hidden), self.box_deltas(hidden).view(-1, self.num_classes, 4)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Objectness ``(B, G G A)`` and deltas ``(B, G G A, 4)`` of the RPN (the second stage
        needs proposals: see :func:`detect_two_stage`)."""
        return self.rpn(images)[1:]


def _check_two_stage(model: object) -> TwoStageDetector:
    if not isinstance(model, TwoStageDetector):
        raise TypeError(f"model must be a TwoStageDetector, got {type(model).__name__}")
    return model


def _padded_targets(
    targets: Sequence[Mapping[str, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ground truth as ``(N, M, 4)`` boxes, ``(N, M)`` labels and ``(N, M)`` valid flags."""
    m = max(1, max(len(t["labels"]) for t in targets))
    boxes = torch.zeros(len(targets), m, 4)
    boxes[..., 2:] = 1.0  # a dummy valid box where there is no object
    labels = torch.zeros(len(targets), m, dtype=torch.int64)
    valid = torch.zeros(len(targets), m, dtype=torch.bool)
    for n, t in enumerate(targets):
        g = len(t["labels"])
        boxes[n, :g], labels[n, :g], valid[n, :g] = t["boxes"], t["labels"], True
    return boxes, labels, valid


def _anchor_targets(
    anchors: torch.Tensor, gt_boxes: torch.Tensor, gt_valid: torch.Tensor, high: float, low: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`tutorlib.detection.match_anchors` (with ``allow_low_quality``) and
    :func:`tutorlib.detection.encode_boxes` for ``N`` images at once: anchors ``(A, 4)``, padded
    ground truth ``(N, M, 4)`` with flags ``(N, M)`` -> labels ``(N, A)`` and deltas ``(N, A, 4)``
    (zero where an image has no object)."""
    iou = det._iou_and_union(anchors, gt_boxes)[0]  # (N, A, M)
    iou = iou.masked_fill(~gt_valid[:, None, :], -1.0)
    best, matched = iou.max(dim=2)  # (N, A)
    labels = torch.full(best.shape, -1, dtype=torch.int64)
    labels[best < low] = 0
    labels[best >= high] = 1
    best_per_gt = iou.max(dim=1, keepdim=True).values  # (N, 1, M)
    is_best = (iou == best_per_gt) & (best_per_gt > 0) & gt_valid[:, None, :]
    labels[is_best.any(dim=2)] = 1
    has_gt = gt_valid.any(1)
    matched_boxes = torch.gather(gt_boxes, 1, matched[..., None].expand(*matched.shape, 4))  # (N, A, 4)
    reference = anchors.expand(len(gt_boxes), -1, -1).reshape(-1, 4)
    deltas = det.encode_boxes(reference, matched_boxes.reshape(-1, 4)).view(*matched.shape, 4)
    return labels, deltas * has_gt[:, None, None]


# --------------------------------------------------------------------------------------------
# 4. training and inference
# --------------------------------------------------------------------------------------------
def train_two_stage(
    model: TwoStageDetector,
    images: torch.Tensor,
    targets: Sequence[Mapping[str, torch.Tensor]],
    config: dm.TrainConfig | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train RPN and second stage together (Ren et al.'s "approximate joint training": the
    proposals are computed from the current RPN but treated as constants).

    Per step, on a batch of ``B`` images (drawn as in
    :func:`tutorlib.detection_models.train_detector`, same generator and one-cycle AdamW):

    .. math::
        \\mathcal L = \\underbrace{\\tfrac{1}{N_a}\\textstyle\\sum_i \\mathrm{BCE}(o_i, p_i^*)
        + \\tfrac{1}{N_a}\\textstyle\\sum_i p_i^*\\, \\ell_1^{\\beta=1/9}(t_i, t_i^*)}_{\\text{RPN}}
        + \\underbrace{\\tfrac{1}{N_r}\\textstyle\\sum_j \\mathrm{CE}(z_j, c_j^*)
        + \\tfrac{1}{N_r}\\textstyle\\sum_j [c_j^* > 0]\\,
          \\ell_1^{\\beta=1}(t_{j, c_j^*}, t_j^*)}_{\\text{second stage}},

    where :math:`i` runs over the :math:`N_a` anchors drawn over the whole batch (up to
    ``rpn_samples`` per image) by :func:`sample_balanced` from
    :func:`tutorlib.detection.match_anchors`' labels :math:`p^*`, :math:`j` over the
    :math:`N_r` RoIs drawn over the batch (up to ``roi_samples`` per image: proposals plus the
    ground-truth boxes, labelled foreground at IoU :math:`\\ge` ``roi_foreground``, class
    :math:`c^* \\ge 1`, else background :math:`c^* = 0`), :math:`\\ell_1^\\beta` is the smooth
    L1 loss and :math:`t^*` the encoded targets (:func:`tutorlib.detection.encode_boxes`; weights
    ``box_weights`` in the second stage). The anchor labels are computed once, up front.

    Returns:
        One dict per step with the four losses (``rpn_cls``, ``rpn_box``, ``roi_cls``,
        ``roi_box``) and their sum ``loss``.
    """
    model = _check_two_stage(model)
    config = config or dm.TrainConfig()
    if not isinstance(config, dm.TrainConfig):
        raise TypeError(f"config must be a TrainConfig or None, got {type(config).__name__}")
    config.__post_init__()
    images = dm._check_images(images)
    size = images.shape[-1]
    if size % 16:
        raise ValueError(f"images must be S x S with S a multiple of 16, got {tuple(images.shape)}")
    if len(images) != len(targets):
        raise ValueError(
            f"images and targets must have the same length, got {len(images)} and {len(targets)}"
        )
    targets = dm._check_targets(targets, model.num_classes, size)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {type(progress).__name__} {progress!r}")
    cfg = model.config
    anchors = model.anchors(size)
    # RPN targets, once: label (1 / 0 / -1) and encoded deltas of every anchor of every image
    gt_boxes, gt_labels, gt_valid = _padded_targets(targets)
    chunks = [_anchor_targets(anchors, gt_boxes[i : i + 100], gt_valid[i : i + 100], cfg.rpn_high,
                              cfg.rpn_low) for i in range(0, len(images), 100)]  # 100 images at a time
    rpn_labels, rpn_deltas = torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks])

    optimiser, schedule = dm.training_recipe(model, config)
    g = torch.Generator().manual_seed(config.seed)
    steps = range(config.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="training (two-stage)", leave=False)
    history = []
    model.train()
    for _ in steps:
        idx = torch.randint(0, len(images), (config.batch_size,), generator=g)
        bsz = len(idx)
        features, logits, deltas = model.rpn(images[idx])
        # --- RPN loss on 256 sampled anchors per image
        labels = rpn_labels[idx]
        picked = sample_balanced(labels, cfg.rpn_samples, cfg.rpn_positive_fraction, g)
        n_a = picked.sum().clamp(min=1)
        rpn_cls = F.binary_cross_entropy_with_logits(logits[picked], labels[picked].float(), reduction="sum")
        rpn_cls = rpn_cls / n_a
        pos = picked & (labels == 1)
        rpn_box = F.smooth_l1_loss(deltas[pos], rpn_deltas[idx][pos], beta=1 / 9, reduction="sum") / n_a
        # --- proposals (constants), plus the ground truth, matched and sampled
        with torch.no_grad():
            proposals, _ = propose(anchors, logits.detach(), deltas.detach(), size, cfg.pre_nms,
                                   cfg.post_nms_train, cfg.rpn_nms)
            rois = torch.cat([proposals, gt_boxes[idx]], dim=1)  # (B, P + M, 4)
            iou = det._iou_and_union(rois, gt_boxes[idx])[0].masked_fill(~gt_valid[idx][:, None, :], -1.0)
            best, matched = iou.max(dim=2)  # (B, P + M)
            is_real = torch.cat([torch.ones_like(proposals[..., 0], dtype=torch.bool), gt_valid[idx]], 1)
            roi_label01 = torch.where(best >= cfg.roi_foreground, 1, 0)
            roi_label01 = torch.where(is_real, roi_label01, -1)  # padding slots are never drawn
            chosen = sample_balanced(roi_label01, cfg.roi_samples, cfg.roi_positive_fraction, g)
            b_idx = torch.arange(bsz)[:, None].expand_as(chosen)[chosen]
            roi_boxes = rois[chosen]  # (R, 4)
            target_boxes = gt_boxes[idx][b_idx, matched[chosen]]
            classes = torch.where(roi_label01[chosen] == 1, gt_labels[idx][b_idx, matched[chosen]] + 1, 0)
            fg = classes > 0
            box_targets = det.encode_boxes(roi_boxes[fg], target_boxes[fg], cfg.box_weights)
        cls_logits, box_deltas = model.head(features, torch.cat([b_idx[:, None].float(), roi_boxes], 1))
        n_r = max(len(classes), 1)
        roi_cls = F.cross_entropy(cls_logits, classes, reduction="sum") / n_r
        fg_deltas = box_deltas[fg, classes[fg] - 1]
        roi_box = F.smooth_l1_loss(fg_deltas, box_targets, beta=1.0, reduction="sum") / n_r
        loss = rpn_cls + rpn_box + roi_cls + roi_box
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        history.append({"rpn_cls": rpn_cls.item(), "rpn_box": rpn_box.item(), "roi_cls": roi_cls.item(),
                        "roi_box": roi_box.item(), "loss": loss.item()})
    model.eval()
    return history


@torch.no_grad()
def detect_two_stage(
    model: TwoStageDetector, images: torch.Tensor, stage: str = "both", batch_size: int = 100
) -> list[dict[str, torch.Tensor]]:
    """Detect with both stages, or with the RPN alone.

    ``stage="both"``: ``post_nms_test`` proposals per image; the second stage gives every
    proposal a probability per class (softmax over ``K + 1``) and a refined box per class;
    every (proposal, class) pair with probability :math:`\\ge` ``score_threshold`` is a
    candidate, per-class NMS at ``nms_threshold``, the ``top_k`` best kept.
    ``stage="rpn"``: the proposals themselves, scored by the sigmoid of their objectness, all
    with label 0 (class-agnostic; for a comparison of localisation and ranking).

    Returns:
        One detection dict (``boxes``, ``scores``, ``labels``) per image, on the CPU.
    """
    model = _check_two_stage(model)
    images = dm._check_images(images)
    if images.shape[-1] % 16:
        raise ValueError(f"images must be S x S with S a multiple of 16, got {tuple(images.shape)}")
    if stage not in ("both", "rpn"):
        raise ValueError(f"stage must be 'both' or 'rpn', got {stage!r}")
    batch_size = check_int("batch_size", batch_size)
    cfg, k = model.config, model.num_classes
    model.eval()
    size = images.shape[-1]
    anchors = model.anchors(size)
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        features, logits, deltas = model.rpn(batch)
        proposals, scores = propose(anchors, logits, deltas, size, cfg.pre_nms, cfg.post_nms_test,
                                    cfg.rpn_nms)
        if stage == "rpn":
            for boxes, s in zip(proposals, scores, strict=True):
                ok = torch.isfinite(s)
                out.append({"boxes": boxes[ok], "scores": torch.sigmoid(s[ok]),
                            "labels": torch.zeros(int(ok.sum()), dtype=torch.int64)})
            continue
        bsz, p = proposals.shape[:2]
        b_idx = torch.arange(bsz).repeat_interleave(p)
        rois = torch.cat([b_idx[:, None].float(), proposals.reshape(-1, 4)], 1)
        cls_logits, box_deltas = model.head(features, rois)
        probs = cls_logits.softmax(-1)[:, 1:].reshape(bsz, p, k)
        ref = proposals.reshape(-1, 1, 4).expand(-1, k, 4).reshape(-1, 4)
        refined = det.decode_boxes(ref, box_deltas.reshape(-1, 4), cfg.box_weights).clamp(0, size)
        refined = refined.view(bsz, p, k, 4)
        valid = torch.isfinite(scores)  # (B, P): proposals NMS did not remove
        labels = torch.arange(k).expand(p, k)
        for n in range(bsz):
            ok = valid[n]
            s, bx, lb = probs[n][ok].flatten(), refined[n][ok].reshape(-1, 4), labels[ok].flatten()
            keep = (s >= cfg.score_threshold) & (bx[:, 2] > bx[:, 0]) & (bx[:, 3] > bx[:, 1])
            s, bx, lb = s[keep], bx[keep], lb[keep]
            kept = det.batched_nms(bx, s, lb, cfg.nms_threshold)[: cfg.top_k]
            out.append({"boxes": bx[kept], "scores": s[kept], "labels": lb[kept]})
    return out
