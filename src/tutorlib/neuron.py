"""Why neurons have a bias: the code behind the chapter ``book/bias.md``.

A perceptron fires when the weighted sum of its inputs exceeds a threshold :math:`T`:

.. math::  y = \\mathbb{1}[\\, w \\cdot x > T \\,] = \\mathbb{1}[\\, w \\cdot x + b > 0 \\,],
           \\qquad b = -T.

Moving :math:`T` to the left-hand side turns it into the bias :math:`b`, a parameter that is
learned like the weights instead of being picked by hand. The functions below are the
experiments of the chapter: the perceptron rule, a logistic neuron with and without a bias, the
best any line through the origin can do, ReLU kinks (from the weights and, independently, from
the outputs), the log-prior output bias, and the parameter groups that keep weight decay off the
biases and normalisation gains.

Legend (code name -> symbol): ``w`` -> :math:`w`, ``b`` -> :math:`b`,
``threshold`` -> :math:`T`, ``p`` -> the prior :math:`p = P(y=1)`.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from tutorlib.validation import (
    check_finite,
    check_int,
    check_nonnegative,
    check_points,
    check_positive,
    check_probability,
    check_real,
    check_tensor,
)

__all__ = [
    "LogisticNeuron",
    "PerceptronResult",
    "ReLUNet1D",
    "accuracy",
    "best_accuracy_through_origin",
    "binary_entropy",
    "decay_groups",
    "fit_logistic",
    "fit_regression",
    "init_output_bias",
    "make_offset_blobs",
    "neuron",
    "numerical_kinks",
    "perceptron",
    "prior_log_odds",
    "relu_kinks",
    "train_perceptron",
]


# --------------------------------------------------------------------------------------------
# argument checks shared by the public functions (points: tutorlib.validation.check_points)
# --------------------------------------------------------------------------------------------
def _as_labels(y: torch.Tensor, n: int, name: str = "y") -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N,), got {type(y).__name__}")
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match x, got {tuple(y.shape)}")
    if not torch.all((y == 0) | (y == 1)):
        raise ValueError(f"{name} must hold binary labels 0 or 1")
    return y


def _as_weights(w: torch.Tensor, d: int) -> torch.Tensor:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch.Tensor of shape (D,), got {type(w).__name__}")
    if w.shape != (d,):
        raise ValueError(f"w must have shape ({d},) to match x of shape (N, {d}), got {tuple(w.shape)}")
    return check_tensor("w", w)


def _points(x: object, name: str = "x") -> torch.Tensor:
    """Finite floating-point points ``(N, D)``."""
    return check_finite(name, check_points(name, x))


# --------------------------------------------------------------------------------------------
# 1. the perceptron: threshold -> bias
# --------------------------------------------------------------------------------------------
def perceptron(x: torch.Tensor, w: torch.Tensor, threshold: float) -> torch.Tensor:
    """Rosenblatt's perceptron with a hand-picked threshold: :math:`y = 1[w \\cdot x > T]`.

    Args:
        x: inputs, shape ``(N, D)``.
        w: weights, shape ``(D,)``.
        threshold: :math:`T`; the larger it is, the harder the unit is to activate.

    Returns:
        ``(N,)`` tensor of 0/1 outputs (same dtype as ``x``).
    """
    x = _points(x)
    w = _as_weights(w, x.shape[1])
    threshold = check_real("threshold", threshold)
    return (x @ w > threshold).to(x.dtype)


def neuron(x: torch.Tensor, w: torch.Tensor, b: float | torch.Tensor) -> torch.Tensor:
    """The same unit with the threshold moved left as a bias: :math:`y = 1[w \\cdot x + b > 0]`.

    ``neuron(x, w, b) == perceptron(x, w, threshold=-b)`` for every input.

    Args:
        x: inputs, shape ``(N, D)``.
        w: weights, shape ``(D,)``.
        b: bias :math:`b = -T`, a scalar.

    Returns:
        ``(N,)`` tensor of 0/1 outputs.
    """
    x = _points(x)
    w = _as_weights(w, x.shape[1])
    if isinstance(b, torch.Tensor):
        if b.numel() != 1:
            raise ValueError(f"b must be a scalar bias, got a tensor of shape {tuple(b.shape)}")
        check_tensor("b", b)
    else:
        b = check_real("b", b)
    return (x @ w + b > 0).to(x.dtype)


@dataclass
class PerceptronResult:
    """The outcome of :func:`train_perceptron`."""

    w: torch.Tensor  #: learned weights, shape (D,)
    b: float  #: learned bias (0.0 when trained without one)
    mistakes: list[int]  #: number of updates in each epoch; 0 means the data are separated


def train_perceptron(
    x: torch.Tensor, y: torch.Tensor, epochs: int = 20, lr: float = 1.0, bias: bool = True
) -> PerceptronResult:
    """Rosenblatt's learning rule, with the threshold learned as a bias.

    Labels are mapped to :math:`t = 2y - 1 \\in \\{-1, +1\\}`. For each sample in order, if
    :math:`t\\,(w \\cdot x + b) \\le 0` (a mistake, or on the boundary) then

    .. math::  w \\leftarrow w + \\eta\\, t\\, x, \\qquad b \\leftarrow b + \\eta\\, t.

    The bias update is the weight update for a constant input of 1: the bias is just a weight
    on an input that is always on. With ``bias=False``, :math:`b` stays 0.

    Args:
        x: inputs, shape ``(N, D)``.
        y: labels in {0, 1}, shape ``(N,)``.
        epochs: passes over the data (stops early after an epoch without mistakes).
        lr: learning rate :math:`\\eta > 0`.
        bias: learn :math:`b` (True) or keep the boundary through the origin (False).

    Returns:
        :class:`PerceptronResult` with ``w``, ``b`` and the mistakes per epoch.

    References:
        Rosenblatt (1958), "The perceptron: a probabilistic model for information storage".
    """
    x = _points(x)
    y = _as_labels(y, x.shape[0])
    check_int("epochs", epochs)
    lr = check_positive("lr", lr)
    t = 2 * y.to(x.dtype) - 1
    w = torch.zeros(x.shape[1], dtype=x.dtype)
    b = torch.zeros((), dtype=x.dtype)
    mistakes = []
    for _ in range(epochs):
        n_mistakes = 0
        for xi, ti in zip(x, t, strict=True):
            if ti * (xi @ w + b) <= 0:
                w = w + lr * ti * xi
                if bias:
                    b = b + lr * ti
                n_mistakes += 1
        mistakes.append(n_mistakes)
        if n_mistakes == 0:
            break
    return PerceptronResult(w=w, b=float(b), mistakes=mistakes)


# --------------------------------------------------------------------------------------------
# 2. geometry: without a bias the boundary passes through the origin
# --------------------------------------------------------------------------------------------
def make_offset_blobs(
    n: int = 400, center0: tuple[float, float] = (1.5, 1.5), center1: tuple[float, float] = (3.0, 3.0),
    std: float = 0.45, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian classes on the same side of the origin, separated by a line away from it.

    Both centres lie along the same ray from the origin, so any line *through* the origin cuts
    both classes in the same proportion; a line that can move away from the origin separates
    them.

    Args:
        n: total number of points (half per class), at least 2.
        center0, center1: class means.
        std: standard deviation of each coordinate, > 0.
        generator: optional ``torch.Generator`` for reproducibility.

    Returns:
        ``x`` of shape ``(n, 2)`` (float32) and ``y`` of shape ``(n,)`` with labels 0/1.
    """
    check_int("n", n, minimum=2)
    std = check_positive("std", std)
    for name, centre in (("center0", center0), ("center1", center1)):
        if len(centre) != 2:
            raise ValueError(f"{name} must be a point (x, y), got {centre!r}")
        for value in centre:
            check_real(f"{name} coordinates", value)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    n0 = n // 2
    noise = torch.randn(n, 2, generator=generator) * std
    centers = torch.tensor([center0] * n0 + [center1] * (n - n0))
    y = torch.cat([torch.zeros(n0), torch.ones(n - n0)])
    return centers + noise, y


