"""tutorlib.rl_envs: vector environments, complete episodes and evaluation over fixed seeds."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from tutorlib import rl, rl_ddpg, rl_envs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_true_next_obs_takes_the_final_observation_where_an_episode_ended():
    next_obs = np.zeros((3, 2))
    final = np.array([None, np.array([7.0, 8.0]), None], dtype=object)
    info = {"final_obs": final, "_final_obs": np.array([False, True, False])}
    out = rl_envs.true_next_obs(next_obs, info)
    assert out.tolist() == [[0, 0], [7, 8], [0, 0]] and next_obs[1].tolist() == [0, 0]
    assert rl_envs.true_next_obs(next_obs, {}) is next_obs


def test_evaluate_is_deterministic_with_fixed_seeds():
    torch.manual_seed(0)
    agent = rl.ActorCritic(4, 2)
    first = rl_envs.evaluate("CartPole-v1", agent.greedy, episodes=4, seed=3)
    assert first.shape == (4,)
    # an independent rollout of episode 0 (reset with seed 3) gives the same return
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=3)
    total, done = 0.0, False
    while not done:
        with torch.no_grad():
            action = int(agent.greedy(torch.as_tensor(obs, dtype=torch.float32)[None])[0])
        obs, reward, term, trunc, _ = env.step(action)
        total, done = total + reward, term or trunc
    assert first[0] == total
    assert np.array_equal(first, rl_envs.evaluate("CartPole-v1", agent.greedy, episodes=4, seed=3))
    always_left = rl_envs.evaluate("CartPole-v1", lambda o: torch.zeros(len(o), dtype=torch.long), episodes=3)
    assert np.all(always_left < 15)  # pushing one way drops the pole within a few steps


def test_collect_episodes_gives_one_complete_episode_per_environment():
    envs = rl_envs.make_vector_env("CartPole-v1", 3)
    envs.reset(seed=0)
    episodes = rl_envs.collect_episodes(envs, lambda o: torch.zeros(len(o), dtype=torch.long))
    envs.close()
    assert len(episodes) == 3
    for e in episodes:
        T = len(e["rewards"])
        assert e["obs"].shape == (T, 4) and e["actions"].shape == (T,)
        ended = e["terminated"] | e["truncated"]
        assert ended[-1] and not ended[:-1].any()  # exactly one ending, at the last step


def test_record_episode_matches_an_independent_rollout():
    torch.manual_seed(0)
    actor = rl_ddpg.DeterministicActor(3, 1, np.array([-2.0]), np.array([2.0]))
    episode = rl_envs.record_episode("Pendulum-v1", actor, seed=5, max_steps=7)
    assert episode["obs"].shape == (8, 3) and episode["actions"].shape == (7, 1)
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=5)
    for t in range(7):
        with torch.no_grad():
            action = actor(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
        np.testing.assert_allclose(episode["actions"][t], action)
        obs, reward, *_ = env.step(action)
        assert episode["rewards"][t] == pytest.approx(reward)
    np.testing.assert_allclose(episode["obs"][-1], obs)


def test_pendulum_angle_inverts_cos_and_sin():
    theta = np.linspace(-3.1, 3.1, 13)
    obs = np.stack([np.cos(theta), np.sin(theta), np.zeros_like(theta)], -1)
    np.testing.assert_allclose(rl_envs.pendulum_angle(obs), theta, atol=1e-12)


def test_episode_tracker_logs_returns_when_episodes_end():
    tracker = rl_envs.EpisodeTracker(2)
    tracker.update(np.array([1.0, 2.0]), np.array([False, True]), 1)
    tracker.update(np.array([3.0, 4.0]), np.array([True, False]), 2)
    assert tracker.steps == [1, 2] and tracker.returns == [2.0, 4.0]
    assert tracker.running.tolist() == [0.0, 4.0]


def test_bad_arguments_raise():
    tracker = rl_envs.EpisodeTracker(2)
    with pytest.raises(ValueError, match="rewards and done must have shape"):
        tracker.update(np.zeros(3), np.zeros(3, dtype=bool), 1)
    with pytest.raises(ValueError, match=r"obs must have shape \(\.\.\., 3\)"):
        rl_envs.pendulum_angle(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="env_id must be a registered gymnasium environment"):
        rl_envs.make_vector_env("CartPole-v99", 2)
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        rl_envs.make_vector_env("CartPole-v1", 0)
    with pytest.raises(TypeError, match="act must be callable"):
        rl_envs.evaluate("CartPole-v1", None)
    with pytest.raises(TypeError, match="envs must be a gymnasium vector environment"):
        rl_envs.collect_episodes(gym.make("CartPole-v1"), lambda o: o)
    envs = rl_envs.make_vector_env("CartPole-v1", 2)
    with pytest.raises(TypeError, match="act must be callable"):
        rl_envs.collect_episodes(envs, 3)
    envs.close()
    with pytest.raises(TypeError, match="info must be a dict"):
        rl_envs.true_next_obs(np.zeros((2, 3)), None)


def _sync_cartpole(num_envs):
    return gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})


@pytest.mark.parametrize(("num_envs", "seed"), [(4, 1), (3, [7, 0, 12])])
def test_cartpole_vector_gives_the_transitions_of_sync_vector_env(num_envs, seed):
    reference, fast = _sync_cartpole(num_envs), rl_envs.CartPoleVector(num_envs)
    obs_ref, _ = reference.reset(seed=seed)
    obs, _ = fast.reset(seed=seed)
    assert np.array_equal(obs, obs_ref) and obs.dtype == obs_ref.dtype == np.float32
    rng = np.random.default_rng(0)
    terminated = truncated = 0
    for t in range(2_500):
        # a balancing controller, so that episodes reach the 500-step time limit, but random
        # actions in environment 0 and on every fourth step, so that poles also fall
        action = (obs_ref[:, 2] + 0.5 * obs_ref[:, 3] > 0).astype(np.int64)
        if t % 4 == 0:
            action = rng.integers(0, 2, num_envs)
        action[0] = rng.integers(0, 2)
        out_ref, out = reference.step(action), fast.step(action)
        for got, want in zip(out[:4], out_ref[:4], strict=True):
            assert np.array_equal(got, want), t
        assert np.array_equal(rl_envs.true_next_obs(out[0], out[4]),
                              rl_envs.true_next_obs(out_ref[0], out_ref[4]))
        terminated += int(out[2].sum())
        truncated += int(out[3].sum())
        obs_ref = out_ref[0]
    assert terminated > 20 and truncated > 2  # both kinds of autoreset were compared


def test_training_on_cartpole_vector_is_the_training_on_sync_vector_env(monkeypatch):
    config = rl.ActorCriticConfig(total_steps=1_024, num_envs=4, num_steps=32, update_epochs=2, seed=3,
                                  progress=False, checkpoint_steps=(0, 512))
    fast = rl.train_actor_critic(config)
    monkeypatch.setattr(rl, "make_vector_env", lambda env_id, n: _sync_cartpole(n))
    reference = rl.train_actor_critic(config)
    assert fast.steps == reference.steps and fast.returns == reference.returns
    assert fast.history == reference.history
    for name, value in reference.model.state_dict().items():
        assert torch.equal(fast.model.state_dict()[name], value), name
    assert isinstance(rl_envs.make_vector_env("CartPole-v1", 2), rl_envs.CartPoleVector)
    assert not isinstance(rl_envs.make_vector_env("Pendulum-v1", 2), rl_envs.CartPoleVector)


def test_gymnasiums_own_numpy_cartpole_differs():
    """Why CartPoleVector exists: gymnasium's vector_entry_point CartPole resets one step late."""
    own = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="vector_entry_point")
    assert own.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs_own, _ = own.reset(seed=1)
    obs_sync, _ = _sync_cartpole(4).reset(seed=1)
    assert not np.array_equal(obs_own, obs_sync)  # one generator for all, not seed + i per environment


