"""Reinforcement learning for language models: the code behind ``book/rl_language_models.md``.

A language model is a policy: given a prompt :math:`x` it writes an answer
:math:`y = (y_1, \\dots, y_T)` one token at a time, with probability

.. math::  \\pi_\\theta(y \\mid x) = \\prod_{t=1}^{T} \\pi_\\theta(y_t \\mid x, y_{<t}).

When the answer can be checked by a program (a sum, a unit test), the check is the reward
:math:`r(x, y) \\in \\{0, 1\\}` and we can train the policy with policy gradients, without a
human label per answer. Both recipes here sample a *group* of :math:`k` answers per prompt and
use the group itself as the baseline, so neither needs a value network:

- **Kimi k1.5** (Kimi Team 2025, §2.3.2): a squared loss
  :math:`\\big(r_j - \\bar r - \\tau \\log \\tfrac{\\pi_\\theta(y_j|x)}{\\pi_{\\theta_i}(y_j|x)}\\big)^2`
  whose gradient is the policy gradient with the group-mean baseline :math:`\\bar r` plus an
  :math:`\\ell_2` penalty on the log-ratio; and a length reward (§2.3.3).
  :func:`kimi_loss`, :func:`kimi_length_reward`.
- **GRPO** (Shao et al. 2024, DeepSeekMath §4.1): PPO's clipped ratio with advantages
  normalised within the group, :math:`(r_j - \\mathrm{mean}\\, r)/\\mathrm{std}\\, r`, and a KL
  penalty to a frozen reference policy estimated per token with the "k3" estimator.
  :func:`grpo_loss`, :func:`group_normalised_advantages`, :func:`k3_kl`.

To ask whether RL teaches new answers or only makes the known ones likelier, :func:`pass_at_k`
estimates pass@k, the chance that at least one of :math:`k` sampled answers is right, without
bias from :math:`n \\ge k` samples (Chen et al. 2021, Codex, §2.1).

In the paper an answer is a pair :math:`(y, z)` of a chain of thought :math:`z` and a final
answer :math:`y`; our answers have no separate chain of thought, so :math:`y` is the whole
completion (:mod:`tutorlib.scratchpad` adds a task whose answers have one).

The toy task (:class:`AdditionTask`) is "a+b=": the policy must write the digits of
:math:`a + b` and an end token. A verifier (:func:`addition_reward`) parses the answer, so
leading zeros are allowed: ``"007<eos>"`` is a correct, longer way to write 7. The policy
(:class:`WindowPolicy`) is a small MLP language model over the whole window.

Shapes: ``B`` prompts, ``k`` answers per prompt, ``T`` answer tokens (``max_new_tokens``),
``L`` prompt tokens, ``V`` vocabulary. Per-token tensors are ``(B, k, T)`` with a boolean
``mask`` that is true on the tokens of the answer (up to and including the end token).

Legend (code name -> symbol): ``logp`` -> :math:`\\log\\pi_\\theta(y_{j,t}|x, y_{j,<t})`,
``logp_old`` -> the same under the policy that sampled the answers (:math:`\\pi_{\\theta_i}` in
Kimi k1.5, :math:`\\pi_{\\theta_{old}}` in GRPO), ``logp_ref`` -> under the frozen reference
:math:`\\pi_{ref}`, ``rewards`` -> :math:`r_j`, ``tau`` -> :math:`\\tau`, ``beta`` ->
:math:`\\beta`, ``clip_eps`` -> :math:`\\varepsilon`, ``length_weight`` -> the weight of the
length reward, :math:`w`.

References:
    Kimi Team (2025), Kimi k1.5: Scaling reinforcement learning with LLMs, §2.3.
    Shao et al. (2024), DeepSeekMath, §4.1 (GRPO). Schulman et al. (2017), PPO.
    Schulman (2020), Approximating KL divergence (the k3 estimator).
    Williams (1992), REINFORCE.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tutorlib.validation import (
    check_choice,
    check_fields,
    check_int,
    check_nonnegative,
    check_positive,
    check_tensor,
)

__all__ = [
    "EOS",
    "EQUALS",
    "N_ACTIONS",
    "PAD",
    "PLUS",
    "PRIORITY_FLOOR",
    "TOKEN_TEXT",
    "VOCAB_SIZE",
    "AdditionTask",
    "RLConfig",
    "RLHistory",
    "WarmupConfig",
    "WindowPolicy",
    "addition_reward",
    "answer_log_probs",
    "digits",
    "encode_answers",
    "evaluate",
    "group_log_mean_exp_baseline",
    "group_mean_baseline",
    "group_normalised_advantages",
    "grpo_loss",
    "k3_kl",
    "kimi_length_reward",
    "kimi_loss",
    "pass_at_k",
    "prioritised_prompts",
    "sample_answers",
    "train_rl",
    "warmup_policy",
]

#: Token ids: the digits are their own ids; then "+", "=", the end token and padding.
PLUS, EQUALS, EOS, PAD = 10, 11, 12, 13
#: Tokens the policy can write (digits, "+", "=", end). PAD only fills positions after the end.
N_ACTIONS = 13
VOCAB_SIZE = 14
TOKEN_TEXT = [*"0123456789", "+", "=", "·", "_"]  # "·" marks the end token in printouts
#: Smallest sampling weight 1 - s_i of a prompt under prioritised sampling (a solved prompt
#: is still drawn now and then, so its success rate can be updated if it is forgotten).
PRIORITY_FLOOR = 0.02


# --------------------------------------------------------------------------------------------
# argument checks shared by the public functions
# --------------------------------------------------------------------------------------------
def _tensor(name: str, x: object, ndim: int, shape_hint: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape_hint}, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_hint}, got {tuple(x.shape)}")
    return x


def _check_rewards(rewards: object, name: str = "rewards") -> torch.Tensor:
    rewards = _tensor(name, rewards, 2, "(B, k)")
    if not rewards.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {rewards.dtype}")
    B, k = rewards.shape
    if B == 0:
        raise ValueError(f"{name} has no groups (shape {tuple(rewards.shape)}); need B >= 1 prompts")
    if k < 2:
        raise ValueError(
            f"{name} has k={k} answers per prompt; a group baseline needs k >= 2 (with k=1 the "
            "answer is its own baseline and every advantage is 0)"
        )
    if not torch.isfinite(rewards).all():
        raise ValueError(f"{name} must be finite, got {rewards}")
    return rewards


def _check_tokens(logp: object, mask: object, rewards: torch.Tensor, **others: object) -> None:
    B, k = rewards.shape
    logp = _tensor("logp", logp, 3, "(B, k, T)")
    if logp.shape[:2] != (B, k):
        raise ValueError(f"logp has shape {tuple(logp.shape)}; expected (B, k, T) = ({B}, {k}, T) "
                         "to match rewards")
    mask = _tensor("mask", mask, 3, "(B, k, T)")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    for name, value in {"mask": mask, "logp": logp, **others}.items():
        value = _tensor(name, value, 3, "(B, k, T)")
        if value.shape != logp.shape:
            raise ValueError(f"{name} has shape {tuple(value.shape)}; expected {tuple(logp.shape)} "
                             "like logp")
        if name != "mask":
            check_tensor(name, value)  # float, finite
    lengths = mask.sum(-1)
    if (lengths == 0).any():
        raise ValueError("mask marks an empty answer (no token at all) for at least one sample; "
                         "every answer has at least its end token")


# --------------------------------------------------------------------------------------------
# 1. group baselines
# --------------------------------------------------------------------------------------------
def group_mean_baseline(rewards: torch.Tensor) -> torch.Tensor:
    """Advantages with the mean reward of the group as baseline: :math:`r_j - \\bar r`.

    .. math::  A_j = r_j - \\bar r, \\qquad \\bar r = \\frac1k \\sum_{l=1}^{k} r_l,

    the baseline of Kimi k1.5 (§2.3.2), which replaces :math:`\\tau \\log Z` by the empirical
    mean of the :math:`k` sampled rewards.

    Args:
        rewards: ``(B, k)``, :math:`k \\ge 2` answers for each of ``B`` prompts.

    Returns:
        ``(B, k)`` advantages; each row sums to zero.
    """
    rewards = _check_rewards(rewards)
    return rewards - rewards.mean(dim=1, keepdim=True)


def group_log_mean_exp_baseline(rewards: torch.Tensor, tau: float) -> torch.Tensor:
    """Advantages with Kimi's sample estimate of :math:`\\tau \\log Z` as baseline.

    .. math::  A_j = r_j - b, \\qquad
               b = \\tau \\log \\frac1k \\sum_{l=1}^{k} e^{r_l/\\tau},

    the log-mean-exp that Kimi k1.5 (§2.3.2) derives first: the optimum of the KL-regularised
    problem is :math:`\\pi^* = \\pi_{\\theta_i} e^{r/\\tau}/Z` with
    :math:`Z = \\mathbb{E}_{y\\sim\\pi_{\\theta_i}}[e^{r(x,y)/\\tau}]`, and ``b`` is the plug-in
    estimate of :math:`\\tau\\log Z` from the group. As :math:`\\tau\\to\\infty` it tends to the
    mean reward (:func:`group_mean_baseline`); as :math:`\\tau \\to 0` to the group's best reward.
    Computed with ``logsumexp`` (no overflow for small :math:`\\tau`).

    Args:
        rewards: ``(B, k)``, :math:`k \\ge 2`.
        tau: :math:`\\tau > 0`, Kimi's regulariser (not attention's softmax scale).

    Returns:
        ``(B, k)`` advantages; every one is at most :math:`\\max_l r_l - \\bar r` and their
        mean is :math:`\\bar r - b \\le 0` (Jensen).
    """
    rewards = _check_rewards(rewards)
    tau = check_positive("tau", tau)
    k = rewards.shape[1]
    baseline = tau * (torch.logsumexp(rewards / tau, dim=1, keepdim=True) - math.log(k))
    return rewards - baseline


def group_normalised_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's outcome advantages: rewards standardised within each group of :math:`k` answers.

    .. math::  \\hat A_j = \\frac{r_j - \\mathrm{mean}(r_1, \\dots, r_k)}
                                 {\\mathrm{std}(r_1, \\dots, r_k) + \\varepsilon}

    (DeepSeekMath §4.1.2, "outcome supervision"); every token of answer :math:`j` gets
    :math:`\\hat A_j`. ``std`` is the sample standard deviation (divisor :math:`k-1`), as in
    TRL's ``GRPOTrainer``; the paper does not say which. A group whose answers all have the
    same reward (all right or all wrong) has :math:`\\hat A = 0`: it teaches nothing.

    Args:
        rewards: ``(B, k)`` with :math:`k \\ge 2`.
        eps: :math:`\\varepsilon \\ge 0`, keeps the division finite; with ``eps=0`` a constant group
            still gets advantages 0.

    Returns:
        ``(B, k)``: each row has mean 0 and, when ``eps=0`` and the rewards differ, sample
        standard deviation 1.
    """
    rewards = _check_rewards(rewards)
    eps = check_positive("eps", eps, allow_zero=True)
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)  # (B, 1), divisor k - 1
    # A constant group gets exactly 0 (its mean may differ from its values by one rounding step,
    # which ``std > 0`` alone would blow up to +-0.8).
    constant = rewards.amax(dim=1, keepdim=True) == rewards.amin(dim=1, keepdim=True)
    # With eps = 0, rewards that differ by ~1e-200 have a std (even a mean) that underflows. There,
    # map the group's range onto [0, 1] first: standardising ignores shift and scale, so the
    # result is the same number, computed without underflow.
    tiny = (std < torch.finfo(std.dtype).tiny ** 0.5) & ~constant
    if eps == 0 and bool(tiny.any()):
        low, high = rewards.amin(dim=1, keepdim=True), rewards.amax(dim=1, keepdim=True)
        unit = (rewards - low) / torch.where(tiny, high - low, torch.ones_like(high))  # in [0, 1]
        unit_centred = unit - unit.mean(dim=1, keepdim=True)
        centred = torch.where(tiny, unit_centred, centred)
        std = torch.where(tiny, unit_centred.std(dim=1, keepdim=True), std)
    scale = torch.where(constant, torch.ones_like(std), std + eps)
    return (centred / scale).masked_fill(constant, 0.0)


