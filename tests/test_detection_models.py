"""tutorlib.detection_models: the synthetic shapes, CenterNet and YOLO v1 heads, training, COCO export."""

import contextlib
import io
import itertools
import math

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tutorlib import detection as D
from tutorlib import detection_models as M

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shapes_are_seeded_and_boxes_fit_the_image():
    a_images, a_targets = M.make_shapes(20, generator=torch.Generator().manual_seed(3))
    b_images, b_targets = M.make_shapes(20, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a_images, b_images)
    assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(a_targets, b_targets, strict=True))
    config = M.ShapesConfig()
    assert a_images.shape == (20, 3, config.image_size, config.image_size)
    boxes = torch.cat([t["boxes"] for t in a_targets])
    labels = torch.cat([t["labels"] for t in a_targets])
    assert boxes.min() >= 0 and boxes.max() <= config.image_size
    side = boxes[:, 2] - boxes[:, 0]
    assert torch.allclose(side, boxes[:, 3] - boxes[:, 1]) and side.min() >= config.min_size - 1e-4
    assert side.max() <= config.max_size + 1e-4
    assert set(labels.tolist()) == {0, 1, 2}
    for t in a_targets:  # objects overlap little
        iou = D.box_iou(t["boxes"], t["boxes"]).fill_diagonal_(0)
        assert 1 <= len(t["boxes"]) <= config.max_objects and iou.max() <= config.max_overlap + 1e-6


def test_shapes_are_drawn_inside_their_boxes():
    config = M.ShapesConfig(noise=0.0, max_objects=1)
    images, targets = M.make_shapes(10, config, torch.Generator().manual_seed(0))
    ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    for image, t in zip(images, targets, strict=True):
        x1, y1, x2, y2 = t["boxes"][0].tolist()
        inside = (xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)
        # the background is a gentle ramp (< 0.003 per pixel): every sharp edge is the shape's
        jump_x = (image[:, :, 1:] - image[:, :, :-1]).abs().amax(0) > 0.02  # (64, 63)
        jump_y = (image[:, 1:] - image[:, :-1]).abs().amax(0) > 0.02  # (63, 64)
        assert jump_x.any() and jump_y.any()
        assert not (jump_x & ~(inside[:, 1:] | inside[:, :-1])).any()
        assert not (jump_y & ~(inside[1:] | inside[:-1])).any()


def test_shapes_errors():
    with pytest.raises(TypeError, match="n_images must be an int"):
        M.make_shapes(2.0)
    with pytest.raises(ValueError, match="min_size <= max_size < image_size"):
        M.make_shapes(2, M.ShapesConfig(max_size=80))


@pytest.mark.parametrize("fpn,grid", [(False, 4), (True, 16)])
def test_detector_shapes_and_gradients(fpn, grid):
    model = M.TinyDetector(7, fpn=fpn, width=8)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7, grid, grid) and model.stride == 64 // grid
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_stride4_ablation_has_no_top_down_path():
    torch.manual_seed(0)
    shallow = M.TinyDetector(7, fpn=True, width=8, top_down=False).eval()
    full = M.TinyDetector(7, fpn=True, width=8).eval()
    assert not hasattr(shallow, "stage3") and shallow.stride == 4
    images = torch.randn(2, 3, 64, 64)
    assert shallow(images).shape == (2, 7, 16, 16)
    # a change in the left quarter of the image: the right-most column of cells (x about 62 px)
    # is out of the shallow head's 31-pixel reach, but within the deep top-down features'
    changed = images.clone()
    changed[..., :16] += 1.0
    with torch.no_grad():
        assert torch.equal(shallow(images)[..., 15], shallow(changed)[..., 15])
        assert not torch.allclose(full(images)[..., 15], full(changed)[..., 15])
    with pytest.raises(ValueError, match="top_down=False needs fpn=True"):
        M.TinyDetector(7, fpn=False, top_down=False)
    with pytest.raises(TypeError, match="top_down must be a bool"):
        M.TinyDetector(7, fpn=True, top_down=1)