def test_cartpole_vector_bad_arguments_raise():
    envs = rl_envs.CartPoleVector(2)
    with pytest.raises(ValueError, match="before reset"):  # as gymnasium's environments refuse
        envs.step(np.array([0, 1]))
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="actions"):
        envs.step(np.array([0, 2]))
    with pytest.raises(ValueError, match="actions"):
        envs.step(np.array([0, 1, 1]))
    for bad_seed in ([1, 2, 3], -1, [0, -2], "0"):
        with pytest.raises((ValueError, TypeError), match="seed"):
            envs.reset(seed=bad_seed)
    with pytest.raises(ValueError, match="options"):
        envs.reset(options={"low": -1.0})
    with pytest.raises(ValueError, match="num_envs"):
        rl_envs.CartPoleVector(0)
    unseeded = rl_envs.CartPoleVector(2)
    obs, _ = unseeded.reset()
    assert obs.shape == (2, 4) and np.all(np.abs(obs) <= 0.05)


def test_cartpole_vector_continues_its_generators_on_an_unseeded_reset():
    """collect_episodes resets without a seed: both must go on drawing from the seeded generators."""
    torch.manual_seed(0)
    agent = rl.ActorCritic(4, 2)
    reference, fast = _sync_cartpole(3), rl_envs.CartPoleVector(3)
    reference.reset(seed=5)
    fast.reset(seed=5)
    for _ in range(2):
        want = rl_envs.collect_episodes(reference, agent.greedy)
        got = rl_envs.collect_episodes(fast, agent.greedy)
        for w, g in zip(want, got, strict=True):
            assert all(torch.equal(w[key], g[key]) for key in w)