# --------------------------------------------------------------------------------------------
# 2. Kimi k1.5: squared log-ratio objective and length reward
# --------------------------------------------------------------------------------------------
def kimi_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    mask: torch.Tensor,
    rewards: torch.Tensor,
    tau: float,
    baseline: str = "mean",
) -> torch.Tensor:
    """Kimi k1.5's policy-optimisation loss (Kimi Team 2025, §2.3.2).

    In iteration :math:`i` the policy :math:`\\pi_{\\theta_i}` samples :math:`k` answers
    :math:`y_1, \\dots, y_k` per prompt and becomes the reference of a KL-regularised problem,
    :math:`\\max_\\theta \\mathbb{E}[r] - \\tau\\,\\mathrm{KL}(\\pi_\\theta \\| \\pi_{\\theta_i})`.
    Its optimum satisfies :math:`r - \\tau\\log Z = \\tau \\log(\\pi^*/\\pi_{\\theta_i})`; the
    surrogate loss asks :math:`\\pi_\\theta` to satisfy it, with the mean reward of the group
    :math:`\\bar r` in place of :math:`\\tau \\log Z`:

    .. math::  L(\\theta) = \\frac{1}{Bk} \\sum_{b,j} \\Big( r_j - \\bar r
               - \\tau \\log\\frac{\\pi_\\theta(y_j \\mid x)}{\\pi_{\\theta_i}(y_j \\mid x)} \\Big)^2 .

    With :math:`\\ell_j = \\log\\pi_\\theta(y_j|x) - \\log\\pi_{\\theta_i}(y_j|x)` (a sum over the
    answer's tokens), :math:`\\nabla\\ell_j = \\nabla\\log\\pi_\\theta(y_j|x)` and

    .. math::  \\nabla L = -2\\tau \\cdot \\frac1{Bk}\\sum_{b,j} \\Big[
               (r_j - \\bar r)\\, \\nabla \\log\\pi_\\theta(y_j|x)
               - \\frac{\\tau}{2} \\nabla \\ell_j^2 \\Big],

    i.e. minus :math:`2\\tau` times the paper's gradient: REINFORCE with the group-mean baseline
    plus an :math:`\\ell_2` penalty that pulls the log-ratio back to 0. At the first gradient
    step of an iteration :math:`\\ell_j = 0` and only the policy-gradient term is left. There is
    no value network, no clipping and no per-token weighting. A length reward
    (:func:`kimi_length_reward`) is simply added to ``rewards`` before calling this.

    Args:
        logp: ``(B, k, T)`` token log-probabilities of the sampled answers under
            :math:`\\pi_\\theta` (with gradient).
        logp_old: ``(B, k, T)`` the same under :math:`\\pi_{\\theta_i}`, the policy that sampled
            them (no gradient). Note: Kimi's "reference" is this policy, refreshed every
            iteration, not a frozen model.
        mask: ``(B, k, T)`` bool, true on answer tokens.
        rewards: ``(B, k)`` rewards, :math:`k \\ge 2`.
        tau: :math:`\\tau > 0`, the strength of the regulariser.
        baseline: ``"mean"`` (the paper's :math:`\\bar r`, :func:`group_mean_baseline`) or
            ``"log_mean_exp"`` (its first estimate of :math:`\\tau\\log Z`,
            :func:`group_log_mean_exp_baseline`).

    Returns:
        The scalar loss :math:`L(\\theta)`, to minimise.
    """
    rewards = _check_rewards(rewards)
    _check_tokens(logp, mask, rewards, logp_old=logp_old)
    tau = check_positive("tau", tau)
    check_choice("baseline", baseline, ("mean", "log_mean_exp"))
    log_ratio = ((logp - logp_old) * mask).sum(dim=-1)  # (B, k): log pi_theta(y|x) / pi_i(y|x)
    if baseline == "mean":
        advantages = group_mean_baseline(rewards)  # r - r-bar: r-bar replaces tau log Z
    else:
        advantages = group_log_mean_exp_baseline(rewards, tau)  # r - tau log (1/k sum e^{r/tau})
    return ((advantages - tau * log_ratio) ** 2).mean()


