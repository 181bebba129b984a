"""Tests for tutorlib.scratchpad: worked answers against Python's own addition, the outcome
reward, the split, the warm-up, the error analysis by step type, and bad arguments."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorlib.rl_lm import EOS, EQUALS, PLUS, AdditionTask, RLConfig, WindowPolicy, addition_reward, train_rl
from tutorlib.scratchpad import (
    STEP_TYPES,
    ScratchpadTask,
    ScratchpadWarmupConfig,
    carries,
    format_answer,
    step_error_rates,
    warmup_on_examples,
    worked_answers,
)


def all_pairs(width: int) -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.arange(10**width)
    a, b = torch.meshgrid(v, v, indexing="ij")
    return a.reshape(-1), b.reshape(-1)


def by_hand(a: int, b: int, width: int, scratchpad: bool) -> list[int]:
    """The worked answer from Python integers and strings, independently of the module."""
    tokens: list[int] = []
    if scratchpad:
        for i in range(width):
            low = 10**i  # carry into column i: do the lower columns overflow?
            c = int(a % low + b % low >= low)
            t = a // low % 10 + b // low % 10 + c
            tokens += [t // 10, t % 10]
        tokens.append(EQUALS)
    return tokens + [int(ch) for ch in str(a + b).zfill(width + 1)] + [EOS]


@pytest.mark.parametrize("width", [1, 2])
@pytest.mark.parametrize("scratchpad", [True, False])
def test_worked_answers_all_pairs_match_python(width: int, scratchpad: bool) -> None:
    a, b = all_pairs(width)
    got = worked_answers(a, b, width, scratchpad)
    assert got.shape == (len(a), 3 * width + 3 if scratchpad else width + 2)
    pairs = zip(a.tolist(), b.tolist(), strict=True)
    want = torch.tensor([by_hand(x, y, width, scratchpad) for x, y in pairs])
    assert torch.equal(got, want)
    # the answer digits read as a number are a + b
    answer = got[:, -(width + 2):-1]
    value = (answer * 10 ** torch.arange(width, -1, -1)).sum(1)
    assert torch.equal(value, a + b)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 999), st.integers(0, 999))
def test_worked_answers_three_digits(a: int, b: int) -> None:
    got = worked_answers(torch.tensor([a]), torch.tensor([b]), 3)[0].tolist()
    assert got == by_hand(a, b, 3, True)


def test_carries_closed_form() -> None:
    a, b = all_pairs(2)
    c = carries(a, b, 2)
    for i in range(3):  # c_i = 1 exactly when the lower i columns overflow
        assert torch.equal(c[:, i], (a % 10**i + b % 10**i >= 10**i).long())
    assert torch.equal(c[:, 2], (a + b >= 100).long())


def test_reward_is_outcome_only() -> None:
    task = ScratchpadTask(max_operand=99, n_test=10, n_examples=10, n_train=10)
    a, b = all_pairs(2)
    y = worked_answers(a, b, 2)
    mask = torch.ones_like(y, dtype=torch.bool)
    assert task.reward(y, mask, a + b).eq(1).all()
    bad_pad = y.clone()
    bad_pad[:, :4] = 0  # a wrong scratchpad, right answer: still rewarded
    assert task.reward(bad_pad, mask, a + b).eq(1).all()
    bad_answer = y.clone()
    bad_answer[:, -2] = (bad_answer[:, -2] + 1) % 10
    assert task.reward(bad_answer, mask, a + b).eq(0).all()
    two_eq = y.clone()
    two_eq[:, 1] = EQUALS
    assert task.reward(two_eq, mask, a + b).eq(0).all()
    no_eq = y.clone()
    no_eq[:, 4] = PLUS
    assert task.reward(no_eq, mask, a + b).eq(0).all()
    short = mask.clone()
    short[:, 5:] = False  # stopped right after "=": no answer
    assert task.reward(y, short, a + b).eq(0).all()
    direct = ScratchpadTask(scratchpad=False, n_test=10, n_examples=10, n_train=10)
    yd = worked_answers(a, b, 2, False)
    md = torch.ones_like(yd, dtype=torch.bool)
    assert torch.equal(direct.reward(yd, md, a + b), addition_reward(yd, md, a + b))
    assert torch.equal(AdditionTask(max_operand=99).reward(yd, md, a + b), addition_reward(yd, md, a + b))


def test_split_disjoint_and_shared_by_both_formats() -> None:
    task = ScratchpadTask(n_test=30, n_examples=40, n_train=50, seed=3)
    parts = [task.test_operands(), task.example_operands(), task.operands()]
    keys = [set((x * 100 + y).tolist()) for x, y in parts]
    assert [len(k) for k in keys] == [30, 40, 50]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    direct = ScratchpadTask(scratchpad=False, n_test=30, n_examples=40, n_train=50, seed=3)
    assert torch.equal(direct.operands()[0], parts[2][0])
    assert torch.equal(direct.test_operands()[1], parts[0][1])
    assert task.answer_len == 9 and direct.answer_len == 4
    assert torch.equal(task.targets(*parts[0]), worked_answers(*parts[0], 2))


def test_warmup_fits_its_examples() -> None:
    task = ScratchpadTask(max_operand=9, n_test=10, n_examples=20, n_train=10)
    policy = warmup_on_examples(task, ScratchpadWarmupConfig(steps=150, hidden=32))
    assert isinstance(policy, WindowPolicy) and policy.T == task.answer_len == 6
    a, b = task.example_operands()
    with torch.no_grad():
        greedy = policy(task.prompts(a, b), task.targets(a, b)).argmax(-1)  # teacher-forced
    assert (greedy == task.targets(a, b)).float().mean() > 0.95
    again = warmup_on_examples(task, ScratchpadWarmupConfig(steps=150, hidden=32))
    assert all(torch.equal(p, q) for p, q in zip(policy.parameters(), again.parameters(), strict=True))


def test_train_rl_uses_the_task_reward() -> None:
    task = ScratchpadTask(max_operand=9, n_test=10, n_examples=20, n_train=30)
    policy = warmup_on_examples(task, ScratchpadWarmupConfig(steps=5, hidden=16))
    _, history = train_rl(policy, task, RLConfig(objective="grpo", iterations=2, prompts_per_iteration=4,
                                                 eval_every=1, eval_samples=2))
    assert len(history.accuracy) == 3 and all(0 <= x <= 1 for x in history.accuracy)


def test_step_error_rates_by_hand() -> None:
    task = ScratchpadTask(n_test=10, n_examples=10, n_train=10)
    a, b = torch.tensor([47, 12, 35]), torch.tensor([85, 30, 5])  # carry into column 1: yes, no, yes
    y = task.targets(a, b)[:, None].repeat(1, 4, 1)  # (3, 4, 9)
    rates = step_error_rates(y, a, b, task)
    assert rates == {"units column": (0, 12), "column, no carry in": (0, 4), "column, carry in": (0, 8),
                     "answer": (0, 12)}
    y[0, 0, 1] = 9  # units slip on 47+85
    y[0, 1, 3] = 9  # column-1 slip with a carry in
    y[1, 0, 2] = 9  # column-1 slip without a carry in
    y[2, 0, 6] = 9  # answer slip
    y[2, 1, 0] = 0  # units slip ... and later slips on the same sample do not count
    y[2, 1, 7] = 1
    rates = step_error_rates(y, a, b, task)
    assert rates == {"units column": (2, 12), "column, no carry in": (1, 4), "column, carry in": (1, 6),
                     "answer": (1, 8)}
    direct = ScratchpadTask(scratchpad=False, n_test=10, n_examples=10, n_train=10)
    yd = direct.targets(a, b)[:, None].repeat(1, 2, 1)
    yd[1, 1, 0] = 5
    assert step_error_rates(yd, a, b, direct) == {"units column": (0, 0), "column, no carry in": (0, 0),
                                                  "column, carry in": (0, 0), "answer": (1, 6)}
    assert set(rates) == set(STEP_TYPES)


def test_format_answer() -> None:
    task = ScratchpadTask(n_test=10, n_examples=10, n_train=10)
    y = task.targets(torch.tensor([47]), torch.tensor([85]))[0]
    assert format_answer(y, 47, 85, task) == "7+5=12 | 4+8+1=13 | 132·"
    direct = ScratchpadTask(scratchpad=False, n_test=10, n_examples=10, n_train=10)
    assert format_answer(direct.targets(torch.tensor([3]), torch.tensor([4]))[0], 3, 4, direct) == "007·"
    y[2] = 0  # column 1 wrote a carry of 0 (wrong), then the policy stopped
    y[4] = EOS
    assert format_answer(y, 47, 85, task) == "7+5=12 | 4+8+1=03 | ·"
    y[0] = 0  # column 0 wrote no carry: column 1 is glossed without "+1"
    assert format_answer(y, 47, 85, task) == "7+5=02 | 4+8=03 | ·"


# --------------------------------------------------------------------------------------------
# bad arguments: every error names the argument
# --------------------------------------------------------------------------------------------
def test_bad_arguments() -> None:
    a, b = torch.tensor([1, 2]), torch.tensor([3, 4])
    with pytest.raises(ValueError, match="width"):
        carries(a, b, 0)
    with pytest.raises(ValueError, match="a must"):
        carries(torch.tensor([100, 2]), b, 2)
    with pytest.raises(ValueError, match="b must"):
        carries(a, torch.tensor([-1, 2]), 2)
    with pytest.raises(ValueError, match="b"):
        carries(a, torch.tensor([1, 2, 3]), 2)
    with pytest.raises(TypeError, match="a"):
        worked_answers(a.float(), b, 2)
    with pytest.raises(TypeError, match="scratchpad"):
        worked_answers(a, b, 2, scratchpad=1)
    with pytest.raises(ValueError, match="n_train"):
        ScratchpadTask(max_operand=9, n_test=50, n_examples=40, n_train=20)
    with pytest.raises(ValueError, match="n_test"):
        ScratchpadTask(n_test=0)
    with pytest.raises(ValueError, match="seed"):
        ScratchpadTask(seed=-1)
    with pytest.raises(TypeError, match="scratchpad"):
        ScratchpadTask(scratchpad="yes")
    with pytest.raises(ValueError, match="max_operand"):
        ScratchpadTask(max_operand=0)
    task = ScratchpadTask(max_operand=9, n_test=10, n_examples=10, n_train=10)
    with pytest.raises(ValueError, match="steps"):
        ScratchpadWarmupConfig(steps=0)
    with pytest.raises(ValueError, match="lr"):
        ScratchpadWarmupConfig(lr=-1.0)
    with pytest.raises(TypeError, match="task"):
        warmup_on_examples(AdditionTask(), ScratchpadWarmupConfig())
    with pytest.raises(TypeError, match="cfg"):
        warmup_on_examples(task, RLConfig())
    cfg = ScratchpadWarmupConfig()
    cfg.hidden = 0
    with pytest.raises(ValueError, match="hidden"):
        warmup_on_examples(task, cfg)
    y = task.targets(a, b)[:, None]
    with pytest.raises(TypeError, match="task"):
        step_error_rates(y, a, b, AdditionTask())
    with pytest.raises(ValueError, match="answers"):
        step_error_rates(y[..., :-1], a, b, task)
    with pytest.raises(ValueError, match="answers"):
        step_error_rates(y[:1], a, b, task)
    with pytest.raises(TypeError, match="answers"):
        step_error_rates(y.float(), a, b, task)
    with pytest.raises(ValueError, match="a must"):
        step_error_rates(y, torch.tensor([10, 1]), b, task)
    with pytest.raises(TypeError, match="task"):
        format_answer(y[0, 0], 1, 3, AdditionTask())
    with pytest.raises(ValueError, match="answer"):
        format_answer(y[0, 0, :-1], 1, 3, task)
    with pytest.raises(ValueError, match="answer"):
        format_answer(y[0, 0] + 20, 1, 3, task)
    with pytest.raises(ValueError, match="a must"):
        format_answer(y[0, 0], 10, 3, task)
    with pytest.raises(ValueError, match="b"):
        format_answer(y[0, 0], 1, -3, task)
    with pytest.raises(TypeError, match="b"):
        format_answer(y[0, 0], 1, 3.0, task)
    mask = torch.ones_like(y, dtype=torch.bool)
    with pytest.raises(ValueError, match="answers"):
        task.reward(y, mask[..., :-1], (a + b)[:, None])
    with pytest.raises(ValueError, match="answers"):
        task.reward(y + 20, mask, (a + b)[:, None])
    with pytest.raises(ValueError, match="target"):
        task.reward(y, mask, (a + b)[:, None] + 100)
    with pytest.raises(ValueError, match="answers"):
        step_error_rates(y - 1, a, b, task)
