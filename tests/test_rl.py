"""tutorlib.rl: returns, advantages, losses, replay buffer and Polyak updates against hand-worked values."""

import math

import matplotlib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tutorlib import rl, rl_ddpg, rl_envs

matplotlib.use("Agg")
pytestmark = pytest.mark.usefixtures("one_thread")

F, T = False, True


def tensor(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


# --- discounted returns: worked by hand in the comments --------------------------------------


def test_returns_of_one_episode():
    # gamma = 0.5: G2 = 1, G1 = 1 + 0.5 * 1 = 1.5, G0 = 1 + 0.5 * 1.5 = 1.75
    g = rl.discounted_returns(tensor([1.0, 1.0, 1.0]), 0.5)
    torch.testing.assert_close(g, tensor([1.75, 1.5, 1.0]))


def test_returns_stop_at_a_terminal_state():
    # episode 1 = steps 0-1 (terminated at 1), episode 2 = steps 2-3 (rollout ends, no bootstrap)
    # G3 = 4, G2 = 3 + 0.5 * 4 = 5, G1 = 2, G0 = 1 + 0.5 * 2 = 2
    g = rl.discounted_returns(tensor([1.0, 2.0, 3.0, 4.0]), 0.5, terminated=torch.tensor([F, T, F, F]))
    torch.testing.assert_close(g, tensor([2.0, 2.0, 5.0, 4.0]))


def test_returns_bootstrap_at_truncation_but_not_at_termination():
    rewards, next_values = tensor([1.0, 2.0, 3.0, 4.0]), tensor([0.0, 10.0, 0.0, 6.0])
    flags = torch.tensor([F, T, F, F])
    # truncated at 1: G1 = 2 + 0.5 * V(s2') = 2 + 5 = 7, G0 = 1 + 0.5 * 7 = 4.5;
    # last step bootstraps from next_values[3] = 6: G3 = 4 + 3 = 7, G2 = 3 + 0.5 * 7 = 6.5
    truncated = rl.discounted_returns(rewards, 0.5, truncated=flags, next_values=next_values)
    torch.testing.assert_close(truncated, tensor([4.5, 7.0, 6.5, 7.0]))
    # terminated at 1: V(s2') is ignored, G1 = 2, G0 = 2
    terminated = rl.discounted_returns(rewards, 0.5, terminated=flags, next_values=next_values)
    torch.testing.assert_close(terminated, tensor([2.0, 2.0, 6.5, 7.0]))


def test_returns_gamma_zero_and_one():
    r = tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(rl.discounted_returns(r, 0.0), r)
    torch.testing.assert_close(rl.discounted_returns(r, 1.0), tensor([6.0, 5.0, 3.0]))


# --- GAE: worked by hand ----------------------------------------------------------------------
# rewards 1, values V(s_t) = 0.5, next values (0.5, 3.0, 2.0), gamma 0.9, lambda 0.5:
# deltas: d0 = 1 + 0.9 * 0.5 - 0.5 = 0.95, d2 = 1 + 0.9 * 2.0 - 0.5 = 2.3,
#         d1 = 1 + 0.9 * 3.0 - 0.5 = 3.2 (bootstrapped) or 1 - 0.5 = 0.5 (terminated).

R, V, NV = [1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [0.5, 3.0, 2.0]


def run_gae(term, trunc, lam=0.5, next_values=NV):
    return rl.gae(tensor(R), tensor(V), tensor(next_values), torch.tensor(term), torch.tensor(trunc),
                  0.9, lam)


def test_gae_within_one_episode():
    # A2 = 2.3, A1 = 3.2 + 0.45 * 2.3 = 4.235, A0 = 0.95 + 0.45 * 4.235 = 2.85575
    adv, ret = run_gae([F, F, F], [F, F, F])
    torch.testing.assert_close(adv, tensor([2.85575, 4.235, 2.3]))
    torch.testing.assert_close(ret, tensor([3.35575, 4.735, 2.8]))


def test_gae_terminated_cuts_and_does_not_bootstrap():
    # A1 = 0.5 (no future), A0 = 0.95 + 0.45 * 0.5 = 1.175, A2 = 2.3 (next episode)
    adv, _ = run_gae([F, T, F], [F, F, F])
    torch.testing.assert_close(adv, tensor([1.175, 0.5, 2.3]))


def test_gae_truncated_cuts_but_bootstraps():
    # A1 = 3.2 (bootstrapped from V(final obs) = 3.0, nothing from step 2), A0 = 0.95 + 0.45 * 3.2 = 2.39
    adv, _ = run_gae([F, F, F], [F, T, F])
    torch.testing.assert_close(adv, tensor([2.39, 3.2, 2.3]))


def test_gae_lambda_zero_is_the_td_error():
    adv, _ = run_gae([F, F, F], [F, F, F], lam=0.0)
    torch.testing.assert_close(adv, tensor([0.95, 3.2, 2.3]))


episodes = st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-5, 5), min_size=n, max_size=n),
    st.lists(st.floats(-5, 5), min_size=n, max_size=n),
    st.lists(st.floats(-5, 5), min_size=n, max_size=n),
    st.lists(st.sampled_from(["none", "term", "trunc"]), min_size=n, max_size=n),
))