def test_detect_peaks_only_keeps_the_local_maxima():
    torch.manual_seed(0)
    model = M.TinyDetector(7, fpn=True, width=8, top_down=False).eval()
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        heat = model(images)[:, :3].sigmoid()
    found = M.detect(model, images, 3, iou_threshold=None, score_threshold=0.0, top_k=3 * 16 * 16,
                     peaks_only=True)
    for n, r in enumerate(found):
        # brute force: a cell is a peak when no cell of its 3 x 3 neighbourhood (same class) is larger
        peaks = []
        for k, i, j in itertools.product(range(3), range(16), range(16)):
            window = heat[n, k, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]
            if heat[n, k, i, j] >= window.max():
                peaks.append(heat[n, k, i, j].item())
        positive = r["scores"][r["scores"] > 0]
        assert sorted(positive.tolist()) == pytest.approx(sorted(peaks))
    every = M.detect(model, images, 3, iou_threshold=None, score_threshold=0.0, top_k=3 * 16 * 16)
    assert all(len(e["scores"]) == 3 * 16 * 16 for e in every)
    with pytest.raises(TypeError, match="peaks_only must be a bool"):
        M.detect(model, images, 3, peaks_only="yes")


def test_image_pyramid_merges_scales():
    torch.manual_seed(0)
    model = M.TinyDetector(7, fpn=False, width=8).eval()
    M.init_head_prior(model, 3, 0.5)
    images, _ = M.make_shapes(4, generator=torch.Generator().manual_seed(2))
    plain = M.detect(model, images, 3)
    for scales, side in (((1,), 16.0), ((1, 2), 1e-6)):  # a 2x copy that may keep no box adds nothing
        pyramid = M.detect_image_pyramid(model, images, 3, scales=scales, upscaled_max_side=side)
        for p, q in zip(pyramid, plain, strict=True):
            torch.testing.assert_close(p["boxes"], q["boxes"])
            assert torch.equal(p["labels"], q["labels"])
    # with the 2x copy and no suppression between scales (IoU threshold 1), every box is kept:
    # the 1x boxes and the 2x boxes (divided by 2) with a side below the limit
    merged = M.detect_image_pyramid(model, images, 3, scales=(1, 2), upscaled_max_side=12.0,
                                    iou_threshold=1.0)
    one = M.detect(model, images, 3, iou_threshold=None)
    two = M.detect(model, torch.nn.functional.interpolate(images, scale_factor=2, mode="bilinear"), 3,
                   iou_threshold=None)
    for m, a, b in zip(merged, one, two, strict=True):
        small = D.box_area(b["boxes"] / 2).sqrt() < 12.0
        assert len(m["scores"]) == len(a["scores"]) + int(small.sum())
        assert (b["boxes"][small] / 2).max() <= 64 * 1.5  # back in the original image's pixels
    with pytest.raises(TypeError, match="scales must be a non-empty sequence"):
        M.detect_image_pyramid(model, images, 3, scales=())
    with pytest.raises(ValueError, match=r"scales\[1\] must be >= 1"):
        M.detect_image_pyramid(model, images, 3, scales=(1, 0))
    with pytest.raises(ValueError, match="upscaled_max_side must be finite and > 0"):
        M.detect_image_pyramid(model, images, 3, upscaled_max_side=-1.0)


def test_centernet_targets_and_perfect_decoding():
    targets = [
        {
            "boxes": torch.tensor([[3.0, 5.0, 13.0, 15.0], [30.0, 20.0, 58.0, 48.0]]),
            "labels": torch.tensor([2, 0]),
        }
    ]
    t = M.centernet_targets(targets, num_classes=3, grid=16, stride=4)
    assert t["heatmap"][0, 2, 2, 2] == 1 and t["heatmap"][0, 0, 8, 11] == 1  # centre cells (row, col)
    assert int((t["heatmap"] == 1).sum()) == 2 and t["mask"].sum() == 2
    torch.testing.assert_close(t["offset"][0, :, 2, 2], torch.tensor([8 / 4 - 2, 10 / 4 - 2]))
    torch.testing.assert_close(t["size"][0, :, 8, 11], torch.tensor([math.log(7.0), math.log(7.0)]))
    # a "perfect" head output decodes back to the targets
    logits = torch.where(t["heatmap"] == 1, 10.0, -10.0)
    output = torch.cat([logits, t["size"], t["offset"]], dim=1)
    decoded = M.decode_centernet(output, stride=4, num_classes=3, top_k=2)[0]
    order = decoded["labels"].argsort(descending=True)
    torch.testing.assert_close(decoded["boxes"][order], targets[0]["boxes"])
    assert decoded["labels"][order].tolist() == [2, 0]
    assert torch.all(M.centernet_loss(output, t) < 0.01)


