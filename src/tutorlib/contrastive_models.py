"""Self-supervised contrastive learning, part 2: digits, views, networks and the linear probe.

The losses and the mutual-information bound are in :mod:`tutorlib.contrastive`; this module holds
what the chapter ``book/contrastive.md`` trains and evaluates with them: scikit-learn's 8x8
digits, random *views* of a digit (crop/zoom, rotation, shift, cutout, noise), SimCLR's encoder
:math:`h = g(x)` and projection head :math:`z = p(h)` trained with NT-Xent, a supervised
baseline with the same encoder, and a linear probe (logistic regression) on frozen features.

Legend (code name -> symbol): ``h`` -> representation :math:`h`, ``z`` -> projection :math:`z`,
``batch_size`` -> :math:`N`, ``temperature`` -> :math:`\\tau`, ``scale`` -> :math:`s`,
``shift`` -> :math:`t`, ``angle`` -> :math:`\\theta`.

References:
    Chen, Kornblith, Norouzi & Hinton (2020), A Simple Framework for Contrastive Learning (SimCLR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tutorlib.contrastive import _check_generator, nt_xent
from tutorlib.validation import (
    check_choice,
    check_fields,
    check_int,
    check_nonnegative,
    check_positive,
    check_probability,
    check_real,
    check_tensor,
)

__all__ = [
    "AugmentConfig",
    "SimCLR",
    "SimCLRConfig",
    "SupervisedConfig",
    "affine_view",
    "augment",
    "encode",
    "label_subset",
    "linear_probe",
    "load_digit_split",
    "make_encoder",
    "train_simclr",
    "train_supervised",
]


def _check_scale(name: str, value: object) -> float:
    return check_real(name, value, 0.0, 1.0, low_open=True)


# --------------------------------------------------------------------------------------------
# 1. data and augmentations for 8x8 digits
# --------------------------------------------------------------------------------------------
def load_digit_split(
    test_size: float = 0.25, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits (1,797 images, shipped with the package), scaled to [0, 1] and
    split once, stratified: ``x_train (N, 8, 8), y_train (N,), x_test (M, 8, 8), y_test (M,)``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    test_size = check_real("test_size", test_size, 0.0, 1.0, low_open=True, high_open=True)
    seed = check_int("seed", seed, minimum=0)
    data = load_digits()
    x = data.images.astype(np.float32) / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, data.target, test_size=test_size, random_state=seed, stratify=data.target
    )
    return (torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(),
            torch.from_numpy(x_te), torch.from_numpy(y_te).long())


@dataclass
class AugmentConfig:
    """How two views of an 8x8 digit differ. Each field is the strength of one transformation;
    set it to its neutral value (``max_shift=0``, ``min_scale=1``, ``mask_prob=0``,
    ``noise_std=0``) to switch it off."""

    max_shift: float = 1.0  #: translation, uniform in [-max_shift, max_shift] pixels per axis
    max_rotation: float = 0.0  #: rotation, uniform in [-max_rotation, max_rotation] degrees
    min_scale: float = 0.8  #: crop side as a fraction of the image, uniform in [min_scale, 1]
    mask_prob: float = 0.5  #: probability of blanking one mask_size x mask_size square (cutout)
    mask_size: int = 3  #: side of the blanked square, pixels
    noise_std: float = 0.1  #: Gaussian pixel noise (pixels are in [0, 1])

    def __post_init__(self) -> None:
        check_fields(self, {
            "max_shift": check_nonnegative,
            "max_rotation": check_nonnegative,
            "min_scale": _check_scale,
            "mask_prob": check_probability,
            "mask_size": check_int,
            "noise_std": check_nonnegative,
        })


def affine_view(images: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                angle: torch.Tensor | None = None) -> torch.Tensor:
    """Crop-and-resize, rotation and shift as one bilinear resampling, zeros outside the image.

    Output pixel :math:`u` (in pixel units from the centre) reads the input at
    :math:`s\\,R_\\theta u + t`: a window of side :math:`s` (``s < 1`` zooms in), turned by
    :math:`\\theta` and moved by :math:`t`.
    Implemented with ``F.affine_grid`` and ``F.grid_sample(align_corners=False)``, where one
    pixel is :math:`2 / W` in normalised coordinates. ``scale = 1`` and an integer shift give an
    exact shift: ``shift = (1, 0)`` makes ``out[:, i, j] = images[:, i, j + 1]``.

    Args:
        images: ``(B, H, W)``.
        scale: ``(B,)`` window sides as fractions of the image, ``> 0``.
        shift: ``(B, 2)`` translations ``(t_x, t_y)`` in pixels (x along W, y along H).
        angle: ``(B,)`` rotations in radians (default none); ``pi / 2`` on a square image is
            an exact quarter turn, ``torch.rot90(images, 1, (1, 2))``.

    Returns:
        ``(B, H, W)``.
    """
    dims: dict[str, int] = {}
    images = check_tensor("images", images, ("B", "H", "W"), dims=dims)
    scale = check_tensor("scale", scale, ("B",), dims=dims)
    shift = check_tensor("shift", shift, ("B", 2), dims=dims)
    if (scale <= 0).any():
        raise ValueError(f"scale must be > 0, got min {scale.min().item()}")
    angle = torch.zeros_like(scale) if angle is None else check_tensor("angle", angle, ("B",), dims=dims)
    b, h, w = images.shape
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(b, 2, 3, dtype=images.dtype)
    theta[:, 0, 0] = scale * cos
    theta[:, 0, 1] = -scale * sin * h / w  # normalised units differ per axis when H != W
    theta[:, 1, 0] = scale * sin * w / h
    theta[:, 1, 1] = scale * cos
    theta[:, 0, 2] = 2.0 * shift[:, 0] / w  # normalised coordinates: one pixel = 2 / W
    theta[:, 1, 2] = 2.0 * shift[:, 1] / h
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(images[:, None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[:, 0]  # (B, H, W)


def augment(images: torch.Tensor, config: AugmentConfig | None = None, *,
            generator: torch.Generator) -> torch.Tensor:
    """A random view of each image: crop-and-resize plus shift, cutout, then pixel noise.

    The crop and shift are one affine resampling (``F.affine_grid`` + bilinear
    ``F.grid_sample``, zeros outside): output pixel :math:`u` reads the input at
    :math:`s\\,u + t`, a window of side :math:`s` (zoom in) moved by :math:`t` pixels. With
    ``s = 1`` and integer :math:`t` it is an exact shift. Every random number comes from
    ``generator``, so the same seed gives the same views.

    Args:
        images: ``(B, H, W)`` floats.
        config: the strengths; default :class:`AugmentConfig()`.
        generator: the source of randomness.

    Returns:
        ``(B, H, W)``, a new tensor.
    """
    images = check_tensor("images", images, ("B", "H", "W"))
    config = AugmentConfig() if config is None else config
    if not isinstance(config, AugmentConfig):
        raise TypeError(f"config must be an AugmentConfig, got {type(config).__name__}")
    generator = _check_generator(generator)
    b, h, w = images.shape
    if config.mask_size > min(h, w):
        raise ValueError(f"config.mask_size must be <= the image side {min(h, w)}, got {config.mask_size}")

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=generator)

    scale = uniform(config.min_scale, 1.0)
    shift = torch.stack([uniform(-config.max_shift, config.max_shift),
                         uniform(-config.max_shift, config.max_shift)], dim=1)  # (B, 2)
    angle = math.radians(config.max_rotation) * (2 * torch.rand(b, generator=generator) - 1)
    out = affine_view(images, scale, shift, angle)
    k = config.mask_size
    use = torch.rand(b, generator=generator) < config.mask_prob
    top = torch.randint(0, h - k + 1, (b,), generator=generator)
    left = torch.randint(0, w - k + 1, (b,), generator=generator)
    rows = torch.arange(h)[None, :, None]
    cols = torch.arange(w)[None, None, :]
    square = ((rows >= top[:, None, None]) & (rows < top[:, None, None] + k)
              & (cols >= left[:, None, None]) & (cols < left[:, None, None] + k))  # (B, H, W)
    out = out.masked_fill(square & use[:, None, None], 0.0)
    noise = torch.randn(b, h, w, generator=generator)
    return (out + config.noise_std * noise).to(images.dtype)


# --------------------------------------------------------------------------------------------
# 2. encoder, projection head, training recipes
# --------------------------------------------------------------------------------------------
ARCHITECTURES = ("mlp", "conv")


def make_encoder(in_features: int = 64, hidden: int = 256, features: int = 64,
                 arch: str = "mlp") -> nn.Sequential:
    """The representation network :math:`h = g(x)`, ``(B, H, W) -> (B, features)``.

    ``"mlp"``: Flatten -> Linear(in_features, hidden) -> ReLU -> Linear(hidden, features) -> ReLU.
    ``"conv"`` (square images, ``in_features = side**2``): Conv 3x3 (16 channels) -> ReLU ->
    Conv 3x3 stride 2 (32 channels) -> ReLU -> Flatten -> Linear(.., features) -> ReLU;
    ``hidden`` is not used. The same architecture serves contrastive pretraining and the
    supervised baseline, so the comparison is about the training signal, not the network.
    """
    in_features = check_int("in_features", in_features)
    hidden = check_int("hidden", hidden)
    features = check_int("features", features)
    arch = check_choice("arch", arch, ARCHITECTURES)
    if arch == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(),
                             nn.Linear(hidden, features), nn.ReLU())
    side = math.isqrt(in_features)
    if side * side != in_features:
        raise ValueError(f"in_features must be a square (side**2) for arch='conv', got {in_features}")
    half = (side + 1) // 2  # spatial size after the stride-2 convolution
    return nn.Sequential(
        nn.Unflatten(1, (1, side)),  # (B, H, W) -> (B, 1, H, W)
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),  # (B, 32, H/2, W/2)
        nn.Flatten(), nn.Linear(32 * half * half, features), nn.ReLU(),
    )


class SimCLR(nn.Module):
    """Encoder :math:`h = g(x)` plus projection head :math:`z = p(h)` (Linear-ReLU-Linear).

    The loss is applied to :math:`z`; the linear probe reads :math:`h`. Chen et al. found the
    representation *before* the head transfers better: the head may discard what the
    augmentations vary but a downstream task needs.
    """

    def __init__(self, in_features: int = 64, hidden: int = 256, features: int = 64,
                 projection: int = 32, arch: str = "mlp") -> None:
        super().__init__()
        projection = check_int("projection", projection)
        self.in_features = in_features
        self.encoder = make_encoder(in_features, hidden, features, arch)
        self.head = nn.Sequential(nn.Linear(features, features), nn.ReLU(),
                                  nn.Linear(features, projection))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W) -> (B, projection)``, the projections :math:`z`; ``H * W = in_features``."""
        x = check_tensor("x", x, ("B", None, None), finite=False)  # no NaN scan: every training step
        if x.shape[1] * x.shape[2] != self.in_features:
            raise ValueError(
                f"x must have shape (B, H, W) with H * W = {self.in_features}, got {tuple(x.shape)}")
        return self.head(self.encoder(x))