@settings(max_examples=150, deadline=None)
@given(episodes, st.floats(0, 1), st.floats(0, 1))
def test_gae_equals_the_explicit_sum_of_td_errors(data, gamma, lam):
    rewards, values, next_values, ends = (tensor(x) if i < 3 else x for i, x in enumerate(data))
    term = torch.tensor([e == "term" for e in ends])
    trunc = torch.tensor([e == "trunc" for e in ends])
    adv, ret = rl.gae(rewards, values, next_values, term, trunc, gamma, lam)
    n = len(rewards)
    # reference: A_t = sum_l (gamma lambda)^l delta_{t+l}, up to and including the episode's end
    expected = []
    for t in range(n):
        total, weight = 0.0, 1.0
        for k in range(t, n):
            bootstrap = 0.0 if term[k] else next_values[k].item()
            total += weight * (rewards[k].item() + gamma * bootstrap - values[k].item())
            if term[k] or trunc[k]:
                break
            weight *= gamma * lam
        expected.append(total)
    torch.testing.assert_close(adv, tensor(expected), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ret, adv + values)


@settings(max_examples=100, deadline=None)
@given(episodes, st.floats(0, 1))
def test_gae_with_lambda_one_is_the_bootstrapped_return_minus_the_value(data, gamma):
    rewards, values, next_values, ends = (tensor(x) if i < 3 else x for i, x in enumerate(data))
    term = torch.tensor([e == "term" for e in ends])
    trunc = torch.tensor([e == "trunc" for e in ends])
    # within an episode the next state's value is the value of the next step's state
    inside = ~(term | trunc)[:-1]
    next_values[:-1][inside] = values[1:][inside]
    _, ret = rl.gae(rewards, values, next_values, term, trunc, gamma, 1.0)
    g = rl.discounted_returns(rewards, gamma, term, trunc, next_values)
    torch.testing.assert_close(ret, g, rtol=1e-9, atol=1e-9)


def test_gae_treats_parallel_environments_independently():
    g = torch.Generator().manual_seed(0)
    r, v, nv = (torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(3))
    term, trunc = torch.rand(6, 3, generator=g) < 0.2, torch.rand(6, 3, generator=g) < 0.2
    adv, _ = rl.gae(r, v, nv, term, trunc, 0.97, 0.9)
    for j in range(3):
        single, _ = rl.gae(r[:, j], v[:, j], nv[:, j], term[:, j], trunc[:, j], 0.97, 0.9)
        torch.testing.assert_close(adv[:, j], single)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_gamma_and_lambda_outside_unit_interval_raise(bad):
    r = tensor([1.0, 2.0])
    flags = torch.tensor([F, F])
    with pytest.raises(ValueError, match=r"gamma must be a finite number in \[0, 1\]"):
        rl.discounted_returns(r, bad)
    with pytest.raises(ValueError, match=r"gamma must be a finite number in \[0, 1\]"):
        rl.gae(r, r, r, flags, flags, bad, 0.9)
    with pytest.raises(ValueError, match=r"lam must be a finite number in \[0, 1\]"):
        rl.gae(r, r, r, flags, flags, 0.9, bad)


