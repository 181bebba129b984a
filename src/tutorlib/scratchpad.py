"""A chain of thought you can check: multi-digit addition on a scratchpad, for ``book/rl_language_models.md``.

The policy of :mod:`tutorlib.rl_lm` answers "a+b=" in one shot. Here it may first write a
*scratchpad*: the column totals, least significant column first, each as two digits (the carry
out and the digit of the sum), then "=" and the answer with :math:`n + 1` digits. With
:math:`a_i, b_i` the :math:`i`-th digits (units first) and carries :math:`c_0 = 0`,

.. math::  v_i = a_i + b_i + c_i, \\qquad c_{i+1} = \\lfloor v_i / 10 \\rfloor, \\qquad
           d_i = v_i \\bmod 10, \\qquad a + b = \\sum_{i=0}^{n-1} d_i\\,10^i + c_n\\,10^n,

so 47 + 85 is written ``12 13 = 132`` (7+5 = 12, then 4+8+1 = 13), printed by
:func:`format_answer` as ``7+5=12 | 4+8+1=13 | 132``. Each column total depends on two prompt
digits and the carry the policy wrote one step before, while the first digit of a direct answer
depends on every digit of the prompt. The reward (:meth:`ScratchpadTask.reward`) is outcome
supervision: it reads the final answer only, not the scratchpad (Kimi k1.5 mostly checks final
answers; DeepSeekMath reports both outcome and per-step process rewards).

Everything else is reused from :mod:`tutorlib.rl_lm`: the prompt "a+b=", the vocabulary (digits,
"+", "=", the end token), :class:`~tutorlib.rl_lm.WindowPolicy`, sampling, GRPO
(:func:`~tutorlib.rl_lm.train_rl`, which calls the task's ``reward``) and
:func:`~tutorlib.rl_lm.pass_at_k`. This module adds the task with its train / test / worked-example
split (:class:`ScratchpadTask`), the worked answers (:func:`worked_answers`), the supervised
warm-up on worked examples (:func:`warmup_on_examples`) and the error analysis by step type
(:func:`step_error_rates`).

Shapes: ``N`` prompts, ``k`` samples per prompt, ``n`` digits per operand (``task.width``),
``T`` answer tokens (:attr:`ScratchpadTask.answer_len`: :math:`3n + 3` with the scratchpad,
:math:`n + 2` without).

References:
    Nye et al. (2021), Show your work: scratchpads for intermediate computation with language
    models. Wei et al. (2022), Chain-of-thought prompting. Shao et al. (2024), DeepSeekMath
    (GRPO; outcome and process supervision). Yue et al. (2025), Does RL really incentivize reasoning capacity
    in LLMs beyond the base model? (pass@k before and after RL).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tutorlib.rl_lm import (
    EOS,
    EQUALS,
    TOKEN_TEXT,
    VOCAB_SIZE,
    AdditionTask,
    WindowPolicy,
    _imitation_step,
    _seeded_policy,
    addition_reward,
    digits,
)
from tutorlib.validation import check_fields, check_int, check_positive, check_tensor

__all__ = [
    "STEP_TYPES",
    "ScratchpadTask",
    "ScratchpadWarmupConfig",
    "carries",
    "format_answer",
    "step_error_rates",
    "warmup_on_examples",
    "worked_answers",
]

#: The kinds of step :func:`step_error_rates` tells apart: the units column (no carry can come
#: in), a later column without and with an incoming carry, and the final answer ("=", the
#: :math:`n+1` digits and the end token). A direct answer has only the last kind.
STEP_TYPES = ("units column", "column, no carry in", "column, carry in", "answer")


def _check_operands(a: object, b: object, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = check_int("width", width)
    dims: dict[str, int] = {}
    for name, value in (("a", a), ("b", b)):
        check_tensor(name, value, ("N",), dims=dims, dtype="int")
        if len(value) and (value.min() < 0 or value.max() >= 10**width):
            raise ValueError(f"{name} must hold integers in [0, 10**width = {10**width}), got values in "
                             f"[{value.min().item()}, {value.max().item()}]")
    return a, b  # type: ignore[return-value]


def _check_token_ids(name: str, tokens: torch.Tensor) -> None:
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= VOCAB_SIZE):
        raise ValueError(f"{name} must hold token ids in [0, {VOCAB_SIZE}), got values in "
                         f"[{tokens.min().item()}, {tokens.max().item()}]")


def carries(a: torch.Tensor, b: torch.Tensor, width: int) -> torch.Tensor:
    """The carries :math:`c_0, \\dots, c_n` of column addition: ``a, b (N,)`` -> ``(N, n + 1)``.

    :math:`c_0 = 0` and :math:`c_{i+1} = \\lfloor (a_i + b_i + c_i) / 10 \\rfloor`; column
    :math:`i` receives :math:`c_i`, and :math:`c_n` is the leading digit of :math:`a + b`.
    """
    a, b = _check_operands(a, b, width)
    da, db = digits(a, width).flip(1), digits(b, width).flip(1)  # (N, n), units first
    out = [torch.zeros(len(a), dtype=torch.long)]
    for i in range(width):
        out.append((da[:, i] + db[:, i] + out[-1]) // 10)
    return torch.stack(out, 1)


def worked_answers(a: torch.Tensor, b: torch.Tensor, width: int, scratchpad: bool = True) -> torch.Tensor:
    """The worked answer to each "a+b=" as tokens, ``(N, T)``.

    With ``scratchpad``: for :math:`i = 0, \\dots, n-1` the two digits of :math:`v_i = a_i + b_i
    + c_i` (:math:`c_{i+1}` then :math:`d_i`), then "=", then :math:`a + b` with :math:`n + 1`
    digits (a leading zero when :math:`c_n = 0`) and the end token: :math:`T = 3n + 3`.
    Without: the :math:`n + 1` digits and the end token, :math:`T = n + 2`.
    """
    a, b = _check_operands(a, b, width)
    if not isinstance(scratchpad, bool):
        raise TypeError(f"scratchpad must be a bool, got {type(scratchpad).__name__} {scratchpad!r}")
    n = len(a)
    answer = torch.cat([digits(a + b, width + 1), torch.full((n, 1), EOS)], 1)
    if not scratchpad:
        return answer
    c = carries(a, b, width)
    da, db = digits(a, width).flip(1), digits(b, width).flip(1)
    totals = da + db + c[:, :-1]  # (N, n): v_i
    columns = torch.stack([totals // 10, totals % 10], 2).reshape(n, 2 * width)
    return torch.cat([columns, torch.full((n, 1), EQUALS), answer], 1)


@dataclass(frozen=True)
class ScratchpadTask(AdditionTask):
    """"a+b=" for :math:`0 \\le a, b \\le` ``max_operand``, answered with or without a scratchpad.

    The :math:`(m+1)^2` pairs are shuffled once (``seed``) and cut into a held-out test set
    (``n_test``, used for pass@k), the worked examples of the warm-up (``n_examples``) and the
    prompts RL trains on (``n_train``): :meth:`operands`, which :func:`~tutorlib.rl_lm.train_rl`
    draws from, returns the last. The split does not depend on ``scratchpad``, so the two
    variants see the same prompts.
    """

    max_operand: int = 99
    scratchpad: bool = True
    n_test: int = 256
    n_examples: int = 500
    n_train: int = 2048
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.scratchpad, bool):
            raise TypeError(f"ScratchpadTask.scratchpad must be a bool, got {type(self.scratchpad).__name__} "
                            f"{self.scratchpad!r}")
        check_fields(self, {"n_test": check_int, "n_examples": check_int, "n_train": check_int,
                            "seed": (check_int, 0)})
        pairs = (self.max_operand + 1) ** 2
        if self.n_test + self.n_examples + self.n_train > pairs:
            raise ValueError(f"ScratchpadTask.n_test + n_examples + n_train must be <= {pairs} pairs for "
                             f"max_operand={self.max_operand}, got {self.n_test} + {self.n_examples} + "
                             f"{self.n_train}")

    @property
    def answer_len(self) -> int:
        """``T``: :math:`3n + 3` tokens with the scratchpad, :math:`n + 2` without."""
        return 3 * self.width + 3 if self.scratchpad else self.width + 2

    def _split(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.max_operand + 1
        order = torch.randperm(m * m, generator=torch.Generator().manual_seed(self.seed))[start:stop]
        return order // m, order % m

    def test_operands(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The held-out pairs ``a, b`` ``(n_test,)``: never trained on."""
        return self._split(0, self.n_test)

    def example_operands(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The pairs ``(n_examples,)`` whose worked answers the warm-up imitates."""
        return self._split(self.n_test, self.n_test + self.n_examples)

    def operands(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The pairs ``(n_train,)`` RL samples prompts from (and :func:`~tutorlib.rl_lm.evaluate` scores)."""
        start = self.n_test + self.n_examples
        return self._split(start, start + self.n_train)

    def targets(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """:func:`worked_answers` in this task's format, ``(N, T)``."""
        return worked_answers(a, b, self.width, self.scratchpad)

    def reward(self, answers: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Outcome reward: 1 if the final answer equals ``target``, whatever the scratchpad says.

        With the scratchpad the answer is what follows the one "=" (an answer with no "=" or
        two gets 0) and is parsed by :func:`~tutorlib.rl_lm.addition_reward`; without, the whole
        answer is. Shapes: ``answers, mask (..., T)``, ``target (...)``; returns ``(...)``.
        """
        plain = super().reward(answers, mask, target)  # checks the arguments
        if not self.scratchpad:
            return plain
        is_eq = (answers == EQUALS) & mask
        after = (is_eq.long().cumsum(-1) > 0) & ~is_eq & mask
        one = is_eq.sum(-1) == 1
        return addition_reward(answers, after, target) * one


@dataclass
class ScratchpadWarmupConfig:
    """Supervised warm-up on the task's worked examples (teacher forcing, cross-entropy)."""

    steps: int = 300  #: Adam steps
    batch: int = 64  #: examples per step, drawn with replacement
    lr: float = 1e-2
    d_embed: int = 8
    hidden: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self, {"steps": check_int, "batch": check_int, "lr": check_positive,
                            "d_embed": check_int, "hidden": check_int, "seed": (check_int, 0)})


def warmup_on_examples(task: ScratchpadTask, cfg: ScratchpadWarmupConfig) -> WindowPolicy:
    """Imitate the worked answers of ``task.example_operands()``: minimise
    :math:`-\\frac{1}{|B|T}\\sum_{(x, y) \\in B} \\log \\pi_\\theta(y \\mid x)` over minibatches.

    The policy is a :class:`~tutorlib.rl_lm.WindowPolicy` with ``T = task.answer_len``. A few
    hundred examples leave it far from perfect on held-out prompts, which is the point: RL has
    something left to do.
    """
    if not isinstance(task, ScratchpadTask):
        raise TypeError(f"task must be a ScratchpadTask, got {type(task).__name__}")
    if not isinstance(cfg, ScratchpadWarmupConfig):
        raise TypeError(f"cfg must be a ScratchpadWarmupConfig, got {type(cfg).__name__}")
    cfg.__post_init__()  # fields may have been changed after construction
    g = torch.Generator().manual_seed(cfg.seed)
    policy = _seeded_policy(task.prompt_len, task.answer_len, cfg.d_embed, cfg.hidden, cfg.seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    a, b = task.example_operands()
    prompts, answers = task.prompts(a, b), task.targets(a, b)
    for _ in range(cfg.steps):
        idx = torch.randint(len(a), (cfg.batch,), generator=g)
        _imitation_step(policy, optimizer, prompts[idx], answers[idx][:, None])  # answers (batch, 1, T)
    return policy


def step_error_rates(answers: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                     task: ScratchpadTask) -> dict[str, tuple[int, int]]:
    """Where sampled answers first leave the worked solution, by kind of step (:data:`STEP_TYPES`).

    A sample *reaches* a step if every token before it matches :func:`worked_answers`, and
    *errs* there if its first mismatch lies in that step's tokens (column :math:`i`: tokens
    :math:`2i, 2i+1`; the answer: the rest). The error rate of a kind of step is errors / reached,
    the chance of a slip there given a correct transcript so far, so a late step is not blamed
    for an early one's mistake.

    Args:
        answers: ``(N, k, T)`` sampled tokens for the prompts ``a, b`` ``(N,)``.
        task: the :class:`ScratchpadTask` (its format and width).

    Returns:
        ``{kind: (errors, reached)}`` for every kind in :data:`STEP_TYPES` (``(0, 0)`` where the
        format has no such step).
    """
    if not isinstance(task, ScratchpadTask):
        raise TypeError(f"task must be a ScratchpadTask, got {type(task).__name__}")
    n = task.width
    a, b = _check_operands(a, b, n)
    dims = {"N": len(a)}
    check_tensor("answers", answers, ("N", "k", task.answer_len), dims=dims, dtype="int")
    _check_token_ids("answers", answers)
    worked = task.targets(a, b)[:, None]  # (N, 1, T)
    T = task.answer_len
    wrong = answers != worked
    first = torch.where(wrong.any(-1), wrong.long().argmax(-1), torch.full(wrong.shape[:-1], T))  # (N, k)
    counts = {kind: [0, 0] for kind in STEP_TYPES}
    spans: list[tuple[str, int, int, torch.Tensor]] = []  # (kind, first token, end, applies (N, 1))
    if task.scratchpad:
        carry_in = carries(a, b, n)[:, :n, None].bool()  # (N, n, 1)
        everyone = torch.ones(len(a), 1, dtype=torch.bool)
        spans.append(("units column", 0, 2, everyone))
        for i in range(1, n):
            spans.append(("column, no carry in", 2 * i, 2 * i + 2, ~carry_in[:, i]))
            spans.append(("column, carry in", 2 * i, 2 * i + 2, carry_in[:, i]))
        start = 2 * n
    else:
        start = 0
    spans.append(("answer", start, T, torch.ones(len(a), 1, dtype=torch.bool)))
    for kind, lo, hi, applies in spans:
        reached = (first >= lo) & applies
        counts[kind][0] += int((reached & (first < hi)).sum())
        counts[kind][1] += int(reached.sum())
    return {kind: (errors, reached) for kind, (errors, reached) in counts.items()}


def format_answer(answer: torch.Tensor, a: int, b: int, task: ScratchpadTask) -> str:
    """One answer as text, the scratchpad glossed with the prompt's digits.

    ``answer (T,)`` for the prompt "a+b=". With the scratchpad, column :math:`i` is shown as
    :math:`a_i + b_i\\,[+1] = ` the two tokens written there, where "+1" appears when the
    policy's own previous column wrote a carry of 1; e.g. ``7+5=12 | 4+8+1=13 | 132``. The end
    token is "·" and anything after it is dropped.
    """
    if not isinstance(task, ScratchpadTask):
        raise TypeError(f"task must be a ScratchpadTask, got {type(task).__name__}")
    n = task.width
    check_tensor("answer", answer, (task.answer_len,), dtype="int")
    _check_token_ids("answer", answer)
    for name, value in (("a", a), ("b", b)):
        if check_int(name, value, minimum=0) > task.max_operand:
            raise ValueError(f"{name} must be in [0, max_operand={task.max_operand}], got {value}")
    tokens = answer.tolist()
    if EOS in tokens:
        tokens = tokens[: tokens.index(EOS) + 1]
    text = [TOKEN_TEXT[t] for t in tokens]
    if not task.scratchpad:
        return "".join(text)
    da, db = str(a).zfill(n)[::-1], str(b).zfill(n)[::-1]
    parts = []
    for i in range(n):
        pair = text[2 * i: 2 * i + 2]
        carry = "+1" if i > 0 and text[2 * i - 2: 2 * i - 1] == ["1"] else ""
        parts.append(f"{da[i]}+{db[i]}{carry}={''.join(pair)}")
    rest = "".join(text[2 * n:])
    return " | ".join(parts) + " | " + (rest[1:] if rest.startswith("=") else rest)