@dataclass
class SimCLRConfig:
    """Hyperparameters of contrastive pretraining (one thread on a CPU: a few seconds)."""

    steps: int = 400  #: optimiser steps (a fixed number, so batch sizes are compared fairly)
    batch_size: int = 256  #: images per batch N; each view has 2N - 2 negatives
    temperature: float = 0.2  #: tau of NT-Xent
    lr: float = 2e-3  #: Adam learning rate
    weight_decay: float = 1e-5  #: AdamW weight decay
    hidden: int = 256  #: encoder hidden width
    features: int = 64  #: size of the representation h read by the probe
    projection: int = 32  #: size of z, where the loss is computed
    arch: str = "mlp"  #: encoder: "mlp" or "conv" (see make_encoder)
    seed: int = 0  #: seeds the weights, the batches and the augmentations
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        check_fields(self, {"steps": check_int, "batch_size": (check_int, 2),
                            "temperature": check_positive, "lr": check_positive,
                            "weight_decay": check_nonnegative, "hidden": check_int,
                            "features": check_int, "projection": check_int,
                            "arch": (check_choice, ARCHITECTURES), "seed": (check_int, 0)})
        if not isinstance(self.augment, AugmentConfig):
            kind = type(self.augment).__name__
            raise TypeError(f"SimCLRConfig.augment must be an AugmentConfig, got {kind}")