def test_centernet_peaks_only_drops_neighbours():
    output = torch.full((1, 5, 4, 4), -10.0)
    output[0, 0, 1, 1], output[0, 0, 1, 2], output[0, 0, 3, 3] = 3.0, 2.0, 1.0
    all_cells = M.decode_centernet(output, 16, 1, top_k=3)[0]
    peaks = M.decode_centernet(output, 16, 1, top_k=3, peaks_only=True)[0]
    assert (all_cells["scores"] > 0.5).sum() == 3 and (peaks["scores"] > 0.5).sum() == 2
    with pytest.raises(ValueError, match=r"output must have shape \(B, num_classes \+ 4 = 5, H, W\)"):
        M.decode_centernet(output[:, :4], 16, 1)


def test_focal_loss_by_hand():
    logits = torch.tensor([[[[0.0, math.log(3.0)]]]])  # p = 0.5 on a centre, p = 0.75 off it
    heatmap = torch.tensor([[[[1.0, 0.5]]]])
    expected = -(0.5**2 * math.log(0.5)) - (0.5**4 * 0.75**2 * math.log(0.25))
    assert M.focal_loss_centernet(logits, heatmap).item() == pytest.approx(expected, rel=1e-6)


def test_yolo_v1_targets_loss_and_decoding():
    targets = [
        {
            "boxes": torch.tensor([[4.0, 4.0, 20.0, 12.0], [40.0, 36.0, 60.0, 62.0]]),
            "labels": torch.tensor([1, 0]),
        }
    ]
    t = M.yolo_v1_targets(targets, grid=4, num_classes=2, image_size=64)
    assert t.shape == (1, 4, 4, 7) and t[..., 0].sum() == 2
    assert t[0, 0, 0, :5].tolist() == pytest.approx(
        [1.0, 12 / 16, 8 / 16, math.sqrt(16 / 64), math.sqrt(8 / 64)]
    )
    # a perfect output: box 1 of each cell = target, box 2 = a shifted box with confidence 0
    box = t[..., :5]
    output = torch.cat(
        [box, (box + 0.3) * torch.tensor([0.0, 1, 1, 1, 1]), t[..., 5:]], dim=-1
    )  # (1, 4, 4, 12)
    assert M.yolo_v1_loss(output, t, image_size=64).item() == pytest.approx(0.0, abs=1e-10)
    worse = output.clone()
    worse[0, 0, 0, 3] += 0.1  # sqrt(w / 64): 0.5 -> 0.6, w: 16 -> 23.04, so IoU = 16 / 23.04
    expected = 5 * 0.1**2 + (1 - 16 / 23.04) ** 2  # coordinates, and confidence 1 vs the IoU
    assert M.yolo_v1_loss(worse, t, image_size=64).item() == pytest.approx(expected, rel=1e-4)
    decoded = M.decode_yolo_v1(output * torch.cat([torch.ones(10), 10 * torch.ones(2)]), image_size=64)[0]
    best = decoded["scores"].topk(2).indices
    found = sorted(decoded["boxes"][best].tolist())
    torch.testing.assert_close(torch.tensor(found), targets[0]["boxes"][[0, 1]])
    assert len(decoded["boxes"]) == 4 * 4 * 2


