"""Detectors for the chapter ``book/detection.md``: a synthetic data set, heads, losses, training.

- :func:`make_shapes`: a seeded data set of small images with squares, disks and triangles
  of many sizes and colours (generated, never downloaded);
- :class:`TinyDetector`: a four-stage convolutional backbone with a CenterNet-style head,
  either on its single stride-16 map or on a stride-4 map made by an FPN-style top-down merge;
- :func:`centernet_targets`, :func:`centernet_loss`, :func:`decode_centernet`: the anchor-free
  head: a heat map of object centres per class, plus a size and a sub-cell offset per cell;
- :func:`yolo_v1_targets`, :func:`yolo_v1_loss`, :func:`decode_yolo_v1`: YOLO v1's grid head;
- :func:`detr_cost_matrix`, :func:`set_prediction_loss`: DETR's matching cost and set loss;
- :func:`train_detector`, :func:`detect`: the training loop and inference (decode + NMS, or
  CenterNet's 3 × 3 peak filter); :func:`detect_image_pyramid`: a test-time image pyramid;
- :func:`crowded_scene`: overlapping objects and noisy candidate boxes, for NMS;
- :func:`to_coco`: detections and targets in pycocotools' json layout.

The box utilities, NMS and the metrics are in :mod:`tutorlib.detection`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from tutorlib import detection as det
from tutorlib.validation import (
    check_choice,
    check_fields,
    check_int,
    check_nonnegative,
    check_positive,
    check_probability,
    check_tensor,
)

__all__ = [
    "SHAPES",
    "ShapesConfig",
    "TinyDetector",
    "TrainConfig",
    "centernet_loss",
    "centernet_targets",
    "crowded_scene",
    "decode_centernet",
    "decode_yolo_v1",
    "detect",
    "detect_image_pyramid",
    "detr_cost_matrix",
    "focal_loss_centernet",
    "init_head_prior",
    "make_shapes",
    "set_prediction_loss",
    "to_coco",
    "train_detector",
    "training_recipe",
    "yolo_v1_loss",
    "yolo_v1_targets",
]

SHAPES = ("square", "disk", "triangle")


# --------------------------------------------------------------------------------------------
# 1. the synthetic data set
# --------------------------------------------------------------------------------------------
@dataclass
class ShapesConfig:
    """How :func:`make_shapes` draws its images."""

    image_size: int = 64  #: images are image_size × image_size pixels
    min_size: float = 4.0  #: smallest object side, pixels
    max_size: float = 30.0  #: largest object side, pixels (sizes are log-uniform in between)
    max_objects: int = 6  #: objects per image: uniform in 1..max_objects
    max_overlap: float = 0.1  #: a new object is re-drawn if its IoU with an earlier one is larger
    noise: float = 0.05  #: standard deviation of the pixel noise

    def __post_init__(self) -> None:
        check_fields(self, {"image_size": (check_int, 2), "min_size": check_positive,
                            "max_size": check_positive, "max_objects": check_int,
                            "max_overlap": check_probability, "noise": check_nonnegative})
        if not 1 <= self.min_size <= self.max_size < self.image_size:
            raise ValueError(
                "ShapesConfig needs 1 <= min_size <= max_size < image_size, got min_size="
                f"{self.min_size}, max_size={self.max_size}, image_size={self.image_size}"
            )


def _check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _check_targets(
    targets: object, num_classes: int, extent: float, name: str = "targets"
) -> list[dict[str, torch.Tensor]]:
    """Validate one dict per image; labels in [0, num_classes), box centres inside [0, extent)."""
    checked = det._check_sets(targets, name, ("boxes", "labels"))
    for n, t in enumerate(checked):
        boxes, labels = t["boxes"], t["labels"]
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"{name}[{n}]['labels'] must be in [0, num_classes={num_classes}), got "
                             f"values in [{int(labels.min())}, {int(labels.max())}]")
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        outside = ((centre < 0) | (centre >= extent)).any(1)
        if outside.any():
            row = int(outside.nonzero()[0, 0])
            raise ValueError(f"{name}[{n}]['boxes'] row {row} {boxes[row].tolist()} has its centre outside "
                             f"the {extent:g} x {extent:g} image; a negative cell index would wrap around")
        if ((boxes[:, 2:] - boxes[:, :2]) <= 0).any():
            raise ValueError(f"{name}[{n}]['boxes'] must have a positive width and height")
    return checked


def _check_images(images: object, name: str = "images") -> torch.Tensor:
    return check_tensor(name, images, (None, 3, "S", "S"))


def _check_model(model: object) -> TinyDetector:
    if not isinstance(model, TinyDetector):
        raise TypeError(f"model must be a TinyDetector, got {type(model).__name__}")
    return model


def _shape_mask(
    kind: int, cx: float, cy: float, s: float, xs: torch.Tensor, ys: torch.Tensor
) -> torch.Tensor:
    dx, dy = xs - cx, ys - cy
    if kind == 0:  # square
        return (dx.abs() <= s / 2) & (dy.abs() <= s / 2)
    if kind == 1:  # disk
        return dx**2 + dy**2 <= (s / 2) ** 2
    top = dy + s / 2  # triangle pointing up: apex at the top, base at the bottom
    return (top >= 0) & (dy <= s / 2) & (dx.abs() <= top / 2)


def make_shapes(
    n_images: int, config: ShapesConfig | None = None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """A seeded data set of shapes on noisy backgrounds.

    Each image has 1 to ``max_objects`` objects; the class (square 0, disk 1, triangle 2) does
    not depend on the colour, which is random, so the network must look at the shape. The box
    of a shape of side :math:`s` centred at :math:`(c_x, c_y)` is
    :math:`[c_x - s/2, c_y - s/2, c_x + s/2, c_y + s/2]`.

    Returns:
        ``images`` ``(N, 3, S, S)`` in about [0, 1] and ``targets``, one dict per image with
        ``boxes`` ``(M, 4)`` xyxy float32 pixels and ``labels`` ``(M,)`` int64.
    """
    n_images = check_int("n_images", n_images)
    config = config or ShapesConfig()
    if not isinstance(config, ShapesConfig):
        raise TypeError(f"config must be a ShapesConfig or None, got {type(config).__name__}")
    config.__post_init__()  # fields may have been changed after construction
    _check_generator(generator)
    g = generator or torch.Generator().manual_seed(0)
    size = config.image_size
    coords = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    images = torch.empty(n_images, 3, size, size)
    targets = []
    log_lo, log_hi = math.log(config.min_size), math.log(config.max_size)
    tries = 20  # placements tried per object before giving up on it
    for n in range(n_images):
        # all random numbers of this image in one draw (many small draws are slow)
        u = iter(torch.rand(8 + config.max_objects * (3 * tries + 6), generator=g).tolist())
        background = 0.2 + 0.3 * torch.tensor([next(u), next(u), next(u)])[:, None, None]
        ramp_x, ramp_y = ((next(u) - 0.5) * 0.3 / size for _ in range(2))
        image = background + ramp_x * xs + ramp_y * ys  # (3, S, S) a gentle gradient
        boxes, labels = [], []
        for _ in range(1 + int(next(u) * config.max_objects)):
            for _attempt in range(tries):
                s = math.exp(log_lo + (log_hi - log_lo) * next(u))
                cx, cy = s / 2 + (size - s) * next(u), s / 2 + (size - s) * next(u)
                box = (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)
                new, placed = (torch.tensor(b, dtype=torch.float64).reshape(-1, 4) for b in ([box], boxes))
                if not boxes or det.box_iou(new, placed).max() <= config.max_overlap:
                    break
            else:
                continue  # no free place found: fewer objects in this image
            kind = int(next(u) * len(SHAPES))
            colour = [0.55 + 0.45 * next(u) for _ in range(3)]
            colour[int(next(u) * 3)] *= 0.3  # saturated, never grey
            mask = _shape_mask(kind, cx, cy, s, xs, ys)
            image = torch.where(mask, torch.tensor(colour)[:, None, None], image)
            boxes.append(box)
            labels.append(kind)
        images[n] = image + config.noise * torch.randn(3, size, size, generator=g)
        targets.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(labels, dtype=torch.int64),
            }
        )
    return images, targets


# --------------------------------------------------------------------------------------------
# 2. the network: backbone, optional FPN-style top-down merge, dense head
# --------------------------------------------------------------------------------------------
def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class TinyDetector(nn.Module):
    """A small backbone (strides 4, 8, 16) and a dense head on one output map.

    - ``fpn=False``: the head reads the last, stride-16 map only (4 × 4 cells for a 64-pixel
      image), like a classifier's backbone with a detection head on top;
    - ``fpn=True``: a feature-pyramid-style top-down path (Lin et al., 2017): lateral 1×1
      convolutions, nearest-neighbour upsampling and addition carry the deep, semantic
      stride-16 features down to the stride-8 and stride-4 maps, and the head reads the merged
      stride-4 map (16 × 16 cells);
    - ``fpn=True, top_down=False``: the FPN paper's ablation: the same stride-4 head, lateral
      and smoothing convolutions on the shallow stride-4 map alone, with no top-down path (the
      deeper stages are not built). It separates the effect of the output resolution (stride 4
      instead of 16) from that of the deep features the top-down path brings.

    The head outputs, per cell, ``head_channels`` numbers (CenterNet: K class heat-map
    logits + 2 log-sizes + 2 offsets).
    """

    def __init__(self, head_channels: int, fpn: bool, width: int = 32, top_down: bool = True) -> None:
        super().__init__()
        check_int("head_channels", head_channels)
        check_int("width", width, minimum=2)
        for name, value in (("fpn", fpn), ("top_down", top_down)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
        if not fpn and not top_down:
            raise ValueError("top_down=False needs fpn=True (it removes the FPN's top-down path)")
        self.fpn, self.top_down = fpn, top_down
        self.stage1 = nn.Sequential(
            _conv(3, width // 2, 2), _conv(width // 2, width, 2), _conv(width, width)
        )  # /4
        if top_down:
            self.stage2 = nn.Sequential(_conv(width, 2 * width, 2), _conv(2 * width, 2 * width))  # /8
            self.stage3 = nn.Sequential(_conv(2 * width, 2 * width, 2), _conv(2 * width, 2 * width))  # /16
        if fpn:
            channels = (width, 2 * width, 2 * width) if top_down else (width,)
            self.lateral = nn.ModuleList([nn.Conv2d(c, width, 1) for c in channels])
            self.smooth = _conv(width, width)
            head_in = width
        else:
            head_in = 2 * width
        self.head = nn.Sequential(_conv(head_in, head_in), nn.Conv2d(head_in, head_channels, 1))
        self.stride = 4 if fpn else 16

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, head_channels, S / stride, S / stride)``; S a multiple of 16."""
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            raise TypeError(f"images must be a floating-point tensor (B, 3, S, S), got "
                            f"{getattr(images, 'dtype', type(images).__name__)}")
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] % 16 or images.shape[-2] % 16:
            raise ValueError(f"images must have shape (B, 3, S, S) with S a multiple of 16, got "
                             f"{tuple(images.shape)}")
        c2 = self.stage1(images)  # (B, w, S/4, S/4)
        if not self.top_down:  # the ablation: stride 4, shallow features only
            return self.head(self.smooth(self.lateral[0](c2)))
        c3 = self.stage2(c2)  # (B, 2w, S/8, S/8)
        c4 = self.stage3(c3)  # (B, 2w, S/16, S/16)
        if not self.fpn:
            return self.head(c4)
        p4 = self.lateral[2](c4)
        p3 = self.lateral[1](c3) + F.interpolate(p4, scale_factor=2, mode="nearest")
        p2 = self.lateral[0](c2) + F.interpolate(p3, scale_factor=2, mode="nearest")
        return self.head(self.smooth(p2))