def train_simclr(images: torch.Tensor, config: SimCLRConfig | None = None,
                 *, progress: bool = False) -> tuple[SimCLR, list[float]]:
    """Pretrain a :class:`SimCLR` network on unlabelled images with NT-Xent.

    Each step: draw ``batch_size`` images, make two augmented views, project both and take
    :func:`nt_xent`. Labels are never seen.

    Args:
        images: ``(N, H, W)`` unlabelled training images, ``N >= 2``.
        config: the recipe; default :class:`SimCLRConfig()`.
        progress: show a tqdm bar.

    Returns:
        the trained model (in eval mode) and the loss of every step.
    """
    images = check_tensor("images", images, ("N", "H", "W"))
    config = SimCLRConfig() if config is None else config
    if not isinstance(config, SimCLRConfig):
        raise TypeError(f"config must be a SimCLRConfig, got {type(config).__name__}")
    n, h, w = images.shape
    if n < 2:
        raise ValueError(f"images must hold at least 2 images, got {n}")
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = SimCLR(h * w, config.hidden, config.features, config.projection, config.arch)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batch = min(config.batch_size, n)
    losses: list[float] = []
    steps = range(config.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"SimCLR N={batch} tau={config.temperature:g}", leave=False)
    model.train()
    for _ in steps:
        idx = torch.randperm(n, generator=gen)[:batch]
        x = images[idx]
        z1 = model(augment(x, config.augment, generator=gen))
        z2 = model(augment(x, config.augment, generator=gen))
        loss = nt_xent(z1, z2, config.temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), losses