def test_wrong_types_and_shapes_raise():
    r = tensor([1.0, 2.0])
    flags = torch.tensor([F, F])
    with pytest.raises(TypeError, match="gamma must be a real number"):
        rl.discounted_returns(r, "0.9")
    with pytest.raises(TypeError, match=r"rewards must be a torch\.Tensor"):
        rl.discounted_returns([1.0, 2.0], 0.9)
    with pytest.raises(ValueError, match=r"rewards must have shape \(T,\) or \(T, N\)"):
        rl.discounted_returns(torch.zeros(2, 2, 2), 0.9)
    with pytest.raises(ValueError, match=r"values must have the shape of rewards \(2,\), got \(3,\)"):
        rl.gae(r, tensor([1.0, 2.0, 3.0]), r, flags, flags, 0.9, 0.9)
    with pytest.raises(ValueError, match="terminated must have the shape of rewards"):
        rl.discounted_returns(r, 0.9, terminated=torch.tensor([F]))


# --- REINFORCE and the actor-critic loss ------------------------------------------------------


def test_reinforce_loss_by_hand():
    log_probs = tensor([math.log(0.5), math.log(0.25)]).requires_grad_()
    loss = rl.reinforce_loss(log_probs, tensor([2.0, 4.0]), baseline=tensor([1.0, 1.0]))
    # -(log 0.5 * (2 - 1) + log 0.25 * (4 - 1)) / 2 = (0.693147 + 4.158883) / 2
    assert loss.item() == pytest.approx((math.log(2) + 3 * math.log(4)) / 2, rel=1e-12)
    loss.backward()
    torch.testing.assert_close(log_probs.grad, tensor([-0.5, -1.5]))


def test_reinforce_loss_shapes_raise():
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        rl.reinforce_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(TypeError):
        rl.reinforce_loss([0.0], torch.zeros(1))


def test_ppo_clip_by_hand():
    old = torch.zeros(4, dtype=torch.float64)
    ratio = tensor([1.5, 0.5, 0.5, 1.5])
    adv = tensor([1.0, 1.0, -1.0, -1.0])
    # min(r A, clip(r, 0.8, 1.2) A): 1.2, 0.5, -0.8, -1.5  -> loss = -mean = -(-0.6) / 4
    loss, stats = rl.actor_critic_loss(ratio.log(), old, adv, torch.zeros(4), torch.zeros(4),
                                       torch.zeros(4), clip_coef=0.2, vf_coef=0.5, ent_coef=0.0)
    assert stats["policy_loss"] == pytest.approx(-(1.2 + 0.5 - 0.8 - 1.5) / 4)
    assert stats["clip_fraction"] == 1.0
    assert loss.item() == pytest.approx(0.15)


def test_value_and_entropy_terms_by_hand():
    z = torch.zeros(2)
    loss, stats = rl.actor_critic_loss(z, z, z, tensor([1.0, 3.0]), tensor([0.0, 0.0]), tensor([0.5, 1.5]),
                                       clip_coef=None, vf_coef=0.5, ent_coef=0.1)
    # value loss 0.5 * (1 + 9) / 2 = 2.5; total 0.5 * 2.5 - 0.1 * 1.0
    assert stats["value_loss"] == pytest.approx(2.5)
    assert loss.item() == pytest.approx(1.25 - 0.1)