def test_training_reduces_the_loss_and_detect_returns_sets():
    images, targets = M.make_shapes(16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = M.TinyDetector(7, fpn=True, width=8)
    M.init_head_prior(model, 3)
    losses = M.train_detector(
        model, images, targets, 3, M.TrainConfig(steps=40, batch_size=8, lr=1e-2), progress=False
    )
    assert len(losses) == 40 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < 0.75 * sum(losses[:5])
    # what a sign error in the focal loss would break: the heat map fires at the object centres
    # of the right class, not in the background
    with torch.no_grad():
        target = M.centernet_targets(targets, 3, 16, model.stride)
        heat = model(images)[:, :3].sigmoid()
    centre = target["heatmap"] == 1
    # (after 40 steps: about 0.15 at centres vs 0.10 in the background; a flipped sign inverts it)
    assert heat[centre].mean() > 1.25 * heat[target["heatmap"] < 0.01].mean()
    preds = M.detect(model, images[:4], 3)
    assert len(preds) == 4
    for p in preds:
        assert set(p) == {"boxes", "scores", "labels"} and torch.all(p["scores"] >= 0.05)
        kept = D.batched_nms(p["boxes"], p["scores"], p["labels"], 0.5)
        assert len(kept) == len(p["scores"])  # NMS already applied
    with pytest.raises(ValueError, match="same length"):
        M.train_detector(model, images, targets[:3], 3, progress=False)


def test_to_coco_gives_cocoeval_our_map():
    _, targets = M.make_shapes(6, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(0)
    preds = []
    for t in targets:
        boxes = t["boxes"] + torch.randn(len(t["boxes"]), 4, generator=g)
        boxes = torch.cat(
            [torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])], 1
        )
        preds.append({"boxes": boxes, "scores": torch.rand(len(boxes), generator=g), "labels": t["labels"]})
    dataset, results = M.to_coco(preds, targets, 3)
    gt = COCO()
    gt.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ours = D.mean_average_precision(preds, targets)
    assert ours["map"] == pytest.approx(ev.stats[0], abs=1e-6)
    assert ours["map_50"] == pytest.approx(ev.stats[1], abs=1e-6)


def test_crowded_scene():
    gt, boxes, scores, owner = M.crowded_scene(6, 5)
    assert gt.shape == (6, 4) and boxes.shape == (30, 4) and scores.shape == owner.shape == (30,)
    neighbours = torch.diag(D.box_iou(gt[:-1], gt[1:]))
    assert neighbours.min() > 0.1 and neighbours.max() < 0.7
    # a candidate's score is its IoU with the object it came from times a factor in [0.6, 1]
    quality = torch.diag(D.box_iou(boxes, gt[owner]))
    assert torch.all(scores <= quality + 1e-6) and torch.all(scores >= 0.6 * quality - 1e-6)
    assert scores.std() > 0.05  # not a constant


def test_shapes_config_and_make_shapes_refuse_bad_values():
    with pytest.raises(ValueError, match=r"ShapesConfig\.max_objects must be >= 1, got 0"):
        M.ShapesConfig(max_objects=0)  # used to end in a bare StopIteration inside make_shapes
    with pytest.raises(ValueError, match=r"ShapesConfig\.noise must be finite"):
        M.ShapesConfig(noise=float("nan"))
    with pytest.raises(ValueError, match="min_size <= max_size < image_size"):
        M.ShapesConfig(max_size=64.0)
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator"):
        M.make_shapes(2, generator=0)
    with pytest.raises(ValueError, match=r"TrainConfig\.lr must be finite and > 0"):
        M.TrainConfig(lr=-1.0)


def test_centernet_targets_refuse_a_centre_outside_the_map():
    # centre (-3, -3): cell index -1 would wrap around to the opposite corner
    targets = [{"boxes": torch.tensor([[-10.0, -10.0, 4.0, 4.0]]), "labels": torch.tensor([0])}]
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\] row 0 .* centre outside"):
        M.centernet_targets(targets, 3, 4, 16)
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\] row 0 .* centre outside"):
        M.yolo_v1_targets(targets, 4, 3, 64)
    # a box that only sticks out past the edge, with its centre inside, is fine
    ok = [{"boxes": torch.tensor([[-4.0, -4.0, 8.0, 8.0]]), "labels": torch.tensor([2])}]
    assert M.centernet_targets(ok, 3, 4, 16)["mask"][0, 0, 0]
    bad_label = [{"boxes": torch.tensor([[0.0, 0.0, 8.0, 8.0]]), "labels": torch.tensor([3])}]
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\] must be in \[0, num_classes=3\)"):
        M.centernet_targets(bad_label, 3, 4, 16)


