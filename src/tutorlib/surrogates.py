r"""Optimising what you measure: the code behind the chapter ``book/surrogates.md``.

Accuracy and F1 count hard decisions, :math:`\hat y_i = \mathbb{1}[p_i \ge t]`. As functions
of the model's parameters they are piecewise constant: their gradient is zero almost
everywhere, so gradient descent cannot use them. Three ways around it, all here:

1. **Smooth surrogates.** Put the probability :math:`p_i` where the count had
   :math:`\hat y_i`. Soft true positives, false positives and false negatives

   .. math::  \widetilde{TP} = \sum_i p_i y_i,\quad \widetilde{FP} = \sum_i p_i (1-y_i),\quad
              \widetilde{FN} = \sum_i (1-p_i) y_i

   give a soft F1, :math:`2\widetilde{TP}/(2\widetilde{TP}+\widetilde{FP}+\widetilde{FN})`, that
   equals the hard F1 when every :math:`p_i` is 0 or 1.
2. **Relaxed sampling.** The Gumbel-max trick draws :math:`z\sim\mathrm{Cat}(\mathrm{softmax}
   (\theta))` as :math:`\arg\max_k(\theta_k+g_k)` with Gumbel noise :math:`g_k`; Gumbel-softmax
   (Jang et al., 2017; Maddison et al., 2017) replaces the argmax by
   :math:`\mathrm{softmax}((\theta+g)/\tau)`, differentiable and biased, with the bias vanishing
   as the temperature :math:`\tau \to 0`. The straight-through estimator (Bengio et al., 2013)
   uses the hard value forwards and the soft one's gradient backwards.
3. **The metric as a reward.** Sample hard decisions from the model and push up the
   log-probability of those that scored well (REINFORCE, Williams, 1992): unbiased, noisy.

Legend (code name -> symbol): ``probs`` -> :math:`p_i`, ``y`` -> :math:`y_i\in\{0,1\}`,
``threshold`` -> :math:`t`, ``theta`` -> :math:`\theta`, ``f`` -> :math:`f(k)`, ``tau`` ->
:math:`\tau`, ``gumbels`` -> :math:`g`, ``baseline`` -> :math:`b`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from tutorlib.validation import check_int, check_positive

__all__ = [
    "EstimatorStats",
    "ImbalancedData",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "best_threshold",
    "estimator_stats",
    "exact_gradient",
    "expectation",
    "f1_score",
    "gumbel_max",
    "gumbel_softmax",
    "gumbel_softmax_gradients",
    "leave_one_out_baseline",
    "make_imbalanced",
    "predict",
    "reinforce_f1_loss",
    "reinforce_gradients",
    "sample_gumbel",
    "soft_accuracy",
    "soft_confusion",
    "soft_f1",
    "soft_f1_loss",
    "straight_through",
    "straight_through_f1_loss",
    "straight_through_threshold",
    "train_classifier",
]


# --------------------------------------------------------------------------------------------
# argument checks (private; the shared ones come from tutorlib.validation)
# --------------------------------------------------------------------------------------------
def _float_tensor(name: str, x: object, ndim: int | tuple[int, ...]) -> torch.Tensor:
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.ndim not in ndims or x.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty tensor with {ndims} dimensions, got shape {tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite, got NaN or inf")
    return x


def _probs(name: str, p: object, ndim: int | tuple[int, ...] = 1) -> torch.Tensor:
    p = _float_tensor(name, p, ndim)
    if (p < 0).any() or (p > 1).any():
        low, high = p.min().item(), p.max().item()
        raise ValueError(f"{name} must lie in [0, 1], got values in [{low:.3g}, {high:.3g}]")
    return p


def _labels(name: str, y: object, n: int) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of 0/1 labels, got {type(y).__name__}")
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the predictions, got {tuple(y.shape)}")
    if not torch.all((y == 0) | (y == 1)):
        raise ValueError(f"{name} must hold binary labels 0 or 1")
    return y


def _decisions(pred: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(pred, torch.Tensor) or pred.ndim != 1 or pred.numel() == 0:
        raise ValueError(f"pred must be a non-empty tensor of shape (N,), got {pred!r:.60}")
    return _labels("pred", pred, pred.shape[0]), _labels("y", y, pred.shape[0])


def _threshold(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise TypeError(f"threshold must be a real number, got {type(threshold).__name__} {threshold!r}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    return float(threshold)


def _generator(generator: object) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


# --------------------------------------------------------------------------------------------
# 1. the hard metrics: piecewise constant in the parameters
# --------------------------------------------------------------------------------------------
def predict(probs: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    r"""Hard decisions :math:`\hat y_i = \mathbb{1}[p_i \ge t]`, shape ``(N,)``, dtype of ``probs``.

    ``>=`` as in scikit-learn's ``precision_recall_curve``. The comparison has no gradient: this
    step is what makes accuracy and F1 piecewise constant.
    """
    probs = _probs("probs", probs)
    return (probs >= _threshold(threshold)).to(probs.dtype)


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    r"""Fraction of correct hard decisions, :math:`\frac1N\sum_i \mathbb{1}[\hat y_i = y_i]`.

    Args:
        pred: 0/1 predictions, shape ``(N,)``.
        y: 0/1 labels, shape ``(N,)``.
    """
    pred, y = _decisions(pred, y)
    return (pred == y).double().mean().item()


def f1_score(pred: torch.Tensor, y: torch.Tensor) -> float:
    r"""Hard F1 of the positive class, :math:`2TP/(2TP+FP+FN)`; 0 when there is no positive at all.

    The same as ``sklearn.metrics.f1_score(y, pred, zero_division=0)``.

    Args:
        pred: 0/1 predictions, shape ``(N,)``.
        y: 0/1 labels, shape ``(N,)``.
    """
    pred, y = _decisions(pred, y)
    pred, y = pred.double(), y.double()
    tp, fp, fn = (pred * y).sum(), (pred * (1 - y)).sum(), ((1 - pred) * y).sum()
    denominator = (2 * tp + fp + fn).item()
    return 0.0 if denominator == 0 else (2 * tp).item() / denominator


def best_threshold(probs: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    r"""The threshold :math:`t` that maximises the hard F1 of :math:`\mathbb{1}[p_i \ge t]`, exactly.

    F1 only changes when :math:`t` crosses a score, so it suffices to try every distinct score:
    sort the scores in decreasing order; predicting the top :math:`k` positive gives
    :math:`TP_k` = positives among them, :math:`FP_k = k - TP_k`, :math:`FN_k = P - TP_k`.
    :math:`O(N \log N)`. Lipton et al. (2014) show that for calibrated scores the optimal
    threshold is half the optimal F1, :math:`t^\star = F1^\star/2`.

    Args:
        probs: scores in ``[0, 1]``, shape ``(N,)``.
        y: 0/1 labels, shape ``(N,)``.

    Returns:
        ``(threshold, f1)``: the best threshold (a score of the data) and the F1 it reaches.

    References:
        Lipton, Elkan, Naryanaswamy. Optimal thresholding of classifiers to maximize F1
        measure. ECML PKDD 2014.
    """
    probs = _probs("probs", probs)
    y = _labels("y", y, probs.shape[0])
    order = torch.argsort(probs.double(), descending=True, stable=True)
    p_sorted, y_sorted = probs.double()[order], y.double()[order]
    tp = torch.cumsum(y_sorted, 0)  # (N,) TP_k when the top k are called positive
    k = torch.arange(1, len(p_sorted) + 1, dtype=torch.float64)
    f1 = 2 * tp / (k + y_sorted.sum())  # 2TP / (2TP + FP + FN) = 2TP / (k + P)
    # ties: a threshold can only cut after the last of a run of equal scores
    last_of_tie = torch.ones_like(p_sorted, dtype=torch.bool)
    last_of_tie[:-1] = p_sorted[1:] < p_sorted[:-1]
    f1 = torch.where(last_of_tie, f1, torch.zeros_like(f1))
    best = int(torch.argmax(f1))
    return p_sorted[best].item(), f1[best].item()


# --------------------------------------------------------------------------------------------
# 2. smooth surrogates: probabilities in place of counts
# --------------------------------------------------------------------------------------------
def soft_confusion(probs: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Soft counts :math:`(\widetilde{TP}, \widetilde{FP}, \widetilde{FN})` with gradient.

    .. math::  \widetilde{TP} = \sum_i p_i y_i,\quad \widetilde{FP} = \sum_i p_i(1-y_i),\quad
               \widetilde{FN} = \sum_i (1-p_i) y_i.

    Each is the expected count when :math:`\hat y_i \sim \mathrm{Bernoulli}(p_i)`, and the hard
    count when :math:`p_i \in \{0, 1\}`.

    Args:
        probs: :math:`p_i`, shape ``(N,)``.
        y: 0/1 labels, shape ``(N,)``.

    Returns:
        Three scalar tensors.
    """
    probs = _probs("probs", probs)
    y = _labels("y", y, probs.shape[0]).to(probs.dtype)
    return (probs * y).sum(), (probs * (1 - y)).sum(), ((1 - probs) * y).sum()


