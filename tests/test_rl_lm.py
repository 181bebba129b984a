"""tutorlib.rl_lm: the Kimi k1.5 and GRPO objectives against values and gradients worked out by hand."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorlib import rl_lm as R

pytestmark = pytest.mark.usefixtures("one_thread")

LOG = math.log


def leaf(values):
    """A (1, k, T) leaf tensor of log-probabilities, from a nested list of probabilities."""
    return torch.tensor([[[LOG(p) for p in row] for row in values]], dtype=torch.float64,
                        requires_grad=True)


def const(values):
    return torch.tensor([[[LOG(p) for p in row] for row in values]], dtype=torch.float64)


rewards_st = st.lists(st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=8),
                      min_size=1, max_size=5).filter(lambda rows: len({len(r) for r in rows}) == 1)


# --------------------------------------------------------------------------------------------
# group baselines
# --------------------------------------------------------------------------------------------
def test_group_mean_baseline_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    expected = torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.25, 0.25, 0.25, -0.75]])
    assert torch.allclose(R.group_mean_baseline(r), expected)


def test_group_normalised_advantages_by_hand():
    # mean 1/4; sample std sqrt((0.75^2 + 3 * 0.25^2) / 3) = sqrt(0.25) = 0.5
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(R.group_normalised_advantages(r, eps=0.0), torch.tensor([[1.5, -0.5, -0.5, -0.5]]))
    # with eps the denominator is 0.5 + eps
    assert torch.allclose(R.group_normalised_advantages(r, eps=0.1),
                          torch.tensor([[0.75, -0.25, -0.25, -0.25]]) / 0.6)


def test_constant_group_teaches_nothing():
    r = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    assert torch.equal(R.group_normalised_advantages(r, eps=0.0), torch.zeros(2, 3))
    assert torch.equal(R.group_mean_baseline(r), torch.zeros(2, 3))


@settings(max_examples=100, deadline=None)
@given(rewards_st, st.floats(0.1, 10), st.floats(-10, 10))
def test_group_normalisation_properties(rows, scale, shift):
    r = torch.tensor(rows, dtype=torch.float64)
    adv = R.group_normalised_advantages(r, eps=0.0)
    assert torch.allclose(adv.mean(1), torch.zeros(len(rows), dtype=torch.float64), atol=1e-9)
    spread = r.std(1) > 1e-6
    if spread.any():
        assert torch.allclose(adv[spread].std(1), torch.ones(int(spread.sum()), dtype=torch.float64))
        # invariant to a positive affine change of the rewards
        adv2 = R.group_normalised_advantages(scale * r + shift, eps=0.0)
        assert torch.allclose(adv[spread], adv2[spread], atol=1e-6)
    assert torch.allclose(R.group_mean_baseline(r).sum(1), torch.zeros(len(rows), dtype=torch.float64),
                          atol=1e-9)


# --------------------------------------------------------------------------------------------
# Kimi k1.5
# --------------------------------------------------------------------------------------------
def test_kimi_loss_value_and_gradient_by_hand():
    # two one-token answers: pi_theta = (0.5, 0.25), pi_i = (0.5, 0.5), rewards (1, 0)
    logp, logp_old = leaf([[0.5], [0.25]]), const([[0.5], [0.5]])
    mask = torch.ones(1, 2, 1, dtype=torch.bool)
    rewards = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    tau = 0.5
    # r - rbar = (0.5, -0.5); log-ratio l = (0, -ln 2)
    # residuals 0.5 - 0.5 * 0 = 0.5 and -0.5 + 0.5 ln 2 = -0.153426
    e2 = -0.5 + 0.5 * LOG(2)
    loss = R.kimi_loss(logp, logp_old, mask, rewards, tau)
    assert loss.item() == pytest.approx((0.25 + e2**2) / 2, rel=1e-12)  # 0.136770
    loss.backward()
    # dL/dlogp_j = (1/k) * 2 * residual_j * (-tau)
    expected = torch.tensor([[[-0.25], [-tau * e2]]], dtype=torch.float64)
    assert torch.allclose(logp.grad, expected, atol=1e-12)


def test_kimi_loss_sums_token_log_ratios_over_the_answer():
    # one answer of two tokens (ratio 0.8 and 0.5), one of one token; the padded token is ignored
    logp = leaf([[0.4, 0.25], [0.5, 0.9]])
    logp_old = const([[0.5, 0.5], [0.5, 0.1]])
    mask = torch.tensor([[[True, True], [True, False]]])
    rewards = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    tau = 2.0
    l1 = LOG(0.8) + LOG(0.5)
    expected = ((-0.5 - tau * l1) ** 2 + 0.5**2) / 2
    loss = R.kimi_loss(logp, logp_old, mask, rewards, tau)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    g1 = -tau * (-0.5 - tau * l1)  # the same on both tokens of answer 1
    assert torch.allclose(logp.grad, torch.tensor([[[g1, g1], [-tau * 0.5, 0.0]]], dtype=torch.float64))


def test_kimi_gradient_is_minus_2tau_times_the_papers_gradient():
    """Kimi k1.5 Eq. (3): (1/k) sum_j [grad log pi (r_j - rbar) - tau/2 grad (log pi/pi_i)^2]."""
    torch.manual_seed(0)
    policy = R.WindowPolicy(prompt_len=4, max_new_tokens=3, d_embed=4, hidden=8).double()
    task = R.AdditionTask(3)
    a, b = task.operands()
    prompts = task.prompts(a[:2], b[:2])
    answers, mask = R.sample_answers(policy, prompts, 4, torch.Generator().manual_seed(1))
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        logp_old = R.answer_log_probs(policy, prompts, answers, mask)
    with torch.no_grad():  # move the policy away from pi_i so the regulariser is not 0
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    tau = 0.7
    params = list(policy.parameters())
    logp = R.answer_log_probs(policy, prompts, answers, mask)
    ours = torch.autograd.grad(R.kimi_loss(logp, logp_old, mask, rewards, tau), params)
    logp = R.answer_log_probs(policy, prompts, answers, mask)
    seq, ratio = logp.sum(-1), (logp - logp_old).sum(-1)
    centred = rewards - rewards.mean(1, keepdim=True)
    paper_objective = (seq * centred - tau / 2 * ratio**2).mean()  # its gradient is Eq. (3)
    paper = torch.autograd.grad(paper_objective, params)
    for g_ours, g_paper in zip(ours, paper, strict=True):
        assert torch.allclose(g_ours, -2 * tau * g_paper, atol=1e-10)


def test_kimi_length_reward_by_hand():
    lengths = torch.tensor([[2, 3, 4, 6], [5, 5, 5, 5], [3, 5, 4, 4]])
    correct = torch.tensor([[True, False, True, False],
                            [True, False, True, True],
                            [False, True, True, False]])
    # row 0: min 2, max 6, lambda = 0.5 - (0, 1, 2, 4)/4 = (0.5, 0.25, 0, -0.5)
    #        correct keep lambda, wrong get min(0, lambda): (0.5, 0, 0, -0.5)
    # row 1: all the same length -> 0
    # row 2: min 3, max 5, lambda = (0.5, -0.5, 0, 0); (wrong 0.5 -> 0), -0.5, 0, 0
    expected = torch.tensor([[0.5, 0.0, 0.0, -0.5], [0.0, 0.0, 0.0, 0.0], [0.0, -0.5, 0.0, 0.0]])
    assert torch.allclose(R.kimi_length_reward(lengths, correct), expected)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 4), st.integers(2, 8), st.integers(0, 2**31 - 1))
def test_kimi_length_reward_properties(B, k, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 10, (B, k), generator=g)
    correct = torch.rand(B, k, generator=g) < 0.5
    lr = R.kimi_length_reward(lengths, correct)
    assert ((lr >= -0.5) & (lr <= 0.5)).all()
    assert (lr[~correct] <= 0).all()  # a wrong answer is never rewarded
    # among answers of a group with the same correctness, shorter never gets less
    for i in range(B):
        for j in range(k):
            for m in range(k):
                if correct[i, j] == correct[i, m] and lengths[i, j] < lengths[i, m]:
                    assert lr[i, j] >= lr[i, m]


# --------------------------------------------------------------------------------------------
# GRPO
# --------------------------------------------------------------------------------------------
def test_k3_by_hand_and_its_expectation_is_the_kl():
    # u = pi_ref / pi = 0.5 / 0.6
    value = R.k3_kl(torch.tensor(LOG(0.6), dtype=torch.float64),
                    torch.tensor(LOG(0.5), dtype=torch.float64)).item()
    assert value == pytest.approx(0.5 / 0.6 - LOG(0.5 / 0.6) - 1, rel=1e-6)
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    q = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    expectation = (p * R.k3_kl(p.log(), q.log())).sum()  # E_{y ~ p}[k3], exactly
    kl = torch.distributions.kl_divergence(torch.distributions.Categorical(p),
                                           torch.distributions.Categorical(q))
    assert expectation.item() == pytest.approx(kl.item(), rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.floats(-20, 0), st.floats(-20, 0))
def test_k3_is_never_negative(lp, lq):
    # up to round-off: e^x - x - 1 for |x| ~ 1e-17 can come out as -1.1e-16 (found by hypothesis in CI)
    assert R.k3_kl(torch.tensor(lp, dtype=torch.float64), torch.tensor(lq, dtype=torch.float64)) >= -1e-15


def test_grpo_loss_value_and_gradient_by_hand():
    # pi_theta = (0.6, 0.3), pi_old = pi_ref = (0.5, 0.5): ratios 1.2 and 0.6; rewards (1, 0)
    logp, logp_old, logp_ref = leaf([[0.6], [0.3]]), const([[0.5], [0.5]]), const([[0.5], [0.5]])
    mask = torch.ones(1, 2, 1, dtype=torch.bool)
    rewards = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    beta = 0.1
    a = 1 / math.sqrt(2)  # mean 0.5, sample std sqrt(0.5): advantages (+a, -a)
    kl1 = 0.5 / 0.6 - LOG(0.5 / 0.6) - 1
    kl2 = 0.5 / 0.3 - LOG(0.5 / 0.3) - 1
    # answer 1: A > 0, ratio 1.2 = 1 + eps: min(1.2a, 1.2a) = 1.2a
    # answer 2: A < 0, ratio 0.6 < 1 - eps: min(0.6 * -a, 0.8 * -a) = -0.8a (clipped)
    j = (1.2 * a - beta * kl1 + -0.8 * a - beta * kl2) / 2
    loss = R.grpo_loss(logp, logp_old, logp_ref, mask, rewards, clip_eps=0.2, beta=beta, eps=0.0)
    assert loss.item() == pytest.approx(-j, rel=1e-12)
    loss.backward()
    # d(ratio * A)/dlogp = ratio * A; the clipped term has no gradient;
    # d k3 / dlogp = 1 - pi_ref / pi
    g1 = (1.2 * a - beta * (1 - 0.5 / 0.6)) / 2
    g2 = (0.0 - beta * (1 - 0.5 / 0.3)) / 2
    assert torch.allclose(logp.grad, -torch.tensor([[[g1], [g2]]], dtype=torch.float64), atol=1e-12)


def test_grpo_averages_tokens_within_each_answer():
    # ratio 1 everywhere and pi_ref = pi: the gradient on token t of answer j is A_j / (k |y_j|)
    logp = leaf([[0.5, 0.5], [0.5, 0.5]])
    mask = torch.tensor([[[True, True], [True, False]]])
    rewards = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    loss = R.grpo_loss(logp, logp.detach(), logp.detach(), mask, rewards, eps=0.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    loss.backward()
    a = 1 / math.sqrt(2)
    expected = -torch.tensor([[[a / 4, a / 4], [-a / 2, 0.0]]], dtype=torch.float64)
    assert torch.allclose(logp.grad, expected, atol=1e-12)


def test_log_mean_exp_baseline_by_hand_and_its_limits():
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    b = LOG((math.e + 3) / 4)  # tau = 1: log of the mean of e^r
    assert torch.allclose(R.group_log_mean_exp_baseline(r, 1.0), r - b, atol=1e-12)
    # tau -> infinity: the mean reward (Kimi's second step); tau -> 0: the best reward
    assert torch.allclose(R.group_log_mean_exp_baseline(r, 1e6), R.group_mean_baseline(r), atol=1e-6)
    small = R.group_log_mean_exp_baseline(r, 1e-3)  # b = 1 + 1e-3 log(1/4)
    assert torch.allclose(small, r - 1 - 1e-3 * LOG(0.25), atol=1e-12)
    assert torch.isfinite(R.group_log_mean_exp_baseline(r * 100, 1e-3)).all()  # no overflow


@settings(max_examples=50, deadline=None)
@given(rows=rewards_st, tau=st.floats(0.01, 100))
def test_log_mean_exp_baseline_lies_between_the_mean_and_the_best(rows, tau):
    r = torch.tensor(rows, dtype=torch.float64)
    b = r - R.group_log_mean_exp_baseline(r, tau)  # (B, k), the same in every column
    assert torch.allclose(b, b[:, :1].expand_as(b), atol=1e-9)
    assert (b[:, 0] >= r.mean(1) - 1e-9).all()  # Jensen
    assert (b[:, 0] <= r.amax(1) + 1e-9).all()


def test_kimi_loss_with_the_log_mean_exp_baseline_by_hand():
    logp, logp_old = leaf([[0.5], [0.25]]), const([[0.5], [0.5]])
    mask = torch.ones(1, 2, 1, dtype=torch.bool)
    rewards = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    tau = 0.5
    b = tau * LOG((math.exp(1 / tau) + 1) / 2)
    residuals = (1 - b - tau * 0.0, 0 - b - tau * -LOG(2))
    loss = R.kimi_loss(logp, logp_old, mask, rewards, tau, baseline="log_mean_exp")
    assert loss.item() == pytest.approx((residuals[0] ** 2 + residuals[1] ** 2) / 2, rel=1e-12)
    loss.backward()
    expected = torch.tensor([[[-tau * residuals[0]], [-tau * residuals[1]]]], dtype=torch.float64)
    assert torch.allclose(logp.grad, expected, atol=1e-12)
    with pytest.raises(ValueError, match="baseline"):
        R.kimi_loss(logp, logp_old, mask, rewards, tau, baseline="max")
    with pytest.raises(ValueError, match="tau"):
        R.group_log_mean_exp_baseline(rewards, float("nan"))


def test_dr_grpo_weighs_every_token_alike_and_does_not_divide_by_the_std():
    # ratio 1 and pi_ref = pi: the gradient on every token is (r_j - mean r) / (k T)
    logp = leaf([[0.5, 0.5], [0.5, 0.5]])
    mask = torch.tensor([[[True, True], [True, False]]])
    rewards = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    loss = R.grpo_loss(logp, logp.detach(), logp.detach(), mask, rewards, dr=True)
    assert loss.item() == pytest.approx(-(2 * 0.5 - 0.5) / 2 / 2, abs=1e-12)  # -(sum_j,t A_j)/(kT)
    loss.backward()
    expected = -torch.tensor([[[0.5 / 4, 0.5 / 4], [-0.5 / 4, 0.0]]], dtype=torch.float64)
    assert torch.allclose(logp.grad, expected, atol=1e-12)
    # scaling the rewards scales Dr. GRPO's gradient; GRPO's std division cancels it
    for dr, factor in ((True, 3.0), (False, 1.0)):
        grads = []
        for scale in (1.0, 3.0):
            x = leaf([[0.5, 0.5], [0.5, 0.5]])
            R.grpo_loss(x, x.detach(), x.detach(), mask, scale * rewards, dr=dr, eps=0.0).backward()
            grads.append(x.grad)
        assert torch.allclose(grads[1], factor * grads[0], atol=1e-12)
    with pytest.raises(TypeError, match="dr"):
        R.grpo_loss(logp, logp.detach(), logp.detach(), mask, rewards, dr=1)


@pytest.mark.parametrize("ratio, advantage_sign, clipped", [
    (1.5, +1, True), (0.5, +1, False), (0.5, -1, True), (1.5, -1, False), (1.1, +1, False),
])
def test_grpo_clip_stops_the_gradient_only_past_the_favoured_side(ratio, advantage_sign, clipped):
    p_old = 0.4
    logp = leaf([[ratio * p_old], [0.4]])
    rewards = torch.tensor([[1.0, 0.0] if advantage_sign > 0 else [0.0, 1.0]], dtype=torch.float64)
    mask = torch.ones(1, 2, 1, dtype=torch.bool)
    R.grpo_loss(logp, const([[p_old], [0.4]]), const([[0.4], [0.4]]), mask, rewards, beta=0.0).backward()
    assert (logp.grad[0, 0, 0].abs() < 1e-12) == clipped


# --------------------------------------------------------------------------------------------
# bad arguments
# --------------------------------------------------------------------------------------------
def _ok():
    logp = torch.zeros(2, 3, 4)
    return logp, logp.clone(), torch.ones(2, 3, 4, dtype=torch.bool), torch.zeros(2, 3)


def test_group_baselines_need_two_answers_and_a_group():
    for fn in (R.group_mean_baseline, R.group_normalised_advantages):
        with pytest.raises(ValueError, match="k >= 2"):
            fn(torch.zeros(3, 1))
        with pytest.raises(ValueError, match="no groups"):
            fn(torch.zeros(0, 4))
        with pytest.raises(ValueError, match=r"\(B, k\)"):
            fn(torch.zeros(4))
        with pytest.raises(TypeError, match="floating-point"):
            fn(torch.zeros(2, 4, dtype=torch.long))
        with pytest.raises(TypeError, match=r"torch\.Tensor"):
            fn([[1.0, 0.0]])
        with pytest.raises(ValueError, match="finite"):
            fn(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="eps"):
        R.group_normalised_advantages(torch.zeros(2, 2), eps=-1.0)


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf")])
def test_kimi_rejects_a_non_positive_tau(tau):
    logp, old, mask, r = _ok()
    with pytest.raises(ValueError, match="tau"):
        R.kimi_loss(logp, old, mask, r, tau)


def test_objectives_reject_mismatched_shapes_and_empty_answers():
    logp, old, mask, r = _ok()
    with pytest.raises(ValueError, match="k >= 2"):
        R.kimi_loss(logp[:, :1], old[:, :1], mask[:, :1], r[:, :1], 1.0)
    with pytest.raises(ValueError, match="match rewards"):
        R.kimi_loss(logp, old, mask, torch.zeros(2, 4), 1.0)
    with pytest.raises(ValueError, match="logp_old"):
        R.kimi_loss(logp, old[..., :3], mask, r, 1.0)
    with pytest.raises(ValueError, match="logp_ref"):
        R.grpo_loss(logp, old, old[:1], mask, r)
    with pytest.raises(TypeError, match="bool"):
        R.grpo_loss(logp, old, old, mask.float(), r)
    with pytest.raises(ValueError, match="empty answer"):
        empty = mask.clone()
        empty[1, 2] = False
        R.grpo_loss(logp, old, old, empty, r)
    with pytest.raises(ValueError, match="clip_eps"):
        R.grpo_loss(logp, old, old, mask, r, clip_eps=0.0)
    with pytest.raises(ValueError, match="beta"):
        R.grpo_loss(logp, old, old, mask, r, beta=-0.1)
    with pytest.raises(TypeError, match="beta"):
        R.grpo_loss(logp, old, old, mask, r, beta="0.1")
    with pytest.raises(ValueError, match="same shape"):
        R.k3_kl(torch.zeros(3), torch.zeros(4))


def test_length_reward_rejects_bad_arguments():
    with pytest.raises(ValueError, match="like lengths"):
        R.kimi_length_reward(torch.ones(2, 3), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        R.kimi_length_reward(torch.ones(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="empty"):
        R.kimi_length_reward(torch.ones(0, 3), torch.ones(0, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=">= 0"):
        R.kimi_length_reward(-torch.ones(1, 3), torch.ones(1, 3, dtype=torch.bool))


# --------------------------------------------------------------------------------------------
# the task, the verifier and the policy
# --------------------------------------------------------------------------------------------
def test_prompts_and_answers_encode_as_written():
    task = R.AdditionTask(12)
    prompt = task.prompts(torch.tensor([7]), torch.tensor([12]))
    assert prompt.tolist() == [[0, 7, R.PLUS, 1, 2, R.EQUALS]]
    answers = R.encode_answers(torch.tensor([19, 5]), torch.tensor([0, 2]), 5)
    assert answers.tolist() == [[1, 9, R.EOS, R.PAD, R.PAD], [0, 0, 5, R.EOS, R.PAD]]
    with pytest.raises(ValueError, match="max_new_tokens"):
        R.encode_answers(torch.tensor([19]), torch.tensor([3]), 5)
    with pytest.raises(ValueError, match="max_operand"):
        R.AdditionTask(0)


def test_verifier_by_hand():
    E, P = R.EOS, R.PAD
    answers = torch.tensor([
        [7, E, P, P],        # "7"  -> right
        [0, 0, 7, E],        # "007" -> right: leading zeros are fine
        [7, 7, 7, 7],        # no end token -> wrong
        [R.PLUS, 7, E, P],   # a "+" in the answer -> wrong
        [E, P, P, P],        # nothing before the end -> wrong
        [1, 7, E, P],        # 17 -> wrong
    ])
    mask = answers != P
    reward = R.addition_reward(answers, mask, torch.full((6,), 7))
    assert reward.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="target"):
        R.addition_reward(answers, mask, torch.full((5,), 7))
    with pytest.raises(TypeError, match="answers"):
        R.addition_reward(answers.tolist(), mask, torch.full((6,), 7))


def test_policy_is_causal_and_sampling_stops_at_the_end_token():
    torch.manual_seed(0)
    policy = R.WindowPolicy(prompt_len=4, max_new_tokens=5)
    task = R.AdditionTask(9)
    a, b = task.operands()
    prompts = task.prompts(a[:6], b[:6])
    answers = torch.randint(0, R.N_ACTIONS, (6, 5))
    changed = answers.clone()
    changed[:, 3:] = (changed[:, 3:] + 1) % R.N_ACTIONS
    with torch.no_grad():
        x, y = policy(prompts, answers), policy(prompts, changed)
    assert torch.equal(x[:, :4], y[:, :4]) and not torch.equal(x[:, 4], y[:, 4])

    sampled, mask = R.sample_answers(policy, prompts, 7, torch.Generator().manual_seed(0))
    assert sampled.shape == mask.shape == (6, 7, 5)
    for answer, m in zip(sampled.reshape(-1, 5).tolist(), mask.reshape(-1, 5).tolist(), strict=True):
        n = sum(m)
        assert m == [True] * n + [False] * (5 - n)  # the mask is a prefix
        assert all(t == R.PAD for t in answer[n:])
        assert R.EOS not in answer[: n - 1]  # the end token can only come last
        assert n == 5 or answer[n - 1] == R.EOS


def test_answer_log_probs_are_a_distribution_over_answers():
    """Summing exp(log pi(y|x)) over every answer of length <= T gives 1 (each step is normalised)."""
    torch.manual_seed(0)
    policy = R.WindowPolicy(prompt_len=4, max_new_tokens=2, d_embed=4, hidden=8).double()
    prompts = R.AdditionTask(9).prompts(torch.tensor([3]), torch.tensor([4]))
    all_answers, all_masks = [], []
    for t0 in range(R.N_ACTIONS):
        if t0 == R.EOS:
            all_answers.append([R.EOS, R.PAD])
            all_masks.append([True, False])
            continue
        for t1 in range(R.N_ACTIONS):
            all_answers.append([t0, t1])
            all_masks.append([True, True])
    answers = torch.tensor(all_answers)[None]  # (1, n, 2)
    mask = torch.tensor(all_masks)[None]
    with torch.no_grad():
        total = R.answer_log_probs(policy, prompts, answers, mask).sum(-1).exp().sum()
    assert total.item() == pytest.approx(1.0, rel=1e-12)


def test_train_rl_runs_both_objectives_and_leaves_the_start_alone():
    task = R.AdditionTask(3)
    start = R.warmup_policy(task, R.WarmupConfig(steps=3, batch=8, max_new_tokens=5, hidden=16))
    before = [p.clone() for p in start.parameters()]
    for objective, baseline in (("kimi", "mean"), ("kimi", "log_mean_exp"), ("grpo", "mean"),
                                ("dr_grpo", "mean")):
        cfg = R.RLConfig(objective=objective, iterations=3, prompts_per_iteration=4, k=3,
                         inner_steps=2, eval_every=2, eval_samples=2, length_weight=0.5,
                         kimi_baseline=baseline)
        _, history = R.train_rl(start, task, cfg)
        assert history.iteration == [0, 2, 3] and len(history.step_kl) == 3
        assert history.kl_ref[0] == pytest.approx(0.0, abs=1e-6)
        # iteration 0 is the start policy, measured with the generator seeded seed + 1
        again = R.evaluate(start, start, task, 2, torch.Generator().manual_seed(cfg.seed + 1))
        assert history.accuracy[0] == again["accuracy"] and history.length[0] == again["length"]
        n = 16 * 2  # prompts times samples: every accuracy is a count over n answers
        assert all(abs(a * n - round(a * n)) < 1e-9 for a in history.accuracy)
    assert all(torch.equal(p, q) for p, q in zip(before, start.parameters(), strict=True))
    with pytest.raises(ValueError, match="objective"):
        R.train_rl(start, task, R.RLConfig(objective="ppo"))
    with pytest.raises(ValueError, match="k"):
        R.train_rl(start, task, R.RLConfig(k=1))


def test_prompts_refuse_operands_wider_than_the_task():
    task = R.AdditionTask(9)
    with pytest.raises(ValueError, match=r"a must hold operands in \[0, max_operand=9\]"):
        task.prompts(torch.tensor([50]), torch.tensor([1]))  # 50 used to be written "0"
    with pytest.raises(ValueError, match=r"b must have shape \(P,\) with P = 1"):
        task.prompts(torch.tensor([5]), torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="a must be a integer tensor"):
        task.prompts(torch.tensor([5.0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="n must hold integers in"):
        R.digits(torch.tensor([123]), 2)
    assert R.digits(torch.tensor([7, 42]), 2).tolist() == [[0, 7], [4, 2]]


def test_configs_and_policy_check_their_arguments():
    with pytest.raises(ValueError, match=r"RLConfig\.clip_eps must be finite and > 0"):
        R.RLConfig(clip_eps=-0.2)
    with pytest.raises(ValueError, match=r"RLConfig\.objective must be one of"):
        R.RLConfig(objective="ppo")
    with pytest.raises(ValueError, match=r"RLConfig\.kimi_baseline must be one of"):
        R.RLConfig(kimi_baseline="max")
    with pytest.raises(ValueError, match=r"WarmupConfig\.steps must be >= 1"):
        R.WarmupConfig(steps=0)
    policy = R.WindowPolicy(4, 3, d_embed=2, hidden=4)
    with pytest.raises(ValueError, match=r"prompts and answers must hold token ids in \[0, 14\)"):
        policy(torch.tensor([[0, 10, 1, 99]]), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="prompts must be an integer tensor"):
        policy(torch.zeros(1, 4), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="logp must be finite"):
        R.k3_kl(torch.tensor([float("nan")]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="leading_zeros must be >= 0"):
        R.encode_answers(torch.tensor([3]), torch.tensor([-1]), 4)


@pytest.mark.parametrize("rows", [[[0.0, 5e-324]], [[1e-200, 3e-200, 2e-200]], [[-1e-170, 1e-170, 0.0, 0.0]]])
def test_group_normalisation_survives_rewards_whose_spread_underflows(rows):
    """Found by hypothesis: with subnormal differences the mean itself rounds, so the group's
    range is mapped onto [0, 1] before standardising (which ignores shift and scale)."""
    r = torch.tensor(rows, dtype=torch.float64)
    adv = R.group_normalised_advantages(r, eps=0.0)
    assert abs(adv.mean().item()) < 1e-12 and adv.std().item() == pytest.approx(1.0, abs=1e-12)
    expected = (r - r.min()) / (r.max() - r.min())  # the same group at a normal scale
    expected = (expected - expected.mean()) / expected.std()
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------
# pass@k (Chen et al. 2021)
# --------------------------------------------------------------------------------------------
def brute_pass_at_k(c, n, k):
    """Share of the k-subsets of n answers (the first c right) that hold a right answer."""
    from itertools import combinations

    subsets = list(combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_matches_enumeration_over_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert R.pass_at_k(c, n, k) == pytest.approx(brute_pass_at_k(c, n, k), abs=1e-12)


@given(st.integers(1, 200), st.data())
@settings(max_examples=60, deadline=None)
def test_pass_at_k_closed_forms(n, data):
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    assert R.pass_at_k(c, n, 1) == pytest.approx(c / n, abs=1e-12)  # k = 1: the plain accuracy
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)  # exact big integers
    assert R.pass_at_k(c, n, k) == pytest.approx(exact, abs=1e-12)
    assert R.pass_at_k(c, n, n) == (1.0 if c > 0 else 0.0)


def test_pass_at_k_is_unbiased_and_the_plug_in_is_not():
    """E over c ~ Binomial(n, p) of the estimate is 1 - (1-p)^k; the plug-in 1 - (1 - c/n)^k is lower."""
    n, k, p = 10, 4, 0.2
    weights = [math.comb(n, c) * p**c * (1 - p) ** (n - c) for c in range(n + 1)]
    mean = sum(w * R.pass_at_k(c, n, k) for c, w in enumerate(weights))
    plug_in = sum(w * (1 - (1 - c / n) ** k) for c, w in enumerate(weights))
    assert mean == pytest.approx(1 - (1 - p) ** k, abs=1e-12)
    assert plug_in < mean - 0.01


def test_pass_at_k_tensor_input_elementwise():
    c = torch.tensor([[0, 1, 3], [7, 10, 2]])
    out = R.pass_at_k(c, 10, 3)
    assert out.shape == c.shape and out.dtype == torch.float64
    for idx in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]:
        assert out[idx].item() == pytest.approx(R.pass_at_k(int(c[idx]), 10, 3), abs=1e-15)


def test_pass_at_k_large_n_is_stable():
    # C(1000, 500) overflows a float64; the product form does not
    assert R.pass_at_k(1, 1000, 500) == pytest.approx(0.5, abs=1e-12)
    assert R.pass_at_k(0, 1000, 500) == 0.0


@pytest.mark.parametrize("args, exc, match", [
    ((-1, 10, 1), ValueError, "n_correct"),
    ((11, 10, 1), ValueError, "n_correct"),
    ((torch.tensor([3, 11]), 10, 1), ValueError, "n_correct"),
    ((torch.tensor([3.0]), 10, 1), TypeError, "n_correct"),
    ((2.0, 10, 1), TypeError, "n_correct"),
    ((True, 10, 1), TypeError, "n_correct"),
    ((1, 0, 1), ValueError, "n_samples"),
    ((1, 10.0, 1), TypeError, "n_samples"),
    ((1, 10, 0), ValueError, "k"),
    ((1, 10, 11), ValueError, "k"),
    ((1, 10, 2.5), TypeError, "k"),
])
def test_pass_at_k_bad_arguments(args, exc, match):
    with pytest.raises(exc, match=match):
        R.pass_at_k(*args)


# --------------------------------------------------------------------------------------------
# Kimi k1.5's prioritised sampling
# --------------------------------------------------------------------------------------------
def test_prioritised_prompts_frequencies_follow_one_minus_success():
    success = torch.tensor([0.0, 0.5, 0.75, 1.0, 0.99])
    weights = torch.tensor([1.0, 0.5, 0.25, R.PRIORITY_FLOOR, R.PRIORITY_FLOOR])  # by hand
    n = 200_000
    idx = R.prioritised_prompts(success, n, torch.Generator().manual_seed(0))
    assert idx.shape == (n,) and idx.dtype == torch.long
    freq = torch.bincount(idx, minlength=5).double() / n
    expected = (weights / weights.sum()).double()
    # binomial standard error at n = 200k is below 1.2e-3; allow 4 of them
    assert torch.allclose(freq, expected, atol=5e-3), (freq, expected)


def test_prioritised_prompts_all_solved_is_uniform_and_deterministic_per_seed():
    idx = R.prioritised_prompts(torch.ones(4), 40_000, torch.Generator().manual_seed(1))
    freq = torch.bincount(idx, minlength=4).double() / 40_000
    assert torch.allclose(freq, torch.full((4,), 0.25, dtype=torch.float64), atol=0.01)
    rates = torch.rand(6, generator=torch.Generator().manual_seed(9))
    a = R.prioritised_prompts(rates, 10, torch.Generator().manual_seed(3))
    b = R.prioritised_prompts(rates, 10, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_train_rl_prioritised_runs_and_uniform_unchanged():
    task = R.AdditionTask(max_operand=2)
    torch.manual_seed(0)
    start = R.WindowPolicy(task.prompt_len, max_new_tokens=3)
    common = dict(iterations=3, prompts_per_iteration=4, k=3, eval_every=3, eval_samples=2)
    _, h = R.train_rl(start, task, R.RLConfig(prompt_sampling="prioritised", **common))
    assert len(h.step_kl) == 3 and all(math.isfinite(x) for x in h.step_kl)
    # the default stays the uniform draw: two runs with the same seed agree exactly
    _, h1 = R.train_rl(start, task, R.RLConfig(**common))
    _, h2 = R.train_rl(start, task, R.RLConfig(prompt_sampling="uniform", **common))
    assert h1.step_kl == h2.step_kl


@pytest.mark.parametrize("args, exc, match", [
    ((torch.tensor([0.5, 1.5]), 3), ValueError, "success"),
    ((torch.tensor([0.5, -0.1]), 3), ValueError, "success"),
    ((torch.tensor([0.5, float("nan")]), 3), ValueError, "success"),
    ((torch.zeros(0), 3), ValueError, "success"),
    ((torch.zeros(2, 2), 3), ValueError, "success"),
    ((torch.tensor([0, 1]), 3), TypeError, "success"),
    (([0.5, 0.5], 3), TypeError, "success"),
    ((torch.tensor([0.5]), 0), ValueError, "n"),
    ((torch.tensor([0.5]), 2.0), TypeError, "n"),
])
def test_prioritised_prompts_bad_arguments(args, exc, match):
    with pytest.raises(exc, match=match):
        R.prioritised_prompts(*args, torch.Generator().manual_seed(0))


def test_prioritised_prompts_bad_generator_and_config():
    with pytest.raises(TypeError, match="generator"):
        R.prioritised_prompts(torch.tensor([0.5]), 2, 0)
    with pytest.raises(ValueError, match="prompt_sampling"):
        R.RLConfig(prompt_sampling="hard_first")


def test_task_reward_is_the_verifier_with_range_checks():
    task = R.AdditionTask(max_operand=5)
    a, b = task.operands()
    answers = R.encode_answers(a + b, torch.zeros_like(a), 4)[:, None]  # (36, 1, 4)
    mask = answers != R.PAD
    target = (a + b)[:, None]
    assert torch.equal(task.reward(answers, mask, target), R.addition_reward(answers, mask, target))
    assert task.reward(answers, mask, target).eq(1).all()
    with pytest.raises(ValueError, match="answers"):
        task.reward(answers + 20, mask, target)
    with pytest.raises(ValueError, match="target"):
        task.reward(answers, mask, target + 11)
    with pytest.raises(ValueError, match="target"):
        task.reward(answers, mask, target - 11)
    with pytest.raises(ValueError, match="answers"):
        task.reward(answers, mask[..., :-1], target)