def test_heads_losses_and_detect_check_their_arguments():
    model = M.TinyDetector(7, fpn=False, width=8)
    images = torch.rand(2, 3, 64, 64)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got -1"):
        M.detect(model, images, 3, batch_size=-1)  # used to return []
    with pytest.raises(ValueError, match=r"images must have shape \(None, 3, S, S\)"):
        M.detect(model, images[0], 3)
    with pytest.raises(ValueError, match="score_threshold must be a finite number"):
        M.detect(model, images, 3, score_threshold=float("nan"))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        M.decode_centernet(torch.zeros(1, 7, 4, 4), -16, 3)
    with pytest.raises(ValueError, match="output must be finite"):
        M.decode_centernet(torch.full((1, 7, 4, 4), float("nan")), 16, 3)
    with pytest.raises(ValueError, match="heatmap must hold values in"):
        M.focal_loss_centernet(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 2.0))
    with pytest.raises(ValueError, match=r"heatmap must have shape \(B, K, H, W\) with B = 1"):
        M.focal_loss_centernet(torch.zeros(1, 3, 4, 4), torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="prior must be a finite number in"):
        M.init_head_prior(model, 3, prior=1.0)
    with pytest.raises(ValueError, match="num_classes must be at most head_channels - 4 = 3"):
        M.init_head_prior(model, 4)
    target = torch.zeros(1, 4, 4, 8)
    with pytest.raises(ValueError, match=r"output must have shape \(B, G, G, 13\)"):
        M.yolo_v1_loss(torch.zeros(1, 4, 4, 12), target, 64)
    with pytest.raises(ValueError, match="l1_weight must be finite and >= 0"):
        M.detr_cost_matrix(torch.zeros(2, 4), torch.rand(2, 4), torch.tensor([0]), torch.rand(1, 4),
                           l1_weight=-5.0)
    with pytest.raises(ValueError, match=r"preds\[0\]\['labels'\] must be in \[0, num_classes=3\)"):
        M.to_coco([{"boxes": torch.zeros(1, 4), "scores": torch.ones(1), "labels": torch.tensor([5])}],
                  [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}], 3)
    with pytest.raises(TypeError, match="model must be a TinyDetector"):
        M.train_detector(torch.nn.Linear(1, 1), images, [], 3, progress=False)


def test_focal_loss_gradient_pushes_centres_up_and_background_down():
    # the sign a training run relies on: d loss / d logit < 0 at a centre, > 0 far from it
    logits = torch.zeros(1, 1, 3, 3, requires_grad=True)
    heatmap = torch.zeros(1, 1, 3, 3)
    heatmap[0, 0, 1, 1] = 1.0
    M.focal_loss_centernet(logits, heatmap).backward()
    assert logits.grad[0, 0, 1, 1] < 0 and logits.grad[0, 0, 0, 0] > 0
    # and it matches the formula at p = 1/2: centre -(1/2)^2 log(1/2) per cell, background -(1/2)^2 log(1/2)
    value = M.focal_loss_centernet(torch.zeros(1, 1, 3, 3), heatmap)
    assert value.item() == pytest.approx(9 * 0.25 * math.log(2), rel=1e-6)