def soft_f1(probs: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    r"""Soft F1, :math:`2\widetilde{TP}/(2\widetilde{TP}+\widetilde{FP}+\widetilde{FN})`, a scalar tensor.

    Differentiable in ``probs``; equal to the hard F1 when every :math:`p_i` is 0 or 1. Note that
    it is a ratio of expectations, not the expected F1 of Bernoulli decisions.

    Args:
        probs: :math:`p_i`, shape ``(N,)``.
        y: 0/1 labels, shape ``(N,)``.
        eps: lower bound on the denominator (all-negative labels and predictions).
    """
    tp, fp, fn = soft_confusion(probs, y)
    eps = check_positive("eps", eps)
    return 2 * tp / (2 * tp + fp + fn).clamp_min(eps)


def soft_f1_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""The loss :math:`1 - \widetilde{F1}(\sigma(s), y)` on logits :math:`s_i`, shape ``(N,)``."""
    logits = _float_tensor("logits", logits, 1)
    return 1 - soft_f1(torch.sigmoid(logits), y)


def soft_accuracy(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Soft accuracy: the mean probability given to the true class, a scalar tensor.

    Binary, ``probs`` of shape ``(N,)`` (the positive class):
    :math:`\frac1N\sum_i p_i y_i + (1-p_i)(1-y_i)`. Multi-class, ``probs`` of shape ``(N, K)``
    and integer labels ``y`` in ``[0, K)``: :math:`\frac1N\sum_i p_{i, y_i}`. It is the expected
    accuracy of decisions sampled from ``probs`` and the hard accuracy for one-hot ``probs``.
    """
    probs = _probs("probs", probs, (1, 2))
    if probs.ndim == 1:
        y = _labels("y", y, probs.shape[0]).to(probs.dtype)
        return (probs * y + (1 - probs) * (1 - y)).mean()
    n, k = probs.shape
    if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int32, torch.int64) or y.shape != (n,):
        raise TypeError(
            f"y must be an integer tensor of shape ({n},) for probs of shape (N, K), got {y!r:.60}"
        )
    if (y < 0).any() or (y >= k).any():
        raise ValueError(
            f"y must hold class indices in [0, {k}), got values in [{y.min().item()}, {y.max().item()}]"
        )
    return probs.gather(1, y[:, None].long()).mean()


