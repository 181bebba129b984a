r"""Likelihood models I: autoregressive models on binary images, the code behind ``book/likelihood.md``.

The chain rule of probability factorises *any* distribution over :math:`D` binary pixels,

.. math::  p(x) = \prod_{i=1}^{D} p(x_{o_i} \mid x_{o_1}, \dots, x_{o_{i-1}}),

for any ordering :math:`o` of the pixels. An **autoregressive model** learns each conditional
as a Bernoulli whose logit :math:`\ell_i` is a function of the pixels before :math:`x_{o_i}`;
its log-likelihood is then exact and cheap,

.. math::  \log p(x) = \sum_{i=1}^{D} x_i \ell_i - \operatorname{softplus}(\ell_i),

the negative binary cross-entropy with logits. Two models are built here:

- :class:`FVSBN`, the fully visible sigmoid belief network: each logit is a logistic
  regression on the earlier pixels, :math:`\ell_i = b_i + \sum_{j <_o i} W_{ij} x_j`
  (Frey 1998; Neal 1992).
- :class:`MADE`, the masked autoencoder for distribution estimation: an MLP whose weight
  matrices are multiplied by binary masks so that logit :math:`i` only sees earlier pixels;
  every conditional comes out of one forward pass (Germain et al. 2015).

The VAE and its bounds are in :mod:`tutorlib.vae`. Images are scikit-learn's 8×8 digits,
binarised (:func:`load_binary_digits`), flattened to ``(N, 64)`` in row-major order.

Legend (code name -> symbol): ``x`` -> :math:`x \in \{0,1\}^D`, ``logits`` ->
:math:`\ell`, ``ordering`` -> :math:`o` (``ordering[i]`` is the pixel modelled
:math:`i`-th), ``degrees`` -> Germain et al.'s :math:`m(k)`.

References:
    Frey (1998), "Graphical models for machine learning and digital communication", MIT Press.
    Larochelle, Murray (2011), "The neural autoregressive distribution estimator", AISTATS.
    Germain, Gregor, Murray, Larochelle (2015), "MADE: masked autoencoder for distribution
    estimation", ICML.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from tutorlib.validation import all_finite, check_int, check_positive, check_tensor

__all__ = [
    "FVSBN",
    "MADE",
    "MaskedLinear",
    "TrainConfig",
    "autoregressive_nll",
    "autoregressive_sample",
    "bernoulli_log_prob",
    "check_binary_images",
    "check_ordering",
    "fit",
    "load_binary_digits",
    "made_degrees",
    "made_masks",
    "nats_to_bits_per_pixel",
]


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------
def check_binary_images(name: str, x: object, dim: int | None = None) -> torch.Tensor:
    """Return ``x`` if it is a float tensor ``(N, D)`` of 0s and 1s (``D == dim`` when given).

    Raises:
        TypeError: not a tensor, or not floating point; the message names ``name``.
        ValueError: wrong shape, empty, or a value other than 0 or 1.
    """
    if dim is not None:
        dim = check_int("dim", dim)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of 0s and 1s, got {x.dtype}")
    want = "D" if dim is None else str(dim)
    if x.ndim != 2 or x.shape[0] == 0 or (dim is not None and x.shape[1] != dim):
        raise ValueError(f"{name} must have shape (N, {want}) with N >= 1, got {tuple(x.shape)}")
    if not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(f"{name} must hold binary pixels (0.0 or 1.0); binarise the images first")
    return x


def check_ordering(ordering: object, dim: int) -> torch.Tensor:
    """Return ``ordering`` as a long tensor if it is a permutation of ``0 .. dim-1``.

    Raises:
        TypeError: not a sequence or tensor of ints (or ``dim`` not an int).
        ValueError: not one-dimensional, wrong length, or not a permutation.
    """
    dim = check_int("dim", dim)
    if ordering is None:
        return torch.arange(dim)
    if isinstance(ordering, torch.Tensor):
        if ordering.is_floating_point() or ordering.dtype == torch.bool:
            raise TypeError(f"ordering must hold integers, got a tensor of {ordering.dtype}")
        if ordering.ndim != 1:
            raise ValueError(f"ordering must be one-dimensional ({dim},), got shape {tuple(ordering.shape)}")
        order = ordering.long()
    elif isinstance(ordering, Sequence) and all(
        isinstance(o, int) and not isinstance(o, bool) for o in ordering
    ):
        order = torch.tensor(list(ordering), dtype=torch.long)
    else:
        raise TypeError(f"ordering must be a sequence or tensor of ints, got {type(ordering).__name__}")
    if order.numel() != dim or not torch.equal(order.sort().values, torch.arange(dim)):
        raise ValueError(
            f"ordering must be a permutation of 0..{dim - 1} (length {dim}), got {order.tolist()}"
        )
    return order


# --------------------------------------------------------------------------------------------
# data and the Bernoulli likelihood
# --------------------------------------------------------------------------------------------
def load_binary_digits(
    threshold: float = 8.0, n_test: int = 360, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 digits, binarised (pixel :math:`\\ge` ``threshold`` -> 1) and split.

    The split is a fixed random permutation (``seed``): the last ``n_test`` images are the
    test set. Pixel values of ``load_digits`` are integers in :math:`[0, 16]`.

    Returns:
        ``x_train (N_train, 64)``, ``x_test (n_test, 64)`` float32 in {0, 1}, and their labels
        ``y_train (N_train,)``, ``y_test (n_test,)`` (int64, the digit 0-9).
    """
    from sklearn.datasets import load_digits

    threshold = check_positive("threshold", threshold)
    if threshold > 16:
        raise ValueError(f"threshold must be in (0, 16] (pixels of load_digits are 0..16), got {threshold}")
    n_test = check_int("n_test", n_test, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    digits = load_digits()
    if n_test >= len(digits.data):
        raise ValueError(f"n_test must be < {len(digits.data)} (the number of images), got {n_test}")
    x = torch.tensor(digits.data >= threshold, dtype=torch.float32)  # (1797, 64)
    y = torch.tensor(digits.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, test = perm[:-n_test], perm[-n_test:]
    return x[train], x[test], y[train], y[test]


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Independent Bernoullis: :math:`\\log p(x) = \\sum_i x_i \\ell_i - \\operatorname{softplus}(\\ell_i)`.

    Written in logits, this is minus the binary cross-entropy and never takes the log of a
    probability that rounds to 0.

    Args:
        logits: :math:`\\ell`, shape ``(..., D)``.
        x: binary pixels, the same shape as ``logits`` (no broadcasting); integer 0/1 is fine.

    Returns:
        The log-probability in nats, shape ``(...)`` (summed over the last axis).
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(x, torch.Tensor):
        raise TypeError(
            f"logits and x must be torch.Tensors, got {type(logits).__name__} and {type(x).__name__}"
        )
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got {logits.dtype}")
    if logits.shape != x.shape:
        raise ValueError(
            f"logits and x must have the same shape, got {tuple(logits.shape)} and {tuple(x.shape)}"
        )
    if not all_finite(x):  # one reduction: this runs every training step (logits: NaN in, NaN out)
        raise ValueError("x must be finite binary pixels, got a tensor containing NaN or inf")
    return (x * logits - F.softplus(logits)).sum(-1)


def nats_to_bits_per_pixel(nats: float, dim: int = 64) -> float:
    """Convert a negative log-likelihood per image in nats to bits per pixel: nats / (D ln 2)."""
    if isinstance(nats, bool) or not isinstance(nats, int | float) or not math.isfinite(nats):
        raise TypeError(f"nats must be a finite real number, got {nats!r}")
    if nats < 0:
        raise ValueError(f"nats must be >= 0 (the NLL of binary data is never negative), got {nats}")
    dim = check_int("dim", dim)
    return nats / (dim * math.log(2))


# --------------------------------------------------------------------------------------------
# FVSBN: one logistic regression per pixel
# --------------------------------------------------------------------------------------------
class FVSBN(nn.Module):
    """Fully visible sigmoid belief network: :math:`\\ell_i = b_i + \\sum_{j <_o i} W_{ij} x_j`.

    :math:`W` is a full ``(D, D)`` parameter multiplied by a fixed mask that keeps
    :math:`W_{ij}` only when pixel :math:`j` comes before pixel :math:`i` in ``ordering``
    (strictly lower-triangular for the identity ordering). :math:`D(D-1)/2 + D` parameters are
    used: 2080 for 8×8 images.

    Args:
        dim: :math:`D`, the number of pixels.
        ordering: the order in which pixels are modelled, a permutation of ``0..D-1``
            (default: row-major, ``0, 1, ..., D-1``).

    Shapes: ``forward(x)``: ``(N, D) -> (N, D)`` logits; ``log_prob(x)``: ``(N, D) -> (N,)``.
    """

    def __init__(self, dim: int, ordering: Sequence[int] | torch.Tensor | None = None) -> None:
        super().__init__()
        self.dim = check_int("dim", dim)
        self.register_buffer("ordering", check_ordering(ordering, self.dim))
        rank = torch.empty(self.dim, dtype=torch.long)
        rank[self.ordering] = torch.arange(self.dim)  # rank[j]: the step at which pixel j is modelled
        self.register_buffer("mask", (rank[None, :] < rank[:, None]).float())  # (D_out, D_in)
        self.weight = nn.Parameter(torch.zeros(self.dim, self.dim))
        self.bias = nn.Parameter(torch.zeros(self.dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_inputs(x, self.dim)
        return F.linear(x, self.weight * self.mask, self.bias)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact :math:`\\log p(x)` in nats, shape ``(N,)``."""
        x = check_binary_images("x", x, self.dim)
        return bernoulli_log_prob(self(x), x)

    def n_parameters(self) -> int:
        """The number of free parameters: :math:`D(D-1)/2 + D`."""
        return int(self.mask.sum().item()) + self.dim


# --------------------------------------------------------------------------------------------
# MADE: a masked MLP
# --------------------------------------------------------------------------------------------
def made_degrees(dim: int, hidden_sizes: Sequence[int], ordering: torch.Tensor) -> list[torch.Tensor]:
    """Germain et al.'s degrees :math:`m(k)`: how many inputs (in the ordering) unit :math:`k` may see.

    Input pixel :math:`d` gets the degree ``rank[d] + 1`` in :math:`1..D` (its position in the
    ordering). Hidden unit :math:`k` of every layer gets :math:`m(k) = 1 + (k \\bmod (D - 1))`,
    which cycles through :math:`1..D-1` so that every degree is used about equally often
    (Germain et al. draw them at random; the cycle is deterministic and just as valid).

    Returns:
        ``[m_input (D,), m_hidden_1 (H_1,), ...]``, long tensors.
    """
    dim = check_int("dim", dim)
    if isinstance(hidden_sizes, int) or not isinstance(hidden_sizes, Sequence):
        raise TypeError(f"hidden_sizes must be a sequence of ints, got {hidden_sizes!r}")
    hidden_sizes = [check_int("hidden_sizes[]", h) for h in hidden_sizes]
    ordering = check_ordering(ordering, dim)
    rank = torch.empty(dim, dtype=torch.long)
    rank[ordering] = torch.arange(dim)
    degrees = [rank + 1]
    for h in hidden_sizes:
        degrees.append(1 + torch.arange(h) % max(dim - 1, 1))
    return degrees


def made_masks(degrees: list[torch.Tensor]) -> list[torch.Tensor]:
    """The binary masks of MADE from the degrees (Germain et al. 2015, Eq. 12-13).

    Hidden layer: :math:`M_{kj} = 1[m^{l}(k) \\ge m^{l-1}(j)]` (a unit may see every input its
    inputs see). Output layer: :math:`M_{dk} = 1[m^0(d) > m^L(k)]` (strict: output :math:`d`
    must not see pixel :math:`d` itself).

    Returns:
        One float mask per layer, shape ``(out_features, in_features)`` like ``nn.Linear.weight``.
    """
    masks = [(out[:, None] >= inp[None, :]).float() for inp, out in itertools.pairwise(degrees)]
    masks.append((degrees[0][:, None] > degrees[-1][None, :]).float())  # (D, H_L)
    return masks


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied elementwise by a fixed binary ``mask`` (out, in)."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor) -> None:
        super().__init__(check_int("in_features", in_features), check_int("out_features", out_features))
        mask = check_tensor("mask", mask, (out_features, in_features), dtype="real")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must hold 0s and 1s (a weight is kept or cut)")
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_features) -> (N, out_features)``; no NaN scan (every forward pass)."""
        x = check_tensor("x", x, ("N", self.in_features), finite=False)
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """MADE: an MLP :math:`D \\to H_1 \\to \\dots \\to H_L \\to D` with masked weights.

    With the masks of :func:`made_masks`, output :math:`i` depends only on the pixels that
    come before pixel :math:`i` in ``ordering``: the Jacobian
    :math:`\\partial \\ell_i / \\partial x_j` is zero unless :math:`j <_o i`, so the outputs are
    the logits of valid conditionals :math:`p(x_i \\mid x_{<_o i})` and the whole likelihood
    needs a single forward pass (sampling still takes :math:`D` passes).

    Args:
        dim: :math:`D`.
        hidden_sizes: the widths :math:`H_1, \\dots, H_L` (at least one layer).
        ordering: the pixel ordering (default row-major).

    Shapes: ``forward(x)``: ``(N, D) -> (N, D)`` logits; ``log_prob(x)``: ``(N, D) -> (N,)``.
    """

    def __init__(
        self,
        dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        ordering: Sequence[int] | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, minimum=2)
        if isinstance(hidden_sizes, int) or not isinstance(hidden_sizes, Sequence) or not hidden_sizes:
            raise TypeError(f"hidden_sizes must be a non-empty sequence of ints, got {hidden_sizes!r}")
        sizes = [check_int("hidden_sizes[]", h) for h in hidden_sizes]
        self.register_buffer("ordering", check_ordering(ordering, self.dim))
        masks = made_masks(made_degrees(self.dim, sizes, self.ordering))
        widths = [self.dim, *sizes, self.dim]
        layers: list[nn.Module] = []
        for i, mask in enumerate(masks):
            layers.append(MaskedLinear(widths[i], widths[i + 1], mask))
            if i < len(masks) - 1:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(_check_inputs(x, self.dim))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact :math:`\\log p(x)` in nats, shape ``(N,)``."""
        x = check_binary_images("x", x, self.dim)
        return bernoulli_log_prob(self(x), x)

    def connectivity(self) -> torch.Tensor:
        """``(D, D)``: entry ``[i, j] > 0`` iff a path through the masks links input j to output i."""
        path = torch.eye(self.dim)
        for layer in self.net:
            if isinstance(layer, MaskedLinear):
                path = (layer.mask > 0).float() @ path
        return path


def _check_inputs(x: object, dim: int) -> torch.Tensor:
    """Forward passes accept any finite float tensor (N, dim): the Jacobian tests feed non-binary x."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(
            f"x must be a floating-point torch.Tensor of shape (N, {dim}), got {type(x).__name__}"
        )
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"x must have shape (N, {dim}), got {tuple(x.shape)}")
    return x


def autoregressive_sample(
    model: FVSBN | MADE, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Ancestral sampling: draw pixels one at a time in the model's ordering.

    Start from :math:`x = 0`; at step :math:`i`, run the model, read the logit of pixel
    :math:`o_i` (it depends only on pixels already drawn) and draw
    :math:`x_{o_i} \\sim \\text{Bernoulli}(\\sigma(\\ell_{o_i}))`. :math:`D` forward passes.

    Returns:
        ``(n, D)`` binary samples.
    """
    if not isinstance(model, FVSBN | MADE):
        raise TypeError(f"model must be an FVSBN or a MADE, got {type(model).__name__}")
    n = check_int("n", n)
    x = torch.zeros(n, model.dim)
    with torch.no_grad():
        for pixel in model.ordering.tolist():
            p = torch.sigmoid(model(x)[:, pixel])  # depends only on the pixels drawn so far
            x[:, pixel] = torch.bernoulli(p, generator=generator)
    return x


# --------------------------------------------------------------------------------------------
# training: maximum likelihood (or a bound) with Adam
# --------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """A plain mini-batch Adam recipe, shared by the autoregressive models and the VAE."""

    epochs: int = 100  #: passes over the training set
    batch_size: int = 128  #: images per step
    lr: float = 1e-3  #: Adam's learning rate
    weight_decay: float = 0.0  #: AdamW's decoupled weight decay (1.4k images overfit quickly)
    seed: int = 0  #: seeds the initialisation-independent randomness: batches (and VAE noise)

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs)
        check_int("batch_size", self.batch_size)
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_int("seed", self.seed, minimum=0)


def autoregressive_nll(
    model: nn.Module, x: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Training loss of :class:`FVSBN` and :class:`MADE`: mean :math:`-\\log p(x)` in nats (no randomness)."""
    return -model.log_prob(x).mean()


def fit(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor],
    x_train: torch.Tensor,
    config: TrainConfig,
    x_eval: torch.Tensor | None = None,
    progress: bool = False,
) -> dict[str, list[float]]:
    """Minimise ``loss_fn(model, batch, generator)`` (a mean per image, in nats) with AdamW.

    Returns:
        ``{"train": [...], "eval": [...]}``: the mean training loss of each epoch, and the
        loss on ``x_eval`` (no gradient) after each epoch when it is given.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    x_train = check_binary_images("x_train", x_train)
    if x_eval is not None:
        x_eval = check_binary_images("x_eval", x_eval, x_train.shape[1])
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: dict[str, list[float]] = {"train": [], "eval": []}
    epochs = range(config.epochs)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=type(model).__name__, leave=False)
    for _ in epochs:
        model.train()
        perm = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(x_train), config.batch_size):
            batch = x_train[perm[start : start + config.batch_size]]
            loss = loss_fn(model, batch, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        history["train"].append(total / len(x_train))
        if x_eval is not None:
            model.eval()
            with torch.no_grad():
                history["eval"].append(loss_fn(model, x_eval, generator).item())
    model.eval()
    return history