def test_a2c_and_ppo_gradients_agree_at_the_old_policy():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(16, 2, generator=g, requires_grad=True)
    actions = torch.randint(0, 2, (16,), generator=g)
    adv = torch.randn(16, generator=g)
    grads = []
    for clip in (None, 0.2):
        logp = torch.log_softmax(logits, -1).gather(1, actions[:, None]).squeeze(1)
        loss, _ = rl.actor_critic_loss(logp, logp.detach(), adv, torch.zeros(16), torch.zeros(16),
                                       torch.zeros(16), clip, 0.5, 0.0)
        grads.append(torch.autograd.grad(loss, logits)[0])
    torch.testing.assert_close(grads[0], grads[1])


def test_per_sample_gradients_match_a_loop_of_autograd():
    torch.manual_seed(0)
    actor = rl.mlp([4, 8, 2], out_std=1.0)
    obs, actions, weights = torch.randn(5, 4), torch.tensor([0, 1, 1, 0, 1]), torch.randn(5)
    ours = rl.per_sample_policy_gradients(actor, obs, actions, weights)
    for i in range(5):
        logp = torch.log_softmax(actor(obs[i:i + 1]), -1)[0, actions[i]] * weights[i]
        expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(logp, list(actor.parameters()))])
        torch.testing.assert_close(ours[i], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"actions must have shape \(B,\) with B = 5"):
        rl.per_sample_policy_gradients(actor, obs, actions[:3], weights)


def test_gradient_variance_is_the_trace_of_the_covariance():
    per_sample = tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]])
    # column variances (unbiased): 4 and 4
    assert rl.gradient_variance(per_sample) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="B >= 2"):
        rl.gradient_variance(torch.zeros(1, 3))


# --- DDPG pieces -------------------------------------------------------------------------------


def test_polyak_update_by_hand():
    target, source = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        for p in target.parameters():
            p.fill_(0.0)
        for p in source.parameters():
            p.fill_(1.0)
    rl_ddpg.polyak_update(target, source, 0.1)
    assert torch.allclose(target.weight, torch.full((1, 2), 0.1))
    rl_ddpg.polyak_update(target, source, 0.1)  # 0.1 * 1 + 0.9 * 0.1
    assert torch.allclose(target.bias, torch.tensor([0.19]))
    rl_ddpg.polyak_update(target, source, 1.0)
    assert torch.equal(target.weight, source.weight)
    with pytest.raises(ValueError, match=r"tau must be a finite number in \[0, 1\]"):
        rl_ddpg.polyak_update(target, source, 1.5)
    with pytest.raises(ValueError, match="same architecture"):
        rl_ddpg.polyak_update(nn.Linear(3, 1), source, 0.5)


def add_numbered(buffer, numbers):
    """Transitions whose every field holds their number, so a sample shows which rows it took."""
    n = torch.tensor(numbers, dtype=torch.float32)
    buffer.add(n[:, None].repeat(1, 3), n[:, None], n, n[:, None].repeat(1, 3) + 0.5, n % 2)


def test_replay_buffer_overwrites_the_oldest():
    buffer = rl_ddpg.ReplayBuffer(capacity=4, obs_dim=3, act_dim=1)
    add_numbered(buffer, [0, 1, 2])
    assert len(buffer) == 3 and buffer.position == 3
    add_numbered(buffer, [3, 4, 5])  # wraps around: 4 and 5 overwrite 0 and 1
    assert len(buffer) == 4 and buffer.position == 2
    assert buffer.rewards.tolist() == [4.0, 5.0, 2.0, 3.0]


def test_replay_buffer_samples_whole_transitions_with_the_right_shapes():
    buffer = rl_ddpg.ReplayBuffer(capacity=5, obs_dim=3, act_dim=1)
    add_numbered(buffer, [0, 1, 2, 3, 4, 5, 6])
    batch = buffer.sample(5, torch.Generator().manual_seed(0))
    assert batch.obs.shape == (5, 3) and batch.next_obs.shape == (5, 3)
    assert batch.actions.shape == (5, 1) and batch.rewards.shape == (5,) and batch.terminated.shape == (5,)
    g = torch.Generator().manual_seed(1)
    drawn = set(torch.cat([buffer.sample(5, g).rewards for _ in range(20)]).tolist())
    assert drawn == {2.0, 3.0, 4.0, 5.0, 6.0}  # 0 and 1 were overwritten; every stored row is drawn
    torch.testing.assert_close(batch.obs[:, 0], batch.rewards)  # fields of one transition stay together
    torch.testing.assert_close(batch.next_obs[:, 2], batch.rewards + 0.5)
    torch.testing.assert_close(batch.terminated, batch.rewards % 2)
    again = buffer.sample(5, torch.Generator().manual_seed(0))
    assert torch.equal(again.rewards, batch.rewards)  # seeded