# --------------------------------------------------------------------------------------------
# 3. Gumbel-max, Gumbel-softmax and straight-through
# --------------------------------------------------------------------------------------------
def sample_gumbel(shape: tuple[int, ...], generator: torch.Generator | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""Standard Gumbel noise :math:`g = -\log E`, :math:`E \sim \mathrm{Exp}(1)`.

    Equivalently :math:`-\log(-\log U)` with :math:`U` uniform.

    Drawn exactly as ``torch.nn.functional.gumbel_softmax`` draws it, so with the same seed the
    two functions see the same noise.
    """
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise TypeError(f"shape must be a tuple of positive ints, got {shape!r}")
    return -torch.empty(shape, dtype=dtype).exponential_(generator=_generator(generator)).log()


def gumbel_max(logits: torch.Tensor, num_samples: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Exact categorical samples :math:`\arg\max_k(\theta_k+g_k)\sim\mathrm{Cat}(\mathrm{softmax}(\theta))`.

    Args:
        logits: :math:`\theta`, shape ``(K,)``.
        num_samples: ``S``.

    Returns:
        ``(S,)`` integer class indices.
    """
    logits = _float_tensor("logits", logits, 1)
    num_samples = check_int("num_samples", num_samples)
    g = sample_gumbel((num_samples, logits.shape[0]), generator, logits.dtype)  # (S, K)
    return torch.argmax(logits + g, dim=1)


def straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    r"""The straight-through estimator: the value of ``hard``, the gradient of ``soft``.

    Returns :math:`h + (s - \mathrm{sg}(s))`, where :math:`\mathrm{sg}` stops the gradient
    (``detach``). Forwards this is exactly ``hard``, backwards
    :math:`\partial/\partial s = 1`: the non-differentiable step is treated as the identity
    (Bengio, Léonard and Courville, 2013).
    """
    hard = _float_tensor("hard", hard, tuple(range(1, 9)))
    soft = _float_tensor("soft", soft, tuple(range(1, 9)))
    if hard.shape != soft.shape:
        raise ValueError(
            f"hard and soft must have the same shape, got {tuple(hard.shape)} and {tuple(soft.shape)}"
        )
    return hard.detach() + (soft - soft.detach())  # the bracket is exactly 0: value == hard


def straight_through_threshold(probs: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    r"""Hard decisions :math:`\mathbb{1}[p_i \ge t]` with straight-through gradients.

    The gradient pretends the step is the identity: :math:`\partial\hat y_i/\partial p_i = 1`.

    Shape ``(N,)``. Plugging these into the hard F1 formula gives a loss whose value is the real
    F1 and whose gradient is the soft F1's gradient evaluated at the hard decisions.
    """
    return straight_through(predict(probs, threshold), probs)


def straight_through_f1_loss(logits: torch.Tensor, y: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    r"""The loss :math:`1 - F_1(\hat y, y)` of the real decisions, with straight-through gradients.

    The value is exactly one minus the hard F1 at threshold :math:`t`; the gradient is that of
    the F1 formula with respect to the decisions, evaluated at the decisions, passed through
    :math:`\partial\hat y_i/\partial p_i = 1` and :math:`\partial p_i/\partial s_i = p_i(1-p_i)`.
    Biased (the step's true derivative is zero), but it optimises the metric one reports.

    Args:
        logits: :math:`s_i`, shape ``(N,)``.
        y: 0/1 labels, shape ``(N,)``.
        threshold: :math:`t` in ``[0, 1]``.
    """
    logits = _float_tensor("logits", logits, 1)
    y = _labels("y", y, logits.shape[0]).to(logits.dtype)
    decisions = straight_through_threshold(torch.sigmoid(logits), threshold)  # (N,) 0/1 values
    tp, fp, fn = (decisions * y).sum(), (decisions * (1 - y)).sum(), ((1 - decisions) * y).sum()
    return 1 - 2 * tp / (2 * tp + fp + fn).clamp_min(1e-8)


def gumbel_softmax(logits: torch.Tensor, tau: float, hard: bool = False,
                   generator: torch.Generator | None = None,
                   gumbels: torch.Tensor | None = None) -> torch.Tensor:
    r"""Relaxed one-hot samples :math:`y = \mathrm{softmax}((\theta+g)/\tau)` (Jang et al.; Maddison et al.).

    As :math:`\tau \to 0`, :math:`y` tends to the one-hot vector of :math:`\arg\max_k(\theta_k +
    g_k)`, an exact categorical sample; for larger :math:`\tau` it is smoother and its gradient
    less noisy but further from the discrete sample's. With ``hard=True``, the forward value is
    that one-hot vector and the gradient is the relaxed one's (straight-through Gumbel).

    Args:
        logits: :math:`\theta`, shape ``(..., K)``.
        tau: temperature :math:`\tau > 0`.
        hard: straight-through one-hot output.
        generator: for the noise; ignored when ``gumbels`` is given.
        gumbels: Gumbel noise of the same shape as ``logits`` (default: drawn with ``generator``).

    Returns:
        Shape ``(..., K)``; each row sums to 1.

    References:
        Jang, Gu, Poole. Categorical reparameterization with Gumbel-softmax. ICLR 2017.
        Maddison, Mnih, Teh. The concrete distribution. ICLR 2017.
    """
    logits = _float_tensor("logits", logits, tuple(range(1, 9)))
    tau = check_positive("tau", tau)
    if not isinstance(hard, bool):
        raise TypeError(f"hard must be a bool, got {type(hard).__name__}")
    if gumbels is None:
        gumbels = sample_gumbel(tuple(logits.shape), generator, logits.dtype)
    gumbels = _float_tensor("gumbels", gumbels, logits.ndim)
    if gumbels.shape != logits.shape:
        raise ValueError(
            f"gumbels must have the shape of logits {tuple(logits.shape)}, got {tuple(gumbels.shape)}"
        )
    soft = torch.softmax((logits + gumbels) / tau, dim=-1)
    if not hard:
        return soft
    one_hot = torch.zeros_like(soft).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)
    return straight_through(one_hot, soft)


# --------------------------------------------------------------------------------------------
# 4. gradient estimators on a categorical toy with an exact answer
# --------------------------------------------------------------------------------------------
def _toy(theta: object, f: object) -> tuple[torch.Tensor, torch.Tensor]:
    theta = _float_tensor("theta", theta, 1)
    f = _float_tensor("f", f, 1)
    if f.shape != theta.shape:
        raise ValueError(
            f"f must have shape {tuple(theta.shape)} like theta (one value per class), got {tuple(f.shape)}"
        )
    return theta, f.to(theta.dtype)


def expectation(theta: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    r"""The objective :math:`J(\theta) = \mathbb{E}_{z\sim\mathrm{Cat}(\pi)}[f(z)] = \sum_k \pi_k f(k)`.

    Here :math:`\pi = \mathrm{softmax}(\theta)`.

    Args:
        theta: logits, shape ``(K,)``.
        f: the value :math:`f(k)` of each class, shape ``(K,)``.
    """
    theta, f = _toy(theta, f)
    return torch.softmax(theta, 0) @ f


def exact_gradient(theta: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    r"""Closed form :math:`\nabla_\theta J = \pi \odot (f - \pi^\top f)`, shape ``(K,)``.

    With :math:`\pi = \mathrm{softmax}(\theta)`, :math:`\partial \pi_j / \partial \theta_k =
    \pi_j(\delta_{jk} - \pi_k)`, so
    :math:`\partial J/\partial\theta_k = \pi_k f(k) - \pi_k \sum_j \pi_j f(j)`.
    """
    theta, f = _toy(theta, f)
    pi = torch.softmax(theta, 0)
    return pi * (f - pi @ f)


def reinforce_gradients(theta: torch.Tensor, f: torch.Tensor, num_samples: int, baseline: float = 0.0,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Per-sample score-function (REINFORCE) estimates of :math:`\nabla_\theta J`, shape ``(S, K)``.

    .. math::  \hat g = (f(z) - b)\,\nabla_\theta \log \pi_z = (f(z) - b)(e_z - \pi),
               \qquad z \sim \mathrm{Cat}(\pi).

    Unbiased for any constant :math:`b`, since :math:`\mathbb{E}[e_z - \pi] = 0`.
    """
    theta, f = _toy(theta, f)
    num_samples = check_int("num_samples", num_samples)
    if isinstance(baseline, bool) or not isinstance(baseline, int | float) or not math.isfinite(baseline):
        raise TypeError(f"baseline must be a finite real number, got {baseline!r}")
    pi = torch.softmax(theta.detach(), 0)
    z = torch.multinomial(pi, num_samples, replacement=True, generator=_generator(generator))  # (S,)
    one_hot = nn.functional.one_hot(z, theta.shape[0]).to(theta.dtype)  # (S, K)
    return (f[z] - baseline)[:, None] * (one_hot - pi)


def gumbel_softmax_gradients(theta: torch.Tensor, f: torch.Tensor, tau: float, num_samples: int,
                             generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Per-sample Gumbel-softmax (reparameterised) estimates, shape ``(S, K)``.

    .. math::  \hat g = \nabla_\theta\, f^\top \mathrm{softmax}\bigl((\theta + g)/\tau\bigr),
               \qquad g_k \sim \mathrm{Gumbel}(0, 1),

    with :math:`f` extended linearly from the corners of the simplex to relaxed samples. Its mean
    is the gradient of :math:`\mathbb{E}_g[f^\top y]`, not of :math:`J`: biased for every
    :math:`\tau > 0`. Straight-through Gumbel has the same gradient here, since :math:`f` is linear.
    """
    theta, f = _toy(theta, f)
    tau = check_positive("tau", tau)
    num_samples = check_int("num_samples", num_samples)
    g = sample_gumbel((num_samples, theta.shape[0]), generator, theta.dtype)  # (S, K)
    thetas = theta.detach().expand(num_samples, -1).clone().requires_grad_(True)  # (S, K)
    values = gumbel_softmax(thetas, tau, gumbels=g) @ f  # (S,), row s depends on thetas[s] only
    (grad,) = torch.autograd.grad(values.sum(), thetas)
    return grad


@dataclass(frozen=True)
class EstimatorStats:
    """Bias and spread of a gradient estimator, from ``S`` per-sample estimates.

    Attributes:
        bias: :math:`\\lVert \\bar g - \\nabla J \\rVert`, norm of the mean's error.
        bias_stderr: its standard error scale, :math:`\\sqrt{\\mathrm{tr\\,Cov}/S}`.
        std: :math:`\\sqrt{\\mathrm{tr\\,Cov}[\\hat g]}`, the spread of one estimate.
        rmse: :math:`\\sqrt{\\mathbb{E}\\lVert \\hat g - \\nabla J\\rVert^2}`
            :math:`= \\sqrt{\\text{bias}^2 + \\text{std}^2}`.
    """

    bias: float
    bias_stderr: float
    std: float
    rmse: float

    def __post_init__(self) -> None:
        for name in ("bias", "bias_stderr", "std", "rmse"):
            check_positive(name, getattr(self, name), allow_zero=True)


def estimator_stats(samples: torch.Tensor, exact: torch.Tensor) -> EstimatorStats:
    """Bias, its standard error, spread and RMSE of estimates ``(S, K)`` against ``exact`` ``(K,)``."""
    samples = _float_tensor("samples", samples, 2)
    exact = _float_tensor("exact", exact, 1)
    if samples.shape[0] < 2 or samples.shape[1] != exact.shape[0]:
        raise ValueError(f"samples must have shape (S >= 2, {exact.shape[0]}), got {tuple(samples.shape)}")
    samples, exact = samples.double(), exact.double()
    variance = samples.var(dim=0).sum().item()
    bias = (samples.mean(0) - exact).norm().item()
    return EstimatorStats(bias=bias, bias_stderr=math.sqrt(variance / samples.shape[0]),
                          std=math.sqrt(variance), rmse=math.sqrt(bias**2 + variance))


# --------------------------------------------------------------------------------------------
# 5. REINFORCE with the batch's F1 as the reward
# --------------------------------------------------------------------------------------------
def leave_one_out_baseline(rewards: torch.Tensor) -> torch.Tensor:
    r"""For each of :math:`K` rewards, the mean of the others: :math:`b_k = \frac{1}{K-1}\sum_{j\ne k} R_j`.

    It does not depend on sample :math:`k`, so it keeps the estimator unbiased (RLOO).
    """
    rewards = _float_tensor("rewards", rewards, 1)
    if rewards.shape[0] < 2:
        raise ValueError(f"rewards needs at least 2 entries for a leave-one-out mean, got {rewards.shape[0]}")
    return (rewards.sum() - rewards) / (rewards.shape[0] - 1)


def reinforce_f1_loss(logits: torch.Tensor, y: torch.Tensor, num_samples: int,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""REINFORCE surrogate with the F1 of a whole sampled labelling as the reward.

    Draw :math:`K` labellings :math:`\hat y^{(k)}_i \sim \mathrm{Bernoulli}(\sigma(s_i))`, score
    each with :math:`R_k = F1(\hat y^{(k)}, y)` and return

    .. math::  L = -\frac1K \sum_k (R_k - b_k)\, \log p_\theta(\hat y^{(k)}),\qquad
               \log p_\theta(\hat y) = \sum_i \hat y_i \log\sigma(s_i) + (1-\hat y_i)\log(1-\sigma(s_i)),

    with the leave-one-out baseline :math:`b_k`. :math:`-\nabla L` is an unbiased estimate of
    :math:`\nabla_\theta \mathbb{E}[F1(\hat y, y)]`.

    Args:
        logits: :math:`s_i`, shape ``(N,)``, with gradient.
        y: 0/1 labels, shape ``(N,)``.
        num_samples: :math:`K \ge 2`.

    Returns:
        ``(loss, rewards)``: the scalar surrogate and the ``(K,)`` F1 rewards (detached).

    References:
        Williams. Simple statistical gradient-following algorithms for connectionist
        reinforcement learning. Machine Learning 8, 1992.
    """
    logits = _float_tensor("logits", logits, 1)
    y = _labels("y", y, logits.shape[0]).to(logits.dtype)
    num_samples = check_int("num_samples", num_samples, minimum=2)
    probs = torch.sigmoid(logits.detach()).expand(num_samples, -1)  # (K, N)
    samples = torch.bernoulli(probs, generator=_generator(generator))  # (K, N)
    tp = samples @ y  # (K,)
    denominator = samples.sum(1) + y.sum()  # 2TP + FP + FN = predicted positives + positives
    rewards = torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), torch.zeros_like(tp))
    log_prob = -nn.functional.binary_cross_entropy_with_logits(
        logits.expand(num_samples, -1), samples, reduction="none").sum(1)  # (K,)
    advantages = rewards - leave_one_out_baseline(rewards)
    return -(advantages.detach() * log_prob).mean(), rewards


# --------------------------------------------------------------------------------------------
# 6. the chapter's experiment: an imbalanced problem, four ways to train for F1
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImbalancedData:
    """Standardised features and 0/1 labels, split into train / validation / test (float32 tensors)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def __post_init__(self) -> None:
        d = None
        for split in ("train", "val", "test"):
            x = _float_tensor(f"x_{split}", getattr(self, f"x_{split}"), 2)
            if d is not None and x.shape[1] != d:
                raise ValueError(f"x_{split} must have {d} features like x_train, got shape {tuple(x.shape)}")
            d = x.shape[1]
            y = _labels(f"y_{split}", getattr(self, f"y_{split}"), x.shape[0])
            if not y.is_floating_point():
                raise TypeError(f"y_{split} must be a float tensor of 0/1 labels (as x), got {y.dtype}")


def make_imbalanced(n: int = 8000, positive_fraction: float = 0.05, class_sep: float = 0.6,
                    seed: int = 0) -> ImbalancedData:
    """scikit-learn's ``make_classification`` with few positives, split 50 / 25 / 25 %.

    20 features (5 informative, 5 redundant, 10 noise), no flipped labels; the smaller
    ``class_sep``, the more the classes overlap. Features are standardised with the training
    split's mean and std.
    """
    from sklearn.datasets import make_classification

    n = check_int("n", n, minimum=40)
    positive_fraction = check_positive("positive_fraction", positive_fraction)
    if positive_fraction >= 0.5:
        raise ValueError(f"positive_fraction must be below 0.5 (the rare class), got {positive_fraction}")
    class_sep = check_positive("class_sep", class_sep)
    seed = check_int("seed", seed, minimum=0)
    x, y = make_classification(n_samples=n, n_features=20, n_informative=5, n_redundant=5,
                               weights=[1 - positive_fraction], flip_y=0.0, class_sep=class_sep,
                               random_state=seed)  # rows come shuffled
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    a, b = n // 2, 3 * n // 4
    mean, std = x[:a].mean(0), x[:a].std(0)
    x = (x - mean) / std
    return ImbalancedData(x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:])


_LOSSES = ("ce", "soft_f1", "st_f1", "reinforce_f1")


@dataclass
class TrainConfig:
    """How to train the classifier (logistic regression by default; full batch, Adam)."""

    loss: str = "ce"
    """``"ce"`` (binary cross-entropy), ``"soft_f1"``, ``"st_f1"`` (straight-through F1) or
    ``"reinforce_f1"``."""
    steps: int = 300
    """full-batch Adam steps."""
    lr: float = 5e-2
    """Adam's learning rate."""
    num_samples: int = 16
    """labellings per step for ``"reinforce_f1"``."""
    hidden: int = 0
    """width of one ReLU hidden layer; 0 for a linear model (logistic regression)."""
    seed: int = 0
    """initial weights and REINFORCE's samples."""

    def __post_init__(self) -> None:
        if self.loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}, got {self.loss!r}")
        check_int("steps", self.steps)
        check_positive("lr", self.lr)
        check_int("num_samples", self.num_samples, minimum=2)
        check_int("hidden", self.hidden, minimum=0)
        check_int("seed", self.seed, minimum=0)


@dataclass
class TrainResult:
    """What :func:`train_classifier` returns."""

    model: nn.Module
    """the trained network, logits of shape ``(N, 1)``."""
    curve: list[float]
    """training objective before each step: the loss, or the mean F1 reward for REINFORCE."""
    val_f1: list[float]
    """hard F1 (threshold 0.5) on the validation split before each step."""


def train_classifier(data: ImbalancedData, config: TrainConfig) -> TrainResult:
    """Train a small network on ``data.x_train`` with the loss ``config.loss``; see :class:`TrainConfig`."""
    if not isinstance(data, ImbalancedData):
        raise TypeError(f"data must be an ImbalancedData, got {type(data).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.__post_init__()  # fields may have been changed after construction
    torch.manual_seed(config.seed)
    d = data.x_train.shape[1]
    if config.hidden == 0:
        model: nn.Module = nn.Linear(d, 1)
    else:
        model = nn.Sequential(nn.Linear(d, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 1))
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    x, y = data.x_train, data.y_train
    curve, val_f1 = [], []
    for _ in range(config.steps):
        with torch.no_grad():
            val_f1.append(f1_score(predict(torch.sigmoid(model(data.x_val).squeeze(-1))), data.y_val))
        logits = model(x).squeeze(-1)  # (N,)
        if config.loss == "ce":
            loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
            curve.append(loss.item())
        elif config.loss == "soft_f1":
            loss = soft_f1_loss(logits, y)
            curve.append(loss.item())
        elif config.loss == "st_f1":
            loss = straight_through_f1_loss(logits, y)
            curve.append(loss.item())
        else:
            loss, rewards = reinforce_f1_loss(logits, y, config.num_samples, generator)
            curve.append(rewards.mean().item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return TrainResult(model=model, curve=curve, val_f1=val_f1)