@dataclass
class SupervisedConfig:
    """Hyperparameters of the supervised baseline: the same encoder plus a linear classifier,
    trained from scratch with cross-entropy on the labelled images only."""

    steps: int = 300  #: optimiser steps (full batch when there are fewer images than batch_size)
    batch_size: int = 128  #: labelled images per step
    lr: float = 2e-3  #: Adam learning rate
    weight_decay: float = 1e-4  #: AdamW weight decay
    hidden: int = 256  #: encoder hidden width (as SimCLRConfig)
    features: int = 64  #: representation size (as SimCLRConfig)
    arch: str = "mlp"  #: encoder: "mlp" or "conv" (as SimCLRConfig)
    augment: bool = True  #: train on augmented views too (a fair baseline: same invariances)
    seed: int = 0  #: seeds the weights, batches and augmentations

    def __post_init__(self) -> None:
        check_fields(self, {"steps": check_int, "batch_size": check_int, "lr": check_positive,
                            "weight_decay": check_nonnegative, "hidden": check_int,
                            "features": check_int, "arch": (check_choice, ARCHITECTURES),
                            "seed": (check_int, 0)})
        if not isinstance(self.augment, bool):
            raise TypeError(f"SupervisedConfig.augment must be a bool, got {self.augment!r}")


def train_supervised(images: torch.Tensor, labels: torch.Tensor, num_classes: int = 10,
                     config: SupervisedConfig | None = None) -> nn.Sequential:
    """Train encoder + ``nn.Linear(features, num_classes)`` from scratch on labelled images.

    Args:
        images: ``(N, H, W)``; labels: ``(N,)`` ints in ``[0, num_classes)``.
        num_classes: number of classes.
        config: the recipe; default :class:`SupervisedConfig()`.

    Returns:
        the classifier (eval mode), ``(B, H, W) -> (B, num_classes)`` logits.
    """
    images = check_tensor("images", images, ("N", "H", "W"))
    num_classes = check_int("num_classes", num_classes, minimum=2)
    labels = _check_labels(labels, images.shape[0], num_classes)
    config = SupervisedConfig() if config is None else config
    if not isinstance(config, SupervisedConfig):
        raise TypeError(f"config must be a SupervisedConfig, got {type(config).__name__}")
    n, h, w = images.shape
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    net = nn.Sequential(make_encoder(h * w, config.hidden, config.features, config.arch),
                        nn.Linear(config.features, num_classes))
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batch = min(config.batch_size, n)
    net.train()
    for _ in range(config.steps):
        idx = torch.randperm(n, generator=gen)[:batch]
        x = images[idx]
        if config.augment:
            x = augment(x, generator=gen)
        loss = F.cross_entropy(net(x), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def _check_labels(labels: object, n: int, num_classes: int | None = None,
                  name: str = "labels") -> torch.Tensor:
    labels = check_tensor(name, labels, (n,), dtype="int")
    if num_classes is not None and labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got values in "
                         f"[{labels.min().item()}, {labels.max().item()}]")
    return labels