def kimi_length_reward(lengths: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Kimi k1.5's length reward (Kimi Team 2025, §2.3.3), per group of :math:`k` answers.

    With :math:`\\mathrm{len}(j)` the length of answer :math:`j` and min/max over its group,

    .. math::  \\lambda_j = 0.5 - \\frac{\\mathrm{len}(j) - \\mathrm{min\\_len}}
                                      {\\mathrm{max\\_len} - \\mathrm{min\\_len}}, \\qquad
               \\mathrm{len\\_reward}(j) = \\begin{cases} \\lambda_j & r_j = 1 \\\\
                                           \\min(0, \\lambda_j) & r_j = 0, \\end{cases}

    and 0 for the whole group when all its answers have the same length. The shortest correct
    answer gets :math:`+0.5`, the longest :math:`-0.5`; a wrong answer is never rewarded for
    being short, only penalised for being long. The paper adds it to the reward with a weight
    (``rewards + w * kimi_length_reward(...)``) and switches it on after a warm-up phase.

    Args:
        lengths: ``(B, k)`` answer lengths in tokens (int or float).
        correct: ``(B, k)`` bool, whether each answer is right.

    Returns:
        ``(B, k)`` float length rewards in :math:`[-0.5, 0.5]`.
    """
    lengths = _tensor("lengths", lengths, 2, "(B, k)")
    correct = _tensor("correct", correct, 2, "(B, k)")
    if correct.dtype != torch.bool:
        raise TypeError(f"correct must be a bool tensor, got {correct.dtype}")
    if correct.shape != lengths.shape:
        raise ValueError(f"correct has shape {tuple(correct.shape)}; expected {tuple(lengths.shape)} "
                         "like lengths")
    check_tensor("lengths", lengths, dtype="real")
    if lengths.numel() == 0:
        raise ValueError(f"lengths is empty (shape {tuple(lengths.shape)}); need B >= 1 and k >= 1")
    if (lengths < 0).any():
        raise ValueError("lengths must be >= 0")
    lengths = lengths.to(torch.get_default_dtype())
    shortest = lengths.min(dim=1, keepdim=True).values  # (B, 1)
    longest = lengths.max(dim=1, keepdim=True).values
    span = longest - shortest
    lam = 0.5 - (lengths - shortest) / torch.where(span > 0, span, torch.ones_like(span))
    reward = torch.where(correct, lam, lam.clamp(max=0.0))
    return torch.where(span > 0, reward, torch.zeros_like(reward))


# --------------------------------------------------------------------------------------------
# 3. GRPO: clipped ratio, group-normalised advantages, k3 KL penalty
# --------------------------------------------------------------------------------------------
def k3_kl(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of :math:`\\mathrm{KL}(\\pi_\\theta \\| \\pi_{ref})` ("k3", Schulman 2020).

    For a token :math:`y \\sim \\pi_\\theta` and :math:`u = \\pi_{ref}(y)/\\pi_\\theta(y)` (not
    GRPO's ratio :math:`\\rho = \\pi_\\theta/\\pi_{\\theta_{old}}`),

    .. math::  \\hat{k}_3 = u - \\log u - 1 \\;\\ge\\; 0,

    unbiased (:math:`\\mathbb{E}_{\\pi_\\theta}[u] = 1`, so its mean is
    :math:`\\mathbb{E}[-\\log u] = \\mathrm{KL}`) and never negative, unlike the plain log-ratio
    :math:`-\\log u = \\log(\\pi_\\theta/\\pi_{ref})` ("k1").
    DeepSeekMath's Eq. (4) uses it in GRPO.

    Args:
        logp, logp_ref: tensors of the same shape: log-probabilities of the same tokens under
            :math:`\\pi_\\theta` and :math:`\\pi_{ref}`.

    Returns:
        A tensor of that shape.
    """
    if not isinstance(logp, torch.Tensor) or not isinstance(logp_ref, torch.Tensor):
        raise TypeError("logp and logp_ref must be torch.Tensors")
    check_tensor("logp", logp)
    check_tensor("logp_ref", logp_ref)
    if logp.shape != logp_ref.shape:
        raise ValueError(f"logp {tuple(logp.shape)} and logp_ref {tuple(logp_ref.shape)} must have "
                         "the same shape")
    log_u = logp_ref - logp  # log u = log(pi_ref / pi_theta)
    return torch.exp(log_u) - log_u - 1


def grpo_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    logp_ref: torch.Tensor,
    mask: torch.Tensor,
    rewards: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    beta: float = 0.04,
    eps: float = 1e-4,
    dr: bool = False,
) -> torch.Tensor:
    """GRPO's loss (Shao et al. 2024, DeepSeekMath §4.1, Eq. 3), outcome supervision.

    .. math::  J(\\theta) = \\frac{1}{Bk}\\sum_{b,j} \\frac{1}{|y_j|} \\sum_{t=1}^{|y_j|}
               \\Big\\{ \\min\\big[\\rho_{j,t} \\hat A_j,\\,
               \\mathrm{clip}(\\rho_{j,t}, 1-\\varepsilon, 1+\\varepsilon)\\hat A_j\\big]
               - \\beta\\, \\hat{k}_3\\big(\\pi_\\theta \\| \\pi_{ref}\\big)_{j,t} \\Big\\},

    with the per-token ratio
    :math:`\\rho_{j,t} = \\pi_\\theta(y_{j,t}|x, y_{j,<t}) / \\pi_{\\theta_{old}}(y_{j,t}|x, y_{j,<t})`,
    the group-normalised advantage :math:`\\hat A_j` (:func:`group_normalised_advantages`), the
    k3 estimate (:func:`k3_kl`) and a frozen reference :math:`\\pi_{ref}` (here the policy
    before RL). The min/clip is PPO's: once the ratio has moved more than :math:`\\varepsilon`
    in the direction the advantage favours, that token's gradient is 0. Each answer's tokens
    are averaged (:math:`1/|y_j|`), so every answer weighs the same however long it is.

    Args:
        logp: ``(B, k, T)`` token log-probs under :math:`\\pi_\\theta` (with gradient).
        logp_old: ``(B, k, T)`` under the sampling policy :math:`\\pi_{\\theta_{old}}`.
        logp_ref: ``(B, k, T)`` under the frozen reference :math:`\\pi_{ref}`.
        mask: ``(B, k, T)`` bool, true on answer tokens.
        rewards: ``(B, k)``, :math:`k \\ge 2`.
        clip_eps: :math:`\\varepsilon > 0`.
        beta: :math:`\\beta \\ge 0`, the KL weight (DeepSeekMath used 0.04).
        eps: added to the group std (:func:`group_normalised_advantages`).
        dr: ``True`` for Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-like training"): the
            advantage is :math:`r_j - \\mathrm{mean}(r)` (no division by the std) and each
            answer's token sum is divided by the constant :math:`T` (the token budget, the last
            axis of ``logp``) instead of :math:`|y_j|`, which removes both of GRPO's biases:
            towards long wrong answers and towards groups of nearly equal rewards.

    Returns:
        The scalar loss :math:`-J(\\theta)`, to minimise.
    """
    rewards = _check_rewards(rewards)
    _check_tokens(logp, mask, rewards, logp_old=logp_old, logp_ref=logp_ref)
    clip_eps = check_positive("clip_eps", clip_eps)
    beta = check_positive("beta", beta, allow_zero=True)
    if not isinstance(dr, bool):
        raise TypeError(f"dr must be a bool (True: Dr. GRPO), got {dr!r}")
    if dr:  # (B, k, 1): same for all t
        advantages = group_mean_baseline(rewards)[..., None]
    else:
        advantages = group_normalised_advantages(rewards, eps)[..., None]
    ratio = torch.exp(logp - logp_old)  # (B, k, T)
    surrogate = torch.minimum(ratio * advantages,
                              ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages)
    per_token = surrogate - beta * k3_kl(logp, logp_ref)  # (B, k, T)
    mask_f = mask.to(per_token.dtype)
    # (B, k): 1/|y_j| sum_t (GRPO) or 1/T sum_t (Dr. GRPO: a constant, no length bias)
    length = logp.shape[-1] if dr else mask_f.sum(-1)
    per_answer = (per_token * mask_f).sum(-1) / length
    return -per_answer.mean()


