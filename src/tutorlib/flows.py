"""Normalizing flows, from NICE to continuous flows: the code behind ``book/flows.md``.

A normalizing flow is an invertible map :math:`f` from data :math:`x \\in \\mathbb{R}^D` to a
latent :math:`z = f(x)` whose distribution is simple (a standard normal). The change of
variables gives the exact density of the data,

.. math::  \\log p_X(x) = \\log p_Z\\big(f(x)\\big)
           + \\log \\left| \\det \\frac{\\partial f(x)}{\\partial x} \\right| ,

and, because :math:`f` is invertible, the encoder comes with its decoder: sample
:math:`z \\sim p_Z` and return :math:`x = f^{-1}(z)`. :math:`f` is a chain of layers
:math:`f = f_K \\circ \\dots \\circ f_1`; each is invertible and knows the log-determinant of
its own Jacobian, and the log-determinants add up.

Every layer here is an ``nn.Module`` with

- ``forward(x) -> (y, log_det)``: ``y`` of shape ``(N, D)`` and ``log_det`` of shape ``(N,)``,
  :math:`\\log|\\det \\partial y / \\partial x|` for each sample (the *data → latent* direction);
- ``inverse(y) -> x``: the exact inverse (the *latent → data* direction, used for sampling).

Layers: :class:`AdditiveCoupling` (NICE), :class:`AffineCoupling` (RealNVP),
:class:`Scaling` (NICE's diagonal scaling), :class:`Permutation` / :class:`Reverse`,
:class:`ActNorm` and :class:`Invertible1x1` (Glow, a :math:`D \\times D` matrix here),
:class:`Logit` (pre-processing of images). :class:`Flow` chains them; :func:`train_flow` fits
one by maximum likelihood; :func:`dequantize` and :func:`bits_per_dim` score it on images.
The 2-D toy data live in :mod:`tutorlib.toy2d`, continuous flows in :mod:`tutorlib.cnf`.

Legend (code name -> symbol): ``x`` -> :math:`x`, ``z`` -> :math:`z`, ``log_det`` ->
:math:`\\log|\\det J|`, ``shift`` -> :math:`m(\\cdot)` (NICE) or :math:`t(\\cdot)` (RealNVP),
``log_scale`` -> :math:`s(\\cdot)`, ``velocity`` -> :math:`v_\\theta(z, t)`.

References:
    Dinh, Krueger, Bengio (2015), "NICE: Non-linear independent components estimation".
    Dinh, Sohl-Dickstein, Bengio (2017), "Density estimation using Real NVP".
    Kingma, Dhariwal (2018), "Glow: generative flow with invertible 1x1 convolutions".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tutorlib.validation import (
    check_choice,
    check_fields,
    check_finite,
    check_int,
    check_nonnegative,
    check_positive,
    check_real,
    check_tensor,
    optional,
)

__all__ = [
    "LOG_2PI",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "FactorOut",
    "Flow",
    "FlowLayer",
    "Invertible1x1",
    "Logit",
    "Permutation",
    "Reverse",
    "Scaling",
    "Squeeze",
    "TrainConfig",
    "autograd_log_det",
    "base_log_prob",
    "base_sample",
    "bits_per_dim",
    "dequantize",
    "load_digits_split",
    "make_glow",
    "make_nice",
    "make_realnvp",
    "mlp",
    "nll",
    "squeeze2d",
    "train_flow",
    "unsqueeze2d",
    "volume_preserving_nll_bound",
]

LOG_2PI = math.log(2 * math.pi)


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------
def _check_batch(x: torch.Tensor, dim: int, name: str = "x") -> torch.Tensor:
    """Refuse anything but a finite floating-point tensor of shape (N, dim)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, {dim}), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (N, {dim}) (N samples, {dim} features), "
                         f"got {tuple(x.shape)}")
    return check_finite(name, x)