# --------------------------------------------------------------------------------------------
# 3. CenterNet: heat map of centres, size, offset
# --------------------------------------------------------------------------------------------
def centernet_targets(
    targets: Sequence[Mapping[str, torch.Tensor]], num_classes: int, grid: int, stride: int
) -> dict[str, torch.Tensor]:
    """CenterNet's training targets on a ``grid`` × ``grid`` map of stride ``stride``.

    An object of size :math:`w \\times h` centred at :math:`(c_x, c_y)` lands in cell
    :math:`(\\lfloor c_y/s \\rfloor, \\lfloor c_x/s \\rfloor)`. Its class's heat map gets a
    Gaussian bump :math:`\\exp(-d^2 / 2\\sigma^2)` around that cell (distance :math:`d` in
    cells, :math:`\\sigma = \\max(\\tfrac12, \\sqrt{wh}/(6s))`; the element-wise maximum where
    bumps overlap), equal to 1 at the centre cell only. The centre cell also stores the
    log-size :math:`\\log(w/s), \\log(h/s)` and the offset :math:`c/s - \\lfloor c/s \\rfloor`.

    Returns:
        ``heatmap`` ``(B, K, grid, grid)``, ``size`` and ``offset`` ``(B, 2, grid, grid)``,
        ``mask`` ``(B, grid, grid)`` bool (cells that hold a centre).
    """
    num_classes, grid, stride = (
        check_int(n, v) for n, v in (("num_classes", num_classes), ("grid", grid), ("stride", stride))
    )
    _check_targets(targets, num_classes, grid * stride)
    b = len(targets)
    heatmap = torch.zeros(b, num_classes, grid, grid)
    size, offset = torch.zeros(b, 2, grid, grid), torch.zeros(b, 2, grid, grid)
    mask = torch.zeros(b, grid, grid, dtype=torch.bool)
    cells = torch.arange(grid, dtype=torch.float32)
    for n, t in enumerate(targets):
        centre = det.box_convert(t["boxes"].float(), "xyxy", "cxcywh")
        for (cx, cy, w, h), label in zip(centre.tolist(), t["labels"].tolist(), strict=True):
            i, j = min(int(cy // stride), grid - 1), min(int(cx // stride), grid - 1)
            sigma = max(0.5, math.sqrt(w * h) / (6 * stride))
            bump = torch.exp(-((cells[:, None] - i) ** 2 + (cells[None, :] - j) ** 2) / (2 * sigma**2))
            heatmap[n, label] = torch.maximum(heatmap[n, label], bump)
            size[n, :, i, j] = torch.tensor([math.log(w / stride), math.log(h / stride)])
            offset[n, :, i, j] = torch.tensor([cx / stride - j, cy / stride - i])
            mask[n, i, j] = True
    return {"heatmap": heatmap, "size": size, "offset": offset, "mask": mask}


def focal_loss_centernet(
    logits: torch.Tensor, heatmap: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
) -> torch.Tensor:
    """The penalty-reduced focal loss of CornerNet/CenterNet, summed (normalise outside).

    .. math::  -\\sum \\begin{cases} (1-\\hat p)^\\alpha \\log \\hat p & Y = 1 \\\\
               (1 - Y)^\\beta \\hat p^\\alpha \\log(1 - \\hat p) & \\text{otherwise,} \\end{cases}

    where :math:`\\hat p = \\sigma(\\text{logit})` and :math:`Y` is the Gaussian target: cells near
    a centre are penalised less for firing. The :math:`(1-\\hat p)^\\alpha` factor is the focal
    loss's (Lin et al., 2017): easy background cells, the vast majority, contribute little.
    """
    check_tensor("logits", logits, ("B", "K", "H", "W"), dims=(dims := {}))
    check_tensor("heatmap", heatmap, ("B", "K", "H", "W"), dims=dims)
    if bool(((heatmap < 0) | (heatmap > 1)).any()):
        raise ValueError("heatmap must hold values in [0, 1] (1 at object centres)")
    check_nonnegative("alpha", alpha)
    check_nonnegative("beta", beta)
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = log_p.exp()
    positive = heatmap == 1
    pos = ((1 - p) ** alpha * log_p)[positive].sum()
    neg = ((1 - heatmap) ** beta * p**alpha * log_not_p)[~positive].sum()
    return -(pos + neg)


def centernet_loss(
    output: torch.Tensor, target: Mapping[str, torch.Tensor], size_weight: float = 0.5
) -> torch.Tensor:
    """Focal heat-map loss plus L1 losses on log-size and offset at centre cells, per object.

    Args:
        output: ``(B, K + 4, G, G)`` raw head output; target: :func:`centernet_targets`.
    """
    keys = ("heatmap", "size", "offset", "mask")
    if not isinstance(target, Mapping) or any(key not in target for key in keys):
        raise TypeError("target must be the dict of centernet_targets (heatmap, size, offset, mask)")
    dims: dict[str, int] = {}
    check_tensor("target['heatmap']", target["heatmap"], ("B", "K", "G", "G"), dims=dims)
    check_tensor("output", output, ("B", dims["K"] + 4, "G", "G"), dims=dims)
    check_tensor("target['mask']", target["mask"], ("B", "G", "G"), dims=dims, dtype="bool")
    check_tensor("target['size']", target["size"], ("B", 2, "G", "G"), dims=dims)
    check_tensor("target['offset']", target["offset"], ("B", 2, "G", "G"), dims=dims)
    check_nonnegative("size_weight", size_weight)
    k = target["heatmap"].shape[1]
    mask = target["mask"]
    n_obj = max(int(mask.sum()), 1)
    heat = focal_loss_centernet(output[:, :k], target["heatmap"]) / n_obj
    m = mask[:, None].expand(-1, 2, -1, -1)
    size = F.l1_loss(output[:, k : k + 2][m], target["size"][m], reduction="sum") / n_obj
    offset = F.l1_loss(output[:, k + 2 : k + 4][m], target["offset"][m], reduction="sum") / n_obj
    return heat + size_weight * size + offset


def decode_centernet(
    output: torch.Tensor, stride: int, num_classes: int, top_k: int = 100, peaks_only: bool = False
) -> list[dict[str, torch.Tensor]]:
    """Turn the head's output into boxes, **before** any non-maximum suppression.

    Every cell and class is a candidate with score :math:`\\sigma(\\text{logit})` and box
    :math:`(j + o_x)s \\pm \\tfrac12 s e^{t_w}` (same for y); the ``top_k`` best per image are
    returned. With ``peaks_only`` a candidate must also be the maximum of its 3 × 3
    neighbourhood, CenterNet's cheap substitute for NMS.

    Returns:
        One dict per image with ``boxes`` ``(top_k, 4)``, ``scores`` and ``labels``.
    """
    k = check_int("num_classes", num_classes)
    check_int("top_k", top_k)
    check_int("stride", stride)
    if isinstance(output, torch.Tensor) and (output.ndim != 4 or output.shape[1] != k + 4):
        raise ValueError(f"output must have shape (B, num_classes + 4 = {k + 4}, H, W), got "
                         f"{tuple(output.shape)}")
    check_tensor("output", output, (None, k + 4, None, None))
    b, _, h, w = output.shape
    heat = output[:, :k].sigmoid()
    if peaks_only:
        heat = heat * (heat == F.max_pool2d(heat, 3, 1, 1))
    kw = {"dtype": output.dtype, "device": output.device}
    ys, xs = torch.meshgrid(torch.arange(h, **kw), torch.arange(w, **kw), indexing="ij")
    cx = (xs + output[:, k + 2]) * stride  # (B, h, w)
    cy = (ys + output[:, k + 3]) * stride
    bw = output[:, k].clamp(max=6).exp() * stride
    bh = output[:, k + 1].clamp(max=6).exp() * stride
    boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=-1).reshape(b, h * w, 4)
    scores, index = heat.reshape(b, k * h * w).topk(min(top_k, k * h * w), dim=1)  # (B, top_k)
    return [
        {"boxes": boxes[n, index[n] % (h * w)], "scores": scores[n], "labels": index[n] // (h * w)}
        for n in range(b)
    ]


# --------------------------------------------------------------------------------------------
# 4. YOLO v1: an S × S grid, B boxes with a confidence per cell, one class per cell
# --------------------------------------------------------------------------------------------
def yolo_v1_targets(
    targets: Sequence[Mapping[str, torch.Tensor]], grid: int, num_classes: int, image_size: int
) -> torch.Tensor:
    """YOLO v1's target tensor: the cell that contains an object's centre is responsible for it.

    Per cell: ``[objectness, x, y, sqrt(w), sqrt(h), one-hot class (K)]`` with :math:`x, y` the
    centre's position inside the cell in [0, 1) and :math:`w, h` relative to the image (the
    square roots make an error on a small box cost more than the same error on a large one).
    One object per cell: a later object in the same cell overwrites an earlier one, a limit of
    YOLO v1 for crowds of small objects.

    Returns:
        ``(B, grid, grid, 5 + K)``.
    """
    grid, num_classes, image_size = (
        check_int(n, v) for n, v in (("grid", grid), ("num_classes", num_classes), ("image_size", image_size))
    )
    _check_targets(targets, num_classes, image_size)
    out = torch.zeros(len(targets), grid, grid, 5 + num_classes)
    cell = image_size / grid
    for n, t in enumerate(targets):
        centre = det.box_convert(t["boxes"].float(), "xyxy", "cxcywh")
        for (cx, cy, w, h), label in zip(centre.tolist(), t["labels"].tolist(), strict=True):
            i, j = min(int(cy // cell), grid - 1), min(int(cx // cell), grid - 1)
            out[n, i, j] = 0.0
            out[n, i, j, :5] = torch.tensor(
                [1.0, cx / cell - j, cy / cell - i, math.sqrt(w / image_size), math.sqrt(h / image_size)]
            )
            out[n, i, j, 5 + label] = 1.0
    return out


def _yolo_boxes(xywh: torch.Tensor, grid: int, image_size: int) -> torch.Tensor:
    """``(..., G, G, 4)`` cell-relative (x, y, sqrt w, sqrt h) -> ``(..., G, G, 4)`` xyxy pixels."""
    cell = image_size / grid
    ys, xs = torch.meshgrid(
        torch.arange(grid, dtype=xywh.dtype), torch.arange(grid, dtype=xywh.dtype), indexing="ij"
    )
    cx, cy = (xs + xywh[..., 0]) * cell, (ys + xywh[..., 1]) * cell
    w, h = xywh[..., 2].clamp(min=0) ** 2 * image_size, xywh[..., 3].clamp(min=0) ** 2 * image_size
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def yolo_v1_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    image_size: int,
    boxes_per_cell: int = 2,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
) -> torch.Tensor:
    """YOLO v1's sum-squared loss (Redmon et al., 2016), averaged over images.

    ``output`` ``(B, G, G, 5 * boxes_per_cell + K)``: per cell B boxes ``[conf, x, y, √w, √h]``
    then K class scores; ``target`` ``(B, G, G, 5 + K)`` from :func:`yolo_v1_targets`. In a cell
    with an object, the box with the highest IoU with it is "responsible"
    (:math:`\\mathbb 1^{obj}_{ib} = 1`): its coordinates get weight :math:`\\lambda_{coord}` and
    its confidence is trained towards that IoU; every other box's confidence towards 0 with
    weight :math:`\\lambda_{noobj}`; the class scores of a cell with an object towards its one-hot
    class :math:`p_i`:

    .. math::
        \\mathcal L = \\lambda_{coord} \\sum_{i,b} \\mathbb 1^{obj}_{ib} \\big[(x_i - \\hat x_{ib})^2
        + (y_i - \\hat y_{ib})^2 + (\\sqrt{w_i} - \\sqrt{\\hat w_{ib}})^2
        + (\\sqrt{h_i} - \\sqrt{\\hat h_{ib}})^2\\big]
        + \\sum_{i,b} \\mathbb 1^{obj}_{ib} (\\mathrm{IoU}_{ib} - \\hat C_{ib})^2
        + \\lambda_{noobj} \\sum_{i,b} (1 - \\mathbb 1^{obj}_{ib}) \\hat C_{ib}^2
        + \\sum_i \\mathbb 1^{obj}_i \\lVert p_i - \\hat p_i \\rVert^2 .

    The IoU target is not differentiated through (it is computed under ``no_grad``).

    Returns:
        A scalar: the sum over cells, averaged over the images.
    """
    check_int("image_size", image_size)
    nb = check_int("boxes_per_cell", boxes_per_cell)
    dims: dict[str, int] = {}
    check_tensor("target", target, ("B", "G", "G", None), dims=dims)
    k = target.shape[-1] - 5
    if k < 1:
        raise ValueError(f"target must have 5 + K >= 6 channels per cell, got {target.shape[-1]}")
    check_tensor("output", output, ("B", "G", "G", 5 * nb + k), dims=dims)
    check_nonnegative("lambda_coord", lambda_coord)
    check_nonnegative("lambda_noobj", lambda_noobj)
    b, g = output.shape[0], output.shape[1]
    nb = boxes_per_cell
    boxes = output[..., : 5 * nb].reshape(b, g, g, nb, 5)
    obj = target[..., 0] > 0  # (B, G, G)
    tgt_xyxy = _yolo_boxes(target[..., 1:5], g, image_size)  # (B, G, G, 4)
    pred_xyxy = torch.stack(
        [_yolo_boxes(boxes[..., k, 1:5], g, image_size) for k in range(nb)], dim=3
    )  # (B, G, G, nb, 4)
    with torch.no_grad():  # per cell, the IoU of its nb boxes with its target: (B, G, G, nb)
        iou = det.box_iou(pred_xyxy, tgt_xyxy[..., None, :])[..., 0]
        responsible = F.one_hot(iou.argmax(-1), nb).bool() & obj[..., None]
    coord = ((boxes[..., 1:5] - target[..., None, 1:5]) ** 2).sum(-1)
    loss = lambda_coord * coord[responsible].sum()
    loss = loss + ((boxes[..., 0] - iou) ** 2)[responsible].sum()
    loss = loss + lambda_noobj * (boxes[..., 0] ** 2)[~responsible].sum()
    loss = loss + ((output[..., 5 * nb :] - target[..., 5:]) ** 2).sum(-1)[obj].sum()
    return loss / b


def decode_yolo_v1(
    output: torch.Tensor, image_size: int, boxes_per_cell: int = 2
) -> list[dict[str, torch.Tensor]]:
    """All ``G * G * B`` boxes of each image, with score = confidence × class probability, before NMS.

    ``output`` ``(N, G, G, 5 B + K)`` as in :func:`yolo_v1_loss`. Box :math:`b` of cell
    :math:`(i, j)` has centre :math:`((j + \\hat x) s, (i + \\hat y) s)` with cell side
    :math:`s` = ``image_size / G``, size :math:`\\hat{\\sqrt w}^2 \\cdot` ``image_size`` (same for h),
    label :math:`\\arg\\max_c \\hat p(c)` and score :math:`\\mathrm{clamp}(\\hat C_b, 0, 1)
    \\max_c \\mathrm{softmax}(\\hat p)_c`. Boxes are listed cell by cell (row-major), B per cell.

    Returns:
        One dict per image: ``boxes`` ``(G G B, 4)`` xyxy pixels, ``scores``, ``labels``.
    """
    check_int("image_size", image_size)
    nb = check_int("boxes_per_cell", boxes_per_cell)
    check_tensor("output", output, (None, "G", "G", None))
    if output.shape[-1] < 5 * nb + 1:
        raise ValueError(f"output must have 5 * boxes_per_cell + K = {5 * nb} + K channels with K >= 1, "
                         f"got {output.shape[-1]}")
    b, g = output.shape[0], output.shape[1]
    nb = boxes_per_cell
    boxes = output[..., : 5 * nb].reshape(b, g, g, nb, 5)
    xyxy = torch.stack([_yolo_boxes(boxes[..., k, 1:5], g, image_size) for k in range(nb)], dim=3)
    cls = output[..., 5 * nb :].softmax(-1)  # (B, G, G, K)
    prob, label = cls.max(-1)
    score = boxes[..., 0].clamp(0, 1) * prob[..., None]  # (B, G, G, nb)
    return [
        {
            "boxes": xyxy[n].reshape(-1, 4),
            "scores": score[n].reshape(-1),
            "labels": label[n][..., None].expand(-1, -1, nb).reshape(-1),
        }
        for n in range(b)
    ]


# --------------------------------------------------------------------------------------------
# 5. DETR: the matching cost and the set loss (the matching itself is detection.hungarian_match)
# --------------------------------------------------------------------------------------------
def detr_cost_matrix(
    logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    tgt_labels: torch.Tensor,
    tgt_boxes: torch.Tensor,
    class_weight: float = 1.0,
    l1_weight: float = 5.0,
    giou_weight: float = 2.0,
) -> torch.Tensor:
    """DETR's matching cost between ``Q`` predictions and ``G`` targets.

    .. math::  C_{ij} = -\\lambda_{cls}\\, \\hat p_i(c_j) + \\lambda_{L1} \\lVert \\hat b_i - b_j \\rVert_1
               - \\lambda_{giou}\\, \\mathrm{GIoU}(\\hat b_i, b_j),

    with :math:`\\hat p_i` the softmax of query :math:`i`'s logits, :math:`c_j, b_j` target
    :math:`j`'s class and box. Boxes are cxcywh, normalised to [0, 1] by the image size.

    Args:
        logits: ``(Q, K + 1)``, the last class is "no object" (∅).
        pred_boxes: ``(Q, 4)`` cxcywh; tgt_labels: ``(G,)`` in ``[0, K)``; tgt_boxes: ``(G, 4)`` cxcywh.

    Returns:
        ``(Q, G)`` cost.

    References:
        Carion et al., "End-to-end object detection with transformers", ECCV 2020.
    """
    logits = check_tensor("logits", logits, ("Q", None))
    if logits.shape[1] < 2:
        raise ValueError(f"logits must have shape (Q, K + 1) with K >= 1, got {tuple(logits.shape)}")
    for name, value in (("class_weight", class_weight), ("l1_weight", l1_weight),
                        ("giou_weight", giou_weight)):
        check_nonnegative(name, value)
    pred_boxes = det._check_boxes(pred_boxes, "pred_boxes", "cxcywh")
    tgt_boxes = det._check_boxes(tgt_boxes, "tgt_boxes", "cxcywh")
    if len(pred_boxes) != len(logits):
        raise ValueError(f"pred_boxes must have {len(logits)} rows to match logits, got {len(pred_boxes)}")
    tgt_labels = det._check_vector(tgt_labels, "tgt_labels", len(tgt_boxes), "tgt_boxes")
    if len(tgt_labels) and (tgt_labels.min() < 0 or tgt_labels.max() >= logits.shape[1] - 1):
        raise ValueError(f"tgt_labels must be in [0, {logits.shape[1] - 1}) (the last class is ∅)")
    prob = logits.softmax(-1)[:, tgt_labels]  # (Q, G)
    l1 = torch.cdist(pred_boxes, tgt_boxes, p=1)  # (Q, G)
    giou = det.generalized_box_iou(
        det.box_convert(pred_boxes, "cxcywh", "xyxy"), det.box_convert(tgt_boxes, "cxcywh", "xyxy")
    )
    return -class_weight * prob + l1_weight * l1 - giou_weight * giou


def set_prediction_loss(
    logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    tgt_labels: torch.Tensor,
    tgt_boxes: torch.Tensor,
    no_object_weight: float = 0.1,
    l1_weight: float = 5.0,
    giou_weight: float = 2.0,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """DETR's set loss for one image: match, then classify every query and regress matched ones.

    .. math::  \\mathcal L = \\sum_{i=1}^{Q} w_i\\, \\mathrm{CE}(\\hat p_i, c_{\\hat\\sigma^{-1}(i)})
               + \\frac{1}{G}\\sum_{j=1}^{G} \\big[\\lambda_{L1}
               \\lVert \\hat b_{\\hat\\sigma(j)} - b_j \\rVert_1
               + \\lambda_{giou} (1 - \\mathrm{GIoU}(\\hat b_{\\hat\\sigma(j)}, b_j))\\big],

    where unmatched queries get the class ∅ with weight :math:`w_i` = ``no_object_weight``
    (matched ones weight 1), and the CE term is normalised by :math:`\\sum_i w_i`. Because
    every target is matched to exactly one query, a second query on the same object is
    trained to say ∅: duplicates are penalised, so no NMS is needed.

    Returns:
        ``(loss, (pred_index, target_index))``.
    """
    check_nonnegative("no_object_weight", no_object_weight)
    cost = detr_cost_matrix(logits, pred_boxes, tgt_labels, tgt_boxes, 1.0, l1_weight, giou_weight)
    pred_idx, tgt_idx = det.hungarian_match(cost)
    num_queries, num_classes = logits.shape[0], logits.shape[1] - 1
    classes = torch.full((num_queries,), num_classes, dtype=torch.int64)
    classes[pred_idx] = tgt_labels[tgt_idx]
    weight = torch.ones(num_classes + 1, dtype=logits.dtype)
    weight[-1] = no_object_weight
    loss = F.cross_entropy(logits, classes, weight=weight)
    if len(tgt_idx):
        matched, target = pred_boxes[pred_idx], tgt_boxes[tgt_idx]
        giou = torch.diag(
            det.generalized_box_iou(
                det.box_convert(matched, "cxcywh", "xyxy"), det.box_convert(target, "cxcywh", "xyxy")
            )
        )
        loss = loss + l1_weight * (matched - target).abs().sum(-1).mean() + giou_weight * (1 - giou).mean()
    return loss, (pred_idx, tgt_idx)


# --------------------------------------------------------------------------------------------
# 6. training and inference
# --------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """The training recipe of :func:`train_detector`."""

    steps: int = 600  #: optimiser steps
    batch_size: int = 32  #: images per step, drawn at random from the training set
    lr: float = 3e-3  #: peak learning rate of AdamW (one cycle: 5% warm-up, then cosine decay to ~0)
    weight_decay: float = 1e-4  #: AdamW's decoupled weight decay
    seed: int = 0  #: seeds the initial weights and the order of the mini-batches

    def __post_init__(self) -> None:
        check_fields(self, {"steps": check_int, "batch_size": check_int, "lr": check_positive,
                            "weight_decay": check_nonnegative, "seed": (check_int, 0)})


def init_head_prior(model: TinyDetector, num_classes: int, prior: float = 0.1) -> None:
    """Start the heat-map logits at :math:`\\log\\frac{\\pi}{1-\\pi}` (Lin et al., 2017, who use
    :math:`\\pi = 0.01`; the default 0.1 is CenterNet's), so that the
    untrained head predicts "background" with probability :math:`1-\\pi` and the focal loss does not
    start with a burst of gradients from thousands of easy background cells."""
    _check_model(model)
    check_int("num_classes", num_classes)
    most = model.head[-1].out_channels - 4
    if num_classes > most:
        raise ValueError(f"num_classes must be at most head_channels - 4 = {most}, got {num_classes}")
    check_probability("prior", prior, allow_zero=False, allow_one=False)
    with torch.no_grad():
        model.head[-1].bias[:num_classes] = math.log(prior / (1 - prior))


def _check_head(model: TinyDetector, head: object, num_classes: int, boxes_per_cell: object) -> None:
    """``head`` is "centernet" or "yolo_v1", and the model has that head's number of channels."""
    check_choice("head", head, ("centernet", "yolo_v1"))
    nb = check_int("boxes_per_cell", boxes_per_cell)
    need = num_classes + 4 if head == "centernet" else 5 * nb + num_classes
    have = model.head[-1].out_channels
    if (head == "centernet" and have < need) or (head == "yolo_v1" and have != need):
        rule = "K + 4" if head == "centernet" else "5 * boxes_per_cell + K"
        raise ValueError(f"model's head has {have} channels; head={head!r} with num_classes={num_classes} "
                         f"needs {rule} = {need}" + (" or more" if head == "centernet" else ""))


def training_recipe(
    model: nn.Module, config: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The recipe every head of the chapter trains with: AdamW (``config.lr``,
    ``config.weight_decay``) and a one-cycle learning rate over ``config.steps`` steps (5% warm-up,
    then cosine annealing; Smith & Topin, 2019). Returns ``(optimiser, schedule)``; call
    ``schedule.step()`` after every ``optimiser.step()``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.__post_init__()  # fields may have been changed after construction
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, config.lr, total_steps=config.steps, pct_start=0.05, anneal_strategy="cos"
    )
    return optimiser, schedule


def train_detector(
    model: TinyDetector,
    images: torch.Tensor,
    targets: Sequence[Mapping[str, torch.Tensor]],
    num_classes: int,
    config: TrainConfig | None = None,
    progress: bool = True,
    head: str = "centernet",
    boxes_per_cell: int = 2,
) -> list[float]:
    """Train ``model`` on ``images`` ``(N, 3, S, S)``: a CenterNet head with :func:`centernet_loss`
    (``head="centernet"``, ``K + 4`` head channels), or a YOLO-v1 head with :func:`yolo_v1_loss`
    (``head="yolo_v1"``, ``5 B + K`` head channels with :math:`B` = ``boxes_per_cell``, on the
    model's :math:`G \times G` output grid, :math:`G = S / \text{stride}`).

    Each step draws ``batch_size`` images at random (with replacement, from a generator seeded
    with ``config.seed``) and takes one AdamW step; the learning rate follows a one-cycle
    schedule. The targets are computed once, up front (:func:`centernet_targets` or
    :func:`yolo_v1_targets`).

    Returns:
        The training loss at every step.
    """
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig or None, got {type(config).__name__}")
    config.__post_init__()  # fields may have been changed after construction
    _check_model(model)
    _check_images(images)
    check_int("num_classes", num_classes)
    if images.shape[-1] % model.stride:
        raise ValueError(f"images must be S x S with S a multiple of the model's stride {model.stride}, "
                         f"got {tuple(images.shape)}")
    if len(images) != len(targets):
        raise ValueError(
            f"images and targets must have the same length, got {len(images)} and {len(targets)}"
        )
    _check_head(model, head, num_classes, boxes_per_cell)
    device = next(model.parameters()).device  # train where the model is (see tutorlib.device())
    grid = images.shape[-1] // model.stride
    if head == "centernet":
        all_targets = centernet_targets(targets, num_classes, grid, model.stride)  # computed once
    else:
        all_targets = {"grid": yolo_v1_targets(targets, grid, num_classes, images.shape[-1])}
    optimiser, schedule = training_recipe(model, config)
    g = torch.Generator().manual_seed(config.seed)
    steps = range(config.steps)
    if progress:
        from tqdm.auto import tqdm

        name = ("FPN" if model.top_down else "stride 4, no top-down") if model.fpn else "single map"
        steps = tqdm(steps, desc=f"training ({name}, {head})", leave=False)
    losses = []
    model.train()
    for _ in steps:
        idx = torch.randint(0, len(images), (config.batch_size,), generator=g)
        batch = {k: v[idx].to(device) for k, v in all_targets.items()}
        output = model(images[idx].to(device))
        if head == "centernet":
            loss = centernet_loss(output, batch)
        else:  # YOLO's functions want channels last: (B, G, G, 5 B + K)
            loss = yolo_v1_loss(output.permute(0, 2, 3, 1), batch["grid"], images.shape[-1], boxes_per_cell)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def detect(
    model: TinyDetector,
    images: torch.Tensor,
    num_classes: int,
    iou_threshold: float | None = 0.5,
    score_threshold: float = 0.05,
    top_k: int = 100,
    batch_size: int = 100,
    peaks_only: bool = False,
    head: str = "centernet",
    boxes_per_cell: int = 2,
) -> list[dict[str, torch.Tensor]]:
    """Run the detector: decode every cell (:func:`decode_centernet`, or with ``head="yolo_v1"``
    :func:`decode_yolo_v1`: score = confidence × class probability, the ``top_k`` best), drop
    scores below ``score_threshold``, then per-class NMS (:func:`tutorlib.detection.batched_nms`)
    unless ``iou_threshold`` is None. With ``peaks_only`` (CenterNet only), only cells that are
    the maximum of their 3 × 3 neighbourhood are decoded (CenterNet's peak filter, usually with
    ``iou_threshold=None``). The model runs on its device; the detections are on the CPU."""
    _check_model(model)
    _check_images(images)
    check_int("num_classes", num_classes)
    if iou_threshold is not None:
        check_probability("iou_threshold", iou_threshold)
    check_probability("score_threshold", score_threshold)
    check_int("top_k", top_k)
    check_int("batch_size", batch_size)
    if not isinstance(peaks_only, bool):
        raise TypeError(f"peaks_only must be a bool, got {type(peaks_only).__name__} {peaks_only!r}")
    _check_head(model, head, num_classes, boxes_per_cell)
    if peaks_only and head != "centernet":
        raise ValueError(f"peaks_only=True is CenterNet's peak filter; it needs head='centernet', "
                         f"got {head!r}")
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        output = model(images[start : start + batch_size].to(device)).cpu()  # NMS and metrics on the CPU
        if head == "centernet":
            decoded = decode_centernet(output, model.stride, num_classes, top_k, peaks_only=peaks_only)
        else:
            decoded = decode_yolo_v1(output.permute(0, 2, 3, 1), images.shape[-1], boxes_per_cell)
            best = [r["scores"].topk(min(top_k, len(r["scores"]))).indices for r in decoded]
            decoded = [{k: v[i] for k, v in r.items()} for r, i in zip(decoded, best, strict=True)]
        for r in decoded:
            keep = r["scores"] >= score_threshold
            r = {k: v[keep] for k, v in r.items()}
            if iou_threshold is not None:
                kept = det.batched_nms(r["boxes"], r["scores"], r["labels"], iou_threshold)
                r = {k: v[kept] for k, v in r.items()}
            out.append(r)
    return out


def detect_image_pyramid(
    model: TinyDetector,
    images: torch.Tensor,
    num_classes: int,
    scales: Sequence[int] = (1, 2),
    upscaled_max_side: float = 16.0,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.05,
) -> list[dict[str, torch.Tensor]]:
    """Test-time image pyramid: run ``model`` on copies of the images enlarged by each integer
    factor in ``scales`` (bilinear), map the boxes back by dividing by the factor, merge, and
    apply per-class NMS to the union.

    Each enlarged copy is responsible for the small objects only (as in SNIP, Singh & Davis
    2018): from a copy with factor > 1, boxes whose side :math:`\\sqrt{wh}` in original pixels
    is ``upscaled_max_side`` or more are dropped, since a large object enlarged past the sizes
    seen in training is detected badly. The cost grows with the pixels: factor :math:`f` costs
    :math:`f^2` times the forward pass of the original size.

    Returns:
        One detection dict per image, as :func:`detect`.
    """
    _check_model(model)
    _check_images(images)
    num_classes = check_int("num_classes", num_classes)
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or not scales:
        raise TypeError(f"scales must be a non-empty sequence of ints, got {scales!r}")
    scales = [check_int(f"scales[{i}]", f) for i, f in enumerate(scales)]
    check_positive("upscaled_max_side", upscaled_max_side)
    check_probability("iou_threshold", iou_threshold)
    check_probability("score_threshold", score_threshold)
    merged: list[list[dict[str, torch.Tensor]]] = [[] for _ in range(len(images))]
    images = images.detach()  # inference only
    for f in scales:
        copy = images if f == 1 else F.interpolate(images, scale_factor=f, mode="bilinear")  # f^2 pixels
        for n, r in enumerate(detect(model, copy, num_classes, None, score_threshold)):  # no NMS yet
            r = {**r, "boxes": r["boxes"] / f}  # back to the original image's pixels
            if f > 1:  # an enlarged copy answers for the small objects only
                keep = det.box_area(r["boxes"]).sqrt() < upscaled_max_side
                r = {k: v[keep] for k, v in r.items()}
            merged[n].append(r)
    out = []
    for parts in merged:  # one NMS over the boxes of every scale
        r = {k: torch.cat([p[k] for p in parts]) for k in ("boxes", "scores", "labels")}
        kept = det.batched_nms(r["boxes"], r["scores"], r["labels"], iou_threshold)
        out.append({k: v[kept] for k, v in r.items()})
    return out


# --------------------------------------------------------------------------------------------
# 7. helpers for the chapter: a crowded scene for NMS, the COCO json layout
# --------------------------------------------------------------------------------------------
def crowded_scene(
    n_objects: int = 7, candidates_per_object: int = 8, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A row of people-sized boxes that overlap their neighbours (IoU about 0.3-0.6), and
    noisy candidate boxes around each, as a detector would propose them.

    Returns:
        ``gt`` ``(n_objects, 4)``, candidate ``boxes`` ``(n_objects * candidates_per_object, 4)``,
        their ``scores`` and the index of the object each candidate came from.
    """
    n_objects = check_int("n_objects", n_objects)
    per = check_int("candidates_per_object", candidates_per_object)
    _check_generator(generator)
    g = generator or torch.Generator().manual_seed(0)
    x = 10 + 16 * torch.arange(n_objects, dtype=torch.float32) + 2 * torch.randn(n_objects, generator=g)
    y = 30 + 10 * torch.rand(n_objects, generator=g)
    w = 38 + 6 * torch.rand(n_objects, generator=g)
    h = 90 + 20 * torch.rand(n_objects, generator=g)
    gt = torch.stack([x, y, x + w, y + h], dim=-1)
    owner = torch.arange(n_objects).repeat_interleave(per)
    size = torch.stack([w, h, w, h], dim=-1)[owner]
    boxes = gt[owner] + 0.08 * size * torch.randn(len(owner), 4, generator=g)
    boxes = torch.cat(
        [torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])], 1
    )
    quality = torch.diag(det.box_iou(boxes, gt[owner]))
    scores = (quality * (0.6 + 0.4 * torch.rand(len(owner), generator=g))).clamp(0, 1)
    return gt, boxes, scores, owner


def to_coco(
    preds: Sequence[Mapping[str, torch.Tensor]],
    targets: Sequence[Mapping[str, torch.Tensor]],
    num_classes: int,
) -> tuple[dict, list[dict]]:
    """Ground truth as a COCO dataset dict and detections as a COCO results list (boxes xywh,
    category ids from 1, annotation ids from 1: pycocotools treats id 0 as "unmatched")."""
    check_int("num_classes", num_classes)
    det._check_preds_targets(preds, targets)
    for name, sets in (("preds", preds), ("targets", targets)):
        for n, item in enumerate(sets):
            labels = item["labels"]
            if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
                raise ValueError(f"{name}[{n}]['labels'] must be in [0, num_classes={num_classes})")
    images, annotations, results = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        images.append({"id": i + 1})
        for (x1, y1, x2, y2), label in zip(t["boxes"].tolist(), t["labels"].tolist(), strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": label + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
        for (x1, y1, x2, y2), s, label in zip(
            p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist(), strict=True
        ):
            results.append(
                {"image_id": i + 1, "category_id": label + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
            )
    dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": c + 1, "name": SHAPES[c] if c < len(SHAPES) else str(c)} for c in range(num_classes)
        ],
    }
    return dataset, results