# --------------------------------------------------------------------------------------------
# 3. evaluation: frozen features and a linear probe
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def encode(encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Frozen features ``(N, features)`` of clean images ``(N, H, W)`` (no augmentation)."""
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be an nn.Module, got {type(encoder).__name__}")
    images = check_tensor("images", images, ("N", "H", "W"))
    was_training = encoder.training
    encoder.eval()
    out = encoder(images)
    encoder.train(was_training)
    return out


def label_subset(labels: torch.Tensor, fraction: float, *, generator: torch.Generator) -> torch.Tensor:
    """Indices of a class-stratified random subset: ``max(1, round(fraction * n_c))`` of each
    class ``c`` (so even 1 % keeps one example per class). Returns a sorted ``(M,)`` long tensor."""
    labels = check_tensor("labels", labels, (None,), dtype="int")
    if labels.numel() and labels.min() < 0:
        raise ValueError(f"labels must be class indices >= 0, got min {labels.min().item()}")
    fraction = check_real("fraction", fraction, 0.0, 1.0, low_open=True)
    generator = _check_generator(generator)
    picked = []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        k = max(1, round(fraction * members.numel()))
        picked.append(members[torch.randperm(members.numel(), generator=generator)[:k]])
    return torch.cat(picked).sort().values


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor,
                 test_features: torch.Tensor, test_labels: torch.Tensor,
                 *, C: float = 1.0, max_iter: int = 2000,
                 standardize_with: torch.Tensor | None = None) -> float:
    """Test accuracy of a logistic-regression classifier on frozen features.

    The features are standardised with the mean and standard deviation of ``standardize_with``
    (default: the labelled training features; with very few labels, pass the features of all
    the *unlabelled* training images, which a semi-supervised learner also has), then
    scikit-learn's multinomial ``LogisticRegression`` (L2 strength ``1 / C``, lbfgs) is fit on
    the training features. A linear classifier can only use what the features already make
    linearly separable: that is what the probe measures.

    Args:
        train_features: ``(N, D)``; train_labels: ``(N,)`` ints.
        test_features: ``(M, D)``; test_labels: ``(M,)`` ints.
        C: inverse regularisation strength, ``> 0``.
        max_iter: lbfgs iterations.
        standardize_with: ``(R, D)`` features that set the standardisation, ``R >= 2``.

    Returns:
        accuracy on the test set, in ``[0, 1]``.
    """
    from sklearn.linear_model import LogisticRegression

    dims: dict[str, int] = {}
    train_features = check_tensor("train_features", train_features, ("N", "D"), dims=dims)
    test_features = check_tensor("test_features", test_features, ("M", "D"), dims=dims)
    train_labels = _check_labels(train_labels, train_features.shape[0], name="train_labels")
    test_labels = check_tensor("test_labels", test_labels, (test_features.shape[0],), dtype="int")
    if test_labels.numel() and test_labels.min() < 0:
        raise ValueError(f"test_labels must be class indices >= 0, got min {test_labels.min().item()}")
    C = check_positive("C", C)
    max_iter = check_int("max_iter", max_iter)
    if torch.unique(train_labels).numel() < 2:
        raise ValueError("train_labels must contain at least 2 classes")
    if standardize_with is None:
        standardize_with = train_features
    standardize_with = check_tensor("standardize_with", standardize_with, (None, "D"), dims=dims)
    if standardize_with.shape[0] < 2:
        raise ValueError(f"standardize_with must have at least 2 rows, got {tuple(standardize_with.shape)}")
    xtr = train_features.double().numpy()
    xte = test_features.double().numpy()
    ref = standardize_with.double().numpy()
    mean, std = ref.mean(0), ref.std(0) + 1e-8
    clf = LogisticRegression(C=C, max_iter=max_iter)
    clf.fit((xtr - mean) / std, train_labels.numpy())
    return float((clf.predict((xte - mean) / std) == test_labels.numpy()).mean())