class LogisticNeuron(nn.Module):
    """One neuron with a sigmoid output: :math:`P(y=1 \\mid x) = \\sigma(w \\cdot x + b)`.

    With ``bias=False`` the decision boundary :math:`w \\cdot x = 0` always contains the origin.

    Shapes: input ``(N, D)``, output logits ``(N,)``.
    """

    def __init__(self, in_features: int, bias: bool = True) -> None:
        super().__init__()
        check_int("in_features", in_features)
        self.linear = nn.Linear(in_features, 1, bias=bias)
        nn.init.zeros_(self.linear.weight)  # start from the flat 50/50 model, as LR solvers do
        if bias:
            nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N,)`` of inputs ``(N, in_features)``."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        if x.shape[-1:] != (self.linear.in_features,):
            raise ValueError(f"x must have shape (N, {self.linear.in_features}), got {tuple(x.shape)}")
        return self.linear(x).squeeze(-1)


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, bias: bool = True, l2: float = 0.0, max_iter: int = 500
) -> LogisticNeuron:
    """Fit a :class:`LogisticNeuron` by full-batch L-BFGS on the regularised log-loss

    .. math::  L(w, b) = \\frac{1}{N}\\sum_i \\big[\\log(1 + e^{z_i}) - y_i z_i\\big]
               + \\frac{\\lambda}{2}\\lVert w \\rVert^2, \\qquad z_i = w \\cdot x_i + b .

    The bias is not penalised (as in scikit-learn). ``l2`` = :math:`\\lambda` corresponds to
    scikit-learn's ``LogisticRegression(C=1 / (λ N))``.

    Args:
        x: inputs ``(N, D)``; y: labels ``(N,)`` in {0, 1}.
        bias: learn :math:`b` or fix it at 0.
        l2: :math:`\\lambda \\ge 0`.
        max_iter: L-BFGS iterations.

    Returns:
        The fitted model (in eval mode).

    Warns:
        RuntimeWarning: L-BFGS used all ``max_iter`` iterations (or its ``5/4 max_iter``
            function evaluations) and the gradient is still not
            small (:math:`\\max |\\nabla L| > 10^{-5}`): raise ``max_iter``, or set ``l2 > 0``
            when the data are separable (then the unregularised optimum is at infinity).
    """
    x = _points(x)
    y = _as_labels(y, x.shape[0]).to(x.dtype)
    l2 = check_nonnegative("l2", l2)
    check_int("max_iter", max_iter)
    model = LogisticNeuron(x.shape[1], bias=bias).to(x.dtype)
    optimizer = torch.optim.LBFGS(
        model.parameters(), lr=1.0, max_iter=max_iter, tolerance_grad=1e-10,
        tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
        loss = loss + 0.5 * l2 * model.linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    state = optimizer.state[optimizer._params[0]]
    max_eval = optimizer.param_groups[0]["max_eval"]
    out_of_budget = state.get("n_iter", 0) >= max_iter or state.get("func_evals", 0) >= max_eval
    gradient = max(p.grad.abs().max().item() for p in model.parameters())
    if out_of_budget and gradient > 1e-5:
        warnings.warn(
            f"fit_logistic stopped after max_iter={max_iter} L-BFGS iterations without converging "
            f"(largest gradient entry {gradient:.1e}); raise max_iter, or set l2 > 0 if the classes "
            "are separable",
            RuntimeWarning, stacklevel=2,
        )
    return model.eval()


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of samples where ``logits > 0`` agrees with the 0/1 label ``y``."""
    check_tensor("logits", logits, finite=False)
    if bool(torch.isnan(logits).any()):
        raise ValueError("logits must not contain NaN (a NaN logit is neither > 0 nor <= 0)")
    if logits.shape != y.shape:
        raise ValueError(
            f"logits and y must have the same shape, got {tuple(logits.shape)} and {tuple(y.shape)}"
        )
    _as_labels(y.reshape(-1), y.numel())
    return ((logits > 0).to(y.dtype) == y).sum().item() / y.numel()


def best_accuracy_through_origin(x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The best accuracy any linear classifier *without a bias* can reach on 2-D data, exactly.

    A bias-free classifier predicts :math:`1[w \\cdot x > 0]`; only the direction
    :math:`w = (\\cos\\theta, \\sin\\theta)` matters. The prediction for a point :math:`x_i`
    flips only when the boundary passes through it, i.e. at the angles
    :math:`\\theta = \\operatorname{atan2}(x_i) \\pm \\pi/2`. Between two consecutive critical
    angles every prediction is constant, so trying one angle inside each interval finds the
    optimum. This is a ceiling set by the hypothesis class, not by training.

    Args:
        x: points ``(N, 2)``; y: labels ``(N,)`` in {0, 1}.

    Returns:
        ``(accuracy, w)`` with the best unit-norm direction ``w`` of shape ``(2,)``.
    """
    x = _points(x)
    if x.shape[1] != 2:
        raise ValueError(f"x must be 2-D points of shape (N, 2), got {tuple(x.shape)}")
    y = _as_labels(y, x.shape[0])
    x = x.double()
    phi = torch.atan2(x[:, 1], x[:, 0])
    critical = torch.remainder(torch.cat([phi + math.pi / 2, phi - math.pi / 2]), 2 * math.pi)
    critical = torch.sort(critical).values
    gaps = torch.diff(torch.cat([critical, critical[:1] + 2 * math.pi]))
    thetas = critical + gaps / 2  # one angle strictly inside each interval
    directions = torch.stack([torch.cos(thetas), torch.sin(thetas)], dim=1)  # (K, 2)
    predictions = (x @ directions.T > 0).to(y.dtype)  # (N, K)
    accuracies = (predictions == y[:, None]).double().mean(dim=0)  # (K,)
    best = int(torch.argmax(accuracies))
    return accuracies[best].item(), directions[best].float()


# --------------------------------------------------------------------------------------------
# 3. ReLU networks: the biases place the kinks
# --------------------------------------------------------------------------------------------
class ReLUNet1D(nn.Module):
    """A one-hidden-layer ReLU network :math:`f(x) = \\sum_j a_j\\, \\mathrm{relu}(w_j x + b_j) + c`.

    Each hidden unit bends the function at its kink :math:`x = -b_j / w_j`. Without biases
    (``bias=False``) every kink sits at :math:`x = 0` and :math:`f(\\lambda x) = \\lambda f(x)`
    for :math:`\\lambda > 0`: the network can only draw two rays from the origin.

    Shapes: input ``(N, 1)``, output ``(N, 1)``.
    """

    def __init__(self, hidden: int = 32, bias: bool = True) -> None:
        super().__init__()
        check_int("hidden", hidden)
        self.hidden = nn.Linear(1, hidden, bias=bias)
        self.out = nn.Linear(hidden, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != 1:
            raise ValueError(f"x must have shape (N, 1), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
        return self.out(torch.relu(self.hidden(x)))


def relu_kinks(net: ReLUNet1D) -> torch.Tensor:
    """The kink positions :math:`x_j = -b_j / w_j` of a :class:`ReLUNet1D`, sorted.

    Hidden units with :math:`w_j = 0` are constant and have no kink; they are left out.
    Without a bias every kink is at 0.

    Returns:
        1-D tensor of kink positions.
    """
    if not isinstance(net, ReLUNet1D):
        raise TypeError(f"net must be a ReLUNet1D, got {type(net).__name__}")
    w = net.hidden.weight.detach().squeeze(1)
    b = net.hidden.bias.detach() if net.hidden.bias is not None else torch.zeros_like(w)
    active = w != 0
    return torch.sort(-b[active] / w[active]).values


def numerical_kinks(
    f: nn.Module, lo: float, hi: float, points: int = 6001, tol: float = 1e-9
) -> torch.Tensor:
    """Find the kinks of a piecewise-linear function of one variable from its *outputs* alone.

    Evaluate :math:`f` in float64 on ``points`` equally spaced inputs :math:`x_i` (spacing
    :math:`h`) and take second differences :math:`\\Delta^2_i = f(x_{i+1}) - 2 f(x_i) + f(x_{i-1})`.
    Where :math:`f` is linear they vanish (up to round-off); a kink at :math:`x_k = x_i + t h`
    with slope change :math:`\\delta` gives :math:`\\Delta^2_i = \\delta (1 - t) h` and
    :math:`\\Delta^2_{i+1} = \\delta t h`. Each run of consecutive nonzero second differences is
    one kink, located at their weighted mean :math:`\\sum_i x_i \\Delta^2_i / \\sum_i \\Delta^2_i`,
    exact for an isolated kink; kinks closer than :math:`h` merge into one.

    Nothing here reads the weights, so it checks :func:`relu_kinks` independently.

    Args:
        f: a module mapping ``(N, 1)`` to ``(N, 1)``; a float64 copy is evaluated.
        lo, hi: the interval, ``lo < hi``.
        points: grid size, at least 3.
        tol: a second difference counts as nonzero when :math:`|\\Delta^2_i| > \\text{tol}`;
            slope changes below about ``tol / h`` are not seen.

    Returns:
        1-D float64 tensor of the kink positions found in ``(lo, hi)``, sorted.
    """
    if not isinstance(f, nn.Module):
        raise TypeError(f"f must be an nn.Module mapping (N, 1) to (N, 1), got {type(f).__name__}")
    lo, hi = check_real("lo", lo), check_real("hi", hi)
    if not lo < hi:
        raise ValueError(f"lo must be smaller than hi, got lo={lo}, hi={hi}")
    check_int("points", points, minimum=3)
    tol = check_positive("tol", tol)
    x = torch.linspace(lo, hi, points, dtype=torch.float64)[:, None]  # (points, 1)
    with torch.no_grad():
        y = copy.deepcopy(f).double()(x)
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        raise ValueError(f"f must map (N, 1) to (N, 1), got output {tuple(getattr(y, 'shape', ()))}")
    y = y[:, 0]
    second = y[2:] - 2 * y[1:-1] + y[:-2]  # (points - 2,), centred at x[1:-1]
    centres = x[1:-1, 0]
    nonzero = (second.abs() > tol).tolist()
    kinks, start = [], None
    for i, hit in enumerate([*nonzero, False]):
        if hit and start is None:
            start = i
        elif not hit and start is not None:
            weights = second[start:i]
            kinks.append((centres[start:i] * weights).sum() / weights.sum())
            start = None
    return torch.stack(kinks) if kinks else torch.zeros(0, dtype=torch.float64)


def fit_regression(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 2000, lr: float = 1e-2
) -> list[float]:
    """Fit ``net`` to ``(x, y)`` by full-batch Adam on the mean squared error.

    A fixed number of steps, no stopping rule: the caller reads the returned curve.

    Returns:
        The loss at every step (before that step's update).

    Warns:
        RuntimeWarning: the loss became NaN/inf or ended above where it started: lower ``lr``.
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be an nn.Module, got {type(net).__name__}")
    check_tensor("x", x)
    check_tensor("y", y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    check_int("steps", steps)
    lr = check_positive("lr", lr)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(net(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            break
    if not math.isfinite(losses[-1]) or losses[-1] > losses[0]:
        warnings.warn(
            f"fit_regression diverged (loss {losses[0]:.3g} at the start, {losses[-1]:.3g} at step "
            f"{len(losses)}); lower lr (now {lr})",
            RuntimeWarning, stacklevel=2,
        )
    return losses


# --------------------------------------------------------------------------------------------
# 4. the output bias on imbalanced classes
# --------------------------------------------------------------------------------------------
def binary_entropy(p: float) -> float:
    """:math:`H(p) = -p \\ln p - (1-p) \\ln(1-p)` in nats: the log-loss of always predicting p."""
    p = check_probability("p", p, allow_zero=False, allow_one=False)
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def prior_log_odds(p: float) -> float:
    """The bias that makes a sigmoid unit predict :math:`p` when its weights are zero.

    :math:`\\sigma(b) = p \\iff b = \\ln \\frac{p}{1-p}` (the log-odds of the prior).
    """
    p = check_probability("p", p, allow_zero=False, allow_one=False)
    return math.log(p / (1 - p))


def init_output_bias(layer: nn.Linear, p: float) -> nn.Linear:
    """Set the bias of a one-logit output layer to the log-odds of the class prior ``p``.

    With small weights the network then starts out predicting :math:`P(y=1)=p` for every
    input, and its initial log-loss is :math:`H(p)` instead of :math:`\\ln 2`: it does not have
    to spend its first steps learning the class frequencies (Karpathy, "A recipe for training
    neural networks", 2019; Lin et al., "Focal loss", 2017, §4.1).

    Returns:
        The same layer, modified in place.
    """
    if not isinstance(layer, nn.Linear) or layer.out_features != 1:
        raise TypeError("layer must be an nn.Linear with out_features=1 (one logit)")
    if layer.bias is None:
        raise ValueError("layer has no bias to initialise; create it with bias=True")
    with torch.no_grad():
        layer.bias.fill_(prior_log_odds(p))
    return layer


# --------------------------------------------------------------------------------------------
# 5. weight decay skips biases and normalisation gains
# --------------------------------------------------------------------------------------------
def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups that apply weight decay to matrices only.

    The rule of nanoGPT's ``configure_optimizers`` (minGPT's also spares the embeddings): every
    parameter with two or more dimensions (the weights of ``Linear``, ``Conv``, ``Embedding``) is
    decayed; every 1-D parameter (biases, LayerNorm/RMSNorm gains and shifts, BatchNorm's
    :math:`\\gamma, \\beta`) is not. Decay pulls a parameter towards 0, which is a sensible prior
    for a weight (it shrinks the function) but not for a bias or a gain, whose right value is set
    by the data (a class prior, a scale of 1), not by "small".

    Args:
        model: any module; parameters with ``requires_grad=False`` are left out.
        weight_decay: the decay of the first group, ``>= 0``.

    Returns:
        ``[{"params": decayed, "weight_decay": weight_decay},
        {"params": not_decayed, "weight_decay": 0.0}]``, ready for ``torch.optim.AdamW``.

    References:
        Loshchilov & Hutter (2019), "Decoupled weight decay regularization", ICLR;
        Karpathy, nanoGPT ``model.py`` ``configure_optimizers``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    weight_decay = check_nonnegative("weight_decay", weight_decay)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters to put into groups")
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