def _check_points(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Like :func:`_check_batch` for any number of features D >= 1."""
    if isinstance(x, torch.Tensor) and x.ndim == 2 and x.shape[1] >= 1:
        return _check_batch(x, x.shape[1], name)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    raise ValueError(f"{name} must have shape (N, D) with D >= 1, got {tuple(x.shape)}")


# --------------------------------------------------------------------------------------------
# the layer interface
# --------------------------------------------------------------------------------------------
class FlowLayer(nn.Module):
    """An invertible map of :math:`\\mathbb{R}^D` that knows its log-determinant.

    Subclasses implement ``_forward(x) -> (y, log_det)`` and ``_inverse(y) -> x``; the public
    ``forward`` and ``inverse`` check the input first (shape ``(N, D)``, floating point, finite).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``x`` (N, D) to ``y`` (N, D); also return :math:`\\log|\\det \\partial y/\\partial x|` (N,)."""
        return self._forward(_check_batch(x, self.dim, "x"))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The exact inverse: ``inverse(forward(x)[0]) == x`` up to round-off."""
        return self._inverse(_check_batch(y, self.dim, "y"))

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def mlp(in_features: int, out_features: int, hidden: int = 64, depth: int = 2,
        zero_last: bool = False) -> nn.Sequential:
    """The conditioner network of a coupling layer: ``depth`` hidden SiLU layers of ``hidden`` units.

    The network itself never has to be inverted: that is the trick of coupling layers.
    ``zero_last=True`` starts the output layer at zero, so the coupling starts as the identity
    (as Glow does). The default keeps PyTorch's small random output layer instead: on data that
    are symmetric, such as the 8 Gaussians, an additive coupling at exactly the identity sits on
    a stationary point (the best shift of :math:`x_2` given :math:`x_1` is
    :math:`E[x_2 \\mid x_1] = 0`), and NICE never leaves it.

    Shapes: ``(N, in_features) -> (N, out_features)``.
    """
    check_int("in_features", in_features, 1)
    check_int("out_features", out_features, 1)
    check_int("hidden", hidden, 1)
    check_int("depth", depth, 1)
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    last = nn.Linear(width, out_features)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------
# coupling layers: NICE and RealNVP
# --------------------------------------------------------------------------------------------
class _Coupling(FlowLayer):
    """Split :math:`x` into a part that is copied and a part that is transformed.

    The first ``split`` features form block 1, the rest block 2. With ``swap=False`` block 1
    conditions and block 2 is transformed; ``swap=True`` exchanges the roles, so that
    alternating layers transform every feature.
    """

    def __init__(self, dim: int, split: int | None, swap: bool) -> None:
        super().__init__(dim)
        if dim < 2:
            raise ValueError(f"a coupling layer needs dim >= 2 to split the features in two, got dim={dim}")
        split = dim // 2 if split is None else check_int("split", split, 1)
        if not 1 <= split <= dim - 1:
            raise ValueError(f"split must be in [1, dim - 1] = [1, {dim - 1}] so that both parts "
                             f"are non-empty, got split={split}")
        self.split, self.swap = split, bool(swap)
        self.n_cond = dim - split if swap else split  # features the conditioner sees
        self.n_trans = dim - self.n_cond  # features that are transformed

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first, second = x[:, : self.split], x[:, self.split :]
        return (second, first) if self.swap else (first, second)  # (conditioning, transformed)

    def _merge(self, cond: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        return torch.cat((trans, cond) if self.swap else (cond, trans), dim=1)


class AdditiveCoupling(_Coupling):
    """NICE's additive coupling layer: copy one part, shift the other by a function of the first.

    .. math::  y_1 = x_1, \\qquad y_2 = x_2 + m(x_1)
    .. math::  x_1 = y_1, \\qquad x_2 = y_2 - m(y_1)

    :math:`m` is any network (here :func:`mlp`); it is never inverted. The Jacobian is lower
    triangular with ones on the diagonal,

    .. math::  \\frac{\\partial y}{\\partial x} = \\begin{pmatrix} I & 0 \\\\
               \\partial m / \\partial x_1 & I \\end{pmatrix}, \\qquad \\log|\\det| = 0,

    so the layer preserves volume. A stack of them needs :class:`Scaling` to change volume.

    Args:
        dim: :math:`D`, number of features (at least 2).
        hidden, depth: size of the network :math:`m`.
        split: size of block 1 (default ``dim // 2``; odd ``dim`` is fine).
        swap: transform block 1 instead of block 2.

    References:
        Dinh, Krueger, Bengio (2015), NICE, §3.2 (eq. 6-7).
    """

    def __init__(self, dim: int, hidden: int = 64, depth: int = 2, split: int | None = None,
                 swap: bool = False) -> None:
        super().__init__(dim, split, swap)
        self.shift = mlp(self.n_cond, self.n_trans, hidden, depth)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1, x2 = self._split(x)
        y2 = x2 + self.shift(x1)
        return self._merge(x1, y2), x.new_zeros(x.shape[0])

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = self._split(y)
        x2 = y2 - self.shift(y1)
        return self._merge(y1, x2)


class AffineCoupling(_Coupling):
    """RealNVP's affine coupling layer: scale and shift one part by functions of the other.

    .. math::  y_1 = x_1, \\qquad y_2 = x_2 \\odot e^{s(x_1)} + t(x_1)
    .. math::  x_2 = \\big(y_2 - t(y_1)\\big) \\odot e^{-s(y_1)}

    The Jacobian is triangular with :math:`e^{s(x_1)}` on the diagonal, so
    :math:`\\log|\\det| = \\sum_j s_j(x_1)`: unlike NICE the volume change depends on
    :math:`x`. For stability the raw log-scale :math:`\\hat s` of the network is soft-clamped,
    :math:`s = b \\tanh(\\hat s / b)` with :math:`b` = ``scale_bound``: close to
    :math:`\\hat s` when it is small, never beyond :math:`\\pm b` (one layer stretches a
    feature at most :math:`e^{b}` times).

    Args:
        dim: :math:`D` (at least 2).
        hidden, depth: size of the network that outputs :math:`(\\hat s, t)`.
        split, swap: as in :class:`AdditiveCoupling`.
        scale_bound: :math:`b > 0`.

    References:
        Dinh, Sohl-Dickstein, Bengio (2017), Real NVP, §3.3 (eq. 4-6).
    """

    def __init__(self, dim: int, hidden: int = 64, depth: int = 2, split: int | None = None,
                 swap: bool = False, scale_bound: float = 2.0) -> None:
        super().__init__(dim, split, swap)
        self.scale_bound = check_positive("scale_bound", scale_bound)
        self.net = mlp(self.n_cond, 2 * self.n_trans, hidden, depth)

    def scale_shift(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The bounded log-scale :math:`s` and the shift :math:`t`, each ``(N, n_trans)``, from the
        conditioning features ``cond`` ``(N, n_cond)``."""
        if not isinstance(cond, torch.Tensor) or not cond.is_floating_point():
            raise TypeError(f"cond must be a floating-point tensor (N, {self.n_cond}), got "
                            f"{getattr(cond, 'dtype', type(cond).__name__)}")
        if cond.ndim != 2 or cond.shape[1] != self.n_cond:
            raise ValueError(f"cond must have shape (N, {self.n_cond}), got {tuple(cond.shape)}")
        raw, shift = self.net(cond).chunk(2, dim=1)  # (N, n_trans) each
        log_scale = self.scale_bound * torch.tanh(raw / self.scale_bound)
        return log_scale, shift

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1, x2 = self._split(x)
        log_scale, shift = self.scale_shift(x1)
        y2 = x2 * torch.exp(log_scale) + shift
        return self._merge(x1, y2), log_scale.sum(dim=1)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = self._split(y)
        log_scale, shift = self.scale_shift(y1)
        x2 = (y2 - shift) * torch.exp(-log_scale)
        return self._merge(y1, x2)


# --------------------------------------------------------------------------------------------
# element-wise and linear layers
# --------------------------------------------------------------------------------------------
class Scaling(FlowLayer):
    """NICE's diagonal scaling layer :math:`y = x \\odot e^{s}`, one learned :math:`s_j` per feature.

    :math:`\\log|\\det| = \\sum_j s_j`, the same for every sample. NICE puts it last: additive
    couplings alone have unit Jacobian, and this layer is what lets the model shrink the
    directions where the data are concentrated (large :math:`e^{s_j}` in :math:`z` space means
    an unimportant direction of the data).

    References:
        Dinh, Krueger, Bengio (2015), NICE, §3.3.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * torch.exp(self.log_scale), self.log_scale.sum().expand(x.shape[0])

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale)


class Permutation(FlowLayer):
    """Reorder the features: :math:`y_j = x_{\\pi(j)}`. A permutation matrix has
    :math:`|\\det| = 1`, so ``log_det`` is 0.

    Args:
        perm: a permutation of ``0 .. D-1`` (a sequence of ints or a 1-D integer tensor).
    """

    def __init__(self, perm: Sequence[int] | torch.Tensor) -> None:
        perm = torch.as_tensor(perm)
        if perm.ndim != 1 or perm.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"perm must be a 1-D sequence of ints, got dtype {perm.dtype} "
                            f"and shape {tuple(perm.shape)}")
        super().__init__(perm.numel())
        if not torch.equal(torch.sort(perm).values, torch.arange(perm.numel())):
            raise ValueError(f"perm must contain each of 0..{perm.numel() - 1} exactly once, "
                             f"got {perm.tolist()}")
        self.register_buffer("perm", perm.long())
        self.register_buffer("inverse_perm", torch.argsort(perm.long()))

    @classmethod
    def random(cls, dim: int, generator: torch.Generator | None = None) -> Permutation:
        """A uniformly random permutation of ``dim`` features."""
        return cls(torch.randperm(check_int("dim", dim, 1), generator=generator))

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y[:, self.inverse_perm]


class Reverse(Permutation):
    """Reverse the order of the features, :math:`y_j = x_{D-1-j}` (RealNVP's and Glow's simplest
    way to let the next coupling layer transform the other half)."""

    def __init__(self, dim: int) -> None:
        super().__init__(torch.arange(check_int("dim", dim, 1) - 1, -1, -1))


class ActNorm(FlowLayer):
    """Glow's activation normalisation: an affine map per feature with a data-dependent start.

    .. math::  y = (x - \\mu) \\odot e^{-\\ell}, \\qquad \\log|\\det| = -\\sum_j \\ell_j .

    :meth:`initialize` sets :math:`\\mu` and :math:`e^{\\ell}` to the mean and standard
    deviation of a batch, so the output starts with zero mean and unit variance per feature;
    afterwards both are ordinary parameters. Call it once before training (or use
    :meth:`Flow.initialize`, which initialises every ActNorm of a flow in order). Until then
    the layer is the identity.

    References:
        Kingma, Dhariwal (2018), Glow, §3.1.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.loc = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation from a batch ``x`` of shape ``(N, D)``, ``N >= 2``."""
        x = _check_batch(x, self.dim)
        if x.shape[0] < 2:
            raise ValueError(f"ActNorm.initialize needs a batch of at least 2 samples, got {x.shape[0]}")
        self.loc.copy_(x.mean(dim=0))
        self.log_scale.copy_(torch.log(x.std(dim=0) + 1e-6))

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = (x - self.loc) * torch.exp(-self.log_scale)
        return y, (-self.log_scale.sum()).expand(x.shape[0])

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(self.log_scale) + self.loc


class Invertible1x1(FlowLayer):
    """Glow's invertible 1×1 convolution, which on a vector is a learned :math:`D \\times D` matrix.

    .. math::  y = W x, \\qquad \\log|\\det| = \\log|\\det W| ,

    the same for every sample. :math:`W` starts as a random rotation (:math:`\\log|\\det W| = 0`),
    a learned generalisation of :class:`Permutation`. Glow parametrises :math:`W = PL(U +
    \\operatorname{diag}(s))` to make the determinant :math:`O(D)`; for the small :math:`D`
    of this course a dense ``slogdet`` (:math:`O(D^3)`) is simpler.

    Args:
        dim: :math:`D`.
        generator: for the random initial rotation.

    References:
        Kingma, Dhariwal (2018), Glow, §3.2.
    """

    def __init__(self, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__(dim)
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
        self.weight = nn.Parameter(q)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.linalg.slogdet(self.weight).logabsdet
        return x @ self.weight.T, log_det.expand(x.shape[0])  # (N, D) @ (D, D)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return torch.linalg.solve(self.weight, y.T).T  # W x = y for every column


class Logit(FlowLayer):
    """Map pixel intensities in :math:`[0, 1]` to the real line, as RealNVP does for images.

    .. math::  p = \\alpha + (1 - 2\\alpha)\\, x, \\qquad y = \\log p - \\log(1 - p),
    .. math::  \\log|\\det| = \\sum_j \\big[\\log(1 - 2\\alpha) - \\log p_j - \\log(1 - p_j)\\big].

    :math:`\\alpha` keeps :math:`p` away from 0 and 1, where the logit is infinite. The image
    of :math:`[0, 1]` is :math:`[\\operatorname{logit}\\alpha, \\operatorname{logit}(1-\\alpha)]`;
    ``inverse`` of a point beyond it lands slightly outside :math:`[0, 1]` (clip samples
    before showing them). This
    layer's log-determinant is part of the model's density on :math:`[0, 1]^D`: leaving it out
    makes the bits/dim wrong (see :func:`bits_per_dim`).

    Args:
        dim: :math:`D`.
        alpha: :math:`\\alpha \\in [0, 1/2)`; with :math:`\\alpha = 0` inputs must lie in the
            open interval :math:`(0, 1)`.

    References:
        Dinh, Sohl-Dickstein, Bengio (2017), Real NVP, §4.1.
    """

    def __init__(self, dim: int, alpha: float = 0.05) -> None:
        super().__init__(dim)
        self.alpha = check_real("alpha", alpha, 0.0, 0.5, high_open=True)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low_ok = bool((x > 0).all()) if self.alpha == 0 else bool((x >= 0).all())
        high_ok = bool((x < 1).all()) if self.alpha == 0 else bool((x <= 1).all())
        if not (low_ok and high_ok):
            interval = "(0, 1)" if self.alpha == 0 else "[0, 1]"
            raise ValueError(f"Logit expects x in {interval}, got values in "
                             f"[{x.min().item():.4g}, {x.max().item():.4g}]")
        p = self.alpha + (1 - 2 * self.alpha) * x
        y = torch.log(p) - torch.log1p(-p)
        log_det = (math.log(1 - 2 * self.alpha) - torch.log(p) - torch.log1p(-p)).sum(dim=1)
        return y, log_det

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)


# --------------------------------------------------------------------------------------------
# multi-scale: squeeze and factor out (RealNVP §3.6, Glow §2)
# --------------------------------------------------------------------------------------------
def squeeze2d(x: torch.Tensor) -> torch.Tensor:
    """Trade space for channels: ``(N, C, H, W) -> (N, 4C, H/2, W/2)``.

    Every 2×2 block of pixels becomes 4 channels: output channel :math:`4c + 2i + j` at
    :math:`(h, w)` is input channel :math:`c` at :math:`(2h + i, 2w + j)`. A reshape and a
    transpose, so a permutation of the entries: :math:`\\log|\\det| = 0` (the same as
    ``torch.nn.functional.pixel_unshuffle(x, 2)``).
    """
    x = check_tensor("x", x, ("N", "C", "H", "W"))
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"x must have even height and width to squeeze, got {h}x{w}")
    x = x.reshape(n, c, h // 2, 2, w // 2, 2)  # (N, C, H/2, i, W/2, j)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze2d(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`squeeze2d`: ``(N, 4C, H, W) -> (N, C, 2H, 2W)``."""
    x = check_tensor("x", x, ("N", "C", "H", "W"))
    n, c4, h, w = x.shape
    if c4 % 4:
        raise ValueError(f"x must have a multiple of 4 channels to unsqueeze, got {c4}")
    x = x.reshape(n, c4 // 4, 2, 2, h, w)  # (N, C, i, j, H, W)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(n, c4 // 4, 2 * h, 2 * w)


class Squeeze(FlowLayer):
    """:func:`squeeze2d` on flattened images: ``(N, C·H·W)`` in, ``(N, 4C·H/2·W/2)`` out.

    The output is flattened channel by channel, so the first half of the features are the first
    :math:`2C` channels: a coupling layer that splits features in halves after a squeeze is
    RealNVP's *channel-wise* mask. :math:`\\log|\\det| = 0`.

    Args:
        channels, height, width: the image shape :math:`(C, H, W)`; ``height`` and ``width`` even.
    """

    def __init__(self, channels: int, height: int, width: int) -> None:
        self.shape = (check_int("channels", channels), check_int("height", height), check_int("width", width))
        if height % 2 or width % 2:
            raise ValueError(f"height and width must be even to squeeze, got {height}x{width}")
        super().__init__(channels * height * width)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = squeeze2d(x.reshape(-1, *self.shape)).reshape(x.shape[0], -1)
        return y, x.new_zeros(x.shape[0])

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        c, h, w = self.shape
        return unsqueeze2d(y.reshape(-1, 4 * c, h // 2, w // 2)).reshape(y.shape[0], -1)


class FactorOut(FlowLayer):
    """Send some features straight to the base distribution; keep transforming the others.

    ``FactorOut(inner, dim)`` acts on ``dim`` features: the first ``inner.dim`` go through
    ``inner``, the remaining ``dim - inner.dim`` leave unchanged, so every layer inside ``inner``
    (and after) works on fewer features. The Jacobian is block diagonal with an identity block:
    :math:`\\log|\\det| = \\log|\\det J_{\\text{inner}}|`. The factored-out features are final
    latents, modelled by the base :math:`N(0, I)` (RealNVP §3.6; Glow's multi-scale architecture).

    Args:
        inner: the :class:`FlowLayer` (often a :class:`Flow`) for the kept features.
        dim: the total number of features, more than ``inner.dim``.
    """

    def __init__(self, inner: FlowLayer, dim: int) -> None:
        if not isinstance(inner, FlowLayer):
            raise TypeError(f"inner must be a FlowLayer, got {type(inner).__name__}")
        dim = check_int("dim", dim, 2)
        if not inner.dim < dim:
            raise ValueError(f"dim must exceed inner.dim = {inner.dim} (some features must be factored out), "
                             f"got dim={dim}")
        super().__init__(dim)
        self.inner = inner

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, log_det = self.inner._forward(x[:, : self.inner.dim])
        return torch.cat([y, x[:, self.inner.dim :]], dim=1), log_det

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.inner._inverse(y[:, : self.inner.dim]), y[:, self.inner.dim :]], dim=1)


# --------------------------------------------------------------------------------------------
# the flow: a chain of layers and a base distribution
# --------------------------------------------------------------------------------------------
def base_log_prob(z: torch.Tensor, base: str = "normal") -> torch.Tensor:
    """Log-density of the factorised base distribution, summed over features.

    - ``"normal"``: :math:`\\log p_Z(z) = -\\tfrac12 \\lVert z \\rVert^2 - \\tfrac D2 \\log 2\\pi`;
    - ``"logistic"`` (NICE's prior): :math:`\\log p_Z(z) = -\\sum_j
      \\big[\\operatorname{softplus}(z_j) + \\operatorname{softplus}(-z_j)\\big]`.

    Shapes: ``z`` (N, D) -> (N,).
    """
    check_choice("base", base, ("normal", "logistic"))
    _check_points(z, "z")
    return _base_log_prob(z, base)


def _base_log_prob(z: torch.Tensor, base: str = "normal") -> torch.Tensor:
    """:func:`base_log_prob` without the checks (called at every training step)."""
    if base == "normal":
        return -0.5 * (z**2).sum(dim=1) - 0.5 * z.shape[1] * LOG_2PI
    if base == "logistic":
        return -(nn.functional.softplus(z) + nn.functional.softplus(-z)).sum(dim=1)
    raise ValueError(f"base must be 'normal' or 'logistic', got {base!r}")


def base_sample(n: int, dim: int, base: str = "normal",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` samples of shape ``(n, dim)`` from the base distribution of :func:`base_log_prob`."""
    check_int("n", n, 1)
    check_int("dim", dim, 1)
    if base == "normal":
        return torch.randn(n, dim, generator=generator)
    if base == "logistic":
        u = torch.rand(n, dim, generator=generator).clamp(1e-7, 1 - 1e-7)
        return torch.log(u) - torch.log1p(-u)
    raise ValueError(f"base must be 'normal' or 'logistic', got {base!r}")


class Flow(FlowLayer):
    """A normalizing flow: layers :math:`f_1, \\dots, f_K` and a base distribution :math:`p_Z`.

    .. math::  z = f_K \\circ \\dots \\circ f_1 (x), \\qquad
               \\log p_X(x) = \\log p_Z(z) + \\sum_{k=1}^{K} \\log|\\det J_{f_k}| .

    ``forward`` is the encoder (data → latent), ``inverse`` the decoder (latent → data). The
    decoder is not trained separately: it is the encoder run backwards.

    Args:
        layers: the :class:`FlowLayer` s, in the data → latent order.
        base: ``"normal"`` or ``"logistic"`` (see :func:`base_log_prob`).
    """

    def __init__(self, layers: Sequence[FlowLayer], base: str = "normal") -> None:
        if isinstance(layers, nn.Module) or not isinstance(layers, Sequence) or len(layers) == 0:
            raise TypeError("layers must be a non-empty list of FlowLayer modules")
        for i, layer in enumerate(layers):
            if not isinstance(layer, FlowLayer):
                raise TypeError(f"layers[{i}] must be a FlowLayer, got {type(layer).__name__}")
        dims = {layer.dim for layer in layers}
        if len(dims) != 1:
            raise ValueError(f"all layers must have the same dim, got {[layer.dim for layer in layers]}")
        if base not in ("normal", "logistic"):
            raise ValueError(f"base must be 'normal' or 'logistic', got {base!r}")
        super().__init__(dims.pop())
        self.layers = nn.ModuleList(layers)
        self.base = base

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer._forward(x)
            log_det = log_det + ld
        return x, log_det

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            y = layer._inverse(y)
        return y

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p_X(x)` in nats, shape ``(N,)`` for ``x`` of shape ``(N, D)``."""
        z, log_det = self(x)
        return _base_log_prob(z, self.base) + log_det

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples :math:`x = f^{-1}(z)`, :math:`z \\sim p_Z`; shape ``(n, D)``."""
        z = base_sample(n, self.dim, self.base, generator).to(self._dtype())
        return self.inverse(z)

    def path(self, z0: torch.Tensor) -> list[torch.Tensor]:
        """The generative direction one layer at a time: :math:`[z_0, z_1, \\dots, z_K]`.

        :math:`z_0` is the given base sample and :math:`z_k = f_{K-k+1}^{-1}(z_{k-1})`, so
        :math:`z_K` is a data sample: the picture of a Gaussian deformed step by step.
        """
        z = _check_batch(z0, self.dim, "z0")
        out = [z]
        for layer in reversed(self.layers):
            z = layer._inverse(z)
            out.append(z)
        return out

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> Flow:
        """Run ``x`` through the flow and initialise every :class:`ActNorm` from its input."""
        x = _check_batch(x, self.dim)
        for layer in self.layers:
            if isinstance(layer, ActNorm):
                layer.initialize(x)
            x, _ = layer._forward(x)
        return self

    def _dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        return torch.get_default_dtype()


def make_nice(dim: int, n_couplings: int = 4, hidden: int = 64, depth: int = 2,
              scaling: bool = True, base: str = "normal") -> Flow:
    """NICE: additive couplings that alternate halves, then (optionally) a diagonal :class:`Scaling`.

    With ``scaling=False`` every layer has unit Jacobian and the whole flow preserves volume.
    """
    check_int("n_couplings", n_couplings, 1)
    layers: list[FlowLayer] = [AdditiveCoupling(dim, hidden, depth, swap=k % 2 == 1)
                               for k in range(n_couplings)]
    if scaling:
        layers.append(Scaling(dim))
    return Flow(layers, base)


def make_realnvp(dim: int, n_couplings: int = 4, hidden: int = 64, depth: int = 2,
                 scale_bound: float = 2.0, base: str = "normal") -> Flow:
    """RealNVP: affine couplings that alternate halves."""
    check_int("n_couplings", n_couplings, 1)
    return Flow([AffineCoupling(dim, hidden, depth, swap=k % 2 == 1, scale_bound=scale_bound)
                 for k in range(n_couplings)], base)


def make_glow(dim: int, n_steps: int = 4, hidden: int = 64, depth: int = 2,
              scale_bound: float = 2.0, pre: Sequence[FlowLayer] = (), base: str = "normal",
              generator: torch.Generator | None = None) -> Flow:
    """A Glow-style flow on vectors: ``n_steps`` × (ActNorm → Invertible1x1 → AffineCoupling).

    ``pre`` are fixed layers put first (e.g. :class:`Logit` for images). Call
    :meth:`Flow.initialize` on a batch of data before training.
    """
    check_int("n_steps", n_steps, 1)
    layers: list[FlowLayer] = list(pre)
    for _ in range(n_steps):
        layers += [ActNorm(dim), Invertible1x1(dim, generator),
                   AffineCoupling(dim, hidden, depth, scale_bound=scale_bound)]
    return Flow(layers, base)


# --------------------------------------------------------------------------------------------
# checking a layer: its log-determinant against autograd
# --------------------------------------------------------------------------------------------
def autograd_log_det(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """:math:`\\log|\\det \\partial f/\\partial x|` for each sample, from the full Jacobian.

    The slow, obviously correct reference: for every sample, the :math:`D \\times D` Jacobian
    from ``torch.autograd.functional.jacobian`` and its ``slogdet``. Use it to check the
    ``log_det`` a layer computes in :math:`O(D)`.

    Args:
        fn: maps ``(N, D)`` to ``(N, D)`` row by row (e.g. ``lambda v: layer(v)[0]``).
        x: points ``(N, D)``.

    Returns:
        ``(N,)`` tensor.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        raise ValueError(f"x must be a tensor of shape (N, D), got {getattr(x, 'shape', type(x))}")
    _check_points(x)
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    out = []
    for row in x:
        jac = torch.autograd.functional.jacobian(lambda v: fn(v[None])[0], row)  # (D, D)
        out.append(torch.linalg.slogdet(jac).logabsdet)
    return torch.stack(out)


# --------------------------------------------------------------------------------------------
# the volume-preserving floor
# --------------------------------------------------------------------------------------------
def volume_preserving_nll_bound(entropy: float, dim: int) -> float:
    """The lowest expected NLL any volume-preserving flow with a standard-normal base can reach.

    A map with :math:`|\\det J| = 1` keeps differential entropy: :math:`H(f(X)) = H(X) = h`.
    Its NLL is :math:`E\\lVert z \\rVert^2/2 + \\tfrac D2 \\log 2\\pi`, and among all
    distributions with entropy :math:`h` the one with the least second moment is the isotropic
    Gaussian, of variance :math:`\\sigma^2 = e^{2h/D} / (2\\pi e)`. Hence

    .. math::  \\mathrm{NLL} \\ge \\tfrac D2 \\big(\\sigma^2 + \\log 2\\pi\\big) \\ge h ,

    with equality on the right only when :math:`\\sigma^2 = 1`. The gap is what NICE's
    scaling layer is for.
    """
    check_int("dim", dim, 1)
    check_real("entropy", entropy)
    var = math.exp(2 * entropy / dim) / (2 * math.pi * math.e)
    return 0.5 * dim * (var + LOG_2PI)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Maximum-likelihood training of a flow: minimise the mean NLL with Adam."""

    steps: int = 1000  #: optimiser steps
    batch_size: int = 256  #: samples per step, drawn with replacement
    lr: float = 3e-3  #: Adam's learning rate at the start; cosine-annealed to 0
    weight_decay: float = 0.0  #: AdamW weight decay (regularises small data sets)
    grad_clip: float | None = None  #: clip the gradient norm to this value (None: no clipping)
    seed: int = 0  #: seeds the mini-batch order

    def __post_init__(self) -> None:
        # a negative grad_clip would flip the gradient (clip_grad_norm_ scales by max_norm / norm)
        check_fields(self, {"steps": check_int, "batch_size": check_int, "lr": check_positive,
                            "weight_decay": check_nonnegative, "grad_clip": (optional, check_positive),
                            "seed": (check_int, 0)})


def train_flow(model: nn.Module, data: torch.Tensor, config: TrainConfig | None = None,
               progress: bool = False, description: str = "training",
               batch_transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
               ) -> list[float]:
    """Fit ``model`` (anything with ``log_prob(x) -> (N,)``) by maximum likelihood.

    .. math::  \\min_\\theta \\; -\\frac1B \\sum_{i=1}^{B} \\log p_\\theta(x_i)

    Args:
        model: a :class:`Flow` or :class:`ContinuousFlow`.
        data: training points ``(N, D)``; integer pixel values are fine with a
            ``batch_transform`` that turns them into floats.
        config: :class:`TrainConfig`.
        progress: show a ``tqdm`` progress bar.
        description: the progress bar's label.
        batch_transform: applied to every mini-batch, e.g. ``lambda k, g: dequantize(k, 17, g)``
            for fresh dequantisation noise at every step.

    Returns:
        The mini-batch loss (mean NLL in nats) of every step.
    """
    config = config or TrainConfig()
    if not hasattr(model, "log_prob"):
        raise TypeError(f"model must have a log_prob method, got {type(model).__name__}")
    if batch_transform is None:
        data = _check_points(data, "data")
    elif not isinstance(data, torch.Tensor) or data.ndim != 2:
        raise ValueError(f"data must be a tensor of shape (N, D), got {getattr(data, 'shape', type(data))}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig or None, got {type(config).__name__}")
    config.__post_init__()  # fields may have been changed after construction
    if batch_transform is not None and not callable(batch_transform):
        raise TypeError(f"batch_transform must be callable or None, got {type(batch_transform).__name__}")
    # fused=True: one kernel for all parameters; tiny models are dominated by per-op overhead
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  fused=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    batches = torch.Generator().manual_seed(config.seed)
    steps = range(config.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=description, leave=False)
    model.train()
    losses = []
    for _ in steps:
        idx = torch.randint(0, data.shape[0], (config.batch_size,), generator=batches)
        batch = data[idx] if batch_transform is None else batch_transform(data[idx], batches)
        loss = -model.log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


def nll(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> float:
    """Mean negative log-likelihood of ``x`` (N, D) in nats per sample (no gradients)."""
    x = _check_points(x)
    check_int("batch_size", batch_size)
    if not hasattr(model, "log_prob"):
        raise TypeError(f"model must have a log_prob method, got {type(model).__name__}")
    with torch.no_grad():
        total = sum(model.log_prob(chunk).sum().item() for chunk in x.split(batch_size))
    return -total / x.shape[0]


# --------------------------------------------------------------------------------------------
# images: dequantisation and bits per dimension
# --------------------------------------------------------------------------------------------
def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8×8 digits (1797 images, 17 grey levels 0..16), split into train and test.

    Returns:
        ``(train, test)``: integer tensors of shape ``(N, 64)`` with values in ``0 .. 16``.
    """
    check_real("test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True)
    check_int("seed", seed, minimum=0)
    from sklearn.datasets import load_digits

    images = torch.as_tensor(load_digits().data).long()  # (1797, 64), values 0..16
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    n_test = round(test_fraction * len(images))
    return images[order[n_test:]], images[order[:n_test]]


def dequantize(k: torch.Tensor, n_levels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantisation: :math:`x = (k + u) / L`, :math:`u \\sim U[0, 1)^D`.

    A continuous density on :math:`[0, 1]^D` can put unbounded density on the :math:`L`
    discrete values of :math:`k / L`; spreading each value over a cell of width :math:`1/L`
    turns the continuous likelihood into a lower bound on the discrete one
    (Theis, van den Oord, Bethge 2016).

    Args:
        k: integer pixel values in ``0 .. n_levels - 1``, shape ``(N, D)``.
        n_levels: :math:`L`.

    Returns:
        float32 tensor in :math:`[0, 1)`, shape ``(N, D)``.
    """
    check_int("n_levels", n_levels, 2)
    if not isinstance(k, torch.Tensor) or k.is_floating_point() or k.is_complex():
        raise TypeError(f"k must be an integer tensor of pixel values, got "
                        f"{k.dtype if isinstance(k, torch.Tensor) else type(k).__name__}")
    if k.numel() and (k.min() < 0 or k.max() >= n_levels):
        raise ValueError(f"k must lie in 0 .. {n_levels - 1}, got values in "
                         f"[{k.min().item()}, {k.max().item()}]")
    return (k.float() + torch.rand(k.shape, generator=generator)) / n_levels


def bits_per_dim(log_prob: torch.Tensor | float, dim: int, n_levels: int) -> float:
    """Bits per dimension of discrete data from the log-density of its dequantised version.

    ``log_prob`` is :math:`\\log p(x)` in nats for :math:`x = (k + u)/L \\in [0, 1]^D`, with
    every Jacobian of the model included (:class:`Logit` and the rest). On the integer grid
    :math:`v = k + u = L x` the density is :math:`p(x) L^{-D}`, and a unit cell has volume 1,
    so the discrete negative log-likelihood per dimension is at most

    .. math::  \\text{bits/dim} = \\frac{-\\log p(x) + D \\log L}{D \\log 2} .

    A uniform density on :math:`[0, 1]^D` scores :math:`\\log_2 L`.

    Args:
        log_prob: a float or a tensor of per-sample values (averaged).
        dim: :math:`D`.
        n_levels: :math:`L`.
    """
    check_int("dim", dim, 1)
    check_int("n_levels", n_levels, 2)
    mean_log_prob = float(torch.as_tensor(log_prob, dtype=torch.float64).mean())
    if not math.isfinite(mean_log_prob):
        raise ValueError(f"log_prob must be finite, got mean {mean_log_prob}")
    return (-mean_log_prob + dim * math.log(n_levels)) / (dim * math.log(2))