def test_replay_buffer_bad_arguments():
    buffer = rl_ddpg.ReplayBuffer(capacity=5, obs_dim=3, act_dim=1)
    add_numbered(buffer, [0, 1])
    with pytest.raises(ValueError, match="batch_size=3 is larger than the 2 transitions"):
        buffer.sample(3)
    with pytest.raises(ValueError, match=r"obs must have shape \(2, 3\), got \(2, 4\)"):
        buffer.add(torch.zeros(2, 4), torch.zeros(2, 1), torch.zeros(2), torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match=r"rewards must have shape \(2,\)"):
        buffer.add(torch.zeros(2, 3), torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(TypeError, match=r"actions must be a torch\.Tensor"):
        buffer.add(torch.zeros(2, 3), np.zeros((2, 1)), torch.zeros(2), torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        rl_ddpg.ReplayBuffer(0, 3, 1)


def test_ddpg_critic_target_by_hand():
    class Constant(nn.Module):
        def __init__(self, value):
            super().__init__()
            self.value = value

        def forward(self, obs, actions=None):
            return torch.full((obs.shape[0],), self.value) if actions is not None else obs[:, :1]

    batch = rl_ddpg.Batch(obs=torch.zeros(2, 3), actions=torch.zeros(2, 1), rewards=torch.tensor([1.0, 1.0]),
                     next_obs=torch.zeros(2, 3), terminated=torch.tensor([0.0, 1.0]))
    critic_loss, actor_loss = rl_ddpg.ddpg_losses(Constant(0.0), Constant(0.0), Constant(0.0), Constant(10.0),
                                             batch, gamma=0.9)
    # targets: 1 + 0.9 * 10 = 10 and 1 (terminated); Q = 0, so the loss is (100 + 1) / 2
    assert critic_loss.item() == pytest.approx(50.5)
    assert actor_loss.item() == pytest.approx(0.0)
    # clipped double-Q: the target uses the smaller target critic (4, not 10), and both critics
    # (Q1 = 0, Q2 = 2) regress on it: targets 1 + 0.9 * 4 = 4.6 and 1
    critic_loss, _ = rl_ddpg.ddpg_losses(Constant(0.0), Constant(0.0), Constant(0.0), Constant(10.0), batch,
                                    gamma=0.9, critic2=Constant(2.0), critic2_target=Constant(4.0))
    assert critic_loss.item() == pytest.approx((4.6**2 + 1) / 2 + (2.6**2 + 1) / 2)
    with pytest.raises(ValueError, match="critic2 and critic2_target go together"):
        rl_ddpg.ddpg_losses(Constant(0.0), Constant(0.0), Constant(0.0), Constant(10.0), batch, 0.9,
                       critic2=Constant(2.0))
    with pytest.raises(TypeError, match="twin_critics must be a bool"):
        rl_ddpg.DDPGConfig(twin_critics="yes")


def test_gaussian_exploration_stays_in_bounds_and_has_the_right_scale():
    g = torch.Generator().manual_seed(0)
    low, high, scale = torch.tensor([-2.0]), torch.tensor([2.0]), torch.tensor([2.0])
    mean = torch.zeros(20_000, 1)
    noisy = rl_ddpg.gaussian_exploration(mean, 0.1, scale, low, high, g)
    assert noisy.std().item() == pytest.approx(0.2, rel=0.03)
    clipped = rl_ddpg.gaussian_exploration(mean, 5.0, scale, low, high, g)
    assert clipped.min() >= -2.0 and clipped.max() <= 2.0
    assert torch.equal(rl_ddpg.gaussian_exploration(mean[:5], 0.0, scale, low, high, g), mean[:5])
    with pytest.raises(ValueError, match="sigma must be finite and >= 0"):
        rl_ddpg.gaussian_exploration(mean, -0.1, scale, low, high, g)


# --- training loops -----------------------------------------------------------------------


def test_short_training_runs_return_what_they_promise():
    ac = rl.train_actor_critic(rl.ActorCriticConfig(total_steps=512, num_steps=16, num_envs=4,
                                                    update_epochs=2, checkpoint_steps=(0, 256, 10_000),
                                                    progress=False))
    assert ac.env_steps == 512 and sorted(ac.checkpoints) == [0, 256, 10_000]
    assert not torch.equal(ac.checkpoints[0]["actor.0.weight"], ac.checkpoints[256]["actor.0.weight"])
    a2c = rl.train_actor_critic(rl.a2c_config(total_steps=200, num_envs=4, progress=False))
    assert len(a2c.history["policy_loss"]) == 10 and a2c.history["clip_fraction"][0] == 0.0
    rf = rl.train_reinforce(rl.ReinforceConfig(total_steps=200, num_envs=2, progress=False))
    # CartPole pays 1 per step: the episodes' returns add up to the steps taken
    assert rf.env_steps >= 200 and sum(rf.returns) == rf.env_steps
    ddpg = rl_ddpg.train_ddpg(rl_ddpg.DDPGConfig(total_steps=120, learning_starts=40, batch_size=16,
                                       checkpoint_steps=(0, 100), progress=False))
    assert len(ddpg.history["critic_loss"]) == 80 and sorted(ddpg.checkpoints) == [0, 100]
    assert isinstance(ddpg.critic, rl_ddpg.QNetwork) and ac.critic is None
    twin = rl_ddpg.train_ddpg(rl_ddpg.DDPGConfig(total_steps=120, learning_starts=40, batch_size=16,
                                       twin_critics=True, checkpoint_steps=(0,), progress=False))
    # the second critic is made last, so the actor starts from the same weights as plain DDPG's
    assert len(twin.history["critic_loss"]) == 80 and isinstance(twin.critic, rl_ddpg.QNetwork)
    torch.testing.assert_close(twin.checkpoints[0], ddpg.checkpoints[0])
    episode = rl_envs.record_episode("Pendulum-v1", ddpg.model, seed=0, max_steps=7)
    assert episode["obs"].shape == (8, 3) and episode["actions"].shape == (7, 1)
    assert np.all(np.abs(episode["actions"]) <= 2.0)


def test_bad_training_configs_raise():
    with pytest.raises(ValueError, match="num_minibatches=3 must divide"):
        rl.train_actor_critic(rl.ActorCriticConfig(num_minibatches=3, progress=False))
    with pytest.raises(ValueError, match=r"gae_lambda must be a finite number in \[0, 1\]"):
        rl.train_actor_critic(rl.ActorCriticConfig(gae_lambda=1.2, progress=False))
    with pytest.raises(ValueError, match="baseline must be"):
        rl.train_reinforce(rl.ReinforceConfig(baseline="median", progress=False))
    with pytest.raises(ValueError, match="batch_size=512 exceeds buffer_size=100"):
        rl_ddpg.train_ddpg(rl_ddpg.DDPGConfig(batch_size=512, buffer_size=100, progress=False))
    with pytest.raises(TypeError, match="total_steps must be an int"):
        rl_ddpg.train_ddpg(rl_ddpg.DDPGConfig(total_steps=1e4, progress=False))


def test_negative_clip_norm_and_other_bad_config_fields_raise_at_construction():
    # a negative max_grad_norm would flip the gradient (clip_grad_norm_ scales by max_norm / norm)
    with pytest.raises(ValueError, match="max_grad_norm must be finite and > 0, got -1"):
        rl.ActorCriticConfig(max_grad_norm=-1.0)
    with pytest.raises(ValueError, match="total_steps must be >= 1"):
        rl.ActorCriticConfig(total_steps=-1)
    with pytest.raises(TypeError, match="num_envs must be an int"):
        rl.ReinforceConfig(num_envs=2.5)
    with pytest.raises(ValueError, match="tau must be a finite number"):
        rl_ddpg.DDPGConfig(tau=float("nan"))
    with pytest.raises(ValueError, match="env_id must be a registered gymnasium environment"):
        rl_ddpg.DDPGConfig(env_id="Pendulum-v99")
    with pytest.raises(ValueError, match="checkpoint_steps entries must be >= 0"):
        rl.ActorCriticConfig(checkpoint_steps=(-5,))
    config = rl.ActorCriticConfig(progress=False)
    config.max_grad_norm = -1.0  # changed after construction: the trainer checks again
    with pytest.raises(ValueError, match="max_grad_norm"):
        rl.train_actor_critic(config)
    with pytest.raises(TypeError, match="config must be a DDPGConfig"):
        rl_ddpg.train_ddpg(rl.ActorCriticConfig())


def test_reinforce_loss_refuses_a_baseline_that_would_broadcast():
    logp, returns = torch.zeros(2, requires_grad=True), torch.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match=r"baseline must have shape \(B,\), got \(2, 1\)"):
        rl.reinforce_loss(logp, returns, torch.ones(2, 1))
    with pytest.raises(ValueError, match="returns must be finite"):
        rl.reinforce_loss(logp, torch.tensor([1.0, float("nan")]))
    # a scalar baseline is fine, and equals subtracting it from every return
    a = rl.reinforce_loss(logp, returns, torch.tensor(1.5))
    b = rl.reinforce_loss(logp, returns - 1.5)
    torch.testing.assert_close(a, b)


def test_networks_and_buffers_check_their_inputs():
    agent = rl.ActorCritic(4, 2)
    with pytest.raises(ValueError, match=r"obs must have shape \(B, 4\)"):
        agent.value(torch.zeros(3, 5))
    with pytest.raises(TypeError, match="obs must be a floating-point tensor"):
        agent.greedy(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="n_actions must be >= 1"):
        rl.ActorCritic(4, 0)
    q = rl_ddpg.QNetwork(3, 1)
    with pytest.raises(ValueError, match="actions must have the batch shape of obs"):
        q(torch.zeros(4, 3), torch.zeros(5, 1))
    with pytest.raises(ValueError, match="low and high must be finite with low < high"):
        rl_ddpg.DeterministicActor(3, 1, np.array([2.0]), np.array([-2.0]))
    buffer = rl_ddpg.ReplayBuffer(10, 3, 1)
    with pytest.raises(TypeError, match="rewards must be a floating-point tensor"):
        buffer.add(torch.zeros(1, 3), torch.zeros(1, 1), torch.zeros(1, dtype=torch.long),
                   torch.zeros(1, 3), torch.zeros(1, dtype=torch.bool))
    with pytest.raises(ValueError, match="terminated must be bool"):
        buffer.add(torch.zeros(1, 3), torch.zeros(1, 1), torch.zeros(1), torch.zeros(1, 3),
                   torch.tensor([0.5]))
    with pytest.raises(ValueError, match="terminated must be bool"):
        rl.gae(torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.tensor([0, 2]), torch.zeros(2), 0.9, 0.9)


def test_act_draws_what_the_categorical_distribution_draws():
    torch.manual_seed(0)
    agent = rl.ActorCritic(4, 3)
    obs = torch.randn(64, 4) * 3
    torch.manual_seed(1)
    expected = [agent.distribution(obs).sample() for _ in range(5)]
    torch.manual_seed(1)
    for want in expected:
        action, log_prob, value = agent.act(obs)
        assert torch.equal(action, want)
        assert torch.equal(log_prob, agent.distribution(obs).log_prob(action))
        assert torch.equal(value, agent.value(obs))
    for bad in (torch.randn(5, 3), obs[0]):
        with pytest.raises(ValueError, match="obs"):
            agent.act(bad)