# --------------------------------------------------------------------------------------------
# 4. the toy task and its verifier
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AdditionTask:
    """Prompts "a+b=" for all :math:`0 \\le a, b \\le` ``max_operand``.

    Operands are written with ``width`` digits (zero-padded) so that every prompt has the same
    length :math:`L = 2\\,\\mathrm{width} + 2`.
    """

    max_operand: int = 9

    def __post_init__(self) -> None:
        check_int("max_operand", self.max_operand, minimum=1)

    @property
    def width(self) -> int:
        return len(str(self.max_operand))

    @property
    def prompt_len(self) -> int:
        """``L``, the number of tokens of every prompt."""
        return 2 * self.width + 2

    @property
    def n_sums(self) -> int:
        """How many different answers there are: :math:`0, \\dots, 2\\,\\mathrm{max\\_operand}`."""
        return 2 * self.max_operand + 1

    def operands(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All pairs, ``a`` and ``b`` of shape ``(P,)`` with :math:`P = (\\mathrm{max\\_operand}+1)^2`."""
        values = torch.arange(self.max_operand + 1)
        a, b = torch.meshgrid(values, values, indexing="ij")
        return a.reshape(-1), b.reshape(-1)

    def prompts(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Token ids of "a+b=", shape ``(P, L)``, for operands ``a, b`` ``(P,)`` in ``[0, max_operand]``."""
        dims: dict[str, int] = {}
        for name, value in (("a", a), ("b", b)):
            check_tensor(name, value, ("P",), dims=dims, dtype="int")
            if len(value) and (value.min() < 0 or value.max() > self.max_operand):
                # 50 in a task of width 1 would be written "0"
                raise ValueError(f"{name} must hold operands in [0, max_operand={self.max_operand}], got "
                                 f"values in [{value.min().item()}, {value.max().item()}]")
        return torch.cat([digits(a, self.width), torch.full((len(a), 1), PLUS),
                          digits(b, self.width), torch.full((len(a), 1), EQUALS)], dim=1)

    def reward(self, answers: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The task's verifier, :func:`addition_reward`; a subclass with another answer format
        (``tutorlib.scratchpad.ScratchpadTask``) overrides it, and :func:`train_rl` and
        :func:`evaluate` call it. Stricter than :func:`addition_reward`: ``answers`` must be
        token ids in ``[0, VOCAB_SIZE)`` and ``target`` sums in ``[0, 2 max_operand]``.

        Shapes: ``answers`` and ``mask`` ``(..., T)``, ``target`` ``(...)``; returns ``(...)``,
        1.0 where the answer reads as ``target`` and 0.0 elsewhere."""
        reward = addition_reward(answers, mask, target)  # checks types and shapes
        if answers.numel() and (answers.min() < 0 or answers.max() >= VOCAB_SIZE):
            raise ValueError(f"answers must hold token ids in [0, {VOCAB_SIZE}), got values in "
                             f"[{answers.min().item()}, {answers.max().item()}]")
        if target.numel() and (target.min() < 0 or target.max() > 2 * self.max_operand):
            raise ValueError(f"target must hold sums in [0, 2 * max_operand = {2 * self.max_operand}], got "
                             f"values in [{target.min().item()}, {target.max().item()}]")
        return reward


def digits(n: torch.Tensor, width: int) -> torch.Tensor:
    """Decimal digits of non-negative integers, most significant first: ``(N,)`` -> ``(N, width)``."""
    width = check_int("width", width)
    check_tensor("n", n, ("N",), dtype="int")
    if len(n) and (n.min() < 0 or n.max() >= 10**width):
        raise ValueError(f"n must hold integers in [0, 10**width = {10**width}) so that no digit is lost, "
                         f"got values in [{n.min().item()}, {n.max().item()}]")
    powers = 10 ** torch.arange(width - 1, -1, -1)
    return (n[:, None] // powers) % 10


def encode_answers(values: torch.Tensor, leading_zeros: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Answers as tokens: ``leading_zeros`` zeros, the digits of ``values``, EOS, then PAD.

    Args:
        values, leading_zeros: ``(N,)`` non-negative ints.
        max_new_tokens: ``T``; every answer must fit.

    Returns:
        ``(N, T)`` token ids.
    """
    dims: dict[str, int] = {}
    for name, value in (("values", values), ("leading_zeros", leading_zeros)):
        check_tensor(name, value, ("N",), dims=dims, dtype="int")
        if len(value) and value.min() < 0:
            raise ValueError(f"{name} must be >= 0, got a minimum of {value.min().item()}")
    check_int("max_new_tokens", max_new_tokens)
    rows = []
    for v, z in zip(values.tolist(), leading_zeros.tolist(), strict=True):
        tokens = [0] * z + [int(c) for c in str(v)] + [EOS]
        if len(tokens) > max_new_tokens:
            shown = f"{'0' * min(z, 3)}{'...' if z > 3 else ''}{v}"
            raise ValueError(f"values and leading_zeros must fit in max_new_tokens={max_new_tokens}: "
                             f"answer {shown} needs {len(tokens)} tokens")
        rows.append(tokens + [PAD] * (max_new_tokens - len(tokens)))
    return torch.tensor(rows, dtype=torch.long)


def addition_reward(answers: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The verifier: 1 if the answer is digits followed by the end token and equals ``target``.

    Leading zeros are allowed ("007" is 7); an answer with no end token within ``T`` tokens, no
    digit, or another token ("+", "=") among its digits gets 0.

    Args:
        answers: ``(..., T)`` token ids; ``mask``: ``(..., T)`` bool, true on the answer's tokens.
        target: ``(...)`` the right sums.

    Returns:
        ``(...)`` float rewards in {0, 1}.
    """
    for name, value in (("answers", answers), ("mask", mask), ("target", target)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if answers.shape != mask.shape or answers.shape[:-1] != target.shape:
        raise ValueError(f"answers {tuple(answers.shape)}, mask {tuple(mask.shape)} and target "
                         f"{tuple(target.shape)} must be (..., T), (..., T) and (...)")
    check_tensor("answers", answers, dtype="int")
    check_tensor("mask", mask, dtype="bool")
    check_tensor("target", target, dtype="int")
    is_eos = (answers == EOS) & mask
    has_eos = is_eos.any(-1)
    body = mask & ~is_eos  # the tokens before the end token
    ok = has_eos & body.any(-1) & ((answers < 10) | ~body).all(-1)
    value = torch.zeros(answers.shape[:-1], dtype=torch.long)
    for t in range(answers.shape[-1]):  # value = value * 10 + digit, over the body only
        d = answers[..., t].clamp(max=9)
        value = torch.where(body[..., t], value * 10 + d, value)
    return (ok & (value == target)).to(torch.get_default_dtype())


# --------------------------------------------------------------------------------------------
# 5. the policy: a tiny fixed-window language model; sampling and log-probabilities
# --------------------------------------------------------------------------------------------
class WindowPolicy(nn.Module):
    """The smallest autoregressive language model we could make fast: an MLP over the window.

    To predict answer token :math:`y_t` the model sees the whole prompt and :math:`y_{<t}`; the
    positions :math:`t, \\dots, T` are hidden (filled with PAD), and a one-hot of :math:`t` says
    which token is asked for. Every position is embedded, the window is flattened, and a
    two-layer MLP gives the logits (Bengio et al. 2003's neural language model, with a window
    as long as the whole sequence). All ``T`` positions are computed in one batched pass,
    which on a CPU is many times faster than stepping a GRU.

    Args:
        prompt_len: ``L``; max_new_tokens: ``T``; d_embed: width of a token embedding;
        hidden: width of the MLP.
    """

    def __init__(self, prompt_len: int, max_new_tokens: int, d_embed: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.L = check_int("prompt_len", prompt_len)
        self.T = check_int("max_new_tokens", max_new_tokens)
        check_int("d_embed", d_embed)
        check_int("hidden", hidden)
        self.embed = nn.Embedding(VOCAB_SIZE, d_embed)
        self.mlp = nn.Sequential(
            nn.Linear((self.L + self.T) * d_embed + self.T, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, N_ACTIONS),
        )
        # future[t, j] is true where answer position j is not visible when predicting y_t (j >= t)
        self.register_buffer("future", torch.ones(self.T, self.T, dtype=torch.bool).triu(), persistent=False)

    def forward(self, prompts: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """Logits of every answer position: ``prompts (N, L)``, ``answers (N, T)`` -> ``(N, T, 13)``.

        The logits at position ``t`` depend only on the prompt and ``answers[:, :t]``.
        """
        for name, value in (("prompts", prompts), ("answers", answers)):
            if not isinstance(value, torch.Tensor) or value.is_floating_point() or value.dtype == torch.bool:
                raise TypeError(f"{name} must be an integer tensor of token ids, got "
                                f"{getattr(value, 'dtype', type(value).__name__)}")
        N = prompts.shape[0] if prompts.ndim else 0
        if prompts.shape != (N, self.L) or answers.shape != (N, self.T):
            raise ValueError(f"expected prompts (N, {self.L}) and answers (N, {self.T}), got "
                             f"{tuple(prompts.shape)} and {tuple(answers.shape)}")
        if N and (min(prompts.min(), answers.min()) < 0 or max(prompts.max(), answers.max()) >= VOCAB_SIZE):
            raise ValueError(f"prompts and answers must hold token ids in [0, {VOCAB_SIZE})")
        seen = answers[:, None, :].masked_fill(self.future, PAD)  # (N, T, T): row t shows y_<t
        window = torch.cat([prompts[:, None, :].expand(N, self.T, self.L), seen], -1)  # (N, T, L+T)
        position = torch.eye(self.T).expand(N, self.T, self.T)  # (N, T, T): one-hot of t
        features = torch.cat([self.embed(window).flatten(2), position], -1)  # (N, T, (L+T)d + T)
        return self.mlp(features)


@torch.no_grad()
def sample_answers(
    policy: WindowPolicy,
    prompts: torch.Tensor,
    k: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``k`` answers per prompt at temperature 1, one token at a time, each up to its end token.

    Args:
        policy: the policy :math:`\\pi_\\theta`.
        prompts: ``(B, L)`` token ids.
        k: answers per prompt.
        generator: the random generator for the draws.

    Returns:
        ``answers (B, k, T)`` token ids (PAD after the end token) and ``mask (B, k, T)``, true on
        the answer's tokens (up to and including the end token); ``T = policy.T``. Their
        log-probabilities come from :func:`answer_log_probs`, the same function the losses
        use, so that the ratio :math:`\\pi_\\theta/\\pi_{\\theta_i}` is exactly 1 before the first step.
    """
    _tensor("prompts", prompts, 2, "(B, L)")
    k = check_int("k", k)
    _check_policy(policy)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    B, T = prompts.shape[0], policy.T
    prompts = prompts.repeat_interleave(k, dim=0)  # (B*k, L)
    answers = torch.full((B * k, T), PAD)
    alive = torch.ones(B * k, dtype=torch.bool)  # no end token written yet
    mask = torch.zeros(B * k, T, dtype=torch.bool)
    for t in range(T):
        probs = F.softmax(policy(prompts, answers)[:, t], -1)  # (B*k, 13)
        token = torch.multinomial(probs, 1, generator=generator)[:, 0]
        answers[:, t] = torch.where(alive, token, PAD)
        mask[:, t] = alive
        alive = alive & (token != EOS)
    return answers.reshape(B, k, T), mask.reshape(B, k, T)


def _check_policy(policy: object, name: str = "policy") -> None:
    if not isinstance(policy, WindowPolicy):
        raise TypeError(f"{name} must be a WindowPolicy, got {type(policy).__name__}")


def answer_log_probs(policy: WindowPolicy, prompts: torch.Tensor, answers: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """Token log-probabilities :math:`\\log\\pi(y_t | x, y_{<t})` of given answers.

    Args:
        prompts: ``(B, L)``; answers, mask: ``(B, k, T)``.

    Returns:
        ``(B, k, T)``, 0 where ``mask`` is false; differentiable in the policy's parameters.
    """
    _check_policy(policy)
    _tensor("answers", answers, 3, "(B, k, T)")
    B, k, T = answers.shape
    _tensor("prompts", prompts, 2, "(B, L)")
    if prompts.shape[0] != B:
        raise ValueError(f"prompts must have {B} rows to match answers (B, k, T), got {tuple(prompts.shape)}")
    check_tensor("mask", mask, (B, k, T), dtype="bool")
    logits = policy(prompts.repeat_interleave(k, 0), answers.reshape(B * k, T))  # (B*k, T, 13)
    target = answers.reshape(B * k, T).clamp(max=N_ACTIONS - 1)  # PAD -> any id; masked below
    logp = torch.gather(F.log_softmax(logits, -1), 2, target[..., None])[..., 0]  # (B*k, T)
    return logp.reshape(B, k, T) * mask


# --------------------------------------------------------------------------------------------
# 6. recipes: supervised warm-up, RL training, evaluation
# --------------------------------------------------------------------------------------------
@dataclass
class WarmupConfig:
    """A short supervised warm-up that teaches the *format* of an answer, not the sum."""

    steps: int = 80  #: Adam steps
    batch: int = 64  #: prompts per step
    lr: float = 1e-2
    max_leading_zeros: int = 3  #: targets carry 0..3 leading zeros, uniformly: a "verbose" policy
    max_new_tokens: int = 6  #: T, the longest answer (3 zeros + 2 digits + end token)
    d_embed: int = 8
    hidden: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self, {"steps": check_int, "batch": check_int, "lr": check_positive,
                            "max_leading_zeros": (check_int, 0), "max_new_tokens": check_int,
                            "d_embed": check_int, "hidden": check_int, "seed": (check_int, 0)})


def _check_task_and_config(task: object, cfg: object, kind: type) -> None:
    if not isinstance(task, AdditionTask):
        raise TypeError(f"task must be an AdditionTask, got {type(task).__name__}")
    if not isinstance(cfg, kind):
        raise TypeError(f"cfg must be a {kind.__name__}, got {type(cfg).__name__}")
    cfg.__post_init__()  # fields may have been changed after construction


def _seeded_policy(prompt_len: int, answer_len: int, d_embed: int, hidden: int, seed: int) -> WindowPolicy:
    """A :class:`WindowPolicy` whose initial weights depend on ``seed`` only; the caller's global
    RNG is left as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return WindowPolicy(prompt_len, answer_len, d_embed, hidden)


def _imitation_step(policy: WindowPolicy, optimizer: torch.optim.Optimizer, prompts: torch.Tensor,
                    answers: torch.Tensor) -> None:
    """One Adam step on the mean token cross-entropy :math:`-\\frac{1}{\\sum m}\\sum m \\log\\pi_\\theta`
    of ``answers`` ``(B, 1, T)`` given ``prompts`` ``(B, P)``, over the tokens that are not
    padding (the end token included)."""
    mask = answers != PAD
    loss = -answer_log_probs(policy, prompts, answers, mask).sum() / mask.sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def warmup_policy(task: AdditionTask, cfg: WarmupConfig) -> WindowPolicy:
    """Supervised warm-up on answers that are *random* sums in :math:`[0, 2\\,\\mathrm{max\\_operand}]`.

    The target of each prompt is drawn afresh every step, so the best the policy can do is to
    learn the format (digits, up to ``max_leading_zeros`` zeros in front, then the end token) and
    the uniform distribution over possible sums: its accuracy is chance, :math:`1/(2m+1)`.
    """
    _check_task_and_config(task, cfg, WarmupConfig)
    g = torch.Generator().manual_seed(cfg.seed)
    policy = _seeded_policy(task.prompt_len, cfg.max_new_tokens, cfg.d_embed, cfg.hidden, cfg.seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    a_all, b_all = task.operands()
    for _ in range(cfg.steps):
        idx = torch.randint(len(a_all), (cfg.batch,), generator=g)
        values = torch.randint(task.n_sums, (cfg.batch,), generator=g)  # random, not a + b
        zeros = torch.randint(cfg.max_leading_zeros + 1, (cfg.batch,), generator=g)
        answers = encode_answers(values, zeros, cfg.max_new_tokens)[:, None]  # (batch, 1, T)
        _imitation_step(policy, optimizer, task.prompts(a_all[idx], b_all[idx]), answers)
    return policy


@dataclass
class RLConfig:
    """Hyperparameters of one RL run; the same for both objectives except where marked."""

    objective: str = "kimi"  #: "kimi" (Kimi k1.5, §2.3.2), "grpo" (DeepSeekMath §4.1) or "dr_grpo"
    iterations: int = 60  #: sampling rounds; the policy that samples is refreshed each round
    prompts_per_iteration: int = 32  #: B
    k: int = 8  #: answers per prompt
    inner_steps: int = 4  #: Adam steps on each batch of samples (GRPO's mu)
    lr: float = 1e-2  #: 2e-2 was unstable for both objectives
    tau: float = 1.0  #: Kimi: weight of the squared log-ratio
    kimi_baseline: str = "mean"  #: Kimi: "mean" (r-bar, the paper's) or "log_mean_exp" (tau log Z)
    beta: float = 0.04  #: GRPO: weight of the k3 KL penalty to the frozen reference
    clip_eps: float = 0.2  #: GRPO: PPO clip range
    length_weight: float = 0.0  #: w in r + w * len_reward (Kimi §2.3.3); 0 = off
    length_warmup: int = 20  #: iterations before the length reward is switched on (§2.3.3)
    eval_every: int = 5
    eval_samples: int = 16  #: answers per prompt when measuring accuracy
    seed: int = 0
    #: "uniform" (B distinct prompts per iteration) or "prioritised" (Kimi §2.3.4: B prompts drawn
    #: with replacement, prompt i with probability proportional to 1 - s_i, s_i its success rate)
    prompt_sampling: str = "uniform"

    def __post_init__(self) -> None:
        check_fields(self, {
            "objective": (check_choice, ("kimi", "grpo", "dr_grpo")),
            "kimi_baseline": (check_choice, ("mean", "log_mean_exp")), "iterations": check_int,
            "prompts_per_iteration": check_int, "k": (check_int, 2), "inner_steps": check_int,
            "lr": check_positive, "tau": check_positive, "beta": check_nonnegative,
            "clip_eps": check_positive, "length_weight": check_nonnegative,
            "length_warmup": (check_int, 0), "eval_every": check_int, "eval_samples": check_int,
            "seed": (check_int, 0), "prompt_sampling": (check_choice, ("uniform", "prioritised")),
        })


@dataclass
class RLHistory:
    """What :func:`train_rl` measured every ``eval_every`` iterations (on all prompts)."""

    iteration: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)  #: fraction of sampled answers that are right
    length: list[float] = field(default_factory=list)  #: mean answer length in tokens (with end token)
    kl_ref: list[float] = field(default_factory=list)  #: KL(pi_theta || pi_ref) per answer, nats
    step_kl: list[float] = field(default_factory=list)  #: KL(pi_i || pi_{i+1}) per answer, each iteration


def pass_at_k(n_correct: int | torch.Tensor, n_samples: int, k: int) -> float | torch.Tensor:
    """Unbiased estimate of pass@k from ``n_samples`` answers of which ``n_correct`` are right.

    pass@k is the probability that at least one of :math:`k` answers sampled from the policy
    is right. Drawing :math:`k` of the :math:`n` answers without replacement, all :math:`k`
    are wrong with probability :math:`\\binom{n-c}{k} / \\binom{n}{k}`, so (Chen et al. 2021,
    "Evaluating large language models trained on code", §2.1)

    .. math::  \\widehat{\\text{pass@}k} = 1 - \\binom{n-c}{k} \\Big/ \\binom{n}{k}
               = 1 - \\prod_{i=n-c+1}^{n} \\Big(1 - \\frac{k}{i}\\Big),

    an unbiased estimator of pass@k (its expectation over the :math:`n` samples is
    :math:`1 - (1-p)^k` for a per-sample success rate :math:`p`). The product form never builds
    the huge binomials; it is 1 when :math:`n - c < k` (every draw of :math:`k` holds a right
    answer). For :math:`k = 1` it is :math:`c/n`. Note that :math:`1 - (1 - c/n)^k` is *biased*
    (too low).

    Args:
        n_correct: :math:`c`, an int or an integer tensor of any shape (one count per prompt),
            each in ``[0, n_samples]``.
        n_samples: :math:`n \\ge 1`.
        k: :math:`1 \\le k \\le n`.

    Returns:
        A float for an int ``n_correct``; otherwise a float64 tensor of the same shape.
    """
    n = check_int("n_samples", n_samples)
    k = check_int("k", k)
    if k > n:
        raise ValueError(f"k must be <= n_samples = {n}, got {k}")
    scalar = not isinstance(n_correct, torch.Tensor)
    if scalar:
        c = torch.tensor(check_int("n_correct", n_correct, minimum=0))
    else:
        c = check_tensor("n_correct", n_correct, dtype="int")
        if c.numel() and (int(c.min()) < 0 or int(c.max()) > n):
            raise ValueError(f"n_correct must be in [0, n_samples = {n}], got values in "
                             f"[{int(c.min())}, {int(c.max())}]")
    if scalar and int(c) > n:
        raise ValueError(f"n_correct must be in [0, n_samples = {n}], got {int(c)}")
    i = torch.arange(1, n + 1, dtype=torch.float64)  # (n,)
    wrong = (n - c).to(torch.float64).unsqueeze(-1)  # (..., 1)
    factors = torch.where(i > wrong, 1.0 - k / i, torch.ones((), dtype=torch.float64))
    estimate = torch.where(wrong.squeeze(-1) < k, torch.ones((), dtype=torch.float64),
                           1.0 - factors.prod(-1))
    return estimate.item() if scalar else estimate


def prioritised_prompts(success: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Kimi k1.5's prioritised sampling (§2.3.4): ``n`` prompt indices, drawn with replacement,
    prompt :math:`i` with probability proportional to :math:`\\max(1 - s_i,\\ f)`.

    :math:`s_i \\in [0, 1]` is the success rate measured on prompt :math:`i` (``success``,
    shape ``(P,)``), so prompts the policy fails on are drawn more often. The floor
    :math:`f` = ``PRIORITY_FLOOR`` keeps a solved prompt (:math:`s_i = 1`) in play, so that its
    success rate is measured again if the policy forgets it.

    Returns:
        A ``(n,)`` long tensor of indices into ``success``.
    """
    success = check_tensor("success", success, ndim=1)
    if success.numel() == 0:
        raise ValueError("success must hold one rate per prompt, got an empty tensor")
    if bool(((success < 0) | (success > 1)).any()):
        raise ValueError(f"success must be rates in [0, 1], got values in "
                         f"[{success.min().item():g}, {success.max().item():g}]")
    n = check_int("n", n)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    weights = (1 - success.detach().double()).clamp(min=PRIORITY_FLOOR)
    return torch.multinomial(weights, n, replacement=True, generator=generator)


@torch.no_grad()
def evaluate(policy: WindowPolicy, reference: WindowPolicy, task: AdditionTask, samples: int,
             generator: torch.Generator) -> dict[str, float]:
    """Accuracy, mean length and :math:`\\mathrm{KL}(\\pi_\\theta\\|\\pi_{ref})` on every prompt.

    Answers are sampled at temperature 1 (``samples`` per prompt). The KL of whole answers is
    estimated by the mean of :math:`\\log\\pi_\\theta(y|x) - \\log\\pi_{ref}(y|x)` over the
    samples, which is unbiased because :math:`y \\sim \\pi_\\theta`.
    """
    _check_policy(policy)
    _check_policy(reference, "reference")
    if not isinstance(task, AdditionTask):
        raise TypeError(f"task must be an AdditionTask, got {type(task).__name__}")
    check_int("samples", samples)
    a, b = task.operands()
    prompts = task.prompts(a, b)
    answers, mask = sample_answers(policy, prompts, samples, generator)
    reward = task.reward(answers, mask, (a + b)[:, None].expand(-1, samples))
    log_ratio = (answer_log_probs(policy, prompts, answers, mask)
                 - answer_log_probs(reference, prompts, answers, mask)).sum(-1)
    return {"accuracy": reward.mean().item(), "length": mask.sum(-1).float().mean().item(),
            "kl_ref": log_ratio.mean().item()}


def train_rl(start: WindowPolicy, task: AdditionTask, cfg: RLConfig,
             progress: bool = False) -> tuple[WindowPolicy, RLHistory]:
    """RL from ``start`` with the Kimi k1.5 or the GRPO objective; ``start`` is not modified.

    Each iteration: draw ``B`` prompts (distinct and uniform, or with
    ``prompt_sampling="prioritised"`` by :func:`prioritised_prompts`, where :math:`s_i` is the
    share of right answers in the last iteration that drew prompt :math:`i`, 0 before), sample
    ``k`` answers each from the current policy
    (which becomes :math:`\\pi_{\\theta_i}` / :math:`\\pi_{\\theta_{old}}`), score them with the
    verifier (plus ``length_weight`` times :func:`kimi_length_reward` once
    ``iteration >= length_warmup``), then take ``inner_steps`` Adam steps on the objective.
    The frozen reference :math:`\\pi_{ref}` (GRPO's KL, and the KL we report) is ``start``.

    Returns:
        The trained policy and an :class:`RLHistory`.
    """
    _check_task_and_config(task, cfg, RLConfig)
    _check_policy(start, "start")
    policy, reference = copy.deepcopy(start), copy.deepcopy(start).requires_grad_(False)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    g_eval = torch.Generator().manual_seed(cfg.seed + 1)
    a_all, b_all = task.operands()
    success = torch.zeros(len(a_all))  # s_i per prompt, for prioritised sampling; 0 = not yet seen
    history = RLHistory()
    iterations = range(cfg.iterations + 1)
    if progress:
        from tqdm.auto import tqdm
        iterations = tqdm(iterations, desc=f"{cfg.objective} τ={cfg.tau} w={cfg.length_weight}", leave=False)
    for it in iterations:
        if it % cfg.eval_every == 0 or it == cfg.iterations:
            stats = evaluate(policy, reference, task, cfg.eval_samples, g_eval)
            history.iteration.append(it)
            for key, value in stats.items():
                getattr(history, key).append(value)
        if it == cfg.iterations:
            break
        if cfg.prompt_sampling == "uniform":
            idx = torch.randperm(len(a_all), generator=g)[: cfg.prompts_per_iteration]
        else:  # prioritised: hard prompts more often
            idx = prioritised_prompts(success, cfg.prompts_per_iteration, g)
        prompts, target = task.prompts(a_all[idx], b_all[idx]), (a_all + b_all)[idx]
        answers, mask = sample_answers(policy, prompts, cfg.k, g)
        correct = task.reward(answers, mask, target[:, None].expand(-1, cfg.k))  # (B, k)
        # s_i: success rate of the prompt's groups in this iteration (pooled when drawn twice)
        n_groups = torch.bincount(idx, minlength=len(a_all))
        n_right = torch.zeros(len(a_all)).index_add_(0, idx, correct.mean(-1))
        success = torch.where(n_groups > 0, n_right / n_groups.clamp(min=1), success)
        rewards = correct
        if cfg.length_weight > 0 and it >= cfg.length_warmup:
            rewards = correct + cfg.length_weight * kimi_length_reward(mask.sum(-1), correct > 0)
        with torch.no_grad():
            logp_old = answer_log_probs(policy, prompts, answers, mask)  # pi_theta_i: the sampler
            logp_ref = answer_log_probs(reference, prompts, answers, mask)
        for _ in range(cfg.inner_steps):
            logp = answer_log_probs(policy, prompts, answers, mask)
            if cfg.objective == "kimi":
                loss = kimi_loss(logp, logp_old, mask, rewards, cfg.tau, cfg.kimi_baseline)
            else:
                loss = grpo_loss(logp, logp_old, logp_ref, mask, rewards, clip_eps=cfg.clip_eps,
                                 beta=cfg.beta, dr=cfg.objective == "dr_grpo")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():  # how far this iteration moved the policy, on its own samples
            moved = (logp_old - answer_log_probs(policy, prompts, answers, mask)).sum(-1)
        history.step_kl.append(moved.mean().item())
    return policy, history