def _one_object_per_cell(seed: int, grid: int = 4, size: int = 64, num_classes: int = 3):
    """Random boxes whose centres fall in distinct cells of a grid x grid map."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.randperm(grid * grid, generator=g)[:5]
    cell = size / grid
    inside = 0.05 + 0.9 * torch.rand(5, 2, generator=g)  # the centre's place in its cell
    centre = (torch.stack([cells % grid, cells // grid], 1) + inside) * cell
    wh = 3 + 30 * torch.rand(5, 2, generator=g)
    boxes = torch.cat([centre - wh / 2, centre + wh / 2], 1)
    return [{"boxes": boxes, "labels": torch.randint(0, num_classes, (5,), generator=g)}]


def _yolo_reference_loss(output, target, image_size, nb=2, l_coord=5.0, l_noobj=0.5):
    """YOLO v1's loss with explicit loops over images, cells and boxes (an independent reference)."""
    b, g = output.shape[:2]
    cell, total = image_size / g, 0.0
    for n, i, j in itertools.product(range(b), range(g), range(g)):
        out, t = output[n, i, j].tolist(), target[n, i, j].tolist()
        boxes = [out[5 * k : 5 * k + 5] for k in range(nb)]
        if t[0] == 0:
            total += l_noobj * sum(box[0] ** 2 for box in boxes)
            continue

        def xyxy(x, y, sw, sh, i=i, j=j):
            cx, cy = (j + x) * cell, (i + y) * cell
            w, h = max(sw, 0) ** 2 * image_size, max(sh, 0) ** 2 * image_size
            return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]

        truth = torch.tensor([xyxy(*t[1:5])])
        ious = [float(D.box_iou(torch.tensor([xyxy(*box[1:])]), truth)) for box in boxes]
        r = max(range(nb), key=lambda k: ious[k])  # first maximum, as argmax
        total += l_coord * sum((p - q) ** 2 for p, q in zip(boxes[r][1:], t[1:5], strict=True))
        total += (boxes[r][0] - ious[r]) ** 2
        total += l_noobj * sum(box[0] ** 2 for k, box in enumerate(boxes) if k != r)
        total += sum((p - q) ** 2 for p, q in zip(out[5 * nb :], t[5:], strict=True))
    return total / b


@pytest.mark.parametrize("seed", range(4))
def test_yolo_v1_loss_against_a_loop_reference_and_zero_only_at_the_target(seed):
    targets = _one_object_per_cell(seed)
    t = M.yolo_v1_targets(targets, grid=4, num_classes=3, image_size=64)
    g = torch.Generator().manual_seed(100 + seed)
    output = t[..., :5].repeat(1, 1, 1, 2) + 0.2 * torch.randn(1, 4, 4, 10, generator=g)
    output = torch.cat([output, t[..., 5:] + 0.2 * torch.randn(1, 4, 4, 3, generator=g)], -1)
    reference = _yolo_reference_loss(output, t, 64)
    assert M.yolo_v1_loss(output, t, 64).item() == pytest.approx(reference, rel=1e-5)
    # perfect: box 1 = target with confidence 1 (= its IoU), box 2 = anything with confidence 0
    perfect = torch.cat([t[..., :5], torch.rand(1, 4, 4, 5, generator=g) * torch.tensor([0.0, 1, 1, 1, 1]),
                         t[..., 5:]], -1)
    perfect[..., 5] = perfect[..., 5].clamp(max=0.0)  # box 2's confidence 0 everywhere
    perfect[..., 0] = t[..., 0]  # box 1's confidence: 1 on objects, 0 elsewhere
    assert M.yolo_v1_loss(perfect, t, 64).item() == pytest.approx(0.0, abs=1e-10)
    full = tuple((t[0, ..., 0] > 0).nonzero()[0].tolist())
    empty = tuple((t[0, ..., 0] == 0).nonzero()[0].tolist())
    seen = [(full, c) for c in (0, 1, 2, 3, 4, 5, 10, 11, 12)] + [(empty, 0), (empty, 5)]
    for (i, j), channel in seen:  # any change the loss sees makes it positive
        for step in (0.05, -0.05):
            worse = perfect.clone()
            worse[0, i, j, channel] += step
            assert M.yolo_v1_loss(worse, t, 64).item() > 1e-5, (i, j, channel, step)
    # what it does not see: box 2's coordinates anywhere, box 1's in an empty cell
    ignored = perfect.clone()
    ignored[0, full[0], full[1], 6:10] += 0.05
    ignored[0, empty[0], empty[1], 1:5] += 0.05
    assert M.yolo_v1_loss(ignored, t, 64).item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_decode_yolo_v1_round_trips_a_hand_made_target(seed):
    targets = _one_object_per_cell(seed)
    t = M.yolo_v1_targets(targets, grid=4, num_classes=3, image_size=64)
    output = torch.cat([t[..., :5], torch.zeros(1, 4, 4, 5), 20 * t[..., 5:]], -1)  # box 2 never fires
    decoded = M.decode_yolo_v1(output, image_size=64)[0]
    keep = D.batched_nms(decoded["boxes"], decoded["scores"], decoded["labels"], 0.5)
    keep = keep[decoded["scores"][keep] > 0.5]
    order = torch.tensor(sorted(range(5), key=lambda n: targets[0]["boxes"][n].tolist()))
    found = sorted(zip(decoded["boxes"][keep].tolist(), decoded["labels"][keep].tolist(), strict=True))
    found_boxes = torch.tensor([b for b, _ in found])
    torch.testing.assert_close(found_boxes, targets[0]["boxes"][order], atol=1e-4, rtol=0)
    assert [c for _, c in found] == targets[0]["labels"][order].tolist()
    # the box of cell (i, j) is listed at (i * G + j) * B
    i, j = (t[0, ..., 0] > 0).nonzero()[0].tolist()
    assert decoded["scores"][(i * 4 + j) * 2] > 0.99


def test_train_and_detect_with_the_yolo_head():
    images, targets = M.make_shapes(16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = M.TinyDetector(5 * 2 + 3, fpn=True, width=8, top_down=False)
    recipe = M.TrainConfig(steps=30, batch_size=8)
    losses = M.train_detector(model, images, targets, 3, recipe, progress=False, head="yolo_v1")
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])
    found = M.detect(model, images[:3], 3, head="yolo_v1", score_threshold=0.0, top_k=7)
    assert len(found) == 3 and all(len(r["scores"]) <= 7 for r in found)
    raw = M.detect(model, images[:1], 3, head="yolo_v1", iou_threshold=None, score_threshold=0.0,
                   top_k=10_000)[0]
    assert len(raw["scores"]) == 16 * 16 * 2  # every box of every cell, before NMS


def test_the_head_argument_is_checked():
    images, targets = M.make_shapes(2, generator=torch.Generator().manual_seed(0))
    yolo = M.TinyDetector(13, fpn=False, width=8)
    with pytest.raises(ValueError, match="head must be one of"):
        M.train_detector(yolo, images, targets, 3, progress=False, head="yolo")
    with pytest.raises(ValueError, match=r"13 channels; head='yolo_v1' with num_classes=3 needs .* = 18"):
        M.detect(yolo, images, 3, head="yolo_v1", boxes_per_cell=3)
    with pytest.raises(ValueError, match="boxes_per_cell must be >= 1"):
        M.detect(yolo, images, 3, head="yolo_v1", boxes_per_cell=0)
    with pytest.raises(ValueError, match="peaks_only=True is CenterNet's peak filter"):
        M.detect(yolo, images, 3, head="yolo_v1", peaks_only=True)
    with pytest.raises(ValueError, match=r"head='centernet' with num_classes=3 needs K \+ 4 = 7"):
        M.train_detector(M.TinyDetector(5, fpn=False, width=8), images, targets, 3, progress=False)


def test_training_recipe_is_adamw_with_a_one_cycle_schedule():
    """Peak learning rate after 5% of the steps, cosine down to (almost) zero at the end, AdamW's decay."""
    model = torch.nn.Linear(2, 1)
    config = M.TrainConfig(steps=100, lr=0.01, weight_decay=0.05)
    optimiser, schedule = M.training_recipe(model, config)
    assert isinstance(optimiser, torch.optim.AdamW) and optimiser.param_groups[0]["weight_decay"] == 0.05
    rates = []
    for _ in range(config.steps):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        schedule.step()
    peak = max(range(len(rates)), key=rates.__getitem__)
    assert peak == 4 and rates[peak] == pytest.approx(0.01)  # OneCycleLR: step pct_start * steps - 1
    assert rates[0] == pytest.approx(0.01 / 25) and rates[-1] < 1e-4  # OneCycleLR's default div factors
    assert all(a >= b for a, b in zip(rates[peak:-1], rates[peak + 1:], strict=True))  # never back up


def test_training_recipe_refuses_bad_arguments():
    with pytest.raises(TypeError, match="model"):
        M.training_recipe("net", M.TrainConfig())
    with pytest.raises(TypeError, match="config"):
        M.training_recipe(torch.nn.Linear(2, 1), {"lr": 0.01})
